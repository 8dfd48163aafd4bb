"""Per-key gates (GLA): the intra-chunk matrix and its backward in 16×16 sub-tiles.

``P_ru = Σ_d q_rd k_ud e^{G_rd − G_ud}`` (u ≤ r) cannot be one matmul: the decay differs
per key dim, and splitting it as ``(q e^{G})(k e^{−G})ᵀ`` overflows once a chunk's gates
sum below about −88. So the chunk is cut into sub-tiles of ``BC`` rows:

* off-diagonal tile (rows block i > columns block j): split the exponent at a reference
  ``ref = G`` at the last row before block i, which lies between every u in block j and
  every r in block i, so both ``e^{G_r − ref}`` and ``e^{ref − G_u}`` are ≤ 1:
  ``P_ij = (q_i ⊙ e^{G_i − ref}) (k_j ⊙ e^{ref − G_j})ᵀ`` — a tensor-core matmul;
* diagonal tile: the exact 3-D product ``Σ_d q_rd k_ud e^{G_rd − G_ud}``, masked before exp.

The backward applies the same split to ``dq_r = Σ_u dA_ru k_u e^{G_r − G_u}`` and
``dk_u = Σ_r dA_ru q_r e^{G_r − G_u}`` (references: the last row before block i for dq,
the last row of block i for dk), then adds the inter-chunk parts and ∂L/∂G = q⊙dq − k⊙dk.

The delta rule reuses both with q = k: ``fwd_intra(k, k, G)`` gives the (unmasked-diagonal)
key-key matrix of its triangular system, and ``bwd_intra(..., self_pair=True)`` its
backward, dk = extra + Σ_u dA_tu k_u e^{G_t−G_u} + Σ_r dA_rt k_r e^{G_r−G_t}.
"""
import torch
import triton
import triton.language as tl

from ._varlen import Chunks, empty, span

BC = 16  # sub-tile rows
# key-dim tile of the sub-tile products (3-D on the diagonal) and warps, forward / backward;
# chosen on an H100 (benchmarks/triton_check.py gla_sweep: T=8K bf16 fwd+bwd 7.5 ms at bk=32,
# 4 warps → about 5.8 ms); benchmarks may edit this table.
# diag_loop / diag_loop_keys: the diagonal tiles column by column instead of as a 3-D product, for the
# intra matrix alone (GLA) / with the key-key matrix (KDA). On an H200 (B=16, T=2K) the loop ran GLA's
# forward 1.10x slower and KDA's 0.84x faster (benchmarks/results/2026-11-25-h200-kernel-tune.jsonl).
CONFIG = {"fwd_bk": 16, "fwd_warps": 2, "bwd_bk": 16, "bwd_warps": 1, "fwd_rows": True,
          "diag_loop": False, "diag_loop_keys": True}


@triton.jit
def _rows(x, G, b, hh, t, i_k, T, H, K, BC: tl.constexpr, BK: tl.constexpr):
    """Rows t..t+BC of x and of G at key tile i_k (zeros past T or K) and the row mask."""
    o_t = t + tl.arange(0, BC)
    o_k = i_k * BK + tl.arange(0, BK)
    m = (o_t[:, None] < T) & (o_k[None, :] < K)
    off = ((b * T + o_t[:, None]) * H + hh) * K + o_k[None, :]
    return tl.load(x + off, mask=m, other=0.0), tl.load(G + off, mask=m, other=0.0), o_t[:, None] < T


@triton.jit
def _grow(G, b, hh, t, i_k, T, H, K, BK: tl.constexpr):
    o_k = i_k * BK + tl.arange(0, BK)
    return tl.load(G + ((b * T + t) * H + hh) * K + o_k, mask=o_k < K, other=0.0)


@triton.jit
def _decay3(g_r, g_u, t, T, BC: tl.constexpr):
    """e^{G_r − G_u} for u ≤ r < T inside the diagonal tile starting at t, [BC, BC, BK], else 0."""
    o = tl.arange(0, BC)
    causal = ((o[:, None] >= o[None, :]) & (t + o[:, None] < T))[:, :, None]
    return tl.exp(tl.where(causal, g_r[:, None, :] - g_u[None, :, :], float("-inf")))


