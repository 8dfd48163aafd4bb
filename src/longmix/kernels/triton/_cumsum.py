"""Chunk-local (reverse) cumulative sum of a log-gate along time, in fp32.

``x`` is [B, T, D] viewed from g [B, T, H] (D = H) or [B, T, H, K] (D = H·K); each chunk
of ``BT`` steps is summed independently (reverse: from the chunk's end), one read and
one write, with no padding copies.
"""
import torch
import triton
import triton.language as tl

from ._host import cdiv, next_pow2
from ._varlen import Chunks, empty, span


@triton.jit
def pair_decay(gi, gj, mask):
    """A scalar log-gate's decay between positions, ``e^{gi_r − gj_u}`` where ``mask`` [R, U] holds (each
    kernel's causal or strictly lower pairs, gi and gj chunk-local cumsums) and 0 elsewhere."""
    return tl.exp(tl.where(mask, gi[:, None] - gj[None, :], float("-inf")))


@triton.jit
def chunk_cumsum_kernel(x, y, CH, T, D, BT: tl.constexpr, BD: tl.constexpr, REVERSE: tl.constexpr,
                        CLAMP: tl.constexpr, VARLEN: tl.constexpr):
    i_d, n, b = tl.program_id(0), tl.program_id(1), tl.program_id(2)
    t0, T = span(CH, n, T, BT, VARLEN)  # with documents (B = 1): T is the end of this chunk's document
    if empty(t0, T):  # a chunk slot past the last document's chunks
        return
    o_t = t0 + tl.arange(0, BT)
    o_d = i_d * BD + tl.arange(0, BD)
    m = (o_t[:, None] < T) & (o_d[None, :] < D)
    off = (b * T + o_t[:, None]) * D + o_d[None, :]
    v = tl.load(x + off, mask=m, other=0.0).to(tl.float32)
    if CLAMP:  # exp of anything below −104 is exactly 0 in fp32; −inf would make G_r − G_u NaN
        v = tl.maximum(v, -200.0)
    tl.store(y + off, tl.cumsum(v, axis=0, reverse=REVERSE), mask=m)


def chunk_cumsum(g: torch.Tensor, C: int, reverse: bool = False, clamp: bool = False,
                 chunks: Chunks | None = None) -> torch.Tensor:
    """Cumulative sum of g [B, T, ...] inside each chunk of C steps, fp32, same shape
    (``clamp``: each term first clamped at −200, where exp is already exactly 0 in fp32;
    ``chunks``: the call's ``_varlen.Chunks``, whose chunks restart at every document)."""
    B, T = g.shape[:2]
    D = g[0, 0].numel()
    chunks = chunks or Chunks(cdiv(T, C), B, False)
    out = torch.empty(g.shape, device=g.device, dtype=torch.float32)
    BD = min(128, max(16, next_pow2(D)))
    chunk_cumsum_kernel[(cdiv(D, BD), chunks.NT, B)](g, out, chunks.args(g)[0], T, D, BT=C, BD=BD,
                                                            REVERSE=reverse, CLAMP=clamp, VARLEN=chunks.varlen)
    return out
