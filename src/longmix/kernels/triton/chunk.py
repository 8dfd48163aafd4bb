"""Triton chunkwise kernels for the shared recurrence, with forward and backward.

    S_t = (I − β_t k_t k_tᵀ) diag(e^{g_t}) S_{t-1} + β_t k_t v_tᵀ,   o_t = S_tᵀ q_t

Same signature and results as ``longmix.kernels.reference.chunk.chunk`` (its
docstring derives the chunkwise math). Pipeline, for ``beta=None``:

1. chunk-local cumulative log-gate ``G`` (fp32, ``_cumsum``);
2. ``_state.fwd_states``: states entering each chunk ``h[n]`` and the final state
   (fp32 accumulation, sequential over chunks, parallel over B·H and K/V tiles);
3. (per-key gates) ``_gla.fwd_intra``: the intra-chunk matrix ``P`` in 16×16 sub-tiles;
4. ``_output.fwd_output``: ``o = (q ⊙ e^G) h[n] + P v``.

Backward: ``_state.bwd_states`` (dh, reverse), ``_output.bwd_dv``, ``_output.bwd_dqk``
(and ``_gla.bwd_intra`` for per-key gates), then ∂L/∂g = reverse chunk-local cumsum
of ∂L/∂G. Inputs fp16/bf16/fp32 (fp32 matmuls use IEEE precision, not TF32); states and
gate cumsums fp32; per-chunk states are stored in the input dtype for the tensor cores.

Example (GPU, or CPU with ``TRITON_INTERPRET=1``)::

    >>> o, S = chunk(q, k, v, g=g)             # doctest: +SKIP
"""
from __future__ import annotations

import os

import torch
import triton

from . import _gla, _interp, _output, _state
from ._cumsum import chunk_cumsum

_interp.apply()

# Tile sizes and warps; benchmarks may edit this table.
# state_min_programs: the sequential state kernels shrink their K/V tiles (down to 32) until
# B·H·tiles reaches this many programs, so long single sequences still fill the GPU.
CONFIG = {"state_bk": 64, "state_bv": 64, "state_warps": 4, "state_min_programs": 256, "out_bk": 64, "out_bv": 64, "out_warps": 4,
          "bwd_bk": 64, "bwd_bv": 64, "bwd_warps": 4}


def _tile(d: int, cap: int) -> int:
    return max(16, min(cap, triton.next_power_of_2(d)))


def _state_tiles(BH: int, K: int, V: int) -> tuple[int, int]:
    bk, bv = _tile(K, CONFIG["state_bk"]), _tile(V, CONFIG["state_bv"])
    while BH * triton.cdiv(K, bk) * triton.cdiv(V, bv) < CONFIG["state_min_programs"] and max(bk, bv) > 32:
        if bv >= bk:
            bv //= 2
        else:
            bk //= 2
    return bk, bv


def _prec(x: torch.Tensor) -> str:
    return "ieee" if x.dtype == torch.float32 else "tf32"


def _forward(q, k, v, G, gate, s0, C, want_state):
    B, T, H, K = k.shape
    V = v.shape[-1]
    NT = triton.cdiv(T, C)
    prec = _prec(q)
    h = q.new_empty(B, H, NT, K, V)
    sT = q.new_empty(B, H, K, V, dtype=torch.float32) if want_state else None
    Gp = G if G is not None else q
    bk, bv = _state_tiles(B * H, K, V)
    _state.fwd_states[(triton.cdiv(K, bk), triton.cdiv(V, bv), B * H)](
        k, v, Gp, h, s0 if s0 is not None else q, sT if sT is not None else q, T, H, K, V, NT,
        GATE=gate, HAS_S0=s0 is not None, STORE_ST=want_state, BT=C, BK=bk, BV=bv, PREC=prec,
        num_warps=CONFIG["state_warps"])
    A = _gla.fwd_intra(q, k, G, C, prec) if gate == 2 else None
    o = torch.empty_like(v)
    bk, bv = _tile(K, CONFIG["out_bk"]), _tile(V, CONFIG["out_bv"])
    _output.fwd_output[(triton.cdiv(V, bv), NT, B * H)](
        q, k, v, Gp, h, A if A is not None else q, o, T, H, K, V, NT,
        GATE=gate, BT=C, BK=bk, BV=bv, PREC=prec, num_warps=CONFIG["out_warps"])
    return o, sT, h, A


