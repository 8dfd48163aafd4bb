"""Input validation shared by every mechanism: errors name the argument and the shape.

Every check raises ``ValueError`` (wrong shape, value or option) or ``TypeError``
(wrong type or dtype) before any computation, so bad input never turns into a silent
broadcast or an illegal memory access in a kernel.
"""
from __future__ import annotations

import contextlib
import contextvars

import torch

FLOAT_DTYPES = (torch.float16, torch.bfloat16, torch.float32, torch.float64)

# Value checks on CUDA tensors (gate ≤ 0, beta in [0, 2]) need the device's answer. Inside
# ``deferred_values()`` they are queued instead: the min/max reduction runs first on the stream,
# its two numbers are copied to pinned memory behind an event, the computation is launched, and
# on leaving the block we wait for that event only (not for the computation) and raise the
# ValueError if a value was bad. The result is never returned for bad input, and a call costs no
# pipeline drain.
_PENDING: contextvars.ContextVar[list | None] = contextvars.ContextVar("longmix_pending_checks", default=None)
_TRUSTED: contextvars.ContextVar[bool] = contextvars.ContextVar("longmix_trusted_values", default=False)


@contextlib.contextmanager
def trusted_values():
    """Skip the value checks (gate ≤ 0 and not NaN, beta in [0, 2]) inside the block.

    For callers whose gates and betas are in range by construction (log-sigmoid or −softplus
    gates, sigmoid betas), such as :class:`longmix.Mixer`: on CUDA every checked call otherwise
    waits for its min/max reduction, i.e. for all work queued before it, so a training step
    cannot run ahead of the GPU. Shape, dtype and device checks still run. Example::

        >>> import torch, longmix
        >>> q, k, v = torch.randn(3, 1, 8, 2, 16).unbind(0)
        >>> g = torch.nn.functional.logsigmoid(torch.randn(1, 8, 2))  # ≤ 0 by construction
        >>> with longmix.trusted_values():
        ...     longmix.attention(q, k, v, "mamba2", g=g).shape
        torch.Size([1, 8, 2, 16])
    """
    token = _TRUSTED.set(True)
    try:
        yield
    finally:
        _TRUSTED.reset(token)


def is_trusted() -> bool:
    """Whether the caller is inside ``trusted_values()`` (value checks skipped)."""
    return _TRUSTED.get()


@contextlib.contextmanager
def deferred_values():
    """Queue CUDA value checks made inside the block; resolve (and raise) when it ends."""
    pending: list = []
    token = _PENDING.set(pending)
    try:
        yield
    finally:
        _PENDING.reset(token)
    for event, host, judge in pending:
        event.synchronize()
        judge(host[0].item(), host[1].item())


def _min_max(x: torch.Tensor, judge, *, always: bool = False, reduce: bool = True) -> None:
    """Call ``judge(min, max)`` now, or when the enclosing ``deferred_values`` block ends (CUDA);
    not at all inside ``trusted_values()`` unless ``always``. ``reduce=False``: x is already the
    answer (one element, passed as both)."""
    if is_trusted() and not always:
        return
    lo_hi = torch.stack(torch.aminmax(x)) if reduce else x.expand(2)  # one pass; NaN propagates into both
    pending = _PENDING.get()
    if pending is None or not x.is_cuda:
        judge(*(v.item() for v in lo_hi))
        return
    host = torch.empty(2, dtype=lo_hi.dtype, pin_memory=True)
    host.copy_(lo_hi, non_blocking=True)
    event = torch.cuda.Event()
    event.record()
    pending.append((event, host, judge))


def tensor(x, name: str, *, ndim: int | None = None, shape_doc: str = "") -> torch.Tensor:
    if not torch.is_tensor(x):
        raise TypeError(f"{name} must be a torch.Tensor{' of shape ' + shape_doc if shape_doc else ''}, got {type(x).__name__}")
    if ndim is not None and x.dim() != ndim:
        raise ValueError(f"{name} must have {ndim} dims {shape_doc}, got shape {tuple(x.shape)}")
    return x


