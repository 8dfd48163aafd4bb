"""Inter-chunk state passing, forward and backward (shared by every gate mode).

Forward: for each (batch·head, K tile, V tile) one program walks the chunks in order,
stores the state entering chunk ``n`` in ``h[n]`` and updates, in fp32,

    S ← diag(e^{G_last}) S + (k ⊙ e^{G_last − G})ᵀ v           (v → the delta rule's u)

Backward: the same walk in reverse gives ``dh[n]`` = ∂L/∂(state leaving chunk n) and
the gradient of the initial state (``scale``: the output's, folded in here),

    dS ← diag(e^{G_last}) dS + scale · (q ⊙ e^G)ᵀ dO.

``GATE``: 0 none, 1 scalar per head ([B, T, H]), 2 per key ([B, T, H, K]); ``G`` is
the chunk-local cumulative log-gate (fp32), so every exponent here is ≤ 0.

Segments (``SEGS`` > 1; not with the delta rule, whose transition is not diagonal, nor with
documents): a long sequence with few (batch·head, tile) programs splits into ``SEGS`` runs of
``SEGLEN`` chunks. A first launch (``ENDS``) walks each run from a zero state and stores its end
``E_j`` and its total log-decay ``Γ_j`` (the sum of its chunks' ``G_last``); the second walks each
run again from its entering state, folded from the runs before it (after them, in the backward),

    S_in(j) = diag(e^{Γ_{j−1}}) S_in(j−1) + E_{j−1},   S_in(0) = the initial state,

so each program walks SEGLEN chunks instead of all, at the price of reading k and v twice.

``DELTA`` (delta rule, ``_delta.py``): the values written are ``u = U − W S`` with the
state entering the chunk, computed here (and stored: the output kernel reads them), so
the K tile must cover all of K. Its backward also needs, inside the reverse walk,

    du = Pᵀ dO + (k ⊙ e^{G_last − G}) dS        (``du`` holds Pᵀ dO on entry, du on exit)
    dS ← diag(e^{G_last}) dS + (q ⊙ e^G)ᵀ dO − Wᵀ du.
"""
import triton
import triton.language as tl

from ._varlen import first


@triton.jit
def _gate_tile_T(G, b, hh, t0, i_k, T, H, K, GATE: tl.constexpr, BT: tl.constexpr, BK: tl.constexpr):
    """(G_last − G)ᵀ decay factors [BK, BT] (or [1, BT]) and e^{G_last} ([BK, 1] or scalar)."""
    last = tl.minimum(t0 + BT, T) - 1
    o_t = t0 + tl.arange(0, BT)
    if GATE == 1:
        g_last = tl.load(G + (b * T + last) * H + hh)
        g = tl.load(G + (b * T + o_t) * H + hh, mask=o_t < T, other=0.0)
        return tl.exp(g_last - g)[None, :], tl.exp(g_last)
    else:
        o_k = i_k * BK + tl.arange(0, BK)
        g_last = tl.load(G + ((b * T + last) * H + hh) * K + o_k, mask=o_k < K, other=0.0)
        g = tl.load(G + ((b * T + o_t[None, :]) * H + hh) * K + o_k[:, None],
                    mask=(o_t[None, :] < T) & (o_k[:, None] < K), other=0.0)
        return tl.exp(g_last[:, None] - g), tl.exp(g_last)[:, None]


@triton.jit
def _gate_q_T(G, b, hh, t0, i_k, T, H, K, GATE: tl.constexpr, BT: tl.constexpr, BK: tl.constexpr):
    """e^{G}ᵀ read-out factors [BK, BT] (or [1, BT]) and e^{G_last}."""
    last = tl.minimum(t0 + BT, T) - 1
    o_t = t0 + tl.arange(0, BT)
    if GATE == 1:
        g_last = tl.load(G + (b * T + last) * H + hh)
        g = tl.load(G + (b * T + o_t) * H + hh, mask=o_t < T, other=0.0)
        return tl.exp(g)[None, :], tl.exp(g_last)
    else:
        o_k = i_k * BK + tl.arange(0, BK)
        g_last = tl.load(G + ((b * T + last) * H + hh) * K + o_k, mask=o_k < K, other=0.0)
        g = tl.load(G + ((b * T + o_t[None, :]) * H + hh) * K + o_k[:, None],
                    mask=(o_t[None, :] < T) & (o_k[:, None] < K), other=0.0)
        return tl.exp(g), tl.exp(g_last)[:, None]


