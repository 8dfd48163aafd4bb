"""Delta rule (DeltaNet, Gated DeltaNet, KDA): the per-chunk triangular system and its backward.

Per chunk, with chunk-local cumulative gate ``G`` (none, scalar or per key) and
``Kp_tu = Σ_d k_td k_ud e^{G_td − G_ud}`` (t > u), the WY/UT form solves

    (I + A) [U | W] = [β v | β (k ⊙ e^G)],    A = diag(β) Kp   (strictly lower),

and the state pass (``_state``, ``DELTA``) writes ``u = U − W S`` instead of v. Here:

* ``fwd_prep``: ``Tinv = (I + A)^{-1}`` by blocks of ``BC`` = 16 rows: each diagonal
  block is inverted in registers (by doubling blocks, or row substitution: ``CONFIG["inverse"]``), then block row i is
  ``Tinv_i = Dinv_i (E_i − A_{i,<i} Tinv_{<i})`` (E_i: the identity's rows), reading the
  finished rows back from global memory; then ``U = Tinv β v``, ``W = Tinv β (k ⊙ e^G)``.
  All in fp32 (``Tinv`` is stored fp32 for the backward). ``fwd_prep4`` does the same for the
  default 64-token chunk (four blocks) without the global round trips: the ten 16×16 key-key
  blocks, the four diagonal inverses and the six off-diagonal blocks of ``Tinv`` stay in registers
  (for no gate and scalar gates then joined into one tile for whole-chunk U and W products).
  For 16-bit inputs it rounds the inverse's blocks to the inputs' dtype once (as fla does) and
  forms U and W with 16-bit products; ``Tinv`` is then stored in that dtype too (the backward
  reads the inverse the forward applied, in half the memory).
* ``bwd_delta``: given ``du`` (from the reverse state pass) and ``du hᵀ`` (written by
  ``_output.bwd_dqk``, which loads the entering states ``h`` anyway): ``dU = du``,
  ``dW = −du hᵀ``, ``dR = Tinvᵀ [dU | dW]``, ``dA = −(dR Rᵀ) Tinvᵀ`` (strictly lower,
  R = [βv | βk e^G]); then dv = β dR_U, dβ, and the parts of dk and ∂L/∂G from W's right side
  and from Kp (for per-key gates the Kp part is done by ``_gla.bwd_intra(..., self_pair=True)``
  from the stored ``dKp``).

One program per (chunk, batch·head), looping over K and V tiles; matmuls take the inputs’
dtype (TF32 for fp32 operands of bf16/fp16 inputs, IEEE for fp32 inputs) except the
block inverse, always IEEE fp32. K ≤ 256 (the state pass holds all of K in one tile).
"""
import torch
import triton
import triton.language as tl

from ._cumsum import pair_decay
from ._host import cdiv, next_pow2
from ._varlen import Chunks, empty, span

BC = 16  # diagonal block of the triangular inverse
MAX_K = 256
# prep_warps: 2 ran fwd_prep4 at 0.81× the time of 4 (H200, B=16, T=2K; benchmarks/tune_kernels.py,
# benchmarks/results/2026-11-25-h200-kernel-tune.jsonl)
# uw_lowp: fwd_prep4's U and W products in the inputs' 16-bit dtype (Tinv's blocks rounded once), not TF32:
# DeltaNet's forward 0.98x, KDA's 0.96x (H200, B=16, T=2K; benchmarks/results/2026-11-26-h200-delta-backward/).
# (The inverse's own block products stay IEEE float32: 3xTF32 there gained nothing, 0.99-1.00x.)
# inverse: how the 16x16 diagonal blocks of (I + A)⁻¹ are formed, "substitution" (BC − 2 dependent row steps,
# each two cross-thread reductions) or "doubling" (six 16x16 products; see _unit_lower_inverse). Doubling's
# forward took 0.93x substitution's time for KDA, 0.98x DeltaNet's, 1.00x Gated DeltaNet's (forward+backward
# 0.98 / 1.00 / 1.00; H100, bf16, B=16, T=2K, H=16, D=128; prep_warps 1 or 4 were slower; both forms pass
# tests/test_cuda.py there: benchmarks/results/2026-11-26-h100-s15/c1_*, c2_tune_inverse_16x2k.txt).
# prep_warps_128: fwd_prep's warps at chunks of 128 (at 2 its [128, 128] tile of A spilled; 4 spill nothing, sm_90)
# bwd_warps_ieee128: bwd_delta's warps for IEEE float32 products at chunks of 128. At 4 warps ptxas took 234 s
# to compile it (71K PTX lines of unrolled float32 FMAs; a GPU test sat in it for over 200 s), at 8 warps 44-58 s,
# in 176-208 KiB of shared memory by gate (sm_90, scratch compile of tests/hopper_compile.py's launches)
CONFIG = {"prep_warps": 2, "prep_warps_128": 4, "bwd_warps": 4, "bwd_warps_ieee128": 8, "bk": 64, "bv": 64,
          "prep4": True, "uw_lowp": True, "inverse": "doubling",
          # prep_split: fwd_prep4 stores Tinv only and fwd_uw (tiles uw_bk / uw_bv, uw_warps) forms U and W with
          # whole-chunk products, as the general (non-64) chunk always does
          "prep_split": False, "uw_bk": 64, "uw_bv": 64, "uw_warps": 4,
          # fwd_prep4's pipeline depth for its K and V loops (None: Triton's default, 3; 1 or 2 stages took 1.05-1.23x
          # the forward's time, H100, benchmarks/results/2026-11-26-h100-s20/c1_tune.txt)
          "prep_stages": None,
          # fwd_prep4 for 16-bit inputs: the inverse's off-diagonal block products (1) or all its products in
          # TF32 (2) or in three TF32 products each (3, tf32x3), not IEEE float32 (0). 2 (fla's choice for its
          # merges): the forward of DeltaNet 0.72x, Gated DeltaNet 0.73x, KDA 0.96x, forward+backward 0.93 / 0.93 /
          # 0.99x (1: 0.86-0.89x, 0.96-0.97x; H100, bf16, 16x2K and 4x8K, benchmarks/results/2026-11-26-h100-s20/
          # c2_tune.txt), but 1 and 2 lose digits on badly conditioned systems (Tinv's error 8e-3 against 1.5e-3,
          # test_delta_four_block_prep_tf32_inverse on an H100); 3 is as accurate as 0 but took 0.93x DeltaNet's
          # forward time and 1.67x / 1.22x Gated DeltaNet's / KDA's (c4_tune.txt). 4, the default: the diagonal
          # blocks in TF32, then one IEEE Newton step each, the merges IEEE: as accurate as 0 on both kinds of
          # system on an H100, and the forward of DeltaNet 0.85x / 0.87x, Gated DeltaNet 0.91x / 0.90x at 16x2K /
          # 4x8K (forward+backward 0.97x / 0.98x at 16x2K), but KDA's 1.01x / 1.00x (2026-11-27-h100-s21/
          # c1_tune.txt, c1_triton.log), so for the gates in inv_tf32_gates only (0 none, 1 scalar, 2 per key)
          "inv_tf32": 4,  # (INVERSE_PRECISION below)
          "inv_tf32_gates": (0, 1),
          # the gates (0 none, 1 scalar, 2 per key) for which fwd_prep4 forms U and W by whole-chunk products
          # from Tinv joined into one tile, not by its 16-row blocks: no spills at 2 warps (356-460 bytes per
          # thread before). Gated DeltaNet's forward 0.93x / 0.90x at 16x2K / 4x8K, DeltaNet's 1.00-1.01x, KDA's
          # 1.03x (H100, bf16, c2_tune.txt)
          "uw_whole": (0, 1)}

