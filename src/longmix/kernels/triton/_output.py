"""Per-chunk output and its backward for the additive recurrences (``beta=None``).

For chunk ``n`` with entering state ``h[n]`` and chunk-local cumulative gate ``G``:

    o  = (q ⊙ e^G) h[n] + P v,          P_ru = Σ_d q_rd k_ud e^{G_rd − G_ud}   (u ≤ r)
    dq = (dO h[n]ᵀ) ⊙ e^G + ∂P-part,    dk = (v dh[n]ᵀ) ⊙ e^{G_last − G} + ∂P-part
    dv = Pᵀ dO + (k ⊙ e^{G_last − G}) dh[n]

With no gate or a scalar gate (GATE 0/1) P is built here from q kᵀ and the decay
matrix e^{G_r − G_u}; with a per-key gate (GATE 2) it comes from ``_gla.py`` (stored
in ``A``) and the intra-chunk part of dq, dk is added there from ``dA = dO vᵀ``.

The log-gate gradient uses, for each position r of a chunk (per key dim for GATE 2),

    ∂L/∂G_r = q_r·dq_r − k_r·dk_r  (+ at the chunk's last row: Σ_u k_u·dk^inter_u + e^{G_last} ⟨h[n], dh[n]⟩)

and ∂L/∂g is its reverse cumulative sum inside the chunk (done by the caller).

``VARLEN`` (packed documents): chunk ``n`` starts at the map's token and T becomes the end of
its document (``_varlen.span``); B is 1, so the batch offsets vanish.
"""
import triton
import triton.language as tl

from . import _state
from ._cumsum import pair_decay
from ._varlen import empty, span


@triton.jit
def _row_gate(G, b, hh, t0, T, H, BT: tl.constexpr):
    o_t = t0 + tl.arange(0, BT)
    last = tl.minimum(t0 + BT, T) - 1
    g_last = tl.load(G + (b * T + last) * H + hh)
    g = tl.load(G + (b * T + o_t) * H + hh, mask=o_t < T, other=0.0)
    return tl.where(o_t < T, g, g_last), g_last  # padded rows continue the last cumsum: decays stay ≤ 1


@triton.jit
def _key_gate(G, b, hh, t0, i_k, T, H, K, BT: tl.constexpr, BK: tl.constexpr):
    o_t = t0 + tl.arange(0, BT)
    o_k = i_k * BK + tl.arange(0, BK)
    last = tl.minimum(t0 + BT, T) - 1
    g = tl.load(G + ((b * T + o_t[:, None]) * H + hh) * K + o_k[None, :],
                mask=(o_t[:, None] < T) & (o_k[None, :] < K), other=0.0)
    g_last = tl.load(G + ((b * T + last) * H + hh) * K + o_k, mask=o_k < K, other=0.0)
    return g, g_last