@triton.jit
def fwd_A(q, k, G, A, CH, T, H, K: tl.constexpr, BT: tl.constexpr, BC: tl.constexpr, BK: tl.constexpr,
          PREC: tl.constexpr, VARLEN: tl.constexpr):
    i_ij, n, i_bh = tl.program_id(0), tl.program_id(1), tl.program_id(2)
    NC: tl.constexpr = BT // BC
    i, j = i_ij // NC, i_ij % NC
    b, hh = i_bh // H, i_bh % H
    t0, T = span(CH, n, T, BT, VARLEN)  # with documents: T is the end of this chunk's document
    if empty(t0, T):  # a chunk slot past the last document's chunks
        return
    ti, tj = t0 + i * BC, t0 + j * BC
    if (i >= j) & (ti < T):
        acc = tl.zeros([BC, BC], dtype=tl.float32)
        if i > j:
            for i_k in range(tl.cdiv(K, BK)):
                qi, gi, mi = _rows(q, G, b, hh, ti, i_k, T, H, K, BC, BK)
                kj, gj, _ = _rows(k, G, b, hh, tj, i_k, T, H, K, BC, BK)
                ref = _grow(G, b, hh, ti - 1, i_k, T, H, K, BK)[None, :]
                qg = tl.where(mi, qi * tl.exp(gi - ref), 0.0).to(q.dtype.element_ty)
                kg = (kj * tl.exp(ref - gj)).to(k.dtype.element_ty)
                acc += tl.dot(qg, tl.trans(kg), input_precision=PREC)
        else:
            for i_k in range(tl.cdiv(K, BK)):
                qi, gi, _ = _rows(q, G, b, hh, ti, i_k, T, H, K, BC, BK)
                ki, _, _ = _rows(k, G, b, hh, ti, i_k, T, H, K, BC, BK)
                e = _decay3(gi, gi, ti, T, BC)
                acc += tl.sum(qi.to(tl.float32)[:, None, :] * ki.to(tl.float32)[None, :, :] * e, 2)
        o_t = ti + tl.arange(0, BC)
        o_c = j * BC + tl.arange(0, BC)
        tl.store(A + ((b * T + o_t[:, None]) * H + hh) * BT + o_c[None, :], acc, mask=o_t[:, None] < T)


