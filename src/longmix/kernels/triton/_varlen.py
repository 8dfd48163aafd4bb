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
from ``n·C`` and T: no loads, nothing changes. The map is built on the device (``chunks``). With
bounds given on the GPU the host never reads them: the chunk-local kernels are launched over an
upper bound of the chunk count and the slots past the real chunks return at once (``empty``);
bounds given on the host are read there, for the exact count.
"""
from __future__ import annotations

from typing import NamedTuple

import torch
import triton
import triton.language as tl

from ._host import cdiv, next_pow2


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


@triton.jit
def _max(a, b):
    return tl.maximum(a, b)


@triton.jit
def map_documents(cu, cu_out, co, bad, N, T, C: tl.constexpr, BLOCK: tl.constexpr):
    """One program over the bounds in blocks: ``cu_out`` = cu clamped into [0, T] and made
    non-decreasing (a running max), ``co`` = each document's first chunk (an exclusive scan of
    ceil(length / C)), ``bad`` = how many entries break 0 = c_0 ≤ … ≤ c_N = T."""
    run = tl.zeros([], dtype=tl.int32)
    first = tl.zeros([], dtype=tl.int32)
    nbad = tl.zeros([], dtype=tl.int32)
    for start in range(0, N + 1, BLOCK):
        i = start + tl.arange(0, BLOCK)
        m = i <= N
        x = tl.load(cu + i, mask=m, other=T).to(tl.int32)
        xn = tl.load(cu + i + 1, mask=i < N, other=T).to(tl.int32)
        xc = tl.minimum(tl.maximum(x, 0), T)
        r = tl.maximum(tl.associative_scan(xc, 0, _max), run)  # bounded c_i
        rn = tl.maximum(r, tl.minimum(tl.maximum(xn, 0), T))  # bounded c_{i+1}
        nbad += tl.sum((m & ((x != r) | ((i == 0) & (x != 0)) | ((i == N) & (x != T)))).to(tl.int32), 0)
        n_ch = tl.where(i < N, (rn - r + C - 1) // C, 0)
        inc = tl.cumsum(n_ch, 0)
        tl.store(cu_out + i, r, mask=m)
        tl.store(co + i, first + inc - n_ch, mask=m)
        run = tl.max(tl.where(m, r, 0), 0)
        first += tl.sum(n_ch, 0)
    tl.store(bad, nbad)


@triton.jit
def map_chunks(cu_out, co, ch, doc, N, NT, T, steps, C: tl.constexpr, BLOCK: tl.constexpr):
    """Chunk slots n of one block: the document (the last i with co[i] ≤ n, by binary search over
    co), the chunk's first token and the document's end; (T, T) for slots past the last chunk."""
    n = tl.program_id(0) * BLOCK + tl.arange(0, BLOCK)
    lo = tl.zeros([BLOCK], dtype=tl.int32)
    hi = tl.zeros([BLOCK], dtype=tl.int32) + N
    for _ in range(steps):
        mid = (lo + hi + 1) // 2
        ok = tl.load(co + mid) <= n
        lo = tl.where(ok, mid, lo)
        hi = tl.where(ok, hi, mid - 1)
    real = n < tl.load(co + N)
    d = tl.minimum(lo, N - 1)
    t0 = tl.where(real, tl.load(cu_out + d) + (n - tl.load(co + d)) * C, T)
    te = tl.where(real, tl.load(cu_out + d + 1), T)
    m = n < NT
    tl.store(ch + 2 * n, t0, mask=m)
    tl.store(ch + 2 * n + 1, te, mask=m)
    tl.store(doc + n, d, mask=m)


# Whether bounds given on the host are read there (exact chunk count); tests turn it off to run the
# device path (an upper bound of chunk slots) on CPU tensors.
READ_HOST_BOUNDS = True


class Documents(NamedTuple):
    """cu_seqlens for the kernels: ``cu`` on their device and, when it was given on the host (a CPU
    tensor or a list), its values ``host`` — read for free there, so the chunk count is exact."""
    cu: torch.Tensor
    host: list | None


def documents(cu_seqlens, T: int, B: int, device) -> Documents | None:
    """cu_seqlens (an int tensor [N+1], or a list) shape-checked and on ``device``, or None (its values
    are checked by ``chunks``). On the host it costs nothing to read: ``chunks`` then launches exactly
    the chunks there are. On the GPU it is never read back (no host synchronisation) and ``chunks``
    launches an upper bound of them."""
    from ...checks import cu_seqlens_shape

    if cu_seqlens is None:
        return None
    cu = cu_seqlens if torch.is_tensor(cu_seqlens) else torch.tensor(list(cu_seqlens))
    cu_seqlens_shape(cu, T, B)
    if cu.device.type != "cpu" or not READ_HOST_BOUNDS:
        return Documents(cu.to(device), None)
    host = cu.tolist()
    if torch.device(device).type != "cpu":
        cu = cu.pin_memory().to(device, non_blocking=True)  # asynchronous: no wait for the GPU
    return Documents(cu, host)


def chunks(B: int, T: int, C: int, docs: Documents | None) -> Chunks:
    """The chunk map for chunks of C tokens; ``docs`` from ``documents`` (B = 1), or None.

    Built on the device by two small kernels, without reading cu_seqlens back (no host
    synchronisation: the Python work of the call overlaps the GPU's, and the call can be captured in
    a CUDA graph). When cu_seqlens came from the host its values give the exact chunk count;
    otherwise the host knows only an upper bound, ``T // C + N`` (each document adds at most one short
    chunk), and launches that many chunk slots: slots past the last real chunk get the empty span
    (T, T), so their programs return at once and the state kernels never visit them (the per-chunk
    states ``h`` are allocated for every slot: up to twice the memory with documents of one chunk).
    The kernels read the bounds clamped into [0, T] and made non-decreasing, so a bad tensor cannot
    send them out of bounds; its error is raised when the values check resolves (on the host at
    once; on CUDA inside ``attention`` after the launch, ``checks.cu_seqlens_values``)."""
    if docs is None:
        return Chunks(cdiv(T, C), B, False)
    N = docs.cu.numel() - 1
    if docs.host is not None:
        NT = sum(cdiv(e - s, C) for s, e in zip(docs.host, docs.host[1:]))
    else:
        NT = T // C + N
    cu_out, co = bounds(docs, T, C)
    dev = cu_out.device
    ch = torch.empty(max(NT, 1), 2, device=dev, dtype=torch.int32)
    doc = torch.empty(max(NT, 1), device=dev, dtype=torch.int64)
    if NT:
        map_chunks[(cdiv(NT, 256),)](cu_out, co, ch, doc, N, NT, T, max(1, N).bit_length(), C=C, BLOCK=256)
    return Chunks(NT, N, True, ch, co, doc, cu_out)


def bounds(docs: Documents, T: int, C: int = 16) -> tuple[torch.Tensor, torch.Tensor]:
    """The bounds as the kernels read them (int32 [N+1], clamped into [0, T], non-decreasing) and each
    document's first chunk of C tokens (int32 [N+1]), from ``map_documents``; the values checked: on
    the host at once (``docs.host``), else from the kernel's count (deferred on CUDA)."""
    from ...checks import _cu_bad, cu_seqlens_values

    if docs.host is not None:
        bad = _cu_bad(docs.host, T)
        if bad:
            raise bad
    cu = docs.cu
    N = cu.numel() - 1
    cu_out = torch.empty(N + 1, device=cu.device, dtype=torch.int32)
    co = torch.empty(N + 1, device=cu.device, dtype=torch.int32)
    bad_count = torch.empty(1, device=cu.device, dtype=torch.int32)
    map_documents[(1,)](cu, cu_out, co, bad_count, N, T, C=C, BLOCK=min(1024, max(16, next_pow2(N + 1))))
    if docs.host is None:
        cu_seqlens_values(cu, bad_count, T)
    return cu_out, co