@triton.jit
def fwd_output(q, k, v, G, h, A, o, CH, T, H, K: tl.constexpr, V: tl.constexpr, NT, scale,
               GATE: tl.constexpr, BT: tl.constexpr, BK: tl.constexpr, BV: tl.constexpr, PREC: tl.constexpr,
               VARLEN: tl.constexpr, QG: tl.constexpr = False):
    """``QG`` (per-key gates): q holds q ⊙ e^G already (``_gla.fwd_A``'s Qg, in h's dtype); G is not read."""
    i_v, n, i_bh = tl.program_id(0), tl.program_id(1), tl.program_id(2)
    b, hh = i_bh // H, i_bh % H
    t0, T = span(CH, n, T, BT, VARLEN)  # with documents: T is the end of this chunk's document
    if empty(t0, T):  # a chunk slot past the last document's chunks
        return
    o_r = tl.arange(0, BT)
    causal = o_r[:, None] >= o_r[None, :]
    acc = tl.zeros([BT, BV], dtype=tl.float32)
    P = tl.zeros([BT, BT], dtype=tl.float32)
    for i_k in range(tl.cdiv(K, BK)):
        p_q = tl.make_block_ptr(q + (b * T * H + hh) * K, (T, K), (H * K, 1), (t0, i_k * BK), (BT, BK), (1, 0))
        p_h = tl.make_block_ptr(h + (i_bh * NT + n) * K * V, (K, V), (V, 1), (i_k * BK, i_v * BV), (BK, BV), (1, 0))
        qq = tl.load(p_q, boundary_check=(0, 1))
        hn = tl.load(p_h, boundary_check=(0, 1))
        if GATE == 2:
            if not QG:
                g, _ = _key_gate(G, b, hh, t0, i_k, T, H, K, BT, BK)
                qq = (qq * tl.exp(g)).to(hn.dtype)
            acc += tl.dot(qq, hn, input_precision=PREC)
        else:
            acc += tl.dot(qq, hn, input_precision=PREC)
            p_kT = tl.make_block_ptr(k + (b * T * H + hh) * K, (K, T), (1, H * K), (i_k * BK, t0), (BK, BT), (0, 1))
            P += tl.dot(qq, tl.load(p_kT, boundary_check=(0, 1)), input_precision=PREC)
    if GATE == 2:
        p_A = tl.make_block_ptr(A + (b * T * H + hh) * BT, (T, BT), (H * BT, 1), (t0, 0), (BT, BT), (1, 0))
        P = tl.load(p_A, boundary_check=(0, 1))
    if GATE == 1:
        g, _ = _row_gate(G, b, hh, t0, T, H, BT)
        acc *= tl.exp(g)[:, None]
        P *= pair_decay(g, g, causal)
    P = tl.where(causal, P, 0.0)
    p_v = tl.make_block_ptr(v + (b * T * H + hh) * V, (T, V), (H * V, 1), (t0, i_v * BV), (BT, BV), (1, 0))
    vv = tl.load(p_v, boundary_check=(0, 1))
    acc += tl.dot(P.to(vv.dtype), vv, input_precision=PREC)
    p_o = tl.make_block_ptr(o + (b * T * H + hh) * V, (T, V), (H * V, 1), (t0, i_v * BV), (BT, BV), (1, 0))
    tl.store(p_o, (acc * scale).to(o.dtype.element_ty), boundary_check=(0, 1))  # o is linear in q: scale folded here


