"""``gated_deltanet``: Gated DeltaNet (Yang, Kautz, Hatamizadeh 2024, arXiv 2412.06464).

    S_t = α_t (I − β_t k_t k_tᵀ) S_{t-1} + β_t k_t v_tᵀ,   α_t = exp(g_t),   o_t = S_tᵀ (scale·q_t)

``g`` [B, T, H] float32 ≤ 0 (the paper: g_t = −exp(A_log)·softplus(x_t W + dt_bias),
Mamba-2's parametrisation), ``beta`` [B, T, H] in [0, 2] (sigmoid in the paper).

Example::

    >>> import torch, longmix
    >>> q, k, v = torch.randn(3, 1, 100, 4, 16).unbind(0)
    >>> k = torch.nn.functional.normalize(k, dim=-1)
    >>> g = torch.nn.functional.logsigmoid(torch.randn(1, 100, 4))
    >>> longmix.attention(q, k, v, "gated_deltanet", g=g, beta=torch.rand(1, 100, 4)).shape
    torch.Size([1, 100, 4, 16])
"""
from ..registry import register
from .base import check_gates, make_recurrent, prepare_direct


register(make_recurrent(
    name="gated_deltanet",
    family="delta",
    formula="S_t = α_t (I − β_t k_t k_tᵀ) S_{t-1} + β_t k_t v_tᵀ;  o_t = S_tᵀ(scale·q_t)",
    paper="Yang, Kautz, Hatamizadeh 2024, Gated Delta Networks: Improving Mamba2 with Delta Rule (arXiv 2412.06464)",
    inputs={"g": "[B, T, H] float32 data-dependent log-decay ≤ 0", "beta": "[B, T, H] writing strength in [0, 2]"},
    required=("g", "beta"),
    prepare=prepare_direct,
    check=check_gates(per_key=False, beta=True),
    delta=True,
))
