"""``gla``: Gated Linear Attention, a data-dependent decay per key dimension
(Yang et al. 2023, arXiv 2312.06635).

    S_t = diag(exp(g_t)) S_{t-1} + k_t v_tᵀ,   o_t = S_tᵀ (scale·q_t)

``g`` [B, T, H, D_k] float32 ≤ 0; GLA uses g_t = logsigmoid(x_t W₁W₂ + b)/16.

Example::

    >>> import torch, longmix
    >>> q, k, v = torch.randn(3, 1, 100, 4, 16).unbind(0)
    >>> g = torch.nn.functional.logsigmoid(torch.randn(1, 100, 4, 16)) / 16
    >>> longmix.attention(q, k, v, "gla", g=g).shape
    torch.Size([1, 100, 4, 16])
"""
from ..registry import register
from .base import check_gates, make_recurrent, prepare_direct


register(make_recurrent(
    name="gla",
    family="decay",
    formula="S_t = diag(α_t) S_{t-1} + k_t v_tᵀ;  o_t = S_tᵀ(scale·q_t)",
    paper="Yang et al. 2023, Gated Linear Attention Transformers with Hardware-Efficient Training (arXiv 2312.06635)",
    inputs={"g": "[B, T, H, D_k] float32 data-dependent per-key log-decay ≤ 0"},
    required=("g",),
    prepare=prepare_direct,
    check=check_gates(per_key=True),
    per_key=True,
))