def qkv(q, k, v):
    """Check q [B, T_q, H, D_k], k [B, T_k, H_kv, D_k], v [B, T_k, H_kv, D_v]; return the sizes."""
    tensor(q, "q", ndim=4, shape_doc="[B, T_q, H, D_k]")
    tensor(k, "k", ndim=4, shape_doc="[B, T_k, H_kv, D_k]")
    tensor(v, "v", ndim=4, shape_doc="[B, T_k, H_kv, D_v]")
    for name, x in (("q", q), ("k", k), ("v", v)):
        if x.dtype not in FLOAT_DTYPES:
            raise TypeError(f"{name} must be float16, bfloat16, float32 or float64, got {x.dtype}")
    if not (q.dtype == k.dtype == v.dtype):
        raise TypeError(f"q, k and v must share one dtype, got q {q.dtype}, k {k.dtype}, v {v.dtype}")
    if not (q.device == k.device == v.device):
        raise ValueError(f"q, k and v must be on one device, got {q.device}, {k.device}, {v.device}")
    B, T_q, H, D_k = q.shape
    if k.shape[0] != B or v.shape[0] != B:
        raise ValueError(f"batch size mismatch: q has B={B}, k has {k.shape[0]}, v has {v.shape[0]}")
    if k.shape[1] != v.shape[1]:
        raise ValueError(f"k and v must have the same length T_k, got {k.shape[1]} and {v.shape[1]}")
    if k.shape[2] != v.shape[2]:
        raise ValueError(f"k and v must have the same number of heads H_kv, got {k.shape[2]} and {v.shape[2]}")
    if k.shape[3] != D_k:
        raise ValueError(f"k must have q's head dim D_k={D_k} (k is [B, T_k, H_kv, D_k]), got {k.shape[3]}")
    H_kv = k.shape[2]
    if H_kv == 0 or H % H_kv:
        raise ValueError(f"query heads H={H} must be a multiple of key/value heads H_kv={H_kv} (GQA/MQA)")
    return B, T_q, k.shape[1], H, H_kv, D_k, v.shape[3]


def gate(g, name: str, shape: tuple, doc: str, dtype_of: torch.Tensor, *, check_values: bool = True) -> torch.Tensor:
    """A log-space gate: exact shape, float32 (float64 allowed with float64 inputs), values ≤ 0."""
    tensor(g, name, shape_doc=doc)
    if tuple(g.shape) != tuple(shape):
        raise ValueError(f"{name} must have shape {doc} = {tuple(shape)}, got {tuple(g.shape)}")
    allowed = (torch.float32, torch.float64) if dtype_of.dtype == torch.float64 else (torch.float32,)
    if g.dtype not in allowed:
        raise TypeError(f"{name} (a log-space gate) must be float32{' or float64' if len(allowed) > 1 else ''}, got {g.dtype}")
    if g.device != dtype_of.device:
        raise ValueError(f"{name} must be on {dtype_of.device}, got {g.device}")
    if check_values and g.numel():
        def judge(lo, hi):
            if lo != lo or hi != hi:
                raise ValueError(f"{name} (log-space gate) contains NaN")
            if hi > 0:
                raise ValueError(f"{name} is a log-space decay and must be ≤ 0 (α = exp({name}) ≤ 1); max is {hi:.4g}")
        _min_max(g, judge)
    return g


def beta(b, shape: tuple, dtype_of: torch.Tensor) -> torch.Tensor:
    """Delta-rule step size: shape [B, T, H], q's dtype or float32, values in [0, 2]."""
    doc = "[B, T, H]"
    tensor(b, "beta", shape_doc=doc)
    if tuple(b.shape) != tuple(shape):
        raise ValueError(f"beta must have shape {doc} = {tuple(shape)}, got {tuple(b.shape)}")
    if b.dtype not in (dtype_of.dtype, torch.float32):
        raise TypeError(f"beta must have q's dtype ({dtype_of.dtype}) or float32, got {b.dtype}")
    if b.numel():
        def judge(lo, hi):
            if not (0 <= lo and hi <= 2):  # also false for NaN
                raise ValueError(f"beta must lie in [0, 2] (the transition I − β k kᵀ is then non-expansive for unit "
                                 f"keys); got values in [{lo:.4g}, {hi:.4g}]")
        _min_max(b, judge)
    return b


