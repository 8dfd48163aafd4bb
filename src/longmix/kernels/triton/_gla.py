"""Per-key gates (GLA): the intra-chunk matrix and its backward, as whole-chunk or row-block products.

``P_ru = Σ_d q_rd k_ud e^{G_rd − G_ud}`` (u ≤ r) is not one matmul as it stands: the decay differs
per key dim, and splitting it as ``(q e^{G − ref})(k e^{ref − G})ᵀ`` overflows once the gates between
the reference row and a row sum below about −88. The split is exact (to the operands' rounding) while
neither factor passes ``e^{span_max}``: ``CONFIG["span_max"]`` = 60, so operands scaled by up to
e^60 ≈ 1e26 stay far inside bf16/fp32 range (float16 inputs take float32 operands). G is the
chunk-local cumulative log-gate (≤ 0, falling). So:

1. a chunk is one product split at its middle row m, ``P = (q ⊙ e^{G − G_m}) (k ⊙ e^{G_m − G})ᵀ``
   masked to u ≤ r, when neither half spans more than span_max (−G_m, and G_m − G at its last row):
   GLA's gates (logsigmoid / 16) span about 3.5 over a chunk of 64, KDA's at a Mixer's
   initialisation a median 88, halves of at most 54
   (benchmarks/results/2026-11-26-h200-per-key-one-product/gate_spans.*);
2. otherwise each row block i of ``BC`` = 16 rows splits at its own reference, G at the row before the
   block (0 for the first): ``P_{i,:} = (q_i ⊙ e^{G_i − ref}) (k ⊙ e^{ref − G})ᵀ``. Keys before the
   block have ``e^{ref − G_u} ≤ 1``; its own diagonal tile joins the product while the block's span
   (ref − G at its last row) is at most span_max;
3. past that too (gates averaging below −3.7 a step over 16 steps, or −inf resets) the diagonal tile
   is the exact 3-D product ``Σ_d q_rd k_ud e^{G_rd − G_ud}``, masked before the exponent.

The choice is made per chunk and block (and per key tile in the backward) on the GPU, with no host
synchronisation; ``span_max = -1`` forces level 3 everywhere (the tests run every level).

The backward applies the same splits to ``dq_r = Σ_u dA_ru k_u e^{G_r − G_u}`` and
``dk_u = Σ_r dA_ru q_r e^{G_r − G_u}`` (references: the chunk's middle row for both; for a block,
the row before it for dq, its last row for dk), then adds the inter-chunk parts and
∂L/∂G = q⊙dq − k⊙dk.

The delta rule reuses both with q = k: ``fwd_intra(k, k, G)`` gives the (unmasked-diagonal)
key-key matrix of its triangular system, and ``bwd_intra(..., self_pair=True)`` its
backward, dk = extra + Σ_u dA_tu k_u e^{G_t−G_u} + Σ_r dA_rt k_r e^{G_r−G_t}.
"""
import torch
import triton
import triton.language as tl

from ._delta import _store_blk
from ._host import cdiv, next_pow2
from ._varlen import Chunks, empty, span