def _backward(q, k, v, G, gate, h, A, do, dsT, has_s0, C):
    B, T, H, K = k.shape
    V = v.shape[-1]
    NT = triton.cdiv(T, C)
    prec = _prec(q)
    Gp = G if G is not None else q
    dh = q.new_empty(B, H, NT, K, V)
    ds0 = q.new_empty(B, H, K, V, dtype=torch.float32) if has_s0 else None
    bk, bv = _state_tiles(B * H, K, V)
    _state.bwd_states[(triton.cdiv(K, bk), triton.cdiv(V, bv), B * H)](
        q, do, Gp, dh, dsT if dsT is not None else q, ds0 if ds0 is not None else q, T, H, K, V, NT,
        GATE=gate, HAS_DST=dsT is not None, STORE_DS0=has_s0, BT=C, BK=bk, BV=bv, PREC=prec,
        num_warps=CONFIG["state_warps"])
    bk, bv = _tile(K, CONFIG["bwd_bk"]), _tile(V, CONFIG["bwd_bv"])
    NK = triton.cdiv(K, bk)
    dv = torch.empty_like(v)
    _output.bwd_dv[(triton.cdiv(V, bv), NT, B * H)](
        q, k, Gp, A if A is not None else q, do, dh, dv, T, H, K, V, NT,
        GATE=gate, BT=C, BK=bk, BV=bv, PREC=prec, num_warps=CONFIG["bwd_warps"])
    dq, dk = torch.empty_like(q), torch.empty_like(k)
    if gate == 2:
        dG = torch.empty(B, T, H, K, device=q.device, dtype=torch.float32)
        dA = torch.empty(B, T, H, C, device=q.device, dtype=torch.float32)
        dq32, dk32 = torch.empty_like(q, dtype=torch.float32), torch.empty_like(k, dtype=torch.float32)
    else:
        dG = torch.empty(NK, B, T, H, device=q.device, dtype=torch.float32) if gate == 1 else q
        dA, dq32, dk32 = q, dq, dk
    _output.bwd_dqk[(NK, NT, B * H)](
        q, k, v, Gp, h, do, dh, dq32, dk32, dG, dA, T, H, K, V, NT,
        GATE=gate, BT=C, BK=bk, BV=bv, PREC=prec, num_warps=CONFIG["bwd_warps"])
    if gate == 2:
        _gla.bwd_intra(q, k, G, dA, dq32, dk32, dG, dq, dk, C, prec)
    elif gate == 1:
        dG = dG.sum(0)
    dg = chunk_cumsum(dG, C, reverse=True) if gate else None
    return dq, dk, dv, dg, ds0


class _ChunkFn(torch.autograd.Function):
    @staticmethod
    def forward(ctx, q, k, v, g, s0, C):
        gate = 0 if g is None else (1 if g.dim() == 3 else 2)
        G = chunk_cumsum(g, C) if g is not None else None
        o, sT, h, A = _forward(q, k, v, G, gate, s0, C, True)
        ctx.save_for_backward(q, k, v, G, h, A)
        ctx.gate, ctx.C, ctx.has_s0 = gate, C, s0 is not None
        ctx.g_dtype = None if g is None else g.dtype
        return o, sT

    @staticmethod
    def backward(ctx, do, dsT):
        q, k, v, G, h, A = ctx.saved_tensors
        dq, dk, dv, dg, ds0 = _backward(q, k, v, G, ctx.gate, h, A, do.contiguous(),
                                        None if dsT is None else dsT.contiguous(), ctx.has_s0, ctx.C)
        if dg is not None:
            dg = dg.to(ctx.g_dtype)
        return dq, dk, dv, dg, ds0, None


