"""Linear attention's normalised output ``o_t / (q_t · z_t)`` on the GPU, forward and backward.

``z_t = z0 + Σ_{j≤t} k_j`` (causal) or ``z0 + Σ_j k_j`` (noncausal), in float32. The
PyTorch version (``longmix.mechanisms.base._Denominator``) casts k to float32, scans it
over T, multiplies by q and reduces: five full-size passes forward and more backward,
which cost linear attention more than its recurrence (2.3 of 2.7 ms at B = 16, T = 2K,
H = 16, D = 128 on an H200). Here, per chunk of ``BT`` steps:

* ``chunk_sums``: Σ_t w_t x_t over each chunk, [B, NT, H, K] float32 (w = 1 for the keys;
  w = ∂L/∂den for the backward's Σ_t ∂L/∂den_t q_t), one read of x;
* the entering sums ``Z_n = z0 + Σ_{m<n} ksum_m`` (small: NT rows) by ``time_cumsum``;
* ``norm_fwd``: ``den = Σ_d q ⊙ (Z_n + cumsum_t k)`` — the in-chunk running sum is
  ``tl.cumsum`` in registers; one read of q and k — then ``o / den`` in o's dtype, one read
  and one write of o (the PyTorch path cast o to float32 and back around the division);
* ``norm_bwd``: ``∂o = ∂out / den`` and ``∂den = −Σ_v ∂out ⊙ o / den²``;
* ``den_bwd``: ``dq_t = ∂den_t · z_t`` (the same running sum) and
  ``dk_j = Σ_{t≥j} ∂den_t q_t`` (a reverse in-chunk sum plus the later chunks' sums).

Inputs o [B, T, H, V], q, k [B, T, H, K] (fp16, bf16, fp32), z0 [B, H, K] or None. Packed
documents (``cu_seqlens``): every chunk lies in one document (``_varlen.py``), and the chunks'
entering sums restart at each document's z0. A row whose
denominator is exactly 0 keeps o (o / 1), as ``longmix.mechanisms.base.safe_div``.
"""
from __future__ import annotations

import torch
import triton
import triton.language as tl

from . import _interp
from ._delta import _tile
from ._host import cdiv
from ._varlen import Chunks, chunks as chunk_map, documents, empty, span

_interp.apply()

BT = 64  # chunk length
CONFIG = {"bk": 64, "bv": 64, "warps": 4}


@triton.jit
def chunk_sums(x, w, out, CH, T, H, K, NT, BT: tl.constexpr, BK: tl.constexpr, HAS_W: tl.constexpr,
               VARLEN: tl.constexpr):
    n, i_bh, i_k = tl.program_id(0), tl.program_id(1), tl.program_id(2)
    b, hh = i_bh // H, i_bh % H
    t0, T = span(CH, n, T, BT, VARLEN)
    o_t = t0 + tl.arange(0, BT)
    o_k = i_k * BK + tl.arange(0, BK)
    m = (o_t[:, None] < T) & (o_k[None, :] < K)
    xv = tl.load(x + ((b * T + o_t[:, None]) * H + hh) * K + o_k[None, :], mask=m, other=0.0).to(tl.float32)
    if HAS_W:
        xv *= tl.load(w + (b * T + o_t) * H + hh, mask=o_t < T, other=0.0)[:, None]
    tl.store(out + ((b * NT + n) * H + hh) * K + o_k, tl.sum(xv, 0), mask=o_k < K)


@triton.jit
def norm_fwd(q, k, Z, o, out, den, CH, T, H, K, V, NT, BT: tl.constexpr, BK: tl.constexpr, BV: tl.constexpr,
             CAUSAL: tl.constexpr, VARLEN: tl.constexpr):
    """den = q·(Z_n + in-chunk cumsum k) per row, then out = o / den (den = 0: o / 1), in o's dtype."""
    n, i_bh = tl.program_id(0), tl.program_id(1)
    b, hh = i_bh // H, i_bh % H
    t0, T = span(CH, n, T, BT, VARLEN)
    if empty(t0, T):  # a chunk slot past the last document's chunks
        return
    o_t = t0 + tl.arange(0, BT)
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
    inv = 1.0 / tl.where(acc == 0.0, 1.0, acc)
    for i_v in range(tl.cdiv(V, BV)):
        o_v = i_v * BV + tl.arange(0, BV)
        m = (o_t[:, None] < T) & (o_v[None, :] < V)
        off = ((b * T + o_t[:, None]) * H + hh) * V + o_v[None, :]
        ov = tl.load(o + off, mask=m, other=0.0).to(tl.float32)
        tl.store(out + off, (ov * inv[:, None]).to(out.dtype.element_ty), mask=m)


