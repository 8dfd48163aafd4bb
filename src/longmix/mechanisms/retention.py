"""``retention``: RetNet's retention (Sun et al. 2023, arXiv 2307.08621).

A constant per-head decay γ_h, passed in log space as ``g`` [H]; the default is
RetNet's γ_h = 1 − 2^(−5−h), h = 0..H−1::

    S_t = γ_h S_{t-1} + k_t v_tᵀ,   o_t = S_tᵀ (scale·q_t)

(RetNet's xPos rotation and GroupNorm belong to the layer around it.)

Example::

    >>> import torch, longmix
    >>> q, k, v = torch.randn(3, 1, 100, 4, 16).unbind(0)
    >>> longmix.attention(q, k, v, "retention").shape
    torch.Size([1, 100, 4, 16])
"""
import torch

from ..registry import register
from .base import constant_decay, make_recurrent


def default_decay(H: int) -> torch.Tensor:
    """RetNet's log γ_h = log(1 − 2^(−5−h)), float32 [H]."""
    return torch.log1p(-torch.pow(2.0, -5.0 - torch.arange(H, dtype=torch.float64))).float()


_prepare, _check = constant_decay(default_decay)


register(make_recurrent(
    name="retention",
    family="decay",
    formula="S_t = γ_h S_{t-1} + k_t v_tᵀ;  o_t = S_tᵀ(scale·q_t)",
    paper="Sun et al. 2023, Retentive Network (RetNet, arXiv 2307.08621)",
    inputs={"g": "[H] float32 constant log-decay log γ_h ≤ 0 (default log(1 − 2^(−5−h)))"},
    required=(),
    prepare=_prepare,
    check=_check,
))
