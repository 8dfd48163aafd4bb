"""Fused recurrent kernel for decoding: a few tokens against a [B, H, K, V] fp32 state.

    S_t = (I − β_t k_t k_tᵀ) diag(e^{g_t}) S_{t-1} + β_t k_t v_tᵀ,   o_t = S_tᵀ q_t

(``beta=None``: no erase term and β = 1; ``g=None``: no decay; g [B, T, H] or [B, T, H, K]; a
[B, T, H] that is one [H] expanded, as the constant-decay mechanisms pass it, is read as [H].)
One program per (V tile, batch·head) keeps its [K, BV] slice of the state in registers
(fp32) for all T tokens: the state is read once and written once, in place if asked.
Time O(T·K·V) per head; meant for T of 1 to a few dozen (use ``chunk`` for prefill).

Forward only for T > 1: when autograd needs gradients it raises (use ``form='chunk'``);
for T = 1 with gradients the differentiable chunk kernel computes the same step.

Example (GPU, or CPU with ``TRITON_INTERPRET=1``)::

    >>> S = torch.zeros(B, H, K, V, device="cuda")                    # doctest: +SKIP
    >>> o, S = recurrent(q_t, k_t, v_t, g_t, beta_t, S, inplace=True)  # doctest: +SKIP
"""
from __future__ import annotations

import torch
import triton
import triton.language as tl

from . import _interp
from ._host import next_pow2

_interp.apply()

# bv / warps: V tile and warps; norm_warps: with the output norm, which needs all of V in one program
CONFIG = {"bv": 32, "warps": 4, "norm_warps": 8}

# elementwise feature maps applied to q and k as they are loaded (``feature_maps.ELEMENTWISE``)
PHI = {None: 0, "identity": 0, "elu": 1, "elu1": 2, "relu": 3}


@triton.jit
def _phi(x, PHI: tl.constexpr):
    """The feature map ``PHI`` (0 identity, 1 elu, 2 elu + 1, 3 relu) of fp32 ``x``."""
    if PHI == 1:
        x = tl.where(x > 0, x, tl.exp(tl.minimum(x, 0.0)) - 1.0)
    if PHI == 2:
        x = tl.where(x > 0, x + 1.0, tl.exp(tl.minimum(x, 0.0)))
    if PHI == 3:
        x = tl.maximum(x, 0.0)
    return x


