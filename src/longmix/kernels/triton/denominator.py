"""Linear attention's normaliser ``den_t = q_t · z_t`` on the GPU, forward and backward.

``z_t = z0 + Σ_{j≤t} k_j`` (causal) or ``z0 + Σ_j k_j`` (noncausal), in float32. The
PyTorch version (``longmix.mechanisms.base._Denominator``) casts k to float32, scans it
over T, multiplies by q and reduces: five full-size passes forward and more backward,
which cost linear attention more than its recurrence (2.3 of 2.7 ms at B = 16, T = 2K,
H = 16, D = 128 on an H200). Here, per chunk of ``BT`` steps:

* ``chunk_sums``: Σ_t w_t x_t over each chunk, [B, NT, H, K] float32 (w = 1 for the keys;
  w = ∂L/∂den for the backward's Σ_t ∂L/∂den_t q_t), one read of x;
* the entering sums ``Z_n = z0 + Σ_{m<n} ksum_m`` (small: NT rows) by ``time_cumsum``;
* ``den_fwd``: ``den = Σ_d q ⊙ (Z_n + cumsum_t k)`` — the in-chunk running sum is
  ``tl.cumsum`` in registers; one read of q and k;
* ``den_bwd``: ``dq_t = ∂den_t · z_t`` (the same running sum) and
  ``dk_j = Σ_{t≥j} ∂den_t q_t`` (a reverse in-chunk sum plus the later chunks' sums).

Inputs q, k [B, T, H, K] (fp16, bf16, fp32; z0 [B, H, K] or None); den [B, T, H, 1]
float32, as ``_Denominator``.
"""
from __future__ import annotations

import torch
import triton
import triton.language as tl

from . import _interp

_interp.apply()

BT = 64  # chunk length
CONFIG = {"bk": 64, "warps": 4}


@triton.jit
def chunk_sums(x, w, out, T, H, K, BT: tl.constexpr, BK: tl.constexpr, HAS_W: tl.constexpr):
    n, i_bh, i_k = tl.program_id(0), tl.program_id(1), tl.program_id(2)
    b, hh = i_bh // H, i_bh % H
    NT = tl.cdiv(T, BT)
    o_t = n * BT + tl.arange(0, BT)
    o_k = i_k * BK + tl.arange(0, BK)
    m = (o_t[:, None] < T) & (o_k[None, :] < K)
    xv = tl.load(x + ((b * T + o_t[:, None]) * H + hh) * K + o_k[None, :], mask=m, other=0.0).to(tl.float32)
    if HAS_W:
        xv *= tl.load(w + (b * T + o_t) * H + hh, mask=o_t < T, other=0.0)[:, None]
    tl.store(out + ((b * NT + n) * H + hh) * K + o_k, tl.sum(xv, 0), mask=o_k < K)


@triton.jit
def den_fwd(q, k, Z, den, T, H, K, BT: tl.constexpr, BK: tl.constexpr, CAUSAL: tl.constexpr):
    n, i_bh = tl.program_id(0), tl.program_id(1)
    b, hh = i_bh // H, i_bh % H
    NT = tl.cdiv(T, BT)
    o_t = n * BT + tl.arange(0, BT)
    acc = tl.zeros([BT], dtype=tl.float32)
    for i_k in range(tl.cdiv(K, BK)):
        o_k = i_k * BK + tl.arange(0, BK)
        m = (o_t[:, None] < T) & (o_k[None, :] < K)
        off = ((b * T + o_t[:, None]) * H + hh) * K + o_k[None, :]
        qv = tl.load(q + off, mask=m, other=0.0).to(tl.float32)
        z = tl.load(Z + ((b * (NT if CAUSAL else 1) + (n if CAUSAL else 0)) * H + hh) * K + o_k,
                    mask=o_k < K, other=0.0)[None, :]
        if CAUSAL:
            z = z + tl.cumsum(tl.load(k + off, mask=m, other=0.0).to(tl.float32), 0)
        acc += tl.sum(qv * z, 1)
    tl.store(den + (b * T + o_t) * H + hh, acc, mask=o_t < T)