@triton.jit
def _program(CU, CO, T, H, NT, SEGS: tl.constexpr, SEGLEN, VARLEN: tl.constexpr):
    """What a state program walks (grid dim 2: sequence·heads · SEGS): its sequence·head ``i_s``, segment
    ``j``, the chunks ``[lo, hi)`` of that segment, and ``first``'s batch row, head, first chunk and the
    sequence's token bounds."""
    i_p = tl.program_id(2)
    i_s = i_p // SEGS if SEGS > 1 else i_p
    j = i_p % SEGS if SEGS > 1 else 0
    b, hh, c0, c1, bos, eos = first(CU, CO, i_s, H, T, NT, VARLEN)
    if SEGS > 1:
        lo = c0 + j * SEGLEN
        hi = tl.minimum(lo + SEGLEN, c1)
    else:
        lo = c0
        hi = c1
    return i_s, j, lo, hi, b, hh, c0, bos, eos


@triton.jit
def _enter_chunk(h, S, gam, G, b, hh, n, t0, i_k, i_v, T, H, K, V, NT, GATE: tl.constexpr, ENDS: tl.constexpr,
                 BT: tl.constexpr, BK: tl.constexpr, BV: tl.constexpr):
    """Before chunk ``n``'s update: store the state (or gradient) entering it in ``h``, or, walking a segment's
    end (``ENDS``), add the chunk's log-decay to ``gam`` instead. Returns ``gam``."""
    if ENDS:
        if GATE != 0:
            gam += _log_decay(G, b, hh, t0, i_k, T, H, K, GATE, BT, BK)
    else:
        p_h = tl.make_block_ptr(h + ((b * H + hh) * NT + n) * K * V, (K, V), (V, 1), (i_k * BK, i_v * BV),
                                (BK, BV), (1, 0))
        tl.store(p_h, S.to(h.dtype.element_ty), boundary_check=(0, 1))
    return gam


@triton.jit
def _log_decay(G, b, hh, t0, i_k, T, H, K, GATE: tl.constexpr, BT: tl.constexpr, BK: tl.constexpr):
    """The chunk's total log-decay G_last ([BK] per key, or a scalar)."""
    last = tl.minimum(t0 + BT, T) - 1
    if GATE == 1:
        return tl.load(G + (b * T + last) * H + hh)
    else:
        o_k = i_k * BK + tl.arange(0, BK)
        return tl.load(G + ((b * T + last) * H + hh) * K + o_k, mask=o_k < K, other=0.0)


@triton.jit
def _store_end(E, GAM, S, gam, i_p, i_k, i_v, K, V, GATE: tl.constexpr, BK: tl.constexpr, BV: tl.constexpr):
    """A segment's end state tile (from zero) and, once per K tile, its total log-decay."""
    p_e = tl.make_block_ptr(E + i_p * K * V, (K, V), (V, 1), (i_k * BK, i_v * BV), (BK, BV), (1, 0))
    tl.store(p_e, S, boundary_check=(0, 1))
    if GATE != 0:
        if i_v == 0:
            o_k = i_k * BK + tl.arange(0, BK)
            tl.store(GAM + i_p * K + o_k, gam, mask=o_k < K)


@triton.jit
def _fold_end(E, GAM, S, i_p, i_k, i_v, K, V, GATE: tl.constexpr, BK: tl.constexpr, BV: tl.constexpr):
    """diag(e^{Γ}) S + E of segment program ``i_p`` (its stored end and log-decay)."""
    p_e = tl.make_block_ptr(E + i_p * K * V, (K, V), (V, 1), (i_k * BK, i_v * BV), (BK, BV), (1, 0))
    if GATE != 0:
        o_k = i_k * BK + tl.arange(0, BK)
        S *= tl.exp(tl.load(GAM + i_p * K + o_k, mask=o_k < K, other=0.0))[:, None]
    return S + tl.load(p_e, boundary_check=(0, 1))


