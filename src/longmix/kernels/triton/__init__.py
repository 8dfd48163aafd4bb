"""Triton kernels (GPU; CPU under ``TRITON_INTERPRET=1``), registered lazily.

Importing this package does not import Triton: it adds ``("triton", "chunk")`` and
``("triton", "recurrent")`` (the fused decode kernel, ``recurrent.py``) to
``longmix.mechanisms.base.KERNELS`` (and its in-place step to ``base.STEPS``) and linear attention's normaliser (``normalizer.py``) to
``base.NORMALIZERS`` as thin wrappers that load their module on first
use, marks both forms as taking packed documents natively (``base.VARLEN``, ``_varlen.py``), and declares the ``triton`` backend for the mechanisms whose configurations the
kernels fully support — only when Triton is installed. A configuration the kernels
do not support raises a clear error; nothing falls back to another backend.

Example::

    >>> import longmix, torch                                   # doctest: +SKIP
    >>> o = longmix.attention(q, k, v, "retention", backend="triton")  # doctest: +SKIP
"""
from __future__ import annotations

import importlib.util

# Mechanisms whose every option maps onto what the kernels support (no gate, scalar or
# per-key gate, delta rule with D_k ≤ 256; any feature dim; initial and final state).
SUPPORTED = ("linear", "transnormer", "retention", "lightning", "mamba2", "gla", "deltanet", "gated_deltanet", "kda")


def configure(settings: dict) -> None:
    """Change kernel settings: ``settings`` maps a table's name (``"chunk"``, ``"_delta"``, ``"_gla"``: those modules'
    ``CONFIG``) to the keys to set, e.g. ``{"_gla": {"fwd_scaled_bh": 64}}`` (lists become tuples). For benchmarks and
    for testing a setting before it becomes a default; raises KeyError on a name no table has. Imports Triton."""
    from . import _delta, _gla, chunk

    tables = {"chunk": chunk.CONFIG, "_delta": _delta.CONFIG, "_gla": _gla.CONFIG}
    for name, values in settings.items():
        if name not in tables or not set(values) <= set(tables[name]):
            raise KeyError(f"no kernel setting {name}.{sorted(set(values) - set(tables.get(name, {})))} "
                           f"(tables: {sorted(tables)})")
    for name, values in settings.items():
        tables[name].update({k: tuple(v) if isinstance(v, list) else v for k, v in values.items()})


def available() -> bool:
    """Whether Triton is installed (the kernels then run on CUDA, or on CPU under TRITON_INTERPRET=1)."""
    return importlib.util.find_spec("triton") is not None


def _chunk(q, k, v, g, beta, s0, chunk_size, scale=1.0, cu_seqlens=None):
    from .chunk import chunk

    return chunk(q, k, v, g, beta, s0, chunk_size=chunk_size, scale=scale, cu_seqlens=cu_seqlens)


def _recurrent(q, k, v, g, beta, s0, chunk_size, scale=1.0, cu_seqlens=None):
    """The recurrent form (decoding): the fused token-by-token kernel (forward only for T > 1)."""
    from .recurrent import recurrent

    return recurrent(q, k, v, g, beta, s0, scale=scale, cu_seqlens=cu_seqlens)


def _step(q, k, v, g, beta, state, scale=1.0, phi=None, norm=False):
    """A decoding step in place on ``state`` (``longmix.Decoder``): the fused kernel, no checks."""
    from .recurrent import step

    return step(q, k, v, g, beta, state, scale=scale, phi=phi, norm=norm)


def _normalized(o, q, k, z0, causal, cu_seqlens=None, total=False):
    """Linear attention's normalised output o / (q_t·z_t), fused (``normalizer.py``)."""
    from .normalizer import normalized

    return normalized(o, q, k, z0, causal, cu_seqlens, total=total)


def _no_parallel(*args, **kwargs):
    raise ValueError("the triton backend has no parallel (T×T) form for recurrent mechanisms; use form='chunk'")


def register() -> None:
    """Add the Triton kernels to the kernel table and the backend to the supported mechanisms."""
    from ...mechanisms import base
    from ... import registry

    base.KERNELS[("triton", "chunk")] = _chunk
    base.KERNELS[("triton", "recurrent")] = _recurrent
    base.KERNELS[("triton", "parallel")] = _no_parallel
    base.STEPS["triton"] = _step
    base.NORMALIZERS["triton"] = _normalized
    base.VARLEN.update({("triton", "chunk"), ("triton", "recurrent")})  # cu_seqlens in one launch (_varlen.py)
    for name in SUPPORTED:
        registry.add_backend(name, "triton")


if available():
    register()
