"""``transnormer``: TransNormer's NormAttention (Qin et al. 2022, arXiv 2210.10340).

Unnormalised linear attention followed by a parameter-free RMS norm of each head's
output (the paper's SimpleRMSNorm, x / (‖x‖/√D_v + 1e-8); a model adds its gain)::

    S_t = S_{t-1} + φ(k_t) v_tᵀ,   o_t = SRMSNorm(S_tᵀ (scale·φ(q_t)))

``feature_map`` defaults to ``elu`` as in the paper's code. The paper's other block,
DiagAttention (attention inside non-overlapping blocks), is ``softmax`` with
``block_size``. The norm acts per token, so every form and decoding agree.

Precision: the norm divides each token's gradient by the norm of its pre-norm output x_t. Where x_t
nearly cancels (a first token with φ(q)·φ(k) ≈ 0), bf16 kernels (these and any other) round their
operands coarsely enough that the token's dq and dk are mostly rounding; the reference and float32
inputs are not affected. ``tests/test_cuda.py`` (``_conditioned``) measures it.

Example::

    >>> import torch, longmix
    >>> q, k, v = torch.randn(3, 1, 50, 2, 16).unbind(0)
    >>> longmix.attention(q, k, v, "transnormer").shape
    torch.Size([1, 50, 2, 16])
"""
from ..registry import register
from .base import Prepared, default_scale, make_recurrent, srms_norm
from .linear import apply_feature_map, check_feature_map_option


def _prepare(q, k, v, opts):
    fq, fk = apply_feature_map(opts.get("feature_map"), q, k, default="elu")
    return Prepared(fq, fk, v, post=srms_norm, scale=default_scale(opts, fq.shape[-1]))


register(make_recurrent(
    name="transnormer",
    family="linear",
    formula="S_t = S_{t-1} + φ(k_t) v_tᵀ;  o_t = SRMSNorm(S_tᵀ(scale·φ(q_t)))",
    paper="Qin et al. 2022, The Devil in Linear Transformer (TransNormer, arXiv 2210.10340)",
    inputs={"feature_map": "elu (default) | any name or callable accepted by linear"},
    required=(),
    prepare=_prepare,
    check=check_feature_map_option,
    feature_map="elu",
))