@triton.jit
def norm_bwd(dout, o, den, do, dden, CH, T, H, V, BT: tl.constexpr, BV: tl.constexpr, VARLEN: tl.constexpr):
    """do = dout / den and ∂L/∂den = −Σ_v dout·o / den² (0 where den = 0, as o / 1 there); from the
    unnormalised o (the normalised output is rounded to o's dtype once more)."""
    n, i_bh = tl.program_id(0), tl.program_id(1)
    b, hh = i_bh // H, i_bh % H
    t0, T = span(CH, n, T, BT, VARLEN)
    if empty(t0, T):  # a chunk slot past the last document's chunks
        return
    o_t = t0 + tl.arange(0, BT)
    d = tl.load(den + (b * T + o_t) * H + hh, mask=o_t < T, other=1.0)
    inv = 1.0 / tl.where(d == 0.0, 1.0, d)
    acc = tl.zeros([BT], dtype=tl.float32)
    for i_v in range(tl.cdiv(V, BV)):
        o_v = i_v * BV + tl.arange(0, BV)
        m = (o_t[:, None] < T) & (o_v[None, :] < V)
        off = ((b * T + o_t[:, None]) * H + hh) * V + o_v[None, :]
        g = tl.load(dout + off, mask=m, other=0.0).to(tl.float32)
        acc += tl.sum(g * tl.load(o + off, mask=m, other=0.0).to(tl.float32), 1)
        tl.store(do + off, (g * inv[:, None]).to(do.dtype.element_ty), mask=m)
    tl.store(dden + (b * T + o_t) * H + hh, tl.where(d == 0.0, 0.0, -acc * inv * inv), mask=o_t < T)


@triton.jit
def den_bwd(q, k, Z, Qs, dden, dq, dk, CH, T, H, K, NT, BT: tl.constexpr, BK: tl.constexpr, CAUSAL: tl.constexpr,
            VARLEN: tl.constexpr):
    n, i_bh, i_k = tl.program_id(0), tl.program_id(1), tl.program_id(2)
    b, hh = i_bh // H, i_bh % H
    t0, T = span(CH, n, T, BT, VARLEN)
    if empty(t0, T):  # a chunk slot past the last document's chunks
        return
    o_t = t0 + tl.arange(0, BT)
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


def _sums(x: torch.Tensor, w: torch.Tensor | None, chunks: Chunks) -> torch.Tensor:
    """Σ_t w_t x_t over each chunk of BT steps: [B, NT, H, K] float32."""
    B, T, H, K = x.shape
    bk = _tile(K, CONFIG["bk"])
    out = torch.empty(B, chunks.NT, H, K, device=x.device, dtype=torch.float32)
    chunk_sums[(chunks.NT, B * H, cdiv(K, bk))](x, w if w is not None else x, out, chunks.args(x)[0], T, H, K,
                                                        chunks.NT, BT=BT, BK=bk, HAS_W=w is not None,
                                                        VARLEN=chunks.varlen, num_warps=CONFIG["warps"])
    return out


def _prefix(sums: torch.Tensor) -> torch.Tensor:
    """Float64 prefix sums of the chunk sums of the one packed row: [NT + 1, H, K], row n the sum of
    the chunks before n (float64: exact to ~1e-16 of the packed total, far below float32's rounding
    of a document's own sums, so a document's part is a difference of two of them)."""
    return torch.nn.functional.pad(sums[0].double().cumsum(0), (0, 0, 0, 0, 1, 0))


def _entering(sums: torch.Tensor, z0: torch.Tensor | None, causal: bool, reverse: bool = False,
              chunks: Chunks | None = None, prefix: torch.Tensor | None = None) -> torch.Tensor:
    """The sums of the chunks before each (after each, ``reverse``) plus z0, [B, NT, H, K]; noncausal:
    the total plus z0, [B, 1, H, K]. With documents (``chunks.varlen``) the sums run inside each
    document and z0 is [N, H, K], one per document (``prefix``: ``_prefix(sums)`` if already made)."""
    from ...mechanisms.base import time_cumsum

    if chunks is not None and chunks.varlen:
        before = _prefix(sums) if prefix is None else prefix
        co = chunks.co.long()
        inc = before[1:]  # the sums up to and including each chunk
        lo, hi = before[co[chunks.doc]], before[co[chunks.doc + 1]]  # each chunk's document's bounds
        tot = (hi - inc) if reverse else (before[:-1] - lo)
        tot = tot.float()[None]
        return tot if z0 is None else tot + z0[chunks.doc][None].float()
    if not causal:
        tot = sums.sum(1, keepdim=True)
    elif reverse:
        tot = time_cumsum(sums.flip(1)).flip(1) - sums
    else:
        tot = time_cumsum(sums) - sums
    return tot if z0 is None else tot + z0[:, None].float()


def _totals(sums: torch.Tensor, chunks: Chunks, prefix: torch.Tensor | None = None) -> torch.Tensor:
    """Each sequence's total of the chunk sums [B, NT, H, K]: [B, H, K], or with documents [N, H, K]
    (differences of ``_prefix`` at the documents' first chunks; deterministic, no atomics)."""
    if not chunks.varlen:
        return sums.sum(1)
    before = _prefix(sums) if prefix is None else prefix
    co = chunks.co.long()
    return (before[co[1:]] - before[co[:-1]]).float()


def _tiles(K: int, V: int) -> tuple[int, int]:
    return _tile(K, CONFIG["bk"]), _tile(V, CONFIG["bv"])


