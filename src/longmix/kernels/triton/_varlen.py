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
from ``n·C`` and T: no loads, nothing changes. The map is built on the device (``chunks``): the
chunk-local kernels are launched over an upper bound of the chunk count and the slots past the
real chunks return at once (``empty``).
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
def empty(t0, T):
    """Whether a chunk-local program has no rows (a slot past the documents' last chunk)."""
    return t0 >= T


@triton.jit
def first(CU, CO, i_s, H, T, NT, VARLEN: tl.constexpr):
    """The batch row, head, chunk range [c0, c1), first token and end of a state-kernel program ``i_s``'s
    sequence (grid B·H, or N·H with documents: one program per document and head). The walk then takes
    chunk n at ``bos + (n − c0)·BT``: computed, not loaded, so the loop's loads can be issued ahead."""
    if VARLEN:
        b = 0
        c0 = tl.load(CO + i_s // H)
        c1 = tl.load(CO + i_s // H + 1)
        bos = tl.load(CU + i_s // H)
        eos = tl.load(CU + i_s // H + 1)
    else:
        b = i_s // H
        c0 = 0
        c1 = NT
        bos = 0
        eos = T
    return b, i_s % H, c0, c1, bos, eos


class Chunks(NamedTuple):
    """The chunks of one call: ``NT`` program slots, ``N`` sequences (B rows, or documents), and with
    documents the map ``ch`` (int32 [NT, 2]: first token of each chunk, end of its document),
    ``co`` (int32 [N + 1]: each document's first chunk) and ``doc`` (int64 [NT]: each chunk's
    document), all on the device."""
    NT: int
    N: int
    varlen: bool
    ch: torch.Tensor | None = None
    co: torch.Tensor | None = None
    doc: torch.Tensor | None = None
    cu: torch.Tensor | None = None

    def args(self, dummy: torch.Tensor) -> tuple:
        """(CH, CO, CU) kernel arguments (``dummy`` stands for them without documents)."""
        return (self.ch, self.co, self.cu) if self.varlen else (dummy, dummy, dummy)


def bounded(cu: torch.Tensor, T: int) -> torch.Tensor:
    """cu_seqlens as int64, clamped into [0, T] and made non-decreasing: what the kernels read, so that
    a bad tensor (its error is raised after the launch, see ``checks.cu_seqlens_count``) cannot send
    them out of bounds. A valid one is unchanged."""
    return cu.to(torch.int64).clamp(0, T).cummax(0).values


def documents(cu_seqlens, T: int, B: int, device) -> torch.Tensor | None:
    """cu_seqlens (an int tensor [N+1], or a list) checked and on ``device``, or None. Pass it on the
    inputs' device: a host tensor costs a copy that waits for the GPU."""
    from ...checks import cu_seqlens_count

    if cu_seqlens is None:
        return None
    cu = cu_seqlens if torch.is_tensor(cu_seqlens) else torch.tensor(list(cu_seqlens))
    cu_seqlens_count(cu, T, B)
    return cu.to(device)


def chunks(B: int, T: int, C: int, cu: torch.Tensor | None) -> Chunks:
    """The chunk map for chunks of C tokens; ``cu`` = cu_seqlens (an int tensor [N+1] on the inputs'
    device, already checked; B = 1), or None.

    Built on the device without reading cu_seqlens back (no host synchronisation: the Python work of
    the call overlaps the GPU's, and the call can be captured in a CUDA graph). The host then knows
    only an upper bound of the chunk count, ``T // C + N`` (each document adds at most one short
    chunk), and launches that many chunk slots; slots past the last real chunk get the empty span
    (T, T), so their programs return at once and the state kernels never visit them."""
    if cu is None:
        return Chunks(triton.cdiv(T, C), B, False)
    N = cu.numel() - 1
    NT = T // C + N
    cu = bounded(cu, T)
    per_doc = (cu[1:] - cu[:-1] + C - 1) // C
    co = torch.cat([cu.new_zeros(1), per_doc.cumsum(0)])
    n = torch.arange(NT, device=cu.device)
    doc = torch.searchsorted(co[1:], n, right=True).clamp_max(max(N - 1, 0))  # co[doc] ≤ n < co[doc + 1]
    real = n < co[-1]
    t0 = torch.where(real, cu[doc] + (n - co[doc]) * C, T)
    te = torch.where(real, cu[doc + 1], T)
    return Chunks(NT, N, True, torch.stack([t0, te], 1).to(torch.int32), co.to(torch.int32), doc, cu.to(torch.int32))