def per_head(x, name: str, H: int, device) -> torch.Tensor:
    """A per-head vector (sinks, ALiBi slopes, constant gates): shape [H]."""
    tensor(x, name, shape_doc="[H]")
    if tuple(x.shape) != (H,):
        raise ValueError(f"{name} must have shape [H] = ({H},), got {tuple(x.shape)}")
    if not x.is_floating_point():
        raise TypeError(f"{name} must be a floating tensor, got {x.dtype}")
    if x.device != device:
        raise ValueError(f"{name} must be on {device}, got {x.device}")
    return x


def _cu_shape(cu, B: int) -> None:
    tensor(cu, "cu_seqlens", ndim=1, shape_doc="[N+1]")
    if cu.dtype not in (torch.int32, torch.int64):
        raise TypeError(f"cu_seqlens must be int32 or int64, got {cu.dtype}")
    if B != 1:
        raise ValueError(f"cu_seqlens packs documents along T, so the batch size must be 1, got B={B}")


def _cu_bad(c: list, T: int) -> ValueError | None:
    if len(c) < 2 or c[0] != 0 or c[-1] != T or any(b < a for a, b in zip(c, c[1:])):
        return ValueError(f"cu_seqlens must be non-decreasing, start at 0 and end at T={T}, "
                          f"got {c if len(c) < 20 else c[:10] + ['…']}")
    return None


def cu_seqlens(cu, T: int, B: int) -> list[int]:
    """Packed documents: an int tensor [N+1], 0 = c_0 ≤ c_1 ≤ … ≤ c_N = T, with B = 1; returned as a
    list (read from the device: a host synchronisation; the kernels use ``cu_seqlens_shape`` and
    ``cu_seqlens_values`` instead)."""
    _cu_shape(cu, B)
    c = cu.tolist()
    bad = _cu_bad(c, T)
    if bad:
        raise bad
    return c


def cu_seqlens_shape(cu, T: int, B: int) -> int:
    """``cu_seqlens``'s type, dtype and shape (an int tensor [N+1], B = 1); returns N. Its values are
    checked by ``cu_seqlens_values`` from the kernels' own pass over it."""
    _cu_shape(cu, B)
    if cu.numel() < 2:
        raise _cu_bad(cu.tolist(), T)
    return cu.numel() - 1


def cu_seqlens_values(cu, bad: torch.Tensor, T: int) -> None:
    """Raise the cu_seqlens error if ``bad`` (a one-element count of broken entries, computed on the
    device) is not 0: at once, or inside ``deferred_values()`` on CUDA when the block ends, without
    reading anything back before. Unlike the gate and β checks this one runs inside
    ``trusted_values()`` too: a wrong boundary is not a modelling choice."""
    def judge(lo, hi):
        if hi != 0:
            c = cu.tolist()
            raise _cu_bad(c, T) or RuntimeError(  # the device's count and the host's reading disagree
                f"the chunk-map kernel counted {hi} broken cu_seqlens entries in {c if len(c) < 20 else c[:10]}, "
                f"which the host finds valid for T={T}: a kernel fault, please report it")
    _min_max(bad, judge, always=True, reduce=False)


def positive_int(x, name: str) -> int:
    if isinstance(x, bool) or not isinstance(x, int):
        raise TypeError(f"{name} must be an int, got {type(x).__name__}")
    if x < 1:
        raise ValueError(f"{name} must be ≥ 1, got {x}")
    return x


def positive_float(x, name: str) -> float:
    if isinstance(x, bool) or not isinstance(x, (int, float)):
        raise TypeError(f"{name} must be a number, got {type(x).__name__}")
    if not x > 0:
        raise ValueError(f"{name} must be > 0, got {x}")
    return float(x)