class Normalized(torch.autograd.Function):
    """(o / (q_t·z_t) in o's dtype, z_T) with z_t = z0 + Σ_{j≤t} k_j, or z0 + Σ_j k_j noncausal (a row
    whose denominator is exactly 0 keeps o), differentiable in o, q, k and z0; z_T [B or N, H, K]
    float32 is the final running sum (the state's last column), taken from the chunk sums. Saved: q,
    k, the chunks' entering sums, the denominators [B, T, H] and o; the running sums are recomputed."""

    @staticmethod
    def forward(ctx, o, q, k, z0, causal, chunks):
        o, q, k = o.contiguous(), q.contiguous(), k.contiguous()
        B, T, H, K = q.shape
        V = o.shape[-1]
        ctx.causal, ctx.chunks = causal, chunks
        ctx.z0_dtype = None if z0 is None else z0.dtype
        if T == 0:
            ctx.save_for_backward(q, k, None, None, None)
            zT = q.new_zeros(chunks.N, H, K, dtype=torch.float32) if z0 is None else z0.float().clone()
            return o.clone(), zT
        CH = chunks.args(q)[0]
        sums = _sums(k, None, chunks)
        prefix = _prefix(sums) if chunks.varlen else None  # one scan for both
        Z = _entering(sums, z0, causal, chunks=chunks, prefix=prefix)
        zT = _totals(sums, chunks, prefix)
        if z0 is not None:
            zT = zT + z0.float()
        den = torch.empty(B, T, H, device=q.device, dtype=torch.float32)
        out = torch.empty_like(o)
        bk, bv = _tiles(K, V)
        norm_fwd[(chunks.NT, B * H)](q, k, Z, o, out, den, CH, T, H, K, V, chunks.NT, BT=BT, BK=bk, BV=bv,
                                     CAUSAL=causal, VARLEN=chunks.varlen, num_warps=CONFIG["warps"])
        ctx.save_for_backward(q, k, Z, den, o)
        return out, zT

    @staticmethod
    def backward(ctx, dout, dzT):
        q, k, Z, den, o = ctx.saved_tensors
        B, T, H, K = q.shape
        chunks = ctx.chunks
        if T == 0:
            dz0 = None if ctx.z0_dtype is None else (
                q.new_zeros(chunks.N, H, K) if dzT is None else dzT).to(ctx.z0_dtype)
            return dout.clone(), torch.zeros_like(q), torch.zeros_like(k), dz0, None, None
        V = o.shape[-1]
        bk, bv = _tiles(K, V)
        CH = chunks.args(q)[0]
        do, dden = torch.empty_like(o), torch.empty_like(den)
        if dout is None:  # only z_T was used
            do.zero_()
            dden.zero_()
        else:
            norm_bwd[(chunks.NT, B * H)](dout.contiguous(), o, den, do, dden, CH, T, H, V, BT=BT, BV=bv,
                                         VARLEN=chunks.varlen, num_warps=CONFIG["warps"])
        sums = _sums(q, dden, chunks)  # Σ_t ∂L/∂den_t q_t per chunk
        prefix = _prefix(sums) if chunks.varlen else None
        Qs = _entering(sums, None, ctx.causal, reverse=True, chunks=chunks, prefix=prefix)
        if dzT is not None:  # z_T = z0 + Σ_j k_j: every key of the sequence gets ∂L/∂z_T
            Qs = Qs + (dzT[chunks.doc][None] if chunks.varlen else dzT[:, None])
        dq, dk = torch.empty_like(q), torch.empty_like(k)
        den_bwd[(chunks.NT, B * H, cdiv(K, bk))](q, k, Z, Qs, dden, dq, dk, CH, T, H, K, chunks.NT, BT=BT,
                                                         BK=bk, CAUSAL=ctx.causal, VARLEN=chunks.varlen,
                                                         num_warps=CONFIG["warps"])
        dz0 = None
        if ctx.z0_dtype is not None:
            dz0 = _totals(sums, chunks, prefix)
            if dzT is not None:
                dz0 = dz0 + dzT
            dz0 = dz0.to(ctx.z0_dtype)
        return do, dq, dk, dz0, None, None


def normalized(o: torch.Tensor, q: torch.Tensor, k: torch.Tensor, z0: torch.Tensor | None, causal: bool,
               cu_seqlens=None, *, total: bool = False):
    """o [B, T, H, V] divided by q_t·z_t, in o's dtype (see the module docstring); q, k [B, T, H, K],
    z0 None or [B, H, K]. ``cu_seqlens`` (int tensor [N+1] or list, B = 1, causal only): packed
    documents, each with its own running key sum from its own z0 (z0 [N, H, K]). ``total``: return
    (output, z_T) with z_T [B or N, H, K] float32 the final running sum, differentiable."""
    B, T = q.shape[:2]
    if cu_seqlens is not None and not causal:
        raise ValueError("the fused normaliser takes cu_seqlens for causal attention only")
    out, zT = Normalized.apply(o, q, k, z0, causal, chunk_map(B, T, BT, documents(cu_seqlens, T, B, q.device)))
    return (out, zT) if total else out
