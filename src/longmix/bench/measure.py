"""Timing and peak-memory measurement that works on the CPU and on a GPU.

* :func:`timeit` — median wall time of a callable, synchronised on CUDA (CUDA events
  through ``triton.testing.do_bench`` when Triton is there; calls over 50 ms: the median
  of three, each timed with CUDA events), a repeated ``perf_counter`` timer on the CPU.
* :func:`peak_memory` — peak bytes allocated while a callable runs: the CUDA caching
  allocator's counter on a GPU; on the CPU a dispatch mode that tracks every tensor
  storage created during the call and when it is freed.

Example::

    >>> import torch
    >>> x = torch.randn(256, 256)
    >>> peak_memory(lambda: (x @ x).sum(), device="cpu") >= 256 * 256 * 4
    True
"""
from __future__ import annotations

import statistics
import time
import weakref

import torch
from torch.utils._python_dispatch import TorchDispatchMode
from torch.utils._pytree import tree_leaves


def _sync(device):
    if torch.device(device).type == "cuda":
        torch.cuda.synchronize()


def timeit(fn, *, device="cpu", warmup: int = 1, reps: int = 5, min_time: float = 0.0) -> float:
    """Median seconds per call of ``fn`` (after ``warmup`` calls, which compile and autotune)."""
    if torch.device(device).type == "cuda":
        for _ in range(warmup):
            fn()
        start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)

        def timed():
            start.record()
            fn()
            end.record()
            torch.cuda.synchronize()
            return start.elapsed_time(end) / 1e3

        first = timed()
        if first > 0.05:  # a long call: its own time is well resolved; three calls give the median
            return statistics.median([first, timed(), timed()])
        try:
            from triton.testing import do_bench

            return do_bench(fn, warmup=25, rep=100, return_mode="median") / 1e3
        except ImportError:
            pass
    for _ in range(warmup):
        fn()
    _sync(device)
    times = []
    t_end = time.perf_counter() + min_time
    while len(times) < reps or time.perf_counter() < t_end:
        t0 = time.perf_counter()
        fn()
        _sync(device)
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


class _StorageTracker(TorchDispatchMode):
    """Counts live bytes of tensor storages created inside the mode and their peak."""

    def __init__(self):
        super().__init__()
        self.live = 0
        self.peak = 0
        self._seen: set[int] = set()

    def _free(self, key, nbytes):
        self._seen.discard(key)
        self.live -= nbytes

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        out = func(*args, **(kwargs or {}))
        for t in tree_leaves(out):
            if isinstance(t, torch.Tensor) and t.device.type == "cpu":
                st = t.untyped_storage()
                key = st.data_ptr()
                if key and key not in self._seen:
                    self._seen.add(key)
                    self.live += st.nbytes()
                    self.peak = max(self.peak, self.live)
                    weakref.finalize(st, self._free, key, st.nbytes())
        return out


def peak_memory(fn, *, device="cpu") -> int:
    """Peak bytes allocated by ``fn`` beyond what was live before it ran."""
    if torch.device(device).type == "cuda":
        torch.cuda.synchronize()
        base = torch.cuda.memory_allocated()
        torch.cuda.reset_peak_memory_stats()
        fn()
        torch.cuda.synchronize()
        return torch.cuda.max_memory_allocated() - base
    tracker = _StorageTracker()
    with tracker:
        fn()
    return tracker.peak