# inv_tf32 -> (the diagonal blocks' products, the merges' products, a Newton step after each diagonal block), for
# 16-bit inputs (float32 inputs keep IEEE float32); 4: the diagonal blocks in TF32, then one IEEE Newton step each
INVERSE_PRECISION = {0: ("ieee", "ieee", False), 1: ("ieee", "tf32", False), 2: ("tf32", "tf32", False),
                     3: ("tf32x3", "tf32x3", False), 4: ("tf32", "ieee", True)}


@triton.jit
def _kpair(k, G, Kp, b, hh, t0, T, H, K, GATE: tl.constexpr, BT: tl.constexpr, BK: tl.constexpr,
           PREC: tl.constexpr):
    """The chunk's strictly lower key-key matrix Kp [BT, BT] (fp32; 0 outside the chunk and past T)."""
    o_c = t0 + tl.arange(0, BT)
    strict = (o_c[:, None] > o_c[None, :]) & (o_c[:, None] < T)
    if GATE == 2:  # from _gla.fwd_intra(k, k, G), [B, T, H, BT]
        kp = tl.load(Kp + ((b * T + o_c[:, None]) * H + hh) * BT + tl.arange(0, BT)[None, :],
                     mask=strict, other=0.0)
    else:
        kp = tl.zeros([BT, BT], dtype=tl.float32)
        for i_k in range(tl.cdiv(K, BK)):
            p_k = tl.make_block_ptr(k + (b * T * H + hh) * K, (T, K), (H * K, 1), (t0, i_k * BK), (BT, BK), (1, 0))
            kk = tl.load(p_k, boundary_check=(0, 1))
            kp += tl.dot(kk, tl.trans(kk), input_precision=PREC)
        if GATE == 1:
            kp *= _loaded_pair_decay(G, b, hh, o_c, T, H, strict)
        kp = tl.where(strict, kp, 0.0)
    return kp


@triton.jit
def _loaded_pair_decay(G, b, hh, rows, T, H, strict):
    """A scalar gate's decay e^{G_r − G_u} on the chunk's pairs ``strict`` (0 elsewhere); rows absolute."""
    g = tl.load(G + (b * T + rows) * H + hh, mask=rows < T, other=0.0)
    return pair_decay(g, g, strict)


@triton.jit
def _gate_rows(G, b, hh, t, last, i_k, T, H, K, GATE: tl.constexpr, BR: tl.constexpr, BK: tl.constexpr):
    """e^G for rows t..t+BR at key tile i_k, rows past ``last`` repeating it: [BR, 1] (scalar gate) or [BR, BK]."""
    o_t = tl.minimum(t + tl.arange(0, BR), last)
    if GATE == 1:
        return tl.exp(tl.load(G + (b * T + o_t) * H + hh))[:, None]
    else:
        o_k = i_k * BK + tl.arange(0, BK)
        return tl.exp(tl.load(G + ((b * T + o_t[:, None]) * H + hh) * K + o_k[None, :],
                              mask=o_k[None, :] < K, other=0.0))


@triton.jit
def _gate_k(G, b, hh, t0, i_k, T, H, K, GATE: tl.constexpr, BT: tl.constexpr, BK: tl.constexpr):
    """e^G for the chunk's rows at key tile i_k: [BT, 1] (scalar gate) or [BT, BK]; padded rows use the last row."""
    return _gate_rows(G, b, hh, t0, tl.minimum(t0 + BT, T) - 1, i_k, T, H, K, GATE, BT, BK)


@triton.jit
def fwd_uw(k, v, beta, G, Tinv, U, W, CH, T, H, K: tl.constexpr, V: tl.constexpr, GATE: tl.constexpr,
           BT: tl.constexpr, BK: tl.constexpr, BV: tl.constexpr, PREC: tl.constexpr, VARLEN: tl.constexpr):
    """U = Tinv (β v) and W = Tinv (β k ⊙ e^G) from the stored Tinv, by whole-chunk products: one program
    per (chunk, batch·head, tile), grid axis 2 running over V's tiles, then K's. The operands take Tinv's
    dtype (16-bit where the inverse was rounded once, as ``fwd_prep4``'s fused products do)."""
    n, i_bh, i_x = tl.program_id(0), tl.program_id(1), tl.program_id(2)
    b, hh = i_bh // H, i_bh % H
    t0, T = span(CH, n, T, BT, VARLEN)  # with documents: T is the end of this chunk's document
    if empty(t0, T):  # a chunk slot past the last document's chunks
        return
    rows_c = t0 + tl.arange(0, BT)
    bt = tl.load(beta + (b * T + rows_c) * H + hh, mask=rows_c < T, other=0.0).to(tl.float32)
    ti_ = tl.load(Tinv + ((b * T + rows_c[:, None]) * H + hh) * BT + tl.arange(0, BT)[None, :],
                  mask=rows_c[:, None] < T, other=0.0)
    NV = tl.cdiv(V, BV)
    if i_x < NV:
        _u_tile(ti_, v, bt, U, b, hh, t0, i_x, T, H, V, BT, BV, PREC)
    else:
        i_k = i_x - NV
        p_k = tl.make_block_ptr(k + (b * T * H + hh) * K, (T, K), (H * K, 1), (t0, i_k * BK), (BT, BK), (1, 0))
        _w_tile(ti_, tl.load(p_k, boundary_check=(0, 1)).to(tl.float32), bt, G, W, b, hh, t0, i_k, T, H, K, GATE,
                BT, BK, PREC)


@triton.jit
def _u_tile(tm, v, bt, U, b, hh, t0, i_v, T, H, V: tl.constexpr, BT: tl.constexpr, BV: tl.constexpr,
            PREC: tl.constexpr):
    """U's V tile i_v of the chunk at t0: Tinv (β v), Tinv as one [BT, BT] tile ``tm`` (operands in its dtype)."""
    p_v = tl.make_block_ptr(v + (b * T * H + hh) * V, (T, V), (H * V, 1), (t0, i_v * BV), (BT, BV), (1, 0))
    xv = tl.load(p_v, boundary_check=(0, 1)).to(tl.float32) * bt[:, None]
    p_u = tl.make_block_ptr(U + (b * T * H + hh) * V, (T, V), (H * V, 1), (t0, i_v * BV), (BT, BV), (1, 0))
    tl.store(p_u, tl.dot(tm, xv.to(tm.dtype), input_precision=PREC).to(U.dtype.element_ty), boundary_check=(0, 1))


