"""``softplus``: l1-normalised softplus attention, with optional length scaling.

Weights w_ij = softplus(l_ij), output Σ_j w_ij v_j / Σ_j w_ij. With
``length_scaling=True`` each query row's logits are multiplied by ln(n_i), n_i the
number of keys that query sees (i+1 for causal self-attention), the length-dependent
factor of LSSA (Gao et al. 2025, "Softplus Attention with Re-weighting Boosts Length
Extrapolation", arXiv 2501.13428). The paper's LSSA is this with L2-normalised q, k
and ``scale = ln(D)``; its extra re-weighting step (LSSAR, a power of the weights) is
not implemented.

Example::

    >>> import torch, longmix
    >>> q, k, v = torch.randn(3, 1, 32, 2, 16).unbind(0)
    >>> longmix.attention(q, k, v, "softplus", length_scaling=True).shape
    torch.Size([1, 32, 2, 16])
"""
import torch

from ..kernels.reference.dense import visible_range
from ..registry import Mechanism, register
from .base import DENSE_COMPLEXITY, DENSE_INPUTS, DENSE_NONCAUSAL, DENSE_STATE, check_dense, dense_run


def _length_scale(T_q, T_k, opts):
    """ln(n_i) for each query row, n_i = how many keys row i can see."""
    if not opts.get("length_scaling"):
        return None
    counts = []
    for i in range(T_q):
        p = i + T_k - T_q
        lo, hi = visible_range(p, p, T_k, causal=opts["causal"], window=opts.get("window"), block_size=opts.get("block_size"))
        counts.append(max(hi - lo, 1))
    return torch.tensor(counts, dtype=torch.float64).log()


def _check(q, k, v, opts):
    check_dense(q, k, v, opts)
    if opts.get("length_scaling") is not None and not isinstance(opts["length_scaling"], bool):
        raise TypeError(f"length_scaling must be a bool, got {type(opts['length_scaling']).__name__}")


register(Mechanism(
    name="softplus",
    family="dense",
    formula="o_i = Σ_j w_ij v_j / Σ_j w_ij,  w_ij = softplus(λ_i·l_ij),  λ_i = ln(n_i) with length_scaling else 1",
    paper="Gao, Spratling, Gionfrida 2025, Softplus Attention with Re-weighting Boosts Length Extrapolation (arXiv 2501.13428)",
    forms=("parallel", "chunk", "recurrent"),
    inputs={
        "length_scaling": "bool: multiply row i's logits by ln(n_i), n_i = number of keys it sees (LSSA)",
        **DENSE_INPUTS,
    },
    required=frozenset(),
    state=DENSE_STATE,
    complexity=DENSE_COMPLEXITY,
    noncausal=DENSE_NONCAUSAL,
    run=dense_run("softplus", logit_scale=_length_scale),
    check=_check,
    cross=True,
))
