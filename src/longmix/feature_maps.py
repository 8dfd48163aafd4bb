"""Feature maps φ for linear attention: [..., D] → [..., F].

Named maps (``feature_map="..."``):

* ``identity`` — φ(x) = x.
* ``elu1`` — φ(x) = elu(x) + 1 (Katharopoulos et al. 2020, "Transformers are RNNs").
* ``elu`` — φ(x) = elu(x) (TransNormer's NormAttention kernel).
* ``relu`` — φ(x) = max(x, 0).
* ``taylor2`` — Based (Arora et al. 2024, arXiv 2402.18668): φ(x) = [1, x/D^¼, vec(x⊗x)/(√2·√D)],
  so φ(q)·φ(k) = 1 + q·k/√D + (q·k)²/(2D), the 2nd-order Taylor expansion of exp(q·k/√D). F = 1 + D + D².
* ``hedgehog`` — Hedgehog (Zhang et al. 2024, arXiv 2402.04347) at its identity
  initialisation: φ(x) = [softmax(x), softmax(−x)], F = 2D. For the learnable map use
  :class:`Hedgehog` (any callable is accepted as ``feature_map``).
* ``performer`` — Performer FAVOR+ positive orthogonal random features (Choromanski et al.
  2020, arXiv 2009.14794): x̃ = x/D^¼, φ(x) = exp(ω x̃ − ‖x̃‖²/2)/√m with m = D fixed
  orthogonal ω (seeded, the same on every call); φ(q)·φ(k) is an unbiased estimate
  of exp(q·k/√D). We pick Performer over cosFormer because it is a pure per-token map;
  cosFormer's re-weighting needs positions.

Example::

    >>> import torch
    >>> phi = get("taylor2")
    >>> phi(torch.randn(2, 4)).shape
    torch.Size([2, 21])
    >>> h = Hedgehog(4)
    >>> h(torch.randn(2, 4)).shape
    torch.Size([2, 8])
"""
from __future__ import annotations

import math
from typing import Callable

import torch
import torch.nn as nn
import torch.nn.functional as F


def identity(x):
    return x


def elu1(x):
    return F.elu(x) + 1


def elu(x):
    return F.elu(x)


def relu(x):
    return F.relu(x)


def taylor2(x):
    D = x.shape[-1]
    x2 = (x[..., :, None] * x[..., None, :]).flatten(-2) / math.sqrt(2 * D)
    return torch.cat([torch.ones_like(x[..., :1]), x / D**0.25, x2], -1)


def hedgehog(x):
    return torch.cat([x.softmax(-1), (-x).softmax(-1)], -1)


_PERFORMER_CACHE: dict = {}


def _orthogonal_features(D: int, device, dtype) -> torch.Tensor:
    key = (D, device, dtype)
    if key not in _PERFORMER_CACHE:
        gen = torch.Generator().manual_seed(1234 + D)
        Q, _ = torch.linalg.qr(torch.randn(D, D, generator=gen, dtype=torch.float64))
        norms = torch.randn(D, D, generator=gen, dtype=torch.float64).norm(dim=1)
        _PERFORMER_CACHE[key] = (Q * norms[:, None]).to(device=device, dtype=dtype)  # rows ω_i
    return _PERFORMER_CACHE[key]


def performer(x):
    D = x.shape[-1]
    w = _orthogonal_features(D, x.device, x.dtype)
    xs = x / D**0.25
    return torch.exp(xs @ w.T - 0.5 * (xs * xs).sum(-1, keepdim=True)) / math.sqrt(D)


class Hedgehog(nn.Module):
    """Learnable Hedgehog feature map φ(x) = [softmax(xW + b), softmax(−xW − b)], F = 2·feature_dim.

    ``W`` starts at the identity (when ``feature_dim == dim``) so training starts from
    the parameter-free ``"hedgehog"`` map. Pass an instance as ``feature_map``.
    """

    def __init__(self, dim: int, feature_dim: int | None = None):
        super().__init__()
        feature_dim = feature_dim or dim
        self.proj = nn.Linear(dim, feature_dim)
        with torch.no_grad():
            self.proj.weight.copy_(torch.eye(feature_dim, dim))
            self.proj.bias.zero_()

    def forward(self, x):
        z = self.proj(x.to(self.proj.weight.dtype)).to(x.dtype)
        return torch.cat([z.softmax(-1), (-z).softmax(-1)], -1)


# maps acting on each entry alone (F = D): a decoding kernel may apply them to q and k as it loads them
ELEMENTWISE = ("identity", "elu1", "elu", "relu")

FEATURE_MAPS: dict[str, Callable] = {
    "identity": identity, "elu1": elu1, "elu": elu, "relu": relu,
    "taylor2": taylor2, "hedgehog": hedgehog, "performer": performer,
}


def get(fm) -> Callable:
    """A callable for ``fm`` (a name from FEATURE_MAPS or any callable [..., D] → [..., F])."""
    if callable(fm):
        return fm
    if isinstance(fm, str) and fm in FEATURE_MAPS:
        return FEATURE_MAPS[fm]
    raise ValueError(f"feature_map must be one of {sorted(FEATURE_MAPS)} or a callable [..., D] → [..., F], got {fm!r}")
