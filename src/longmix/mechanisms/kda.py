"""``kda``: Kimi Delta Attention, the gated delta rule with a per-key-dim gate
(Kimi Team 2025, Kimi Linear, arXiv 2510.26692).

    S_t = (I − β_t k_t k_tᵀ) diag(α_t) S_{t-1} + β_t k_t v_tᵀ,   α_t = exp(g_t),   o_t = S_tᵀ (scale·q_t)

``g`` [B, T, H, D_k] float32 ≤ 0 (the paper: −exp(A_log)·softplus(x_t W↑W↓ + dt_bias)
per channel), ``beta`` [B, T, H] in [0, 2].

Example::

    >>> import torch, longmix
    >>> q, k, v = torch.randn(3, 1, 100, 4, 16).unbind(0)
    >>> k = torch.nn.functional.normalize(k, dim=-1)
    >>> g = torch.nn.functional.logsigmoid(torch.randn(1, 100, 4, 16))
    >>> longmix.attention(q, k, v, "kda", g=g, beta=torch.rand(1, 100, 4)).shape
    torch.Size([1, 100, 4, 16])
"""
from ..registry import register
from .base import check_gates, make_recurrent, prepare_direct


register(make_recurrent(
    name="kda",
    family="delta",
    formula="S_t = (I − β_t k_t k_tᵀ) diag(α_t) S_{t-1} + β_t k_t v_tᵀ;  o_t = S_tᵀ(scale·q_t)",
    paper="Kimi Team 2025, Kimi Linear: An Expressive, Efficient Attention Architecture (arXiv 2510.26692)",
    inputs={"g": "[B, T, H, D_k] float32 data-dependent per-key log-decay ≤ 0", "beta": "[B, T, H] writing strength in [0, 2]"},
    required=("g", "beta"),
    prepare=prepare_direct,
    check=check_gates(per_key=True, beta=True),
    per_key=True,
    delta=True,
))