@triton.jit
def fwd_states(k, v, G, h, s0, sT, W, u, CU, CO, T, H, K: tl.constexpr, V: tl.constexpr, NT,
               GATE: tl.constexpr, HAS_S0: tl.constexpr, STORE_ST: tl.constexpr, DELTA: tl.constexpr,
               BT: tl.constexpr, BK: tl.constexpr, BV: tl.constexpr, PREC: tl.constexpr, VARLEN: tl.constexpr,
               E=None, GAM=None, SEGLEN=1, SEGS: tl.constexpr = 1, ENDS: tl.constexpr = False,
               KH: tl.constexpr = False):
    """``KH`` (per-key gates): k holds k ⊙ e^{G_last − G} already (``_gla.fwd_A``'s Kh, in v's dtype), so only
    the state's decay e^{G_last} is read from G."""
    i_k, i_v = tl.program_id(0), tl.program_id(1)
    i_s, j, lo, hi, b, hh, c0, bos, eos = _program(CU, CO, T, H, NT, SEGS, SEGLEN, VARLEN)
    S = tl.zeros([BK, BV], dtype=tl.float32)
    gam = tl.zeros([BK], dtype=tl.float32)  # ENDS: the segment's log-decay (all entries alike for a scalar gate)
    p_s = tl.make_block_ptr(s0 + i_s * K * V, (K, V), (V, 1), (i_k * BK, i_v * BV), (BK, BV), (1, 0))
    if HAS_S0 and not ENDS:
        S += tl.load(p_s, boundary_check=(0, 1)).to(tl.float32)
    if SEGS > 1 and not ENDS:  # the state entering this segment: the segments before it, folded in order
        for jj in range(0, j):
            S = _fold_end(E, GAM, S, i_s * SEGS + jj, i_k, i_v, K, V, GATE, BK, BV)
    for n in range(lo, hi):
        t0 = bos + (n - c0) * BT
        Te = eos
        gam = _enter_chunk(h, S, gam, G, b, hh, n, t0, i_k, i_v, Te, H, K, V, NT, GATE, ENDS, BT, BK, BV)
        p_kT = tl.make_block_ptr(k + (b * T * H + hh) * K, (K, Te), (1, H * K), (i_k * BK, t0), (BK, BT), (0, 1))
        p_v = tl.make_block_ptr(v + (b * T * H + hh) * V, (Te, V), (H * V, 1), (t0, i_v * BV), (BT, BV), (1, 0))
        kT = tl.load(p_kT, boundary_check=(0, 1))
        vv = tl.load(p_v, boundary_check=(0, 1))
        if DELTA:  # v holds U; u = U − W S (one K tile spans K)
            p_w = tl.make_block_ptr(W + (b * T * H + hh) * K, (Te, K), (H * K, 1), (t0, 0), (BT, BK), (1, 0))
            ww = tl.load(p_w, boundary_check=(0, 1))
            vv = (vv.to(tl.float32) - tl.dot(ww, S.to(ww.dtype), input_precision=PREC)).to(vv.dtype)
            p_u = tl.make_block_ptr(u + (b * T * H + hh) * V, (Te, V), (H * V, 1), (t0, i_v * BV), (BT, BV), (1, 0))
            tl.store(p_u, vv, boundary_check=(0, 1))
        if KH:
            S *= tl.exp(_log_decay(G, b, hh, t0, i_k, Te, H, K, GATE, BT, BK))[:, None]
        elif GATE != 0:
            w, d_last = _gate_tile_T(G, b, hh, t0, i_k, Te, H, K, GATE, BT, BK)
            S *= d_last
            if GATE == 1:  # (k ⊙ w)ᵀ v = kᵀ (w ⊙ v) for a per-row w: scale v's rows, keep kᵀ as loaded
                vv = (vv * tl.reshape(w, (BT, 1))).to(vv.dtype)
            else:
                kT = (kT * w).to(vv.dtype)
        S += tl.dot(kT, vv, input_precision=PREC)
    if ENDS:
        _store_end(E, GAM, S, gam, i_s * SEGS + j, i_k, i_v, K, V, GATE, BK, BV)
    elif STORE_ST:
        if j == SEGS - 1:
            p_st = tl.make_block_ptr(sT + i_s * K * V, (K, V), (V, 1), (i_k * BK, i_v * BV), (BK, BV), (1, 0))
            tl.store(p_st, S, boundary_check=(0, 1))