@triton.jit
def fwd_A_rows(q, k, G, A, A2, CH, T, H, K: tl.constexpr, BT: tl.constexpr, BC: tl.constexpr, BK: tl.constexpr,
               PREC: tl.constexpr, TWO: tl.constexpr, DIAG_LOOP: tl.constexpr, VARLEN: tl.constexpr):
    """Row block i of the chunk's intra matrix in one program: every off-diagonal tile at once as one
    [BC, BT] product, ``(q_i ⊙ e^{G_i − ref}) (k_{<i} ⊙ e^{ref − G_{<i}})ᵀ`` (ref: G at the row before
    block i; rows from block i on are masked to 0 before the exponent), and the diagonal tile's exact
    3-D product (``DIAG_LOOP``: column by column, each a [BC, BK] product reduced along the keys, the
    way fla's token-parallel kernel runs it). ``TWO``: also the key-key matrix (q → k) into A2, sharing the key side and the
    diagonal's decays (KDA needs both). Columns past the diagonal tile are not written."""
    i, n, i_bh = tl.program_id(0), tl.program_id(1), tl.program_id(2)
    b, hh = i_bh // H, i_bh % H
    t0, T = span(CH, n, T, BT, VARLEN)
    if empty(t0, T):  # a chunk slot past the last document's chunks
        return
    ti = t0 + i * BC
    if ti < T:
        dt = q.dtype.element_ty
        o_c = tl.arange(0, BT)
        o_s = tl.arange(0, BC)
        before = (o_c < i * BC) & (t0 + o_c < T)  # the chunk's rows before block i
        acc = tl.zeros([BC, BT], dtype=tl.float32)
        acc2 = tl.zeros([BC, BT], dtype=tl.float32)
        accd = tl.zeros([BC, BC], dtype=tl.float32)
        accd2 = tl.zeros([BC, BC], dtype=tl.float32)
        for i_k in range(tl.cdiv(K, BK)):
            o_k = i_k * BK + tl.arange(0, BK)
            qi, gi, mi = _rows(q, G, b, hh, ti, i_k, T, H, K, BC, BK)
            ki, _, _ = _rows(k, G, b, hh, ti, i_k, T, H, K, BC, BK)
            if i > 0:
                ref = _grow(G, b, hh, ti - 1, i_k, T, H, K, BK)[None, :]
                mc = before[:, None] & (o_k[None, :] < K)
                off = ((b * T + t0 + o_c[:, None]) * H + hh) * K + o_k[None, :]
                kc = tl.load(k + off, mask=mc, other=0.0)
                gc = tl.load(G + off, mask=mc, other=0.0)
                kg = (kc * tl.exp(tl.where(mc, ref - gc, float("-inf")))).to(dt)  # [BT, BK], ≤ |k|
                qg = tl.where(mi, qi * tl.exp(gi - ref), 0.0).to(dt)
                acc += tl.dot(qg, tl.trans(kg), input_precision=PREC)
                if TWO:
                    acc2 += tl.dot(tl.where(mi, ki * tl.exp(gi - ref), 0.0).to(dt), tl.trans(kg), input_precision=PREC)
            if DIAG_LOOP:  # column by column: [BC, BK] products reduced along the key dim
                qf = qi.to(tl.float32)
                kif = ki.to(tl.float32)
                for u in range(BC):
                    ru = ((b * T + ti + u) * H + hh) * K + o_k
                    mu = (o_k < K) & (ti + u < T)
                    ku = tl.load(k + ru, mask=mu, other=0.0).to(tl.float32)
                    gu = tl.load(G + ru, mask=mu, other=0.0)
                    e = tl.exp(tl.where(mi & (o_s[:, None] >= u), gi - gu[None, :], float("-inf"))) * ku[None, :]
                    accd += tl.where(o_s[None, :] == u, tl.sum(qf * e, 1)[:, None], 0.0)
                    if TWO:
                        accd2 += tl.where(o_s[None, :] == u, tl.sum(kif * e, 1)[:, None], 0.0)
            else:  # the exact 3-D product
                e = _decay3(gi, gi, ti, T, BC)
                kf = ki.to(tl.float32)[None, :, :] * e
                accd += tl.sum(qi.to(tl.float32)[:, None, :] * kf, 2)
                if TWO:
                    accd2 += tl.sum(ki.to(tl.float32)[:, None, :] * kf, 2)
        o_t = ti + o_s
        rows = ((b * T + o_t[:, None]) * H + hh) * BT
        mr = o_t[:, None] < T
        tl.store(A + rows + o_c[None, :], acc, mask=mr & (o_c[None, :] < i * BC))
        tl.store(A + rows + i * BC + o_s[None, :], accd, mask=mr)
        if TWO:
            tl.store(A2 + rows + o_c[None, :], acc2, mask=mr & (o_c[None, :] < i * BC))
            tl.store(A2 + rows + i * BC + o_s[None, :], accd2, mask=mr)


@triton.jit
def bwd_intra_kernel(q, k, G, dA, dqi, dki, dG, dq, dk, CH, T, H, K: tl.constexpr, BT: tl.constexpr,
                     BC: tl.constexpr, BK: tl.constexpr, PREC: tl.constexpr, SELF: tl.constexpr, VARLEN: tl.constexpr):
    i_k, i_ni, i_bh = tl.program_id(0), tl.program_id(1), tl.program_id(2)
    NC: tl.constexpr = BT // BC
    n, i = i_ni // NC, i_ni % NC
    b, hh = i_bh // H, i_bh % H
    t0, T = span(CH, n, T, BT, VARLEN)
    if empty(t0, T):  # a chunk slot past the last document's chunks
        return
    ti = t0 + i * BC
    if ti < T:
        o_c = tl.arange(0, BC)
        o_t = ti + o_c
        rmask = o_t[:, None] < T
        dt = q.dtype.element_ty
        qi, gi, _ = _rows(q, G, b, hh, ti, i_k, T, H, K, BC, BK)
        ki, _, _ = _rows(k, G, b, hh, ti, i_k, T, H, K, BC, BK)
        acc_q = tl.zeros([BC, BK], dtype=tl.float32)
        acc_k = tl.zeros([BC, BK], dtype=tl.float32)
        if i > 0:
            ref = _grow(G, b, hh, ti - 1, i_k, T, H, K, BK)[None, :]
            for j in range(0, i):
                kj, gj, _ = _rows(k, G, b, hh, t0 + j * BC, i_k, T, H, K, BC, BK)
                dAij = tl.load(dA + ((b * T + o_t[:, None]) * H + hh) * BT + j * BC + o_c[None, :], mask=rmask, other=0.0)
                acc_q += tl.dot(dAij.to(dt), (kj * tl.exp(ref - gj)).to(dt), input_precision=PREC)
            acc_q *= tl.where(rmask, tl.exp(gi - ref), 0.0)
        ref2 = _grow(G, b, hh, tl.minimum(ti + BC, T) - 1, i_k, T, H, K, BK)[None, :]
        for j in range(i + 1, NC):
            tj = t0 + j * BC
            qj, gj, mj = _rows(q, G, b, hh, tj, i_k, T, H, K, BC, BK)
            o_tj = tj + o_c
            dAji = tl.load(dA + ((b * T + o_tj[:, None]) * H + hh) * BT + i * BC + o_c[None, :],
                           mask=o_tj[:, None] < T, other=0.0)
            qg = tl.where(mj, qj * tl.exp(gj - ref2), 0.0).to(dt)
            acc_k += tl.dot(tl.trans(dAji.to(dt)), qg, input_precision=PREC)
        acc_k *= tl.where(rmask, tl.exp(ref2 - gi), 0.0)
        # diagonal tile, exact
        dAii = tl.load(dA + ((b * T + o_t[:, None]) * H + hh) * BT + i * BC + o_c[None, :], mask=rmask, other=0.0)
        e = _decay3(gi, gi, ti, T, BC) * dAii[:, :, None]
        acc_q += tl.sum(e * ki.to(tl.float32)[None, :, :], 1)
        acc_k += tl.sum(e * qi.to(tl.float32)[:, None, :], 0)
        o_k = i_k * BK + tl.arange(0, BK)
        m = rmask & (o_k[None, :] < K)
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


