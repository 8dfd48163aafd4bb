"""``linear``: linear attention with a feature map φ (Katharopoulos et al. 2020).

    S_t = S_{t-1} + φ(k_t) v_tᵀ,   o_t = S_tᵀ (scale·φ(q_t))            (normalize=False)
    o_t = S_tᵀ φ(q_t) / (φ(q_t)·z_t),  z_t = Σ_{j≤t} φ(k_j)           (normalize=True)

``feature_map`` is a name from ``longmix.feature_maps`` (identity, elu1, elu, relu,
taylor2, hedgehog, performer) or any callable [..., D] → [..., F] (e.g. a learnable
``longmix.feature_maps.Hedgehog``); ``scale`` defaults to F^-½. With
``normalize=True`` the state is [B, H, F, D_v + 1]: its last column is z. The
denominators φ(q_t)·z_t are computed beside the recurrence, which itself runs at D_v. A row
whose denominator is exactly 0 returns zeros.

Example::

    >>> import torch, longmix
    >>> q, k, v = torch.randn(3, 1, 100, 2, 16).unbind(0)
    >>> o, S = longmix.attention(q, k, v, "linear", feature_map="elu1", normalize=True, output_final_state=True)
    >>> S.shape
    torch.Size([1, 2, 16, 17])
"""
from .. import feature_maps
from ..registry import register
from .base import Prepared, cast, default_scale, make_recurrent


def apply_feature_map(fm, q, k, default="identity"):
    """φ(q), φ(k) in q's dtype, checking that φ keeps the leading dims and agrees on F."""
    phi = feature_maps.get(fm if fm is not None else default)
    fq, fk = cast(phi(q), q.dtype), cast(phi(k), k.dtype)
    if fq.shape[:-1] != q.shape[:-1] or fk.shape[:-1] != k.shape[:-1] or fq.shape[-1] != fk.shape[-1]:
        raise ValueError(f"feature_map must map [..., D] → [..., F] keeping leading dims; got φ(q) {tuple(fq.shape)}, "
                         f"φ(k) {tuple(fk.shape)} from q {tuple(q.shape)}")
    return fq, fk


def _prepare(q, k, v, opts):
    fq, fk = apply_feature_map(opts.get("feature_map"), q, k)
    normalize = bool(opts.get("normalize"))  # the scale cancels in o / (φ(q)·z)
    return Prepared(fq, fk, v, normalize=normalize, scale=1.0 if normalize else default_scale(opts, fq.shape[-1]))


def check_feature_map_option(q, k, v, opts):
    fm = opts.get("feature_map")
    if fm is not None:
        feature_maps.get(fm)  # raises ValueError for unknown names
    if opts.get("normalize") is not None and not isinstance(opts["normalize"], bool):
        raise TypeError(f"normalize must be a bool, got {type(opts['normalize']).__name__}")


register(make_recurrent(
    name="linear",
    family="linear",
    formula="S_t = S_{t-1} + φ(k_t) v_tᵀ;  o_t = S_tᵀ(scale·φ(q_t)), or / φ(q_t)·Σφ(k) with normalize",
    paper="Katharopoulos et al. 2020, Transformers are RNNs (arXiv 2006.16236); Based (arXiv 2402.18668); "
          "Hedgehog (arXiv 2402.04347); Performer (arXiv 2009.14794)",
    inputs={
        "feature_map": "identity (default) | elu1 | elu | relu | taylor2 | hedgehog | performer | callable [..., D] → [..., F]",
        "normalize": "bool (default False): divide by φ(q_t)·Σ_{j≤t} φ(k_j); the state then has D_v + 1 columns",
    },
    required=(),
    prepare=_prepare,
    check=check_feature_map_option,
    state="[B, H, F, D_v] float32 (F = feature dim; D_v + 1 with normalize=True, last column Σφ(k))",
    feature_map="identity",
))