@triton.jit
def fwd_fused(q, k, v, G, W, A, s0, o, sT, T, H, K: tl.constexpr, V: tl.constexpr, scale, HAS_S0: tl.constexpr,
              GATE: tl.constexpr, DELTA: tl.constexpr, BT: tl.constexpr, BK: tl.constexpr, BV: tl.constexpr,
              PREC: tl.constexpr, KHAT: tl.constexpr, SPAN: tl.constexpr, KSCALE: tl.constexpr,
              E=None, GAM=None, SEGLEN=1, SEGS: tl.constexpr = 1, h=None, NT=1, STORE_H: tl.constexpr = False):
    """The forward without gradients, all of K in one tile: one program per (V tile, batch·head) walks
    the chunks in order with its [K, BV] slice of the state in registers,

        o = (q ⊙ e^G) S + P v,   then   S ← diag(e^{G_last}) S + (k ⊙ e^{G_last − G})ᵀ v,

    so no per-chunk state is written or read back (fwd_states + fwd_output store and reload h).
    ``GATE`` 0 (none), 1 (scalar) or 2 (per key; G the chunk-local cumulative log-gate). Per-key gates
    read the intra-chunk matrix P from ``A`` (``_gla.fwd_intra``, formed in parallel beforehand); the
    others form it here from q kᵀ. ``DELTA``: v holds U, and
    each chunk's values are first ``u = U − W S`` (the state pass's, not stored). S enters the products
    in the inputs' dtype, as the stored h does on the two-kernel path, and u too, as the stored u does.

    ``KHAT`` (scalar gates with the delta rule): k holds ``k ⊙ e^{G_last − G}`` (``_delta.fwd_prep4``), so the
    state update takes u unscaled and, in each chunk whose gates sum to at least −SPAN, the intra-chunk
    product only its rows' ``e^{G − G_last}`` (below e^SPAN), not the per-element ``e^{G_i − G_j}``, whose
    [BT, BT] exponentials took a third of Gated DeltaNet's walk (``benchmarks/ablate_walk.py``). A chunk past
    that (a strong decay, a reset: its early keys' decay may underflow) reads its intra-chunk matrix from A
    (``fwd_strong_intra``, formed beforehand in parallel for those chunks only). The choice is a select, not
    a branch: a branch in the loop is more than Triton 3.6's pipeliner takes, and the walks as two kernels
    ran one after the other. ``KSCALE`` (with ``KHAT``): k holds the raw keys, and the walk decays them itself
    (the prep then stores no Kh).

    Segments (``SEGS`` > 1; a diagonal transition, so not the delta rule): a long sequence with few (batch·head,
    V tile) programs splits into ``SEGS`` runs of ``SEGLEN`` chunks, walked in parallel (grid (V tiles, B·H ·
    SEGS)). Each run's end from a zero state ``E_j`` and total log-decay ``Γ_j`` come first from
    ``_state.fwd_states``'s ``ENDS`` launch; a run's entering state is folded from the runs before it, as the
    segmented state pass does (``_state``).

    ``STORE_H`` (the training forward, no gate or a scalar one, without the delta rule): the walk also stores the
    state entering each chunk in ``h`` [B·H, NT, K, V] (in h's dtype, as ``_state.fwd_states`` does) for the
    backward, in place of the state pass and the output kernel that reads h back."""
    i_v, i_p = tl.program_id(0), tl.program_id(1)
    i_bh = i_p // SEGS if SEGS > 1 else i_p
    b, hh = i_bh // H, i_bh % H
    S = tl.zeros([BK, BV], dtype=tl.float32)
    if HAS_S0:
        p_s = tl.make_block_ptr(s0 + i_bh * K * V, (K, V), (V, 1), (0, i_v * BV), (BK, BV), (1, 0))
        S += tl.load(p_s, boundary_check=(0, 1)).to(tl.float32)
    if SEGS > 1:
        j = i_p % SEGS
        for jj in range(0, j):
            S = _state._fold_end(E, GAM, S, i_bh * SEGS + jj, 0, i_v, K, V, GATE, BK, BV)
        t_lo = j * SEGLEN * BT
        t_hi = tl.minimum(t_lo + SEGLEN * BT, T)
    else:
        j = 0
        t_lo = 0
        t_hi = T
    S = _walk(q, k, v, G, W, A, o, S, b, hh, i_v, t_lo, t_hi, T, H, K, V, scale, GATE, DELTA, BT, BK, BV, PREC, KHAT,
              SPAN, KSCALE, h, NT, STORE_H)
    if j == SEGS - 1:
        p_st = tl.make_block_ptr(sT + i_bh * K * V, (K, V), (V, 1), (0, i_v * BV), (BK, BV), (1, 0))
        tl.store(p_st, S, boundary_check=(0, 1))