def fwd_intra(q, k, G, C, prec, with_keys=False, chunks: Chunks | None = None):
    """The intra-chunk matrix P as [B, T, H, C] fp32 (row t of chunk n holds P[t − n₀, :], n₀ the chunk's
    first token; entries past the diagonal are not written). ``with_keys``: (P, the key-key matrix
    fwd_intra(k, k)) from one pass (KDA needs both). ``chunks``: the call's ``_varlen.Chunks``."""
    B, T, H, K = k.shape
    chunks = chunks or Chunks(triton.cdiv(T, C), B, False)
    ch = chunks.args(k)[0]
    A = torch.empty(B, T, H, C, device=q.device, dtype=torch.float32)
    A2 = torch.empty_like(A) if with_keys else None
    NC = C // BC
    if CONFIG["fwd_rows"]:
        fwd_A_rows[(NC, chunks.NT, B * H)](q, k, G, A, A2 if with_keys else A, ch, T, H, K, BT=C, BC=BC,
                                            BK=CONFIG["fwd_bk"], PREC=prec, TWO=with_keys,
                                            DIAG_LOOP=CONFIG["diag_loop_keys" if with_keys else "diag_loop"],
                                            VARLEN=chunks.varlen, num_warps=CONFIG["fwd_warps"])
        return (A, A2) if with_keys else A
    for x, out in ((q, A), (k, A2)) if with_keys else ((q, A),):
        fwd_A[(NC * NC, chunks.NT, B * H)](x, k, G, out, ch, T, H, K, BT=C, BC=BC, BK=CONFIG["fwd_bk"], PREC=prec,
                                            VARLEN=chunks.varlen, num_warps=CONFIG["fwd_warps"])
    return (A, A2) if with_keys else A


def bwd_intra(q, k, G, dA, dqi, dki, dG, dq, dk, C, prec, self_pair=False, chunks: Chunks | None = None):
    """Add the intra-chunk parts to the inter-chunk dq, dk (fp32 dqi, dki); write dq, dk; dG += q⊙dq − k⊙dk.

    ``self_pair`` (q is k, dki and dq unused): dk = dqi + both intra parts, dG += k⊙(row part − column part)."""
    B, T, H, K = k.shape
    chunks = chunks or Chunks(triton.cdiv(T, C), B, False)
    NC = C // BC
    bwd_intra_kernel[(triton.cdiv(K, CONFIG["bwd_bk"]), chunks.NT * NC, B * H)](
        q, k, G, dA, dqi, dki, dG, dq, dk, chunks.args(k)[0], T, H, K, BT=C, BC=BC, BK=CONFIG["bwd_bk"], PREC=prec,
        SELF=self_pair, VARLEN=chunks.varlen, num_warps=CONFIG["bwd_warps"])
