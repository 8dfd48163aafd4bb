"""``Mixer``: a token-mixing layer around any registered mechanism, as the papers build it.

What the layer builds is derived from ``longmix.describe(mechanism)``, not from a table
of names, so a newly registered mechanism works here unchanged:

* q, k, v, o projections (``d_model → H·D``, no bias), for every mechanism;
* dense mechanisms (softmax, sigmoid, …) get rotary position embeddings (RoPE) on q, k;
* recurrent mechanisms get a causal depthwise short convolution (kernel 4) with SiLU on
  q, k, v (Mamba-2, DeltaNet, Gated DeltaNet, KDA), and a per-head RMS output norm times
  a SiLU output gate (GLA, Mamba-2, Gated DeltaNet) whose bias starts it open (silu ≈ 1);
* the delta family L2-normalises q and k after the convolution (DeltaNet);
* a required data-dependent gate ``g`` is parametrised as in the papers:
  per head (Mamba-2, Gated DeltaNet) ``g = −exp(A_log)·softplus(x W + dt_bias)``;
  per key dim in the decay family (GLA) ``g = logsigmoid(x W₁ W₂ + b) / 16``;
  per key dim in the delta family (KDA) ``g = −exp(A_log)·softplus(x W₁ W₂ + dt_bias)``;
* a required ``beta`` is ``sigmoid(x W_β)``;
* a mechanism with a ``normalize`` option (linear attention) defaults to
  ``feature_map="elu1", normalize=True``; constant gates (RetNet, Lightning) keep the
  mechanism's own per-head defaults.

Decoding: ``forward(x, cache, use_cache=True)`` returns the output and a
:class:`MixerCache` (the short-conv tail plus the recurrent state, or the rotated keys and
values of a dense mechanism). Feeding a sequence at once, or as a prefill followed by
one-token steps, gives the same outputs (except where a mechanism's default depends on
the number of keys: sigmoid's bias −ln T_k; pass ``bias=`` to fix it).

Example::

    >>> import torch
    >>> m = Mixer(32, 2, "gated_deltanet")
    >>> x = torch.randn(1, 10, 32)
    >>> y, cache = m(x[:, :6], use_cache=True)          # prefill
    >>> y2, cache = m(x[:, 6:7], cache, use_cache=True)  # one decoding step
    >>> torch.allclose(torch.cat([y, y2], 1), m(x[:, :7]), atol=1e-5)
    True
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn as nn
import torch.nn.functional as F

from .. import api, checks

GATE_RANK = 16  # low-rank width of the per-key-dim gate projections (GLA, KDA)
# the decay gates' initialisation (bench/speed.py draws its gates the same way): A = exp(A_log) and
# softplus(dt_bias) uniform / log-uniform in these ranges; GLA's log-gate divided by GLA_GATE_SCALE
DECAY_A = (1.0, 16.0)
DECAY_DT = (1e-3, 0.1)
GLA_GATE_SCALE = 16
OPEN_GATE = 1.2785  # output-gate bias at init: silu(1.2785) ≈ 1.0


@dataclass
class MixerCache:
    """What a :class:`Mixer` carries between decoding calls.

    Attributes:
        length: tokens seen so far (the next token's position).
        conv: the last ``conv_size − 1`` pre-convolution q|k|v inputs [B, conv_size − 1, 3·H·D], or None.
        state: recurrent state [B, H, D_k, D_v] float32, or None (dense mechanisms).
        k, v: the rotated keys and values of a dense mechanism [B, length, H, D], or None.
    """

    length: int = 0
    conv: torch.Tensor | None = None
    state: torch.Tensor | None = None
    k: torch.Tensor | None = None
    v: torch.Tensor | None = None


def _fp32_or_more(x: torch.Tensor) -> torch.dtype:
    return torch.float64 if x.dtype == torch.float64 else torch.float32


def rope(x: torch.Tensor, offset: int, base: float = 10000.0) -> torch.Tensor:
    """Rotary embedding of x [B, T, H, D] (D even) for positions offset … offset + T − 1."""
    B, T, H, D = x.shape
    cd = _fp32_or_more(x)
    inv = base ** (-torch.arange(0, D, 2, device=x.device, dtype=cd) / D)
    ang = torch.arange(offset, offset + T, device=x.device, dtype=cd)[:, None] * inv  # [T, D/2]
    cos, sin = ang.cos()[None, :, None, :], ang.sin()[None, :, None, :]
    x1, x2 = x.to(cd)[..., 0::2], x.to(cd)[..., 1::2]
    out = torch.stack([x1 * cos - x2 * sin, x1 * sin + x2 * cos], -1).flatten(-2)
    return out.to(x.dtype)


def inverse_softplus(y: torch.Tensor) -> torch.Tensor:
    """x with softplus(x) = y (y > 0)."""
    return y + torch.log(-torch.expm1(-y))


class _DecayGate(nn.Module):
    """Mamba-2 style log-decay g = −exp(A_log)·softplus(x W + dt_bias), per head or per channel."""

    def __init__(self, d_model: int, n: int, low_rank: bool):
        super().__init__()
        self.proj = (nn.Sequential(nn.Linear(d_model, GATE_RANK, bias=False), nn.Linear(GATE_RANK, n, bias=False))
                     if low_rank else nn.Linear(d_model, n, bias=False))
        self.A_log = nn.Parameter(torch.log(torch.empty(n).uniform_(*DECAY_A)))
        dt = torch.exp(torch.empty(n).uniform_(math.log(DECAY_DT[0]), math.log(DECAY_DT[1])))
        self.dt_bias = nn.Parameter(inverse_softplus(dt))

    def forward(self, x):
        cd = _fp32_or_more(x)
        return -self.A_log.to(cd).exp() * F.softplus(self.proj(x).to(cd) + self.dt_bias.to(cd))


class _GLAGate(nn.Module):
    """GLA's per-key-dim log-decay g = logsigmoid(x W₁ W₂ + b) / 16."""

    def __init__(self, d_model: int, n: int):
        super().__init__()
        self.proj = nn.Sequential(nn.Linear(d_model, GATE_RANK, bias=False), nn.Linear(GATE_RANK, n, bias=True))

    def forward(self, x):
        return F.logsigmoid(self.proj(x).to(_fp32_or_more(x))) / GLA_GATE_SCALE


class Mixer(nn.Module):
    """Token mixer ``[B, T, d_model] → [B, T, d_model]`` around registered ``mechanism``.

    Args:
        d_model: model width.
        n_heads: heads H; the head dim is ``head_dim`` or ``d_model // n_heads``.
        mechanism: a name from ``longmix.mechanisms()``.
        causal: causal (decoder) or bidirectional (encoder) mixing; only causal layers decode.
        conv_size: short-convolution width (default 4 for recurrent mechanisms, 0 = none for dense).
        rope: rotary position embeddings (default: on for dense mechanisms, off for recurrent).
        backend, form: passed to ``longmix.attention``.
        **options: further mechanism options (``window=``, ``feature_map=``, …), validated by
            ``longmix.attention``.
    """

    def __init__(self, d_model: int, n_heads: int, mechanism: str, *, head_dim: int | None = None, causal: bool = True,
                 conv_size: int | None = None, rope: bool | None = None, backend: str = "auto", form: str = "auto",
                 **options):
        super().__init__()
        mech = api.describe(mechanism)
        if not isinstance(d_model, int) or not isinstance(n_heads, int) or d_model < 1 or n_heads < 1:
            raise ValueError(f"d_model and n_heads must be positive ints, got {d_model!r}, {n_heads!r}")
        if head_dim is None and d_model % n_heads:
            raise ValueError(f"d_model ({d_model}) must be divisible by n_heads ({n_heads}), or pass head_dim")
        self.mechanism, self.causal, self.backend, self.form = mechanism, causal, backend, form
        self.recurrent = mech.family != "dense"
        self.H, self.D = n_heads, head_dim or d_model // n_heads
        self.use_rope = (not self.recurrent) if rope is None else rope
        if self.use_rope and self.D % 2:
            raise ValueError(f"rope needs an even head_dim, got {self.D}")
        self.conv_size = (4 if self.recurrent else 0) if conv_size is None else conv_size
        inner = self.H * self.D
        self.qkv = nn.Linear(d_model, 3 * inner, bias=False)
        self.o_proj = nn.Linear(inner, d_model, bias=False)
        if self.conv_size:
            self.conv_weight = nn.Parameter(torch.randn(3 * inner, 1, self.conv_size) / math.sqrt(self.conv_size))
        self.l2_qk = mech.family == "delta"
        self.gate = None
        if "g" in mech.required:
            per_key = "D_k" in mech.inputs["g"]
            n = inner if per_key else self.H
            self.gate = _GLAGate(d_model, n) if (per_key and mech.family == "decay") else _DecayGate(d_model, n, per_key)
            self.gate_shape = (self.H, self.D) if per_key else (self.H,)
        self.beta_proj = nn.Linear(d_model, self.H, bias=False) if "beta" in mech.required else None
        if self.recurrent:
            self.out_norm = nn.RMSNorm(self.D, eps=1e-5)
            self.out_gate = nn.Linear(d_model, inner, bias=False)
            # silu(1.2785) = 1: the gate starts open. With a zero start, silu(x W) ≈ 0.08 scales the
            # whole layer's output (and its gradient) down 12× and short training runs stall.
            self.out_gate_bias = nn.Parameter(torch.full((inner,), OPEN_GATE))
        if "normalize" in mech.inputs and "normalize" not in options:
            options = {"feature_map": "elu1", "normalize": True, **options}
        self.options = options

    def extra_repr(self) -> str:
        return f"{self.mechanism}, H={self.H}, D={self.D}, causal={self.causal}, conv={self.conv_size}, rope={self.use_rope}"

    def state_floats(self, T: int) -> int:
        """Floats carried per sequence after T tokens: H·D_k·D_v for recurrent, 2·T·H·D (the KV cache) for dense."""
        return self.H * self.D * self.D if self.recurrent else 2 * T * self.H * self.D

    def _conv(self, x, cache):
        """Causal depthwise conv over time of x [B, T, C]; returns (y, new tail)."""
        K = self.conv_size
        tail = cache.conv if cache is not None and cache.conv is not None else x.new_zeros(x.shape[0], K - 1, x.shape[2])
        xp = torch.cat([tail, x], 1)
        y = F.conv1d(xp.transpose(1, 2), self.conv_weight.to(x.dtype), groups=x.shape[2]).transpose(1, 2)
        return F.silu(y), xp[:, xp.shape[1] - (K - 1):]

    def forward(self, x: torch.Tensor, cache: MixerCache | None = None, *, use_cache: bool = False):
        """Mix x [B, T, d_model]; with ``use_cache`` return ``(y, cache)`` for decoding."""
        if x.dim() != 3:
            raise ValueError(f"x must be [B, T, d_model], got shape {tuple(x.shape)}")
        if (use_cache or cache is not None) and not self.causal:
            raise ValueError("a noncausal (bidirectional) Mixer cannot decode: cache/use_cache need causal=True")
        B, T, _ = x.shape
        offset = cache.length if cache is not None else 0
        h = self.qkv(x)
        conv_tail = None
        if self.conv_size:
            h, conv_tail = self._conv(h, cache)
        q, k, v = h.view(B, T, 3, self.H, self.D).unbind(2)
        if self.l2_qk:
            q, k = F.normalize(q, dim=-1), F.normalize(k, dim=-1)
        if self.use_rope:
            q, k = rope(q, offset), rope(k, offset)
        opts = dict(self.options)
        if self.gate is not None:
            opts["g"] = self.gate(x).view(B, T, *self.gate_shape)
        if self.beta_proj is not None:
            opts["beta"] = torch.sigmoid(self.beta_proj(x))
        run = dict(causal=self.causal, backend=self.backend, form=self.form, **opts)
        # the Mixer's gates are ≤ 0 and its betas in (0, 1) by construction: no per-call wait for the GPU
        with checks.trusted_values():
            new = None
            if self.recurrent:
                s0 = cache.state if cache is not None else None
                if use_cache:
                    o, S = api.attention(q, k, v, self.mechanism, initial_state=s0, output_final_state=True, **run)
                    new = MixerCache(offset + T, conv_tail, S)
                else:
                    o = api.attention(q, k, v, self.mechanism, initial_state=s0, **run)
                o = self.out_norm(o) * F.silu(self.out_gate(x) + self.out_gate_bias).view(B, T, self.H, self.D)
            else:
                if cache is not None and cache.k is not None:
                    k, v = torch.cat([cache.k, k], 1), torch.cat([cache.v, v], 1)
                o = api.attention(q, k, v, self.mechanism, **run)
                if use_cache:
                    new = MixerCache(offset + T, conv_tail, None, k, v)
        y = self.o_proj(o.reshape(B, T, self.H * self.D))
        return (y, new) if use_cache else y