@triton.jit
def fused_recurrent(q, k, v, g, beta, s0, o, sT, CU, T, H, K: tl.constexpr, V: tl.constexpr, scale,
                    GATE: tl.constexpr, DELTA: tl.constexpr, HAS_S0: tl.constexpr,
                    BK: tl.constexpr, BV: tl.constexpr, VARLEN: tl.constexpr, PHI: tl.constexpr = 0,
                    NORM: tl.constexpr = False):
    """``PHI``: a feature map of q and k (``_phi``); ``NORM``: each output row through SimpleRMSNorm,
    o / (‖o‖/√V + 1e-8) (one V tile holds the whole row)."""
    i_v, i_bh = tl.program_id(0), tl.program_id(1)  # i_bh: sequence (batch row or document) · head
    hh = i_bh % H
    if VARLEN:  # document i_bh // H is tokens [CU[i], CU[i+1]) of the one packed row
        t_lo = tl.load(CU + i_bh // H)
        t_hi = tl.load(CU + i_bh // H + 1)
        base = 0
    else:
        t_lo = 0
        t_hi = T
        base = (i_bh // H) * T
    o_k = tl.arange(0, BK)
    o_v = i_v * BV + tl.arange(0, BV)
    mk, mv = o_k < K, o_v < V
    m_s = mk[:, None] & mv[None, :]
    p_s = i_bh * K * V + o_k[:, None] * V + o_v[None, :]
    S = tl.zeros([BK, BV], dtype=tl.float32)
    if HAS_S0:
        S += tl.load(s0 + p_s, mask=m_s, other=0.0).to(tl.float32)
    for t in range(t_lo, t_hi):
        row = (base + t) * H + hh
        qt = _phi(tl.load(q + row * K + o_k, mask=mk, other=0.0).to(tl.float32), PHI)
        kt = _phi(tl.load(k + row * K + o_k, mask=mk, other=0.0).to(tl.float32), PHI)
        if PHI == 2:  # elu + 1 is 1 at zero: keep the padded key dims at 0
            qt = tl.where(mk, qt, 0.0)
            kt = tl.where(mk, kt, 0.0)
        vt = tl.load(v + row * V + o_v, mask=mv, other=0.0).to(tl.float32)
        if GATE == 1:
            S *= tl.exp(tl.load(g + row))
        if GATE == 2:
            S *= tl.exp(tl.load(g + row * K + o_k, mask=mk, other=0.0))[:, None]
        if GATE == 3:  # one decay per head for every token (RetNet, Lightning): g is [H]
            S *= tl.exp(tl.load(g + hh))
        if DELTA:
            bt = tl.load(beta + row).to(tl.float32)
            vt = bt * (vt - tl.sum(kt[:, None] * S, 0))
        S += kt[:, None] * vt[None, :]
        ot = tl.sum(qt[:, None] * S, 0) * scale
        if NORM:  # padded value columns are 0 (their state columns are)
            ot = ot / (tl.sqrt(tl.sum(ot * ot, 0) / V) + 1e-8)
        tl.store(o + row * V + o_v, ot.to(o.dtype.element_ty), mask=mv)
    tl.store(sT + p_s, S, mask=m_s)


def recurrent(q, k, v, g=None, beta=None, initial_state=None, *, inplace: bool = False, scale: float = 1.0,
              cu_seqlens=None):
    """Run T tokens of the recurrence (with ``scale·q``, applied to the output) against a state, fused
    (forward only for T > 1).

    Args: q, k [B, T, H, K], v [B, T, H, V] (one dtype: fp16/bf16/fp32), g None |
    [B, T, H] | [B, T, H, K] fp32 log-gates ≤ 0, beta None | [B, T, H], initial_state None |
    [B, H, K, V]; ``inplace=True`` writes the new state into ``initial_state`` (fp32, contiguous).
    ``cu_seqlens`` (int tensor [N+1] on the inputs' device, or a list; B = 1): packed documents, one
    state each (initial_state [N, H, K, V]), all in one launch.

    Returns: o [B, T, H, V] in v's dtype and the new state [B, H, K, V] (or [N, H, K, V]) fp32.
    """
    from ._varlen import bounds, documents
    from .chunk import _check, chunk

    N = None if cu_seqlens is None else len(cu_seqlens) - 1
    _check(q, k, v, g, beta, initial_state, 16, N)
    B, T, H, K = k.shape
    N = B if N is None else N
    cu = documents(cu_seqlens, T, B, q.device)
    V = v.shape[-1]
    needs_grad = torch.is_grad_enabled() and any(
        x is not None and x.requires_grad for x in (q, k, v, g, beta, initial_state))
    if needs_grad:
        if inplace:
            raise ValueError("recurrent(..., inplace=True) overwrites the state: it cannot run when gradients are needed")
        if T != 1:
            raise ValueError("the triton recurrent (decode) kernel is forward only for T > 1; use form='chunk' "
                             "for gradients (same result) or run it under torch.no_grad()")
        return chunk(q, k, v, g, beta, initial_state, chunk_size=16, scale=scale, cu_seqlens=cu_seqlens)
    if inplace and (initial_state is None or initial_state.dtype != torch.float32 or not initial_state.is_contiguous()):
        raise ValueError("inplace=True needs initial_state as a contiguous float32 [B, H, K, V] tensor")
    s0 = None if initial_state is None else (initial_state if inplace else initial_state.float().contiguous())
    sT = s0 if inplace else torch.empty(N, H, K, V, device=q.device, dtype=torch.float32)
    o = torch.empty(v.shape, dtype=v.dtype, device=v.device)  # row-major, whatever v's strides
    if T == 0:
        if s0 is None:
            sT.zero_()
        elif not inplace:
            sT.copy_(s0)
        return o, sT
    cu = None if cu is None else bounds(cu, T)[0]  # checked, clamped into [0, T] (no chunk map: no chunks)
    _launch(q, k, v, g, beta, s0, sT, o, cu, scale)
    return o, sT


def step(q, k, v, g, beta, state, scale: float = 1.0, phi: str | None = None, norm: bool = False):
    """Advance ``state`` (contiguous float32 [B, H, K, V]) in place by q, k, v's T tokens; return o.
    ``phi``: an elementwise feature map of q and k (a key of ``PHI``); ``norm``: the output rows
    through SimpleRMSNorm (TransNormer), both inside the launch.

    No input checks: for a caller that has validated this signature of inputs once
    (``longmix.Decoder``), so that a decoding step costs one allocation and one launch."""
    o = torch.empty(v.shape, dtype=v.dtype, device=v.device)  # row-major, whatever v's strides
    if q.shape[1]:
        _launch(q, k, v, g, beta, state, state, o, None, scale, PHI[phi], norm)
    return o


def _launch(q, k, v, g, beta, s0, sT, o, cu, scale, phi: int = 0, norm: bool = False):
    """``fused_recurrent`` over every sequence (``sT``'s first dim: batch rows or documents) and head."""
    T, H, K = k.shape[1:]
    V = v.shape[-1]
    gate = 0 if g is None else (1 if g.dim() == 3 else 2)
    if gate == 1 and g.stride(0) == 0 and g.stride(1) == 0:  # a per-head constant expanded over batch and time:
        gate, g = 3, g[0, 0]  # read its [H] values instead of copying the expansion
    BK = max(16, next_pow2(K))
    BV = max(16, next_pow2(V))  # with the norm, all of V in one program
    BV = BV if norm else min(CONFIG["bv"], BV)
    q, k, v = q.contiguous(), k.contiguous(), v.contiguous()
    fused_recurrent[(-(-V // BV), sT.shape[0] * H)](
        q, k, v, g.contiguous() if g is not None else q, beta.contiguous() if beta is not None else q,
        s0 if s0 is not None else q, o, sT, cu if cu is not None else q, T, H, K, V, float(scale),
        GATE=gate, DELTA=beta is not None, HAS_S0=s0 is not None, BK=BK, BV=BV, VARLEN=cu is not None,
        PHI=phi, NORM=norm, num_warps=CONFIG["norm_warps" if norm else "warps"])
