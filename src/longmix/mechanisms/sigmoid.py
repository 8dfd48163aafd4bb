"""``sigmoid``: sigmoid attention, no normaliser (FlashSigmoid).

Weights σ(scale·q·k + bias) with ``bias`` defaulting to −log(T_k) (T_k = the number
of keys; per document with ``cu_seqlens``), as Ramapuram et al. 2024 recommend, so
each weight starts near 1/T_k and the output keeps softmax's scale. Because the default
depends on the call's T_k, decoding against a growing cache uses −log(t+1) at step t; pass
``bias=-math.log(max_len)`` (a constant, as FlashSigmoid's training code does) to make
decoding reproduce the full-sequence output.

Example::

    >>> import torch, longmix
    >>> q, k, v = torch.randn(3, 1, 32, 2, 16).unbind(0)
    >>> longmix.attention(q, k, v, "sigmoid", causal=False).shape
    torch.Size([1, 32, 2, 16])
"""
from ..registry import Mechanism, register
from .base import DENSE_COMPLEXITY, DENSE_INPUTS, DENSE_NONCAUSAL, DENSE_STATE, check_dense, dense_run

register(Mechanism(
    name="sigmoid",
    family="dense",
    formula="o_i = Σ_j σ(l_ij) v_j,  l_ij = softcap(scale·q_i·k_j) − m_h|i−j| + bias (default bias −log T_k)",
    paper="Ramapuram et al. 2024, Theory, Analysis, and Best Practices for Sigmoid Self-Attention (arXiv 2409.04431)",
    forms=("parallel", "chunk", "recurrent"),
    inputs={
        **DENSE_INPUTS,
        "bias": "number or tensor broadcastable to [B, H, T_q, T_k], added to the logits; default −log(T_k)",
    },
    required=frozenset(),
    state=DENSE_STATE,
    complexity=DENSE_COMPLEXITY,
    noncausal=DENSE_NONCAUSAL,
    run=dense_run("sigmoid"),
    check=check_dense,
    cross=True,
))