BC = 16  # rows of a block (and of the diagonal tiles)
# key-dim tile and warps of the forward / backward kernels; benchmarks may edit this table. On an H200
# (B=16, T=2K, bf16, H=16, D=128; benchmarks/results/2026-11-26-h200-per-key-one-product/tune_chunk.txt)
# the backward's (32, 2 warps) ran GLA's forward+backward 0.76x and KDA's 0.78x the time of (32, 1 warp),
# (16, 1) 0.90x, (64, 4) the same as (32, 2); the forward's (32, 4) 0.99x / 0.97x that of (16, 2).
# span_max: the largest gate span over a chunk or block for which it is one product (see above).
# diag_loop / diag_loop_keys: past span_max, the diagonal tiles column by column instead of as a 3-D
# product, for the intra matrix alone (GLA) / with the key-key matrix (KDA); on an H200 (B=16, T=2K,
# every tile 3-D then) the loop ran GLA's forward 1.10x slower and KDA's 0.84x faster
# (benchmarks/results/2026-11-25-h200-kernel-tune.jsonl).
# p_lowp: the forward stores P (not the key-key matrix) in the inputs' 16-bit dtype, not fp32 (chunk._prologue).
# fwd_scaled_bh: where sequences × heads are at most this many (0: never), fwd_A also stores q ⊙ e^G and
# k ⊙ e^{G_last − G} for the two-kernel forward's output kernel and state pass, which then read neither G's tile (fp32)
# nor take its exponentials (results bit for bit the same). The state pass's narrow V tiles at few sequences × heads
# each took those exponentials again. Always on, forward (H100, bf16, H = 16, D = 128): GLA 0.97x / 1.00x,
# KDA 1.03x / 0.99x at 16x2K / 4x8K; fwd_A's stores took it from 0.31 to 0.52 ms, the state pass and the output
# kernel gained 0.08-0.15 ms each (benchmarks/results/2026-11-27-h100-s22/c1_tune_*.txt, c2_profile.txt). At few
# sequences x heads, forward: KDA 0.88x / 0.88x / 0.87x at 1x32K / 2x16K / 1x128K, GLA 0.87x / 0.95x (1x32K / 2x16K);
# forward+backward 0.95-0.98x (c3_tune_*.txt). Hence 64: B = 4, T = 8K (H = 16) is the largest shape it serves.
CONFIG = {"fwd_bk": 32, "fwd_warps": 4, "bwd_bk": 32, "bwd_warps": 2, "span_max": 60.0,
          "diag_loop": False, "diag_loop_keys": True, "p_lowp": True, "fwd_scaled_bh": 64,
          # fwd_scaled_q: with the scaled operands, Qg too (False: Kh alone, the output kernel forms q ⊙ e^G itself).
          # Kh alone at every shape against the default took KDA's forward 1.03x at 4x8K and 1.06x at 16x2K (H100,
          # benchmarks/results/2026-11-27-h100-s23/c2_tune_*.txt)
          "fwd_scaled_q": True}


@triton.jit
def _rows(x, G, b, hh, t, i_k, T, H, K, BC: tl.constexpr, BK: tl.constexpr):
    """Rows t..t+BC of x and of G at key tile i_k (zeros past T or K) and the row mask."""
    o_t = t + tl.arange(0, BC)
    o_k = i_k * BK + tl.arange(0, BK)
    m = (o_t[:, None] < T) & (o_k[None, :] < K)
    off = ((b * T + o_t[:, None]) * H + hh) * K + o_k[None, :]
    return tl.load(x + off, mask=m, other=0.0), tl.load(G + off, mask=m, other=0.0), o_t[:, None] < T


@triton.jit
def _decay3(g_r, g_u, t, T, BC: tl.constexpr):
    """e^{G_r − G_u} for u ≤ r < T inside the diagonal tile starting at t, [BC, BC, BK], else 0."""
    o = tl.arange(0, BC)
    causal = ((o[:, None] >= o[None, :]) & (t + o[:, None] < T))[:, :, None]
    return tl.exp(tl.where(causal, g_r[:, None, :] - g_u[None, :, :], float("-inf")))


@triton.jit
def _grow(G, b, hh, t0, t, i_k, T, H, K, BK: tl.constexpr):
    """G's row t at key tile i_k: 0 for t before the chunk's first row t0 (G is chunk-local)."""
    o_k = i_k * BK + tl.arange(0, BK)
    return tl.load(G + ((b * T + t) * H + hh) * K + o_k, mask=(o_k < K) & (t >= t0), other=0.0)


@triton.jit
def _span(G, b, hh, t0, t_first, t_ref, t_last, i_k, T, H, K, BK: tl.constexpr):
    """The largest exponent a product split at row ``t_ref`` scales an operand by, over key tile ``i_k``:
    max(G(t_first) − G(t_ref), G(t_ref) − G(t_last)) for query rows after t_first and keys up to
    t_last (G ≤ 0 summed within the chunk, so G falls from row to row)."""
    ref = _grow(G, b, hh, t0, t_ref, i_k, T, H, K, BK)
    first = _grow(G, b, hh, t0, t_first, i_k, T, H, K, BK)
    last = _grow(G, b, hh, t0, t_last, i_k, T, H, K, BK)
    return tl.max(tl.maximum(first - ref, ref - last), 0)


