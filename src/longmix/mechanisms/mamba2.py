"""``mamba2``: Mamba-2's SSD / simple GLA, a data-dependent scalar decay per head
(Dao & Gu 2024, Transformers are SSMs, arXiv 2405.21060).

    S_t = exp(g_t) S_{t-1} + k_t v_tᵀ,   o_t = S_tᵀ (scale·q_t)

``g`` [B, T, H] float32 ≤ 0; in Mamba-2, g_t = Δ_t·A with A = −exp(A_log) and
Δ_t = softplus(x_t W + dt_bias) (and k = B_t·Δ_t, q = C_t, v = x_t, scale = 1).

Example::

    >>> import torch, longmix
    >>> q, k, v = torch.randn(3, 1, 100, 4, 16).unbind(0)
    >>> g = torch.nn.functional.logsigmoid(torch.randn(1, 100, 4))
    >>> longmix.attention(q, k, v, "mamba2", g=g).shape
    torch.Size([1, 100, 4, 16])
"""
from ..registry import register
from .base import check_gates, make_recurrent, prepare_direct


register(make_recurrent(
    name="mamba2",
    family="decay",
    formula="S_t = exp(g_t) S_{t-1} + k_t v_tᵀ;  o_t = S_tᵀ(scale·q_t)",
    paper="Dao & Gu 2024, Transformers are SSMs (Mamba-2, arXiv 2405.21060)",
    inputs={"g": "[B, T, H] float32 data-dependent log-decay ≤ 0"},
    required=("g",),
    prepare=prepare_direct,
    check=check_gates(per_key=False),
))
