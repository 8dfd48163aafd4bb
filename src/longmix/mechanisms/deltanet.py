"""``deltanet``: the delta rule (Schlag et al. 2021; parallelised by Yang et al. 2024,
arXiv 2406.06484).

    S_t = (I − β_t k_t k_tᵀ) S_{t-1} + β_t k_t v_tᵀ,   o_t = S_tᵀ (scale·q_t)

``beta`` [B, T, H] in [0, 2] (β ∈ (1, 2] gives negative eigenvalues, Grazzi et al.
2024, arXiv 2411.12537). Keys are used as given: DeltaNet L2-normalises them (and q)
in the layer, which keeps the transition non-expansive.

Example::

    >>> import torch, longmix
    >>> q, k, v = torch.randn(3, 1, 100, 4, 16).unbind(0)
    >>> k = torch.nn.functional.normalize(k, dim=-1)
    >>> longmix.attention(q, k, v, "deltanet", beta=torch.rand(1, 100, 4)).shape
    torch.Size([1, 100, 4, 16])
"""
from ..registry import register
from .base import check_gates, make_recurrent, prepare_direct


register(make_recurrent(
    name="deltanet",
    family="delta",
    formula="S_t = (I − β_t k_t k_tᵀ) S_{t-1} + β_t k_t v_tᵀ;  o_t = S_tᵀ(scale·q_t)",
    paper="Yang et al. 2024, Parallelizing Linear Transformers with the Delta Rule over Sequence Length (arXiv 2406.06484)",
    inputs={"beta": "[B, T, H] writing strength in [0, 2]"},
    required=("beta",),
    prepare=prepare_direct,
    check=check_gates(beta=True),
    delta=True,
))
