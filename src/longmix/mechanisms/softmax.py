"""``softmax``: scaled dot-product attention with masks and score modifications.

Options compose: a sliding ``window``; ``block_size`` for softmax inside
non-overlapping blocks (TransNormer's DiagAttention, Qin et al. 2022, arXiv
2210.10340); learnable per-head ``sinks`` that join the denominator only (gpt-oss,
OpenAI 2025, arXiv 2508.10925); ALiBi (Press et al. 2021, arXiv 2108.12409) with
``alibi_slopes``; Gemma-2 style logit ``softcap``; an additive ``bias``; GQA/MQA;
cross attention (T_q ≠ T_k, causal aligned bottom-right).

Backends: ``reference`` (any option) and ``sdpa``, PyTorch's own fused kernels (cuDNN,
flash, memory-efficient), which ``backend="auto"`` picks on CUDA whenever the call uses no
option they lack (window, block_size, sinks, alibi_slopes, softcap).

Example::

    >>> import torch, longmix
    >>> q, k, v = torch.randn(3, 2, 64, 4, 32).unbind(0)
    >>> o = longmix.attention(q, k, v, "softmax", window=16, sinks=torch.zeros(4))
    >>> o.shape
    torch.Size([2, 64, 4, 32])
"""
from ..registry import Mechanism, register
from .base import DENSE_COMPLEXITY, DENSE_INPUTS, DENSE_NONCAUSAL, DENSE_STATE, check_dense, dense_run

register(Mechanism(
    name="softmax",
    family="dense",
    formula="o_i = Σ_j exp(l_ij) v_j / (exp(sink_h) + Σ_j exp(l_ij)),  l_ij = softcap(scale·q_i·k_j) − m_h|i−j| + bias_ij",
    paper="Vaswani et al. 2017, Attention Is All You Need (arXiv 1706.03762); sinks: gpt-oss (arXiv 2508.10925); "
          "ALiBi: Press et al. 2021 (arXiv 2108.12409); DiagAttention: Qin et al. 2022 (arXiv 2210.10340)",
    forms=("parallel", "chunk", "recurrent"),
    inputs={
        **DENSE_INPUTS,
        "sinks": "[H] learnable logits added to the denominator only",
    },
    required=frozenset(),
    state=DENSE_STATE,
    complexity=DENSE_COMPLEXITY,
    noncausal=DENSE_NONCAUSAL,
    run=dense_run("softmax"),
    check=check_dense,
    cross=True,
    # PyTorch's SDPA kernels (cuDNN / flash / memory-efficient on CUDA) for the options they serve
    backends=("reference", "sdpa"),
    backend_forms={"sdpa": ("chunk",)},
    backend_unsupported={"sdpa": frozenset({"window", "block_size", "sinks", "alibi_slopes", "softcap"})},
))