@triton.jit
def bwd_states(q, do, G, dh, dsT, ds0, k, W, du, CU, CO, T, H, K: tl.constexpr, V: tl.constexpr, NT, scale,
               GATE: tl.constexpr, HAS_DST: tl.constexpr, STORE_DS0: tl.constexpr, DELTA: tl.constexpr,
               BT: tl.constexpr, BK: tl.constexpr, BV: tl.constexpr, PREC: tl.constexpr, VARLEN: tl.constexpr,
               E=None, GAM=None, SEGLEN=1, SEGS: tl.constexpr = 1, ENDS: tl.constexpr = False):
    i_k, i_v = tl.program_id(0), tl.program_id(1)
    i_s, j, lo, hi, b, hh, c0, bos, eos = _program(CU, CO, T, H, NT, SEGS, SEGLEN, VARLEN)
    dS = tl.zeros([BK, BV], dtype=tl.float32)
    gam = tl.zeros([BK], dtype=tl.float32)  # ENDS: the segment's log-decay (all entries alike for a scalar gate)
    if HAS_DST and not ENDS:
        p_s = tl.make_block_ptr(dsT + i_s * K * V, (K, V), (V, 1), (i_k * BK, i_v * BV), (BK, BV), (1, 0))
        dS += tl.load(p_s, boundary_check=(0, 1)).to(tl.float32)
    if SEGS > 1 and not ENDS:  # the gradient leaving this segment: the segments after it, folded from the end
        for m in range(0, SEGS - 1 - j):
            dS = _fold_end(E, GAM, dS, i_s * SEGS + SEGS - 1 - m, i_k, i_v, K, V, GATE, BK, BV)
    for m in range(hi - lo):
        n = hi - 1 - m
        t0 = bos + (n - c0) * BT
        Te = eos
        gam = _enter_chunk(dh, dS, gam, G, b, hh, n, t0, i_k, i_v, Te, H, K, V, NT, GATE, ENDS, BT, BK, BV)
        p_qT = tl.make_block_ptr(q + (b * T * H + hh) * K, (K, Te), (1, H * K), (i_k * BK, t0), (BK, BT), (0, 1))
        p_do = tl.make_block_ptr(do + (b * T * H + hh) * V, (Te, V), (H * V, 1), (t0, i_v * BV), (BT, BV), (1, 0))
        qT = tl.load(p_qT, boundary_check=(0, 1))
        dO = tl.load(p_do, boundary_check=(0, 1))
        if DELTA:  # du = Pᵀ dO + (k ⊙ e^{G_last − G}) dS, with dS still the gradient leaving the chunk
            p_kT = tl.make_block_ptr(k + (b * T * H + hh) * K, (K, Te), (1, H * K), (0, t0), (BK, BT), (0, 1))
            kT = tl.load(p_kT, boundary_check=(0, 1))
            if GATE != 0:
                wk, _ = _gate_tile_T(G, b, hh, t0, i_k, Te, H, K, GATE, BT, BK)
                kT = (kT * wk).to(dO.dtype)
            p_du = tl.make_block_ptr(du + (b * T * H + hh) * V, (Te, V), (H * V, 1), (t0, i_v * BV), (BT, BV), (1, 0))
            d_u = tl.load(p_du, boundary_check=(0, 1)) + tl.dot(tl.trans(kT), dS.to(dO.dtype), input_precision=PREC)
            tl.store(p_du, d_u.to(du.dtype.element_ty), boundary_check=(0, 1))
        if GATE != 0:
            w, d_last = _gate_q_T(G, b, hh, t0, i_k, Te, H, K, GATE, BT, BK)
            dS *= d_last
            qT = (qT * w).to(dO.dtype)
        dS += tl.dot(qT, dO, input_precision=PREC) * scale
        if DELTA:
            p_wT = tl.make_block_ptr(W + (b * T * H + hh) * K, (K, Te), (1, H * K), (0, t0), (BK, BT), (0, 1))
            dS -= tl.dot(tl.load(p_wT, boundary_check=(0, 1)), d_u.to(dO.dtype), input_precision=PREC)
    if ENDS:
        _store_end(E, GAM, dS, gam, i_s * SEGS + j, i_k, i_v, K, V, GATE, BK, BV)
    elif STORE_DS0:
        if j == 0:
            p_s0 = tl.make_block_ptr(ds0 + i_s * K * V, (K, V), (V, 1), (i_k * BK, i_v * BV), (BK, BV), (1, 0))
            tl.store(p_s0, dS, boundary_check=(0, 1))