def _check(q, k, v, g, beta, initial_state, chunk_size):
    for name, x in (("q", q), ("k", k), ("v", v)):
        if not torch.is_tensor(x) or x.dim() != 4:
            raise ValueError(f"{name} must be a 4-D tensor [B, T, H, D], got {getattr(x, 'shape', type(x))}")
    B, T, H, K = k.shape
    if tuple(q.shape) != (B, T, H, K) or tuple(v.shape[:3]) != (B, T, H):
        raise ValueError(f"q [B, T, H, K] and v [B, T, H, V] must match k {tuple(k.shape)}; got q {tuple(q.shape)}, "
                         f"v {tuple(v.shape)}")
    if q.dtype not in (torch.float16, torch.bfloat16, torch.float32) or not q.dtype == k.dtype == v.dtype:
        raise TypeError(f"the triton backend takes q, k, v of one dtype among float16, bfloat16, float32; got "
                        f"{q.dtype}, {k.dtype}, {v.dtype} (use backend='reference' for float64)")
    if not q.is_cuda and os.environ.get("TRITON_INTERPRET") != "1":
        raise ValueError(f"the triton backend needs CUDA tensors (or TRITON_INTERPRET=1 on CPU), got {q.device}")
    if g is not None:
        if g.dim() == 3 and tuple(g.shape) != (B, T, H) or g.dim() == 4 and tuple(g.shape) != (B, T, H, K) \
                or g.dim() not in (3, 4):
            raise ValueError(f"g must be [B, T, H] or [B, T, H, K] = {(B, T, H)} / {(B, T, H, K)}, got {tuple(g.shape)}")
        if g.dtype != torch.float32:
            raise TypeError(f"g (log-space gate) must be float32 for the triton backend, got {g.dtype}")
    if initial_state is not None and tuple(initial_state.shape) != (B, H, K, v.shape[-1]):
        raise ValueError(f"initial_state must be [B, H, K, V] = {(B, H, K, v.shape[-1])}, got {tuple(initial_state.shape)}")
    if not isinstance(chunk_size, int) or chunk_size not in (16, 32, 64, 128):
        raise ValueError(f"the triton backend needs chunk_size in (16, 32, 64, 128), got {chunk_size!r}")
    if beta is not None:
        raise NotImplementedError("the triton backend has no delta-rule (beta) kernel yet; use backend='reference'")


def chunk(q, k, v, g=None, beta=None, initial_state=None, *, chunk_size: int = 64):
    """Chunkwise recurrence on the GPU (Triton), differentiable in q, k, v, g, beta, initial_state.

    Args: as ``longmix.kernels.reference.chunk.chunk``: q, k [B, T, H, K] (q already scaled),
    v [B, T, H, V], g None | [B, T, H] | [B, T, H, K] (fp32 log-gates ≤ 0), beta None | [B, T, H],
    initial_state None | [B, H, K, V]; chunk_size 16, 32, 64 or 128.

    Returns: o [B, T, H, V] in v's dtype and the final state [B, H, K, V] float32.
    Raises ValueError/TypeError/NotImplementedError for a configuration it does not support.
    """
    _check(q, k, v, g, beta, initial_state, chunk_size)
    B, T, H, K = k.shape
    V = v.shape[-1]
    if T == 0:
        S = torch.zeros(B, H, K, V, device=q.device) if initial_state is None else initial_state.float()
        return v.new_zeros(B, 0, H, V), S
    s0 = None if initial_state is None else initial_state.float().contiguous()
    g = None if g is None else g.contiguous()
    return _ChunkFn.apply(q.contiguous(), k.contiguous(), v.contiguous(), g, s0, chunk_size)