@triton.jit
def _walk(q, k, v, G, W, A, o, S, b, hh, i_v, t_lo, t_hi, T, H, K: tl.constexpr, V: tl.constexpr, scale,
          GATE: tl.constexpr, DELTA: tl.constexpr, BT: tl.constexpr, BK: tl.constexpr, BV: tl.constexpr,
          PREC: tl.constexpr, KHAT: tl.constexpr, SPAN: tl.constexpr, KSCALE: tl.constexpr, h, NT,
          STORE_H: tl.constexpr):
    """``fwd_fused``'s walk over the chunks of tokens [t_lo, t_hi) from state S; the output written (and, with
    ``STORE_H``, each entering state), the state leaving them returned."""
    o_r = tl.arange(0, BT)
    causal = o_r[:, None] >= o_r[None, :]
    for t0 in range(t_lo, t_hi, BT):
        p_q = tl.make_block_ptr(q + (b * T * H + hh) * K, (T, K), (H * K, 1), (t0, 0), (BT, BK), (1, 0))
        p_kT = tl.make_block_ptr(k + (b * T * H + hh) * K, (K, T), (1, H * K), (0, t0), (BK, BT), (0, 1))
        p_v = tl.make_block_ptr(v + (b * T * H + hh) * V, (T, V), (H * V, 1), (t0, i_v * BV), (BT, BV), (1, 0))
        qq = tl.load(p_q, boundary_check=(0, 1))
        kT = tl.load(p_kT, boundary_check=(0, 1))
        vv = tl.load(p_v, boundary_check=(0, 1))
        if KHAT:  # the decayed-key walk reads its gates first (as it was timed and GPU-tested)
            g, g_last = _row_gate(G, b, hh, t0, T, H, BT)
            if KSCALE:  # the keys decayed to the chunk's end here, as fwd_prep4's Kh would hold them
                kT = (kT * tl.exp(g_last - g)[None, :]).to(kT.dtype)
        Sq = S.to(qq.dtype)
        if STORE_H:
            p_h = tl.make_block_ptr(h + ((b * H + hh) * NT + t0 // BT) * K * V, (K, V), (V, 1), (0, i_v * BV),
                                    (BK, BV), (1, 0))
            tl.store(p_h, Sq.to(h.dtype.element_ty), boundary_check=(0, 1))
        if DELTA:
            p_w = tl.make_block_ptr(W + (b * T * H + hh) * K, (T, K), (H * K, 1), (t0, 0), (BT, BK), (1, 0))
            vv = (vv.to(tl.float32) - tl.dot(tl.load(p_w, boundary_check=(0, 1)), Sq, input_precision=PREC)
                  ).to(vv.dtype)
        if GATE == 2:
            g, _ = _key_gate(G, b, hh, t0, 0, T, H, K, BT, BK)
            acc = tl.dot((qq * tl.exp(g)).to(qq.dtype), Sq, input_precision=PREC)
            p_A = tl.make_block_ptr(A + (b * T * H + hh) * BT, (T, BT), (H * BT, 1), (t0, 0), (BT, BT), (1, 0))
            P = tl.load(p_A, boundary_check=(0, 1))
            w, d_last = _state._gate_tile_T(G, b, hh, t0, 0, T, H, K, GATE, BT, BK)  # e^{G_last − G}ᵀ, e^{G_last}
            S *= d_last
            kT = (kT * w).to(kT.dtype)
        else:
            acc = tl.dot(qq, Sq, input_precision=PREC)
            P = tl.dot(qq, kT, input_precision=PREC)
        if GATE == 1:
            if not KHAT:
                g, g_last = _row_gate(G, b, hh, t0, T, H, BT)
            acc *= tl.exp(g)[:, None]
            S *= tl.exp(g_last)
            if KHAT:  # kT is (k ⊙ e^{G_last − G})ᵀ
                p_A = tl.make_block_ptr(A + (b * T * H + hh) * BT, (T, BT), (H * BT, 1), (t0, 0), (BT, BT), (1, 0))
                P = tl.where(g_last >= -SPAN, P * tl.exp(g - g_last)[:, None],
                             tl.load(p_A, boundary_check=(0, 1)).to(tl.float32))
                vs = vv
            else:
                P *= pair_decay(g, g, causal)
                vs = (vv * tl.exp(g_last - g)[:, None]).to(vv.dtype)
        else:
            vs = vv
        P = tl.where(causal, P, 0.0)
        acc += tl.dot(P.to(vv.dtype), vv, input_precision=PREC)
        S += tl.dot(kT, vs, input_precision=PREC)
        p_o = tl.make_block_ptr(o + (b * T * H + hh) * V, (T, V), (H * V, 1), (t0, i_v * BV), (BT, BV), (1, 0))
        tl.store(p_o, (acc * scale).to(o.dtype.element_ty), boundary_check=(0, 1))
    return S


@triton.jit
def fwd_strong_intra(q, k, G, A, T, H, K: tl.constexpr, BT: tl.constexpr, BK: tl.constexpr, PREC: tl.constexpr,
                     SPAN: tl.constexpr):
    """A[n] = (q kᵀ) ⊙ e^{G_i − G_j} (lower triangle, in A's dtype) for each chunk n whose scalar log-gates sum
    below −SPAN, the chunks ``fwd_fused``'s decayed-key walk cannot take; grid (chunks, B·H), the other
    programs return at once."""
    n, i_bh = tl.program_id(0), tl.program_id(1)
    b, hh = i_bh // H, i_bh % H
    t0 = n * BT
    if tl.load(G + (b * T + tl.minimum(t0 + BT, T) - 1) * H + hh) >= -SPAN:  # the chunk's gates' sum
        return
    g, _ = _row_gate(G, b, hh, t0, T, H, BT)
    P = tl.zeros([BT, BT], dtype=tl.float32)
    for i_k in range(tl.cdiv(K, BK)):
        p_q = tl.make_block_ptr(q + (b * T * H + hh) * K, (T, K), (H * K, 1), (t0, i_k * BK), (BT, BK), (1, 0))
        p_kT = tl.make_block_ptr(k + (b * T * H + hh) * K, (K, T), (1, H * K), (i_k * BK, t0), (BK, BT), (0, 1))
        P += tl.dot(tl.load(p_q, boundary_check=(0, 1)), tl.load(p_kT, boundary_check=(0, 1)), input_precision=PREC)
    o_r = tl.arange(0, BT)
    causal = o_r[:, None] >= o_r[None, :]
    P = tl.where(causal, P * pair_decay(g, g, causal), 0.0)
    p_A = tl.make_block_ptr(A + (b * T * H + hh) * BT, (T, BT), (H * BT, 1), (t0, 0), (BT, BT), (1, 0))
    tl.store(p_A, P.to(A.dtype.element_ty), boundary_check=(0, 1))


@triton.jit
def bwd_dv(q, k, G, A, do, dh, dv, CH, T, H, K: tl.constexpr, V: tl.constexpr, NT, scale,
           GATE: tl.constexpr, BT: tl.constexpr, BK: tl.constexpr, BV: tl.constexpr, PREC: tl.constexpr,
           VARLEN: tl.constexpr, HAS_DH: tl.constexpr = True):
    """dv = Pᵀ (scale·dO) + (k ⊙ e^{G_last − G}) dh[n]; grid (V tiles, chunks, B·H). (``scale``: the
    output's, folded in here and in the other backward kernels that read dO instead of a pass over it.)

    ``HAS_DH=False`` gives only the intra-chunk part ``Pᵀ dO`` (the delta rule adds the rest
    inside its sequential backward state pass)."""
    i_v, n, i_bh = tl.program_id(0), tl.program_id(1), tl.program_id(2)
    b, hh = i_bh // H, i_bh % H
    t0, T = span(CH, n, T, BT, VARLEN)
    if empty(t0, T):  # a chunk slot past the last document's chunks
        return
    o_r = tl.arange(0, BT)
    anti = o_r[:, None] <= o_r[None, :]  # Pᵀ[u, r] is nonzero for r ≥ u
    acc = tl.zeros([BT, BV], dtype=tl.float32)
    Pt = tl.zeros([BT, BT], dtype=tl.float32)
    for i_k in range(tl.cdiv(K, BK)):
        p_k = tl.make_block_ptr(k + (b * T * H + hh) * K, (T, K), (H * K, 1), (t0, i_k * BK), (BT, BK), (1, 0))
        kk = tl.load(p_k, boundary_check=(0, 1))
        if HAS_DH:
            p_dh = tl.make_block_ptr(dh + (i_bh * NT + n) * K * V, (K, V), (V, 1), (i_k * BK, i_v * BV), (BK, BV), (1, 0))
            dhn = tl.load(p_dh, boundary_check=(0, 1))
            if GATE == 2:
                g, g_last = _key_gate(G, b, hh, t0, i_k, T, H, K, BT, BK)
                acc += tl.dot((kk * tl.exp(g_last[None, :] - g)).to(dhn.dtype), dhn, input_precision=PREC)
            else:
                acc += tl.dot(kk, dhn, input_precision=PREC)
        if GATE != 2:
            p_qT = tl.make_block_ptr(q + (b * T * H + hh) * K, (K, T), (1, H * K), (i_k * BK, t0), (BK, BT), (0, 1))
            Pt += tl.dot(kk, tl.load(p_qT, boundary_check=(0, 1)), input_precision=PREC)
    if GATE == 2:
        p_At = tl.make_block_ptr(A + (b * T * H + hh) * BT, (BT, T), (1, H * BT), (0, t0), (BT, BT), (0, 1))
        Pt = tl.load(p_At, boundary_check=(0, 1))
    if GATE == 1:
        g, g_last = _row_gate(G, b, hh, t0, T, H, BT)
        if HAS_DH:
            acc *= tl.exp(g_last - g)[:, None]
        Pt *= tl.exp(tl.where(anti, g[None, :] - g[:, None], float("-inf")))
    Pt = tl.where(anti, Pt, 0.0)
    p_do = tl.make_block_ptr(do + (b * T * H + hh) * V, (T, V), (H * V, 1), (t0, i_v * BV), (BT, BV), (1, 0))
    dO = tl.load(p_do, boundary_check=(0, 1))
    acc += tl.dot(Pt.to(dO.dtype), dO, input_precision=PREC) * scale
    p_dv = tl.make_block_ptr(dv + (b * T * H + hh) * V, (T, V), (H * V, 1), (t0, i_v * BV), (BT, BV), (1, 0))
    tl.store(p_dv, acc.to(dv.dtype.element_ty), boundary_check=(0, 1))


@triton.jit
def bwd_dqk(q, k, v, G, h, do, dh, dq, dk, dG, dA, du, dW, CH, T, H, K: tl.constexpr, V: tl.constexpr, NT, scale,
            GATE: tl.constexpr, BT: tl.constexpr, BK: tl.constexpr, BV: tl.constexpr, PREC: tl.constexpr,
            VARLEN: tl.constexpr, DELTA: tl.constexpr = False):
    """dq, dk and ∂L/∂G; grid (K tiles, chunks, B·H).

    GATE 0/1: complete dq, dk; dG (GATE 1) gets one partial row per K tile, [NK, B, T, H].
    GATE 2: writes the inter-chunk parts of dq, dk, the chunk's ``dA = dO vᵀ`` and the
    last-row term of dG ([B, T, H, K]); ``_gla.bwd_intra`` adds the rest.
    ``DELTA``: v holds the delta rule's u, and ``dW = du h[n]ᵀ`` (minus the gradient of W,
    from ``u = U − W h[n]``) is written too, while h[n] is loaded anyway.
    """
    i_k, n, i_bh = tl.program_id(0), tl.program_id(1), tl.program_id(2)
    b, hh = i_bh // H, i_bh % H
    plane = (tl.num_programs(2) // H) * T * H  # one K tile's slice of the scalar-gate dG [NK, B, T, H]
    t0, T = span(CH, n, T, BT, VARLEN)
    if empty(t0, T):  # a chunk slot past the last document's chunks
        return
    o_r = tl.arange(0, BT)
    causal = o_r[:, None] >= o_r[None, :]
    dP = tl.zeros([BT, BT], dtype=tl.float32)
    dqa = tl.zeros([BT, BK], dtype=tl.float32)
    dka = tl.zeros([BT, BK], dtype=tl.float32)
    hdh = tl.zeros([BK], dtype=tl.float32)
    dxw = tl.zeros([BT, BK], dtype=tl.float32)
    for i_v in range(tl.cdiv(V, BV)):
        p_v = tl.make_block_ptr(v + (b * T * H + hh) * V, (T, V), (H * V, 1), (t0, i_v * BV), (BT, BV), (1, 0))
        p_do = tl.make_block_ptr(do + (b * T * H + hh) * V, (T, V), (H * V, 1), (t0, i_v * BV), (BT, BV), (1, 0))
        p_hT = tl.make_block_ptr(h + (i_bh * NT + n) * K * V, (V, K), (1, V), (i_v * BV, i_k * BK), (BV, BK), (0, 1))
        p_dhT = tl.make_block_ptr(dh + (i_bh * NT + n) * K * V, (V, K), (1, V), (i_v * BV, i_k * BK), (BV, BK), (0, 1))
        vv = tl.load(p_v, boundary_check=(0, 1))
        dO = tl.load(p_do, boundary_check=(0, 1))
        hT = tl.load(p_hT, boundary_check=(0, 1))
        dhT = tl.load(p_dhT, boundary_check=(0, 1))
        dP += tl.dot(dO, tl.trans(vv), input_precision=PREC)
        dqa += tl.dot(dO, hT, input_precision=PREC)
        dka += tl.dot(vv, dhT, input_precision=PREC)
        if GATE != 0:
            hdh += tl.sum(hT.to(tl.float32) * dhT.to(tl.float32), 0)
        if DELTA:
            p_du = tl.make_block_ptr(du + (b * T * H + hh) * V, (T, V), (H * V, 1), (t0, i_v * BV), (BT, BV), (1, 0))
            dxw += tl.dot(tl.load(p_du, boundary_check=(0, 1)).to(hT.dtype), hT, input_precision=PREC)
    if DELTA:
        p_dw = tl.make_block_ptr(dW + (b * T * H + hh) * K, (T, K), (H * K, 1), (t0, i_k * BK), (BT, BK), (1, 0))
        tl.store(p_dw, dxw.to(dW.dtype.element_ty), boundary_check=(0, 1))
    dP *= scale  # the products with dO, for the output's scale
    dqa *= scale
    p_q = tl.make_block_ptr(q + (b * T * H + hh) * K, (T, K), (H * K, 1), (t0, i_k * BK), (BT, BK), (1, 0))
    p_k = tl.make_block_ptr(k + (b * T * H + hh) * K, (T, K), (H * K, 1), (t0, i_k * BK), (BT, BK), (1, 0))
    qq = tl.load(p_q, boundary_check=(0, 1))
    kk = tl.load(p_k, boundary_check=(0, 1))
    last = tl.minimum(t0 + BT, T) - 1 - t0
    is_last = (o_r == last)[:, None]
    if GATE == 2:
        g, g_last = _key_gate(G, b, hh, t0, i_k, T, H, K, BT, BK)
        dqa *= tl.exp(g)
        dka *= tl.exp(g_last[None, :] - g)
        tail = tl.sum(kk.to(tl.float32) * dka, 0) + tl.exp(g_last) * hdh  # [BK]
        o_k = i_k * BK + tl.arange(0, BK)
        o_t = t0 + o_r
        p_dG = dG + ((b * T + o_t[:, None]) * H + hh) * K + o_k[None, :]
        tl.store(p_dG, tl.where(is_last, tail[None, :], 0.0), mask=(o_t[:, None] < T) & (o_k[None, :] < K))
        if i_k == 0:
            p_dA = tl.make_block_ptr(dA + (b * T * H + hh) * BT, (T, BT), (H * BT, 1), (t0, 0), (BT, BT), (1, 0))
            tl.store(p_dA, tl.where(causal, dP, 0.0), boundary_check=(0, 1))
    else:
        if GATE == 1:
            g, g_last = _row_gate(G, b, hh, t0, T, H, BT)
            dqa *= tl.exp(g)[:, None]
            dka *= tl.exp(g_last - g)[:, None]
            tail = tl.sum(tl.sum(kk.to(tl.float32) * dka, 1), 0) + tl.exp(g_last) * tl.sum(hdh, 0)
            dP *= pair_decay(g, g, causal)
        dP = tl.where(causal, dP, 0.0).to(qq.dtype)
        dqa += tl.dot(dP, kk, input_precision=PREC)
        dka += tl.dot(tl.trans(dP), qq, input_precision=PREC)
        if GATE == 1:
            dg = tl.sum(qq.to(tl.float32) * dqa - kk.to(tl.float32) * dka, 1) + tl.where(o_r == last, tail, 0.0)
            o_t = t0 + o_r
            tl.store(dG + i_k * plane + (b * T + o_t) * H + hh, dg, mask=o_t < T)
    p_dq = tl.make_block_ptr(dq + (b * T * H + hh) * K, (T, K), (H * K, 1), (t0, i_k * BK), (BT, BK), (1, 0))
    p_dk = tl.make_block_ptr(dk + (b * T * H + hh) * K, (T, K), (H * K, 1), (t0, i_k * BK), (BT, BK), (1, 0))
    tl.store(p_dq, dqa.to(dq.dtype.element_ty), boundary_check=(0, 1))
    tl.store(p_dk, dka.to(dk.dtype.element_ty), boundary_check=(0, 1))