@triton.jit
def _w_tile(tm, xk, bt, G, W, b, hh, t0, i_k, T, H, K: tl.constexpr, GATE: tl.constexpr, BT: tl.constexpr,
            BK: tl.constexpr, PREC: tl.constexpr):
    """W's K tile i_k of the chunk at t0: Tinv (β k ⊙ e^G), from the keys' tile ``xk`` (float32) and Tinv as
    one [BT, BT] tile ``tm``."""
    xk *= bt[:, None]
    if GATE != 0:
        xk *= _gate_k(G, b, hh, t0, i_k, T, H, K, GATE, BT, BK)
    p_w = tl.make_block_ptr(W + (b * T * H + hh) * K, (T, K), (H * K, 1), (t0, i_k * BK), (BT, BK), (1, 0))
    tl.store(p_w, tl.dot(tm, xk.to(tm.dtype), input_precision=PREC).to(W.dtype.element_ty), boundary_check=(0, 1))


@triton.jit
def fwd_prep(k, beta, G, Kp, Tinv, CH, T, H, K: tl.constexpr, GATE: tl.constexpr, BT: tl.constexpr,
             BC: tl.constexpr, BK: tl.constexpr, PREC: tl.constexpr, VARLEN: tl.constexpr,
             DOUBLING: tl.constexpr = False):
    """Tinv for any chunk of BC-row blocks, by block rows through global memory (``fwd_uw`` then forms U, W).

    Block row i of the inverse is Dinv_i (E_i − Σ_{j<i} A_{i,j} Tinv_j), summed block by block, so the tiles in
    registers stay [BC, BT]. Loading the whole [BT, BT] tile for each block row, as this kernel once did, spilled
    32 KB a thread at BT = 128 and took 38 ms of DeltaNet's forward at B=1, T=32K on an H100."""
    n, i_bh = tl.program_id(0), tl.program_id(1)
    b, hh = i_bh // H, i_bh % H
    t0, T = span(CH, n, T, BT, VARLEN)  # with documents: T is the end of this chunk's document
    if empty(t0, T):  # a chunk slot past the last document's chunks
        return
    o_c = tl.arange(0, BT)
    o_s = tl.arange(0, BC)
    rows_c = t0 + o_c
    bt = tl.load(beta + (b * T + rows_c) * H + hh, mask=rows_c < T, other=0.0).to(tl.float32)
    p_T = Tinv + ((b * T + rows_c[:, None]) * H + hh) * BT + o_c[None, :]  # [BT, BT] of this chunk
    # A = diag(β) Kp goes to Tinv's rows as scratch; block row i is replaced by the inverse's in turn
    tl.store(p_T, _kpair(k, G, Kp, b, hh, t0, T, H, K, GATE, BT, BK, PREC) * bt[:, None], mask=rows_c[:, None] < T)
    tl.debug_barrier()
    for i in range(BT // BC):
        o_r = t0 + i * BC + o_s
        rmask = o_r[:, None] < T
        p_Ti = Tinv + ((b * T + o_r[:, None]) * H + hh) * BT
        acc = ((i * BC + o_s)[:, None] == o_c[None, :]).to(tl.float32)  # E_i
        for j in range(0, i):
            o_j = t0 + j * BC + o_s
            a = tl.load(p_Ti + j * BC + o_s[None, :], mask=rmask, other=0.0)  # A_{i,j} (row i is still A)
            tj = tl.load(Tinv + ((b * T + o_j[:, None]) * H + hh) * BT + o_c[None, :], mask=o_j[:, None] < T,
                         other=0.0)  # Tinv_j, already the inverse's
            acc -= tl.dot(a, tj, input_precision="ieee")
        dinv = _unit_lower_inverse(tl.load(p_Ti + i * BC + o_s[None, :], mask=rmask, other=0.0), BC, DOUBLING, "ieee")
        row = tl.dot(dinv, acc, input_precision="ieee")
        tl.debug_barrier()
        tl.store(p_Ti + o_c[None, :], row, mask=rmask)
        tl.debug_barrier()


@triton.jit
def _blk(x, b, hh, t, i_k, T, H, K, BC: tl.constexpr, BK: tl.constexpr):
    """Rows t..t+BC of x [B, T, H, K] at key tile i_k, [BC, BK] (zeros past T or K)."""
    o_t = t + tl.arange(0, BC)
    o_k = i_k * BK + tl.arange(0, BK)
    return tl.load(x + ((b * T + o_t[:, None]) * H + hh) * K + o_k[None, :],
                   mask=(o_t[:, None] < T) & (o_k[None, :] < K), other=0.0)


@triton.jit
def _pair(ki, kj, gi, gj, Kp, b, hh, ti, j, T, H, BT: tl.constexpr, BC: tl.constexpr, GATE: tl.constexpr,
          DIAG: tl.constexpr):
    """Finish the key-key block (rows block at ti, columns block j): the scalar gate's decay, or for
    per-key gates the block of Kp; strictly lower on the diagonal. ``ki``/``kj`` hold the raw product."""
    o_s = tl.arange(0, BC)
    if GATE == 2:
        o_r = ti + o_s
        m = o_r[:, None] < T
        if DIAG:
            m = m & (o_s[:, None] > o_s[None, :])
        return tl.load(Kp + ((b * T + o_r[:, None]) * H + hh) * BT + j * BC + o_s[None, :], mask=m, other=0.0)
    a = ki
    if GATE == 1:
        if DIAG:
            a *= pair_decay(gi, gj, o_s[:, None] > o_s[None, :])
        else:
            a *= tl.exp(gi[:, None] - gj[None, :])  # u before r: G_r − G_u ≤ 0
    if DIAG:
        a = tl.where(o_s[:, None] > o_s[None, :], a, 0.0)
    return a


@triton.jit
def _unit_lower_inverse(a, BC: tl.constexpr, DOUBLING: tl.constexpr, IPREC: tl.constexpr,
                        REFINE: tl.constexpr = False):
    """(I + a)⁻¹ for a strictly lower [BC, BC] block in registers (fp32).

    By forward substitution: row r of the inverse minus I is −a_r − Σ_j a_rj (row j of it), BC − 2
    dependent steps. ``DOUBLING``: by block triangular inversion with doubling blocks instead: with X
    the inverse of (I + a)'s diagonal blocks of size s and E a's entries in the lower-left s×s
    quarter of each diagonal block of size 2s, X − X E X inverts the blocks of size 2s (from s = 1,
    where X = I and X − E is the first step). Six 16×16 products for BC = 16 (two a level, three
    levels), exact block algebra (no cancelling power series, so as accurate as the substitution).
    ``IPREC``: those products' ``input_precision``. ``REFINE``: then one Newton step in IEEE float32,
    X ← X + X (I − (I + a) X), which squares X's residual (for an inverse formed with TF32 products)."""
    o_s = tl.arange(0, BC)
    r = o_s[:, None]
    c = o_s[None, :]
    if DOUBLING:
        tl.static_assert(BC == 16)
        x = (r == c).to(tl.float32) - tl.where((r // 2 == c // 2) & (r > c), a, 0.0)  # blocks of 2
        for lvl in tl.static_range(1, 4):  # blocks of 2s from blocks of s = 1 << lvl: s = 2, 4, 8
            e = tl.where((r // (2 << lvl) == c // (2 << lvl)) & (r % (2 << lvl) >= (1 << lvl)) &
                         (c % (2 << lvl) < (1 << lvl)), a, 0.0)
            x = x - _dot(x, _dot(e, x, IPREC), IPREC)
    else:
        x = -a
        for i in range(2, BC):
            xr = tl.sum(tl.where(r == i, x, 0.0), 0)
            xr += tl.sum(xr[:, None] * x, 0)
            x = tl.where(r == i, xr[None, :], x)
        x += (r == c).to(tl.float32)
    if REFINE:
        x = x + _dot(x, (r == c).to(tl.float32) - x - _dot(a, x, "ieee"), "ieee")
    return x


@triton.jit
def _dot(a, b, IPREC: tl.constexpr):
    return tl.dot(a, b, input_precision=IPREC)


@triton.jit
def _cat_cols(a, b):
    """[a | b]: two [R, C] tiles side by side, [R, 2C]."""
    return tl.reshape(tl.permute(tl.join(a, b), (0, 2, 1)), (a.shape[0], 2 * a.shape[1]))


@triton.jit
def _cat_rows(a, b):
    """[a; b]: two [R, C] tiles one above the other, [2R, C]."""
    return tl.reshape(tl.permute(tl.join(a, b), (2, 0, 1)), (2 * a.shape[0], a.shape[1]))


@triton.jit
def _store_blk(p, x, b, hh, t, col, T, H, W: tl.constexpr, BC: tl.constexpr, BN: tl.constexpr, N):
    """Store x [BC, BN] at rows t.. and columns col.. of p [B, T, H, W] (mask rows past T, columns past N)."""
    o_t = t + tl.arange(0, BC)
    o_n = col + tl.arange(0, BN)
    tl.store(p + ((b * T + o_t[:, None]) * H + hh) * W + o_n[None, :], x.to(p.dtype.element_ty),
             mask=(o_t[:, None] < T) & (o_n[None, :] < N))


@triton.jit
def fwd_prep4(k, v, beta, G, Kp, Tinv, U, W, Kh, CH, T, H, K: tl.constexpr, V: tl.constexpr,
              GATE: tl.constexpr, BT: tl.constexpr, BC: tl.constexpr, BK: tl.constexpr, BV: tl.constexpr,
              PREC: tl.constexpr, VARLEN: tl.constexpr, LOWP: tl.constexpr = False,
              DOUBLING: tl.constexpr = False, UW: tl.constexpr = True, STORE_T: tl.constexpr = True,
              KHAT: tl.constexpr = False, DPREC: tl.constexpr = "ieee", MPREC: tl.constexpr = "ieee",
              REFINE: tl.constexpr = False, UW_WHOLE: tl.constexpr = False):
    """``fwd_prep`` for chunks of four BC-row blocks (BT = 4·BC, the default 64), all in registers:
    the ten key-key blocks, the four diagonal inverses (``_unit_lower_inverse``; independent, so they
    interleave), the six off-diagonal blocks of Tinv by block substitution with BC×BC products,
    ``Tinv_ij = −D_i Σ_{j≤m<i} A_im Tinv_mj``; then U and W by blocks. No global round trips (the
    general kernel writes each block row of Tinv and reads it back). ``UW`` False: Tinv only (``fwd_uw``
    then forms U and W with whole-chunk products). ``STORE_T`` False: Tinv is not stored (no backward).
    ``KHAT`` (scalar gates, with ``UW``): also ``Kh = k ⊙ e^{G_last − G}`` (each key decayed to its chunk's
    end, ≤ |k|), which the one-pass walk (``_output.fwd_fused``) reads in place of k. ``UW_WHOLE``: U, W (and Kh)
    by whole-chunk products from Tinv joined into one [BT, BT] tile (``_uw_whole``; the 16-row blocks'
    products held ~250 registers and spilled). ``DPREC`` / ``MPREC``: the ``input_precision`` of the
    diagonal blocks' inverse products and of the off-diagonal (merge) products; ``REFINE``: one IEEE Newton
    step after each diagonal block (``INVERSE_PRECISION``)."""
    n, i_bh = tl.program_id(0), tl.program_id(1)
    b, hh = i_bh // H, i_bh % H
    t0, T = span(CH, n, T, BT, VARLEN)  # with documents: T is the end of this chunk's document
    if empty(t0, T):  # a chunk slot past the last document's chunks
        return
    t1, t2, t3 = t0 + BC, t0 + 2 * BC, t0 + 3 * BC
    o_s = tl.arange(0, BC)
    last = tl.minimum(t0 + BT, T) - 1
    b0 = tl.load(beta + (b * T + t0 + o_s) * H + hh, mask=t0 + o_s < T, other=0.0).to(tl.float32)
    b1 = tl.load(beta + (b * T + t1 + o_s) * H + hh, mask=t1 + o_s < T, other=0.0).to(tl.float32)
    b2 = tl.load(beta + (b * T + t2 + o_s) * H + hh, mask=t2 + o_s < T, other=0.0).to(tl.float32)
    b3 = tl.load(beta + (b * T + t3 + o_s) * H + hh, mask=t3 + o_s < T, other=0.0).to(tl.float32)
    g0 = tl.zeros([BC], dtype=tl.float32)
    g1 = g0
    g2 = g0
    g3 = g0
    if GATE == 1:  # rows past T repeat the last row's gate: decays stay ≤ 1 (their keys are 0)
        g0 = tl.load(G + (b * T + tl.minimum(t0 + o_s, last)) * H + hh)
        g1 = tl.load(G + (b * T + tl.minimum(t1 + o_s, last)) * H + hh)
        g2 = tl.load(G + (b * T + tl.minimum(t2 + o_s, last)) * H + hh)
        g3 = tl.load(G + (b * T + tl.minimum(t3 + o_s, last)) * H + hh)
    z = tl.zeros([BC, BC], dtype=tl.float32)
    a00 = z
    a10 = z
    a11 = z
    a20 = z
    a21 = z
    a22 = z
    a30 = z
    a31 = z
    a32 = z
    a33 = z
    if GATE != 2:
        for i_k in range(tl.cdiv(K, BK)):
            k0 = _blk(k, b, hh, t0, i_k, T, H, K, BC, BK)
            k1 = _blk(k, b, hh, t1, i_k, T, H, K, BC, BK)
            k2 = _blk(k, b, hh, t2, i_k, T, H, K, BC, BK)
            k3 = _blk(k, b, hh, t3, i_k, T, H, K, BC, BK)
            a00 += tl.dot(k0, tl.trans(k0), input_precision=PREC)
            a10 += tl.dot(k1, tl.trans(k0), input_precision=PREC)
            a11 += tl.dot(k1, tl.trans(k1), input_precision=PREC)
            a20 += tl.dot(k2, tl.trans(k0), input_precision=PREC)
            a21 += tl.dot(k2, tl.trans(k1), input_precision=PREC)
            a22 += tl.dot(k2, tl.trans(k2), input_precision=PREC)
            a30 += tl.dot(k3, tl.trans(k0), input_precision=PREC)
            a31 += tl.dot(k3, tl.trans(k1), input_precision=PREC)
            a32 += tl.dot(k3, tl.trans(k2), input_precision=PREC)
            a33 += tl.dot(k3, tl.trans(k3), input_precision=PREC)
    # A = diag(β) Kp, by blocks
    a00 = _pair(a00, a00, g0, g0, Kp, b, hh, t0, 0, T, H, BT, BC, GATE, True) * b0[:, None]
    a10 = _pair(a10, a10, g1, g0, Kp, b, hh, t1, 0, T, H, BT, BC, GATE, False) * b1[:, None]
    a11 = _pair(a11, a11, g1, g1, Kp, b, hh, t1, 1, T, H, BT, BC, GATE, True) * b1[:, None]
    a20 = _pair(a20, a20, g2, g0, Kp, b, hh, t2, 0, T, H, BT, BC, GATE, False) * b2[:, None]
    a21 = _pair(a21, a21, g2, g1, Kp, b, hh, t2, 1, T, H, BT, BC, GATE, False) * b2[:, None]
    a22 = _pair(a22, a22, g2, g2, Kp, b, hh, t2, 2, T, H, BT, BC, GATE, True) * b2[:, None]
    a30 = _pair(a30, a30, g3, g0, Kp, b, hh, t3, 0, T, H, BT, BC, GATE, False) * b3[:, None]
    a31 = _pair(a31, a31, g3, g1, Kp, b, hh, t3, 1, T, H, BT, BC, GATE, False) * b3[:, None]
    a32 = _pair(a32, a32, g3, g2, Kp, b, hh, t3, 2, T, H, BT, BC, GATE, False) * b3[:, None]
    a33 = _pair(a33, a33, g3, g3, Kp, b, hh, t3, 3, T, H, BT, BC, GATE, True) * b3[:, None]
    d0 = _unit_lower_inverse(a00, BC, DOUBLING, DPREC, REFINE)
    d1 = _unit_lower_inverse(a11, BC, DOUBLING, DPREC, REFINE)
    d2 = _unit_lower_inverse(a22, BC, DOUBLING, DPREC, REFINE)
    d3 = _unit_lower_inverse(a33, BC, DOUBLING, DPREC, REFINE)
    t10 = -_dot(d1, _dot(a10, d0, MPREC), MPREC)
    t21 = -_dot(d2, _dot(a21, d1, MPREC), MPREC)
    t32 = -_dot(d3, _dot(a32, d2, MPREC), MPREC)
    t20 = -_dot(d2, _dot(a20, d0, MPREC) + _dot(a21, t10, MPREC), MPREC)
    t31 = -_dot(d3, _dot(a31, d1, MPREC) + _dot(a32, t21, MPREC), MPREC)
    t30 = -_dot(d3, _dot(a30, d0, MPREC) + _dot(a31, t10, MPREC) + _dot(a32, t20, MPREC), MPREC)
    # Tinv (for the backward, in Tinv's dtype), upper blocks zero
    if STORE_T:
        _store_blk(Tinv, d0, b, hh, t0, 0, T, H, BT, BC, BC, BT)
        _store_blk(Tinv, z, b, hh, t0, BC, T, H, BT, BC, BC, BT)
        _store_blk(Tinv, z, b, hh, t0, 2 * BC, T, H, BT, BC, BC, BT)
        _store_blk(Tinv, z, b, hh, t0, 3 * BC, T, H, BT, BC, BC, BT)
        _store_blk(Tinv, t10, b, hh, t1, 0, T, H, BT, BC, BC, BT)
        _store_blk(Tinv, d1, b, hh, t1, BC, T, H, BT, BC, BC, BT)
        _store_blk(Tinv, z, b, hh, t1, 2 * BC, T, H, BT, BC, BC, BT)
        _store_blk(Tinv, z, b, hh, t1, 3 * BC, T, H, BT, BC, BC, BT)
        _store_blk(Tinv, t20, b, hh, t2, 0, T, H, BT, BC, BC, BT)
        _store_blk(Tinv, t21, b, hh, t2, BC, T, H, BT, BC, BC, BT)
        _store_blk(Tinv, d2, b, hh, t2, 2 * BC, T, H, BT, BC, BC, BT)
        _store_blk(Tinv, z, b, hh, t2, 3 * BC, T, H, BT, BC, BC, BT)
        _store_blk(Tinv, t30, b, hh, t3, 0, T, H, BT, BC, BC, BT)
        _store_blk(Tinv, t31, b, hh, t3, BC, T, H, BT, BC, BC, BT)
        _store_blk(Tinv, t32, b, hh, t3, 2 * BC, T, H, BT, BC, BC, BT)
        _store_blk(Tinv, d3, b, hh, t3, 3 * BC, T, H, BT, BC, BC, BT)
    if not UW:
        return
    if UW_WHOLE:  # Tinv as one [BT, BT] tile, then U and W by whole-chunk products
        if LOWP:
            z = z.to(v.dtype.element_ty)
            d0, d1, d2, d3 = d0.to(z.dtype), d1.to(z.dtype), d2.to(z.dtype), d3.to(z.dtype)
            t10, t20, t21 = t10.to(z.dtype), t20.to(z.dtype), t21.to(z.dtype)
            t30, t31, t32 = t30.to(z.dtype), t31.to(z.dtype), t32.to(z.dtype)
        tm = _cat_rows(_cat_rows(_cat_cols(_cat_cols(d0, z), _cat_cols(z, z)),
                                 _cat_cols(_cat_cols(t10, d1), _cat_cols(z, z))),
                       _cat_rows(_cat_cols(_cat_cols(t20, t21), _cat_cols(d2, z)),
                                 _cat_cols(_cat_cols(t30, t31), _cat_cols(t32, d3))))
        _uw_whole(tm, k, v, beta, G, U, W, Kh, b, hh, t0, last, T, H, K, V, GATE, BT, BK, BV, PREC, KHAT)
        return
    # U = Tinv (β v), W = Tinv (β k e^G), by blocks of rows
    if LOWP:  # 16-bit products (the inverse's blocks rounded once)
        d0, d1, d2, d3 = d0.to(v.dtype.element_ty), d1.to(v.dtype.element_ty), d2.to(v.dtype.element_ty), \
            d3.to(v.dtype.element_ty)
        t10, t20, t21 = t10.to(v.dtype.element_ty), t20.to(v.dtype.element_ty), t21.to(v.dtype.element_ty)
        t30, t31, t32 = t30.to(v.dtype.element_ty), t31.to(v.dtype.element_ty), t32.to(v.dtype.element_ty)
    for i_v in range(tl.cdiv(V, BV)):
        x0 = _blk(v, b, hh, t0, i_v, T, H, V, BC, BV).to(tl.float32) * b0[:, None]
        x1 = _blk(v, b, hh, t1, i_v, T, H, V, BC, BV).to(tl.float32) * b1[:, None]
        x2 = _blk(v, b, hh, t2, i_v, T, H, V, BC, BV).to(tl.float32) * b2[:, None]
        x3 = _blk(v, b, hh, t3, i_v, T, H, V, BC, BV).to(tl.float32) * b3[:, None]
        _tinv_times(d0, d1, d2, d3, t10, t20, t21, t30, t31, t32, x0, x1, x2, x3, U, b, hh, t0, i_v * BV, T, H,
                    V, BC, BV, PREC)
    if KHAT:
        g_end = tl.load(G + (b * T + last) * H + hh)
    for i_k in range(tl.cdiv(K, BK)):
        x0 = _blk(k, b, hh, t0, i_k, T, H, K, BC, BK).to(tl.float32)
        x1 = _blk(k, b, hh, t1, i_k, T, H, K, BC, BK).to(tl.float32)
        x2 = _blk(k, b, hh, t2, i_k, T, H, K, BC, BK).to(tl.float32)
        x3 = _blk(k, b, hh, t3, i_k, T, H, K, BC, BK).to(tl.float32)
        if KHAT:
            _store_blk(Kh, x0 * tl.exp(g_end - g0)[:, None], b, hh, t0, i_k * BK, T, H, K, BC, BK, K)
            _store_blk(Kh, x1 * tl.exp(g_end - g1)[:, None], b, hh, t1, i_k * BK, T, H, K, BC, BK, K)
            _store_blk(Kh, x2 * tl.exp(g_end - g2)[:, None], b, hh, t2, i_k * BK, T, H, K, BC, BK, K)
            _store_blk(Kh, x3 * tl.exp(g_end - g3)[:, None], b, hh, t3, i_k * BK, T, H, K, BC, BK, K)
        x0 *= b0[:, None]
        x1 *= b1[:, None]
        x2 *= b2[:, None]
        x3 *= b3[:, None]
        if GATE == 1:
            x0 *= tl.exp(g0)[:, None]
            x1 *= tl.exp(g1)[:, None]
            x2 *= tl.exp(g2)[:, None]
            x3 *= tl.exp(g3)[:, None]
        if GATE == 2:  # per-key gates; rows past T repeat the last row (their keys are 0)
            x0 *= _gate_rows(G, b, hh, t0, last, i_k, T, H, K, GATE, BC, BK)
            x1 *= _gate_rows(G, b, hh, t1, last, i_k, T, H, K, GATE, BC, BK)
            x2 *= _gate_rows(G, b, hh, t2, last, i_k, T, H, K, GATE, BC, BK)
            x3 *= _gate_rows(G, b, hh, t3, last, i_k, T, H, K, GATE, BC, BK)
        _tinv_times(d0, d1, d2, d3, t10, t20, t21, t30, t31, t32, x0, x1, x2, x3, W, b, hh, t0, i_k * BK, T, H,
                    K, BC, BK, PREC)


@triton.jit
def _uw_whole(tm, k, v, beta, G, U, W, Kh, b, hh, t0, last, T, H, K: tl.constexpr, V: tl.constexpr,
              GATE: tl.constexpr, BT: tl.constexpr, BK: tl.constexpr, BV: tl.constexpr, PREC: tl.constexpr,
              KHAT: tl.constexpr):
    """``fwd_prep4``'s U = Tinv (β v) and W = Tinv (β k ⊙ e^G) (and ``KHAT``'s Kh) from Tinv as one [BT, BT]
    tile ``tm``, by whole-chunk products over V's and K's tiles (operands in tm's dtype)."""
    rows = t0 + tl.arange(0, BT)
    bt = tl.load(beta + (b * T + rows) * H + hh, mask=rows < T, other=0.0).to(tl.float32)
    for i_v in range(tl.cdiv(V, BV)):
        _u_tile(tm, v, bt, U, b, hh, t0, i_v, T, H, V, BT, BV, PREC)
    if KHAT:
        gr = tl.load(G + (b * T + tl.minimum(rows, last)) * H + hh)
        dk = tl.exp(tl.load(G + (b * T + last) * H + hh) - gr)
    for i_k in range(tl.cdiv(K, BK)):
        p_k = tl.make_block_ptr(k + (b * T * H + hh) * K, (T, K), (H * K, 1), (t0, i_k * BK), (BT, BK), (1, 0))
        xk = tl.load(p_k, boundary_check=(0, 1)).to(tl.float32)
        if KHAT:
            p_h = tl.make_block_ptr(Kh + (b * T * H + hh) * K, (T, K), (H * K, 1), (t0, i_k * BK), (BT, BK), (1, 0))
            tl.store(p_h, (xk * dk[:, None]).to(Kh.dtype.element_ty), boundary_check=(0, 1))
        _w_tile(tm, xk, bt, G, W, b, hh, t0, i_k, T, H, K, GATE, BT, BK, PREC)


@triton.jit
def _tinv_times(d0, d1, d2, d3, t10, t20, t21, t30, t31, t32, x0, x1, x2, x3, P, b, hh, t0, col, T, H,
                N: tl.constexpr, BC: tl.constexpr, BN: tl.constexpr, PREC: tl.constexpr):
    """Store Tinv [x0; x1; x2; x3] (Tinv by its four diagonal and six lower BC×BC blocks; x by BC-row
    blocks of BN columns) at rows t0.. and columns col.. of P [B, T, H, N]; x takes the blocks' dtype."""
    x0, x1, x2, x3 = x0.to(d0.dtype), x1.to(d0.dtype), x2.to(d0.dtype), x3.to(d0.dtype)
    _store_blk(P, tl.dot(d0, x0, input_precision=PREC), b, hh, t0, col, T, H, N, BC, BN, N)
    _store_blk(P, tl.dot(t10, x0, input_precision=PREC) + tl.dot(d1, x1, input_precision=PREC),
               b, hh, t0 + BC, col, T, H, N, BC, BN, N)
    _store_blk(P, tl.dot(t20, x0, input_precision=PREC) + tl.dot(t21, x1, input_precision=PREC)
               + tl.dot(d2, x2, input_precision=PREC), b, hh, t0 + 2 * BC, col, T, H, N, BC, BN, N)
    _store_blk(P, tl.dot(t30, x0, input_precision=PREC) + tl.dot(t31, x1, input_precision=PREC)
               + tl.dot(t32, x2, input_precision=PREC) + tl.dot(d3, x3, input_precision=PREC),
               b, hh, t0 + 3 * BC, col, T, H, N, BC, BN, N)


@triton.jit
def bwd_delta(k, v, beta, G, dW, du, Tinv, Kp, dk, dG, dKp, dv, dbeta, CH, T, H, K: tl.constexpr,
              V: tl.constexpr, GATE: tl.constexpr, BT: tl.constexpr, BK: tl.constexpr, BV: tl.constexpr,
              PREC: tl.constexpr, VARLEN: tl.constexpr):
    """dv, dβ; dk (the output/state-pass part on entry) += the W and Kp parts, in place (GATE 2: the W
    part only, with dKp stored); dG += their gate parts.

    With X = [du vᵀ − dW (k ⊙ e^G)ᵀ] diag(β) (``dW = du hᵀ`` from ``_output.bwd_dqk``), dR Rᵀ = Tinvᵀ X,
    so the strictly lower ``dA = −Tinvᵀ X Tinvᵀ`` needs one pass over V and one over K; a second pass
    over K then writes each dk tile once.
    """
    n, i_bh = tl.program_id(0), tl.program_id(1)
    b, hh = i_bh // H, i_bh % H
    t0, T = span(CH, n, T, BT, VARLEN)  # with documents: T is the end of this chunk's document
    if empty(t0, T):  # a chunk slot past the last document's chunks
        return
    o_c = tl.arange(0, BT)
    rows = t0 + o_c
    rvalid = rows < T
    strict = (o_c[:, None] > o_c[None, :]) & rvalid[:, None]
    ti_ = tl.load(Tinv + ((b * T + rows[:, None]) * H + hh) * BT + o_c[None, :], mask=rvalid[:, None],
                  other=0.0).to(tl.float32)
    bt = tl.load(beta + (b * T + rows) * H + hh, mask=rvalid, other=0.0).to(tl.float32)
    X = tl.zeros([BT, BT], dtype=tl.float32)
    db = tl.zeros([BT], dtype=tl.float32)
    for i_v in range(tl.cdiv(V, BV)):  # U's side: dR_U = Tinvᵀ du
        p_du = tl.make_block_ptr(du + (b * T * H + hh) * V, (T, V), (H * V, 1), (t0, i_v * BV), (BT, BV), (1, 0))
        p_v = tl.make_block_ptr(v + (b * T * H + hh) * V, (T, V), (H * V, 1), (t0, i_v * BV), (BT, BV), (1, 0))
        dut = tl.load(p_du, boundary_check=(0, 1))
        vv = tl.load(p_v, boundary_check=(0, 1))
        dRU = tl.dot(tl.trans(ti_), dut.to(tl.float32), input_precision=PREC)
        p_dv = tl.make_block_ptr(dv + (b * T * H + hh) * V, (T, V), (H * V, 1), (t0, i_v * BV), (BT, BV), (1, 0))
        tl.store(p_dv, (dRU * bt[:, None]).to(dv.dtype.element_ty), boundary_check=(0, 1))
        db += tl.sum(vv.to(tl.float32) * dRU, 1)
        X += tl.dot(dut.to(vv.dtype), tl.trans(vv), input_precision=PREC)
    kp = tl.zeros([BT, BT], dtype=tl.float32)
    for i_k in range(tl.cdiv(K, BK)):  # W's side of X; the key-key products
        p_dw = tl.make_block_ptr(dW + (b * T * H + hh) * K, (T, K), (H * K, 1), (t0, i_k * BK), (BT, BK), (1, 0))
        p_k = tl.make_block_ptr(k + (b * T * H + hh) * K, (T, K), (H * K, 1), (t0, i_k * BK), (BT, BK), (1, 0))
        kk = tl.load(p_k, boundary_check=(0, 1))
        kg = kk
        if GATE != 0:
            kg = (kk.to(tl.float32) * _gate_k(G, b, hh, t0, i_k, T, H, K, GATE, BT, BK)).to(kk.dtype)
        X -= tl.dot(tl.load(p_dw, boundary_check=(0, 1)).to(kk.dtype), tl.trans(kg), input_precision=PREC)
        if GATE != 2:
            kp += tl.dot(kk, tl.trans(kk), input_precision=PREC)
    X *= bt[None, :]
    dA = tl.where(strict, -tl.dot(tl.dot(tl.trans(ti_), X, input_precision=PREC), tl.trans(ti_),
                                  input_precision=PREC), 0.0)
    if GATE == 2:
        kp = _kpair(k, G, Kp, b, hh, t0, T, H, K, GATE, BT, BK, PREC)
    else:  # the key-key products were formed in the pass above (reading k once): mask and decay them here
        if GATE == 1:
            dec = _loaded_pair_decay(G, b, hh, rows, T, H, strict)
            kp *= dec
        kp = tl.where(strict, kp, 0.0)
    db += tl.sum(dA * kp, 1)
    dkp = dA * bt[:, None]
    if GATE == 2:
        tl.store(dKp + ((b * T + rows[:, None]) * H + hh) * BT + o_c[None, :], dkp, mask=rvalid[:, None])
    if GATE == 1:
        dkp *= dec
    dgr = tl.zeros([BT], dtype=tl.float32)  # scalar-gate dG
    for i_k in range(tl.cdiv(K, BK)):  # dR_W = −Tinvᵀ dW; each dk tile written once
        p_dw = tl.make_block_ptr(dW + (b * T * H + hh) * K, (T, K), (H * K, 1), (t0, i_k * BK), (BT, BK), (1, 0))
        p_k = tl.make_block_ptr(k + (b * T * H + hh) * K, (T, K), (H * K, 1), (t0, i_k * BK), (BT, BK), (1, 0))
        kk = tl.load(p_k, boundary_check=(0, 1))
        dRW = -tl.dot(tl.trans(ti_), tl.load(p_dw, boundary_check=(0, 1)).to(tl.float32), input_precision=PREC)
        dkW = dRW * bt[:, None]
        k32 = kk.to(tl.float32)
        if GATE != 0:
            eg = _gate_k(G, b, hh, t0, i_k, T, H, K, GATE, BT, BK)
            db += tl.sum(k32 * eg * dRW, 1)
            dkW *= eg
        else:
            db += tl.sum(k32 * dRW, 1)
        p_dk = tl.make_block_ptr(dk + (b * T * H + hh) * K, (T, K), (H * K, 1), (t0, i_k * BK), (BT, BK), (1, 0))
        acc = tl.load(p_dk, boundary_check=(0, 1)).to(tl.float32) + dkW
        if GATE == 2:
            p_g = tl.make_block_ptr(dG + (b * T * H + hh) * K, (T, K), (H * K, 1), (t0, i_k * BK), (BT, BK), (1, 0))
            tl.store(p_g, tl.load(p_g, boundary_check=(0, 1)) + k32 * dkW, boundary_check=(0, 1))
        else:
            dkr = tl.dot(dkp.to(kk.dtype), kk, input_precision=PREC)
            dkc = tl.dot(tl.trans(dkp).to(kk.dtype), kk, input_precision=PREC)
            acc += dkr + dkc
            if GATE == 1:
                dgr += tl.sum(k32 * (dkW + dkr - dkc), 1)
        tl.store(p_dk, acc.to(dk.dtype.element_ty), boundary_check=(0, 1))
    if GATE == 1:
        p_g = dG + (b * T + rows) * H + hh
        tl.store(p_g, tl.load(p_g, mask=rvalid, other=0.0) + dgr, mask=rvalid)
    tl.store(dbeta + (b * T + rows) * H + hh, db, mask=rvalid)


def _tile(d: int, cap: int) -> int:
    """The tile for a dimension d: its next power of two, between 16 and ``cap`` (every Triton wrapper's rule)."""
    return max(16, min(cap, next_pow2(d)))


def _bk(K: int) -> int:
    if K > MAX_K:
        raise ValueError(f"the triton delta-rule kernels need D_k ≤ {MAX_K} (one key tile), got {K}")
    return max(16, next_pow2(K))


def _four(C: int) -> bool:
    """Whether ``fwd_prep4`` (the inverse, U and W in registers) takes chunks of C."""
    return C == 4 * BC and CONFIG["prep4"]


def khat_ok(k, gate: int, C: int) -> bool:
    """Whether the decayed keys ``Kh`` (``fwd_prep4``'s ``KHAT``) can serve this call: scalar gates, the
    fused prep (not ``prep_split``), and not fp16, whose exponent range (normal from 6e-5 = e^-9.7) would lose
    keys decayed further than that."""
    return gate == 1 and _four(C) and not CONFIG["prep_split"] and k.dtype != torch.float16


def prep(k, v, beta, G, Kp, gate, C, prec, chunks=None, keep_inverse=True, khat=False):
    """Tinv [B, T, H, C] (fp32; in the inputs' 16-bit dtype where ``fwd_prep4`` forms U and W in it),
    U [B, T, H, V] and W [B, T, H, K] in v's / k's dtype (``chunks``: the ``_varlen.Chunks`` of the call),
    and Kh = k ⊙ e^{G_last − G} (``fwd_prep4``'s ``KHAT``) where ``khat`` asks for it and the scalar-gate
    prep4 path runs on bf16 or float32 inputs, else None. ``keep_inverse=False`` (no backward to come):
    fwd_prep4 does not store Tinv, and None comes back for it."""
    B, T, H, K = k.shape
    V = v.shape[-1]
    chunks = chunks or Chunks(cdiv(T, C), B, False)
    four = _four(C)  # the default chunk: the inverse in registers
    lowp = four and CONFIG["uw_lowp"] and k.dtype != torch.float32
    split = not four or CONFIG["prep_split"]  # Tinv first, then U and W by fwd_uw
    keep_inverse = keep_inverse or split
    khat = khat and khat_ok(k, gate, C)
    Kh = torch.empty_like(k) if khat else None
    # stored for the backward in the dtype U and W were formed with (the general kernel also works in it: fp32)
    Tinv = torch.empty(B, T, H, C, device=k.device, dtype=k.dtype if lowp else torch.float32) if keep_inverse else k
    U, W = torch.empty_like(v), torch.empty_like(k)
    ch = chunks.args(k)[0]
    bk, bv = _tile(K, CONFIG["bk"]), _tile(V, CONFIG["bv"])
    G_, Kp_ = G if G is not None else k, Kp if Kp is not None else k
    doubling = CONFIG["inverse"] == "doubling"
    dprec, mprec, refine = INVERSE_PRECISION[CONFIG["inv_tf32"] if lowp and gate in CONFIG["inv_tf32_gates"] else 0]
    if four:
        fwd_prep4[(chunks.NT, B * H)](
            k, v, beta, G_, Kp_, Tinv, U, W, Kh if khat else k, ch, T, H, K, V, GATE=gate, BT=C, BC=BC, BK=bk,
            BV=bv, PREC=prec, VARLEN=chunks.varlen, LOWP=lowp, DOUBLING=doubling, UW=not split, STORE_T=keep_inverse,
            KHAT=khat, DPREC=dprec, MPREC=mprec, REFINE=refine, UW_WHOLE=gate in CONFIG["uw_whole"],
            num_warps=CONFIG["prep_warps"],
            **({"num_stages": CONFIG["prep_stages"]} if CONFIG["prep_stages"] else {}))
    else:
        fwd_prep[(chunks.NT, B * H)](
            k, beta, G_, Kp_, Tinv, ch, T, H, K, GATE=gate, BT=C, BC=BC, BK=bk, PREC=prec, VARLEN=chunks.varlen,
            DOUBLING=doubling, num_warps=CONFIG["prep_warps"] if C <= 64 else CONFIG["prep_warps_128"])
    if split:
        ubk, ubv = _tile(K, CONFIG["uw_bk"]), _tile(V, CONFIG["uw_bv"])
        fwd_uw[(chunks.NT, B * H, cdiv(V, ubv) + cdiv(K, ubk))](
            k, v, beta, G_, Tinv, U, W, ch, T, H, K, V, GATE=gate, BT=C, BK=ubk, BV=ubv, PREC=prec,
            VARLEN=chunks.varlen, num_warps=CONFIG["uw_warps"])
    return Tinv if keep_inverse else None, U, W, Kh


def backward(k, v, beta, G, dW, du, Tinv, Kp, dk, dG, gate, C, prec, chunks=None):
    """dv, dβ (fp32) and dKp (GATE 2; else None); in place, ``dk`` (the output/state-pass part of dk on
    entry) += the W and Kp parts (GATE 2: the W part; ``_gla.bwd_intra`` adds the Kp part from dKp), and dG."""
    B, T, H, K = k.shape
    V = v.shape[-1]
    chunks = chunks or Chunks(cdiv(T, C), B, False)
    dv = torch.empty_like(v)
    dbeta = torch.empty(B, T, H, device=k.device, dtype=torch.float32)
    dKp = torch.empty(B, T, H, C, device=k.device, dtype=torch.float32) if gate == 2 else None
    # chunks of 128: tiles of 64 need 288 KiB of shared memory with per-key gates (hopper_compile), so 32
    cap = min(CONFIG["bk"], CONFIG["bv"], 32) if C > 64 else None
    bwd_delta[(chunks.NT, B * H)](
        k, v, beta, G if G is not None else k, dW, du, Tinv, Kp if Kp is not None else k, dk,
        dG if dG is not None else k, dKp if dKp is not None else k, dv, dbeta, chunks.args(k)[0], T, H, K, V,
        GATE=gate, BT=C, BK=_tile(K, cap or CONFIG["bk"]), BV=_tile(V, cap or CONFIG["bv"]), PREC=prec,
        VARLEN=chunks.varlen, num_warps=CONFIG["bwd_warps_ieee128" if C > 64 and prec == "ieee" else "bwd_warps"])
    return dv, dbeta, dKp