@triton.jit
def den_bwd(q, k, Z, Qs, dden, dq, dk, T, H, K, BT: tl.constexpr, BK: tl.constexpr, CAUSAL: tl.constexpr):
    n, i_bh, i_k = tl.program_id(0), tl.program_id(1), tl.program_id(2)
    b, hh = i_bh // H, i_bh % H
    NT = tl.cdiv(T, BT)
    o_t = n * BT + tl.arange(0, BT)
    o_k = i_k * BK + tl.arange(0, BK)
    m = (o_t[:, None] < T) & (o_k[None, :] < K)
    off = ((b * T + o_t[:, None]) * H + hh) * K + o_k[None, :]
    g = tl.load(dden + (b * T + o_t) * H + hh, mask=o_t < T, other=0.0)[:, None]
    zoff = ((b * (NT if CAUSAL else 1) + (n if CAUSAL else 0)) * H + hh) * K + o_k
    z = tl.load(Z + zoff, mask=o_k < K, other=0.0)[None, :]
    qs = tl.load(Qs + zoff, mask=o_k < K, other=0.0)[None, :]  # Σ ∂den·q over the later chunks (causal) or all
    gq = g * tl.load(q + off, mask=m, other=0.0).to(tl.float32)
    if CAUSAL:
        z = z + tl.cumsum(tl.load(k + off, mask=m, other=0.0).to(tl.float32), 0)
        qs = qs + tl.cumsum(gq, 0, reverse=True)
    tl.store(dq + off, (g * z).to(dq.dtype.element_ty), mask=m)
    tl.store(dk + off, tl.broadcast_to(qs, [BT, BK]).to(dk.dtype.element_ty), mask=m)


def _sums(x: torch.Tensor, w: torch.Tensor | None) -> torch.Tensor:
    """Σ_t w_t x_t over each chunk of BT steps: [B, NT, H, K] float32."""
    B, T, H, K = x.shape
    NT, bk = triton.cdiv(T, BT), min(CONFIG["bk"], max(16, triton.next_power_of_2(K)))
    out = torch.empty(B, NT, H, K, device=x.device, dtype=torch.float32)
    chunk_sums[(NT, B * H, triton.cdiv(K, bk))](x, w if w is not None else x, out, T, H, K, BT=BT, BK=bk,
                                                 HAS_W=w is not None, num_warps=CONFIG["warps"])
    return out


def _entering(sums: torch.Tensor, z0: torch.Tensor | None, causal: bool, reverse: bool = False) -> torch.Tensor:
    """The sums of the chunks before each (after each, ``reverse``) plus z0, [B, NT, H, K]; noncausal:
    the total plus z0, [B, 1, H, K]."""
    from ...mechanisms.base import time_cumsum

    if not causal:
        tot = sums.sum(1, keepdim=True)
    elif reverse:
        tot = time_cumsum(sums.flip(1)).flip(1) - sums
    else:
        tot = time_cumsum(sums) - sums
    return tot if z0 is None else tot + z0[:, None].float()


class Denominator(torch.autograd.Function):
    """q_t·z_t [B, T, H, 1] float32 (z_t = z0 + Σ_{j≤t} k_j, or z0 + Σ_j k_j noncausal), differentiable
    in q, k and z0; the running sums are recomputed in the backward (only q, k and the chunk sums kept)."""

    @staticmethod
    def forward(ctx, q, k, z0, causal):
        q, k = q.contiguous(), k.contiguous()
        B, T, H, K = q.shape
        ctx.causal = causal
        ctx.z0_dtype = None if z0 is None else z0.dtype
        if T == 0:
            ctx.save_for_backward(q, k, None)
            return q.new_zeros(B, 0, H, 1, dtype=torch.float32)
        Z = _entering(_sums(k, None), z0, causal)
        den = torch.empty(B, T, H, 1, device=q.device, dtype=torch.float32)
        bk = min(CONFIG["bk"], max(16, triton.next_power_of_2(K)))
        den_fwd[(triton.cdiv(T, BT), B * H)](q, k, Z, den, T, H, K, BT=BT, BK=bk, CAUSAL=causal,
                                             num_warps=CONFIG["warps"])
        ctx.save_for_backward(q, k, Z)
        return den

    @staticmethod
    def backward(ctx, dden):
        q, k, Z = ctx.saved_tensors
        B, T, H, K = q.shape
        if T == 0:
            dz0 = None if ctx.z0_dtype is None else q.new_zeros(B, H, K, dtype=ctx.z0_dtype)
            return torch.zeros_like(q), torch.zeros_like(k), dz0, None
        dden = dden.float().contiguous()
        sums = _sums(q, dden)
        Qs = _entering(sums, None, ctx.causal, reverse=True)
        dq, dk = torch.empty_like(q), torch.empty_like(k)
        bk = min(CONFIG["bk"], max(16, triton.next_power_of_2(K)))
        den_bwd[(triton.cdiv(T, BT), B * H, triton.cdiv(K, bk))](q, k, Z, Qs, dden, dq, dk, T, H, K, BT=BT, BK=bk,
                                                                 CAUSAL=ctx.causal, num_warps=CONFIG["warps"])
        dz0 = None if ctx.z0_dtype is None else sums.sum(1).to(ctx.z0_dtype)
        return dq, dk, dz0, None


def denominator(q: torch.Tensor, k: torch.Tensor, z0: torch.Tensor | None, causal: bool) -> torch.Tensor:
    """q_t·z_t [B, T, H, 1] float32 (see the module docstring); q, k [B, T, H, K], z0 None or [B, H, K]."""
    return Denominator.apply(q, k, z0, causal)
