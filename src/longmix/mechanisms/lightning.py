"""``lightning``: Lightning Attention (TransNormerLLM; Qin et al. 2023, arXiv 2307.14995;
Lightning Attention-2, arXiv 2401.04658).

A constant per-head decay λ_h, passed in log space as ``g`` [H]. TransNormerLLM sets
log λ_h = −(8h/H)·(1 − l/L) for layer l of L; the default is layer 0 (``g_h = −8h/H``);
use :func:`default_decay` for other layers::

    S_t = λ_h S_{t-1} + k_t v_tᵀ,   o_t = S_tᵀ (scale·q_t)

Example::

    >>> import torch, longmix
    >>> from longmix.mechanisms.lightning import default_decay
    >>> q, k, v = torch.randn(3, 1, 100, 4, 16).unbind(0)
    >>> longmix.attention(q, k, v, "lightning", g=default_decay(4, layer_idx=3, num_layers=12)).shape
    torch.Size([1, 100, 4, 16])
"""
import torch

from ..registry import register
from .base import constant_decay, make_recurrent


def default_decay(H: int, layer_idx: int = 0, num_layers: int = 1) -> torch.Tensor:
    """TransNormerLLM's log λ_h = −(8h/H)(1 − l/L), float32 [H]."""
    return (-(8.0 / H) * (1.0 - layer_idx / num_layers) * torch.arange(H, dtype=torch.float64)).float()


_prepare, _check = constant_decay(default_decay)


register(make_recurrent(
    name="lightning",
    family="decay",
    formula="S_t = λ_h S_{t-1} + k_t v_tᵀ;  o_t = S_tᵀ(scale·q_t)",
    paper="Qin et al. 2023/2024, TransNormerLLM (arXiv 2307.14995) and Lightning Attention-2 (arXiv 2401.04658)",
    inputs={"g": "[H] float32 constant log-decay ≤ 0 (default −8h/H, TransNormerLLM's layer 0)"},
    required=(),
    prepare=_prepare,
    check=_check,
))
