"""Packed documents (``cu_seqlens``) in the chunkwise kernels: the chunk map.

With ``cu_seqlens`` (B = 1, documents ``[c_i, c_{i+1})`` packed along T) every document is cut
into its own chunks of ``C`` tokens, the last one short, so no chunk spans two documents.
The chunk-local kernels (intra-chunk matrices, outputs, the delta rule's triangular systems,
gate cumsums, the normaliser's sums) then need only each chunk's first token and its
document's end, which bounds every load and ``last`` row exactly as T does without
``cu_seqlens``; they read them from the map with ``span``. The sequential state kernels run
one program per (document, head, tile), walking that document's chunks (``first``), with
the document's own initial and final state: documents run in parallel, not one after another.

Without ``cu_seqlens`` the same kernels compile with ``VARLEN=False`` and compute the spans
from ``n·C`` and T: no loads, nothing changes.
"""
from __future__ import annotations

from typing import NamedTuple

import torch
import triton
import triton.language as tl


@triton.jit
def span(CH, n, T, BT: tl.constexpr, VARLEN: tl.constexpr):
    """First token of chunk ``n`` and the end of its document (T without documents)."""
    if VARLEN:
        t0 = tl.load(CH + 2 * n)
        te = tl.load(CH + 2 * n + 1)
    else:
        t0 = n * BT
        te = T
    return t0, te


@triton.jit
def first(CO, i_s, H, NT, VARLEN: tl.constexpr):
    """The batch row, head and chunk range [c0, c1) of a state-kernel program ``i_s`` (grid B·H, or N·H
    with documents: one program per document and head)."""
    if VARLEN:
        b = 0
        c0 = tl.load(CO + i_s // H)
        c1 = tl.load(CO + i_s // H + 1)
    else:
        b = i_s // H
        c0 = 0
        c1 = NT
    return b, i_s % H, c0, c1


class Chunks(NamedTuple):
    """The chunks of one call: ``NT`` in all, ``N`` sequences (B rows, or documents), and with
    documents the map ``ch`` (int32 [NT, 2]: first token of each chunk, end of its document),
    ``co`` (int32 [N + 1]: each document's first chunk) and ``doc`` (int64 [NT]: each chunk's
    document)."""
    NT: int
    N: int
    varlen: bool
    ch: torch.Tensor | None = None
    co: torch.Tensor | None = None
    doc: torch.Tensor | None = None

    def args(self, dummy: torch.Tensor) -> tuple:
        """(CH, CO) kernel arguments (``dummy`` stands for them without documents)."""
        return (self.ch, self.co) if self.varlen else (dummy, dummy)


def chunks(B: int, T: int, C: int, bounds: list[int] | None, device) -> Chunks:
    """The chunk map for chunks of C tokens; ``bounds`` = cu_seqlens as a list (B must be 1), or None."""
    if bounds is None:
        return Chunks(triton.cdiv(T, C), B, False)
    if B != 1 or bounds[0] != 0 or bounds[-1] != T:
        raise ValueError(f"cu_seqlens must run from 0 to T={T} with B=1, got B={B}, ends {bounds[0]}, {bounds[-1]}")
    ch, co, doc = [], [0], []
    for i, (s, e) in enumerate(zip(bounds, bounds[1:])):
        if e < s:
            raise ValueError(f"cu_seqlens must be non-decreasing, got {s} then {e}")
        starts = range(s, e, C)
        ch.extend(x for t in starts for x in (t, e))
        doc.extend([i] * len(starts))
        co.append(co[-1] + len(starts))
    NT = co[-1]
    ch_t = torch.tensor(ch or [0, 0], dtype=torch.int32).to(device, non_blocking=True)
    co_t = torch.tensor(co, dtype=torch.int32).to(device, non_blocking=True)
    return Chunks(NT, len(bounds) - 1, True, ch_t, co_t, torch.tensor(doc, dtype=torch.int64).to(device))