@triton.jit
def _middle(t0, T, BT: tl.constexpr):
    """The row a whole chunk's product splits at (level 1): the last of its first half."""
    return tl.minimum(t0 + BT // 2, T) - 1


@triton.jit
def _chunk_span(G, b, hh, t0, i_k, T, H, K, BT: tl.constexpr, BK: tl.constexpr):
    """``_span`` of the whole chunk split at ``_middle``: decides level 1 (one product) or blocks."""
    return _span(G, b, hh, t0, t0 - 1, _middle(t0, T, BT), tl.minimum(t0 + BT, T) - 1, i_k, T, H, K, BK)


@triton.jit
def fwd_A(q, k, G, A, A2, Qg, Kh, CH, T, H, K: tl.constexpr, BT: tl.constexpr, BC: tl.constexpr, BK: tl.constexpr,
          BKA: tl.constexpr, LIM, PREC: tl.constexpr, TWO: tl.constexpr, DIAG_LOOP: tl.constexpr,
          VARLEN: tl.constexpr, SCALED: tl.constexpr = False, QG: tl.constexpr = True):
    """One chunk's intra matrix (and with ``TWO`` its key-key matrix into A2): the whole chunk as one
    [BT, BT] product split at its middle row when neither half's gates span more than ``LIM``, else block
    by block (``_A_rows``). ``SCALED``: also Qg = q ⊙ e^G (unless not ``QG``) and Kh = k ⊙ e^{G_last − G} in q's
    dtype, from the tiles loaded here: the output kernel's and the state pass's operands, formed as they form
    them."""
    n, i_bh = tl.program_id(0), tl.program_id(1)
    b, hh = i_bh // H, i_bh % H
    t0, T = span(CH, n, T, BT, VARLEN)
    if empty(t0, T):  # a chunk slot past the last document's chunks
        return
    if _chunk_span(G, b, hh, t0, 0, T, H, K, BT, BKA) <= LIM:
        _A_rows(q, k, G, A, A2, Qg, Kh, b, hh, t0, 0, T, H, K, BT, BT, BK, BKA, LIM, PREC, TWO, False, DIAG_LOOP,
                SCALED, QG)
    else:
        for i in range(BT // BC):
            _A_rows(q, k, G, A, A2, Qg, Kh, b, hh, t0, i, T, H, K, BT, BC, BK, BKA, LIM, PREC, TWO, True, DIAG_LOOP,
                    SCALED, QG)


@triton.jit
def _A_rows(q, k, G, A, A2, Qg, Kh, b, hh, t0, i, T, H, K: tl.constexpr, BT: tl.constexpr, BR: tl.constexpr,
            BK: tl.constexpr, BKA: tl.constexpr, LIM, PREC: tl.constexpr, TWO: tl.constexpr, SPLIT: tl.constexpr,
            DIAG_LOOP: tl.constexpr, SCALED: tl.constexpr, QG: tl.constexpr):
    """Rows [i·BR, (i+1)·BR) of the chunk's intra matrix as one [BR, BT] product
    ``(q_i ⊙ e^{G_i − ref}) (k ⊙ e^{ref − G})ᵀ`` over the columns up to the block's diagonal tile (ref: G at
    the row before a block, 0 for the first; at the middle row for the whole chunk; rows past the
    diagonal tile are masked to 0 before the exponent). ``SPLIT`` (blocks of ``BC`` rows): where the block's gates span more than ``LIM``
    (``_span``; e^{ref − G_u} would then pass e^{LIM}), the product stops before the diagonal tile,
    which is the exact 3-D product instead (``DIAG_LOOP``: column by column, each a [BR, BK] product
    reduced along the keys). ``TWO``: also the key-key matrix (q → k) into A2, sharing the key side and
    the diagonal's decays (KDA needs both). Columns past the diagonal tile are not written. ``SCALED``: the
    block's rows of Qg (where ``QG``) and Kh too (``fwd_A``)."""
    ti = t0 + i * BR
    if ti < T:
        dt = q.dtype.element_ty  # the tensor-core operands: float32 for float16 inputs, whose range (6.5e4)
        if dt == tl.float16:  # a key scaled by up to e^{LIM} would overflow
            dt = tl.float32
        o_c = tl.arange(0, BT)
        o_s = tl.arange(0, BR)
        if SPLIT:  # a block: split at the row before it
            t_ref = ti - 1
            split = _span(G, b, hh, t0, t_ref, t_ref, tl.minimum(ti + BR, T) - 1, 0, T, H, K, BKA) > LIM
            hi = i * BR + tl.where(split, 0, BR)  # the product's columns: [0, hi); the diagonal tile apart, exactly
            accd = tl.zeros([BR, BR], dtype=tl.float32)
            accd2 = tl.zeros([BR, BR], dtype=tl.float32)
        else:  # the whole chunk: split at its middle row
            t_ref = _middle(t0, T, BT)
            hi = (i + 1) * BR
        cols = (o_c < hi) & (t0 + o_c < T)
        acc = tl.zeros([BR, BT], dtype=tl.float32)
        acc2 = tl.zeros([BR, BT], dtype=tl.float32)
        for i_k in range(tl.cdiv(K, BK)):
            o_k = i_k * BK + tl.arange(0, BK)
            qi, gi, mi = _rows(q, G, b, hh, ti, i_k, T, H, K, BR, BK)
            ki, _, _ = _rows(k, G, b, hh, ti, i_k, T, H, K, BR, BK)
            if SCALED:  # as fwd_output forms q ⊙ e^G and _state._gate_tile_T k ⊙ e^{G_last − G}, in q's dtype
                g_end = _grow(G, b, hh, t0, tl.minimum(t0 + BT, T) - 1, i_k, T, H, K, BK)
                if QG:
                    _store_blk(Qg, qi * tl.exp(gi), b, hh, ti, i_k * BK, T, H, K, BR, BK, K)
                _store_blk(Kh, ki * tl.exp(g_end[None, :] - gi), b, hh, ti, i_k * BK, T, H, K, BR, BK, K)
            ref = _grow(G, b, hh, t0, t_ref, i_k, T, H, K, BK)[None, :]
            mc = cols[:, None] & (o_k[None, :] < K)
            off = ((b * T + t0 + o_c[:, None]) * H + hh) * K + o_k[None, :]
            kc = tl.load(k + off, mask=mc, other=0.0)
            gc = tl.load(G + off, mask=mc, other=0.0)
            kg = (kc * tl.exp(tl.where(mc, ref - gc, float("-inf")))).to(dt)  # [BT, BK], ≤ e^{LIM}·|k|
            eq = tl.exp(tl.where(mi, gi - ref, float("-inf")))  # ≤ e^{LIM} (rows past T: 0)
            acc += tl.dot((qi * eq).to(dt), tl.trans(kg), input_precision=PREC)
            if TWO:
                acc2 += tl.dot((ki * eq).to(dt), tl.trans(kg), input_precision=PREC)
            if SPLIT:
                if split:
                    if DIAG_LOOP:  # column by column: [BR, BK] products reduced along the key dim
                        qf = qi.to(tl.float32)
                        kif = ki.to(tl.float32)
                        for u in range(BR):
                            ru = ((b * T + ti + u) * H + hh) * K + o_k
                            mu = (o_k < K) & (ti + u < T)
                            ku = tl.load(k + ru, mask=mu, other=0.0).to(tl.float32)
                            gu = tl.load(G + ru, mask=mu, other=0.0)
                            e = tl.exp(tl.where(mi & (o_s[:, None] >= u), gi - gu[None, :], float("-inf"))) * ku[None, :]
                            accd += tl.where(o_s[None, :] == u, tl.sum(qf * e, 1)[:, None], 0.0)
                            if TWO:
                                accd2 += tl.where(o_s[None, :] == u, tl.sum(kif * e, 1)[:, None], 0.0)
                    else:  # the exact 3-D product
                        e = _decay3(gi, gi, ti, T, BR)
                        kf = ki.to(tl.float32)[None, :, :] * e
                        accd += tl.sum(qi.to(tl.float32)[:, None, :] * kf, 2)
                        if TWO:
                            accd2 += tl.sum(ki.to(tl.float32)[:, None, :] * kf, 2)
        o_t = ti + o_s
        rows = ((b * T + o_t[:, None]) * H + hh) * BT
        wm = (o_t[:, None] < T) & (o_c[None, :] < hi)
        causal = o_c[None, :] <= i * BR + o_s[:, None]  # zeros above the diagonal, as the 3-D product leaves them
        tl.store(A + rows + o_c[None, :], tl.where(causal, acc, 0.0), mask=wm)
        if TWO:
            tl.store(A2 + rows + o_c[None, :], tl.where(causal, acc2, 0.0), mask=wm)
        if SPLIT:
            if split:
                tl.store(A + rows + i * BR + o_s[None, :], accd, mask=o_t[:, None] < T)
                if TWO:
                    tl.store(A2 + rows + i * BR + o_s[None, :], accd2, mask=o_t[:, None] < T)


@triton.jit
def bwd_intra_kernel(q, k, G, dA, dqi, dki, dG, dq, dk, CH, T, H, K: tl.constexpr, BT: tl.constexpr,
                     BC: tl.constexpr, BK: tl.constexpr, LIM, PREC: tl.constexpr, SELF: tl.constexpr,
                     VARLEN: tl.constexpr):
    """Keys ``i_k`` of one chunk's intra-chunk dq and dk (``_dqk_rows``): the whole chunk as one block split
    at its middle row when neither half of this key tile's gates spans more than ``LIM``, else block by block."""
    i_k, n, i_bh = tl.program_id(0), tl.program_id(1), tl.program_id(2)
    b, hh = i_bh // H, i_bh % H
    t0, T = span(CH, n, T, BT, VARLEN)
    if empty(t0, T):  # a chunk slot past the last document's chunks
        return
    if _chunk_span(G, b, hh, t0, i_k, T, H, K, BT, BK) <= LIM:
        _dqk_rows(q, k, G, dA, dqi, dki, dG, dq, dk, b, hh, t0, 0, i_k, T, H, K, BT, BT, BK, LIM, PREC, SELF, False)
    else:
        for i in range(BT // BC):
            _dqk_rows(q, k, G, dA, dqi, dki, dG, dq, dk, b, hh, t0, i, i_k, T, H, K, BT, BC, BK, LIM, PREC, SELF, True)


@triton.jit
def _dqk_rows(q, k, G, dA, dqi, dki, dG, dq, dk, b, hh, t0, i, i_k, T, H, K: tl.constexpr, BT: tl.constexpr,
              BR: tl.constexpr, BK: tl.constexpr, LIM, PREC: tl.constexpr, SELF: tl.constexpr, SPLIT: tl.constexpr):
    """Rows [i·BR, (i+1)·BR)'s keys ``i_k`` of the intra-chunk dq and dk, each one [BR, BT] × [BT, BK] product:
    ``dq_i = e^{G_i − ref} ⊙ dA_{i,≤i} (k ⊙ e^{ref − G})``, ``dk_i = e^{ref2 − G_i} ⊙ dA_{≥i,i}ᵀ (q ⊙ e^{G − ref2})``
    (``SPLIT``, a block: ref is G at the row before it, 0 for the first, ref2 G at its last row; the whole
    chunk: both G at its middle row), the diagonal tile included unless (``SPLIT``) this key tile's gates
    span more than ``LIM`` over the block (``_span``); then it is the exact 3-D product. Adds the inter-chunk parts and writes dq, dk, dG's intra part."""
    ti = t0 + i * BR
    if ti < T:
        dt = q.dtype.element_ty  # the tensor-core operands: float32 for float16 inputs (see fwd_A)
        if dt == tl.float16:
            dt = tl.float32
        o_s = tl.arange(0, BR)
        o_t = ti + o_s
        rmask = o_t[:, None] < T
        o_c = tl.arange(0, BT)
        o_k = i_k * BK + tl.arange(0, BK)
        mk = o_k < K
        qi, gi, _ = _rows(q, G, b, hh, ti, i_k, T, H, K, BR, BK)
        ki, _, _ = _rows(k, G, b, hh, ti, i_k, T, H, K, BR, BK)
        if SPLIT:  # a block: dq split at the row before it, dk at its last row
            t_last = tl.minimum(ti + BR, T) - 1
            ref = _grow(G, b, hh, t0, ti - 1, i_k, T, H, K, BK)[None, :]
            ref2 = _grow(G, b, hh, t0, t_last, i_k, T, H, K, BK)[None, :]
            split = _span(G, b, hh, t0, ti - 1, ti - 1, t_last, i_k, T, H, K, BK) > LIM
            hi = i * BR + tl.where(split, 0, BR)  # dq: columns u < hi
            lo = i * BR + tl.where(split, BR, 0)  # dk: rows r ≥ lo
        else:  # the whole chunk: both split at its middle row
            ref = _grow(G, b, hh, t0, _middle(t0, T, BT), i_k, T, H, K, BK)[None, :]
            ref2 = ref
            hi = (i + 1) * BR
            lo = i * BR
        mrow = (t0 + o_c < T)[:, None] & mk[None, :]
        off = ((b * T + t0 + o_c[:, None]) * H + hh) * K + o_k[None, :]
        gc = tl.load(G + off, mask=mrow, other=0.0)
        mq = mrow & (o_c[:, None] < hi)
        kg = (tl.load(k + off, mask=mq, other=0.0) * tl.exp(tl.where(mq, ref - gc, float("-inf")))).to(dt)
        mkk = mrow & (o_c[:, None] >= lo)
        qg = (tl.load(q + off, mask=mkk, other=0.0) * tl.exp(tl.where(mkk, gc - ref2, float("-inf")))).to(dt)
        # dA's row block (columns ≤ each row) and column block (rows ≥ each column): its lower triangle only
        dAr = tl.load(dA + ((b * T + o_t[:, None]) * H + hh) * BT + o_c[None, :],
                      mask=rmask & (o_c[None, :] < hi) & (o_c[None, :] <= i * BR + o_s[:, None]), other=0.0)
        dAc = tl.load(dA + ((b * T + t0 + o_c[:, None]) * H + hh) * BT + i * BR + o_s[None, :],
                      mask=(t0 + o_c[:, None] < T) & (o_c[:, None] >= lo) & (o_c[:, None] >= i * BR + o_s[None, :]),
                      other=0.0)
        acc_q = tl.dot(dAr.to(dt), kg, input_precision=PREC) * tl.exp(tl.where(rmask, gi - ref, float("-inf")))
        acc_k = tl.dot(tl.trans(dAc.to(dt)), qg, input_precision=PREC) * tl.exp(tl.where(rmask, ref2 - gi, float("-inf")))
        if SPLIT:
            if split:  # diagonal tile, exact
                dAii = tl.load(dA + ((b * T + o_t[:, None]) * H + hh) * BT + i * BR + o_s[None, :], mask=rmask,
                               other=0.0)
                e = _decay3(gi, gi, ti, T, BR) * dAii[:, :, None]
                acc_q += tl.sum(e * ki.to(tl.float32)[None, :, :], 1)
                acc_k += tl.sum(e * qi.to(tl.float32)[:, None, :], 0)
        m = rmask & mk[None, :]
        off = ((b * T + o_t[:, None]) * H + hh) * K + o_k[None, :]
        if SELF:  # q is k: one gradient; ``dqi`` holds other parts of dk that carry no dG here
            dg = tl.load(dG + off, mask=m, other=0.0) + ki.to(tl.float32) * (acc_q - acc_k)
            tl.store(dG + off, dg, mask=m)
            acc_k += acc_q + tl.load(dqi + off, mask=m, other=0.0)
            tl.store(dk + off, acc_k.to(dk.dtype.element_ty), mask=m)
        else:
            acc_q += tl.load(dqi + off, mask=m, other=0.0)
            acc_k += tl.load(dki + off, mask=m, other=0.0)
            dg = tl.load(dG + off, mask=m, other=0.0) + qi.to(tl.float32) * acc_q - ki.to(tl.float32) * acc_k
            tl.store(dG + off, dg, mask=m)
            tl.store(dq + off, acc_q.to(dq.dtype.element_ty), mask=m)
            tl.store(dk + off, acc_k.to(dk.dtype.element_ty), mask=m)


def fwd_intra(q, k, G, C, prec, with_keys=False, chunks: Chunks | None = None, dtype=torch.float32,
              scaled=False, scaled_q=True):
    """The intra-chunk matrix P as [B, T, H, C] (row t of chunk n holds P[t − n₀, :], n₀ the chunk's first
    token; entries past the diagonal are not written), summed in fp32 and stored in ``dtype``. ``with_keys``:
    (P, the key-key matrix fwd_intra(k, k), always fp32: the delta rule's triangular system) from one pass
    (KDA needs both). ``chunks``: the call's ``_varlen.Chunks``. ``scaled``: returns (P or (P, key-key),
    Qg, Kh), Qg = q ⊙ e^G (None unless ``scaled_q``) and Kh = k ⊙ e^{G_last − G} (G_last: G at the chunk's last
    row) in q's dtype."""
    B, T, H, K = k.shape
    chunks = chunks or Chunks(cdiv(T, C), B, False)
    ch = chunks.args(k)[0]
    A = torch.empty(B, T, H, C, device=q.device, dtype=dtype)
    A2 = torch.empty(B, T, H, C, device=q.device, dtype=torch.float32) if with_keys else None
    Qg = torch.empty_like(q) if scaled and scaled_q else None
    Kh = torch.empty_like(k) if scaled else None
    fwd_A[(chunks.NT, B * H)](
        q, k, G, A, A2 if with_keys else A, q if Qg is None else Qg, k if Kh is None else Kh, ch, T, H, K,
        BT=C, BC=BC, BK=CONFIG["fwd_bk"], BKA=max(16, next_pow2(K)), LIM=float(CONFIG["span_max"]),
        PREC=prec, TWO=with_keys, DIAG_LOOP=CONFIG["diag_loop_keys" if with_keys else "diag_loop"],
        VARLEN=chunks.varlen, SCALED=scaled, QG=scaled_q, num_warps=CONFIG["fwd_warps"])
    out = (A, A2) if with_keys else A
    return (out, Qg, Kh) if scaled else out


def bwd_intra(q, k, G, dA, dqi, dki, dG, dq, dk, C, prec, self_pair=False, chunks: Chunks | None = None):
    """Add the intra-chunk parts to the inter-chunk dq, dk (fp32 dqi, dki); write dq, dk; dG += q⊙dq − k⊙dk.

    ``self_pair`` (q is k, dki and dq unused): dk = dqi + both intra parts, dG += k⊙(row part − column part)."""
    B, T, H, K = k.shape
    chunks = chunks or Chunks(cdiv(T, C), B, False)
    bwd_intra_kernel[(cdiv(K, CONFIG["bwd_bk"]), chunks.NT, B * H)](
        q, k, G, dA, dqi, dki, dG, dq, dk, chunks.args(k)[0], T, H, K, BT=C, BC=BC, BK=CONFIG["bwd_bk"],
        LIM=float(CONFIG["span_max"]), PREC=prec, SELF=self_pair, VARLEN=chunks.varlen, num_warps=CONFIG["bwd_warps"])
