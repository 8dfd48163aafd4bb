"""Triton kernels (GPU; CPU under ``TRITON_INTERPRET=1``), registered lazily.

Importing this package does not import Triton: it adds ``("triton", "chunk")`` to
``longmix.mechanisms.base.KERNELS`` as a thin wrapper that loads ``.chunk`` on first
use, and declares the ``triton`` backend for the mechanisms whose configurations the
kernels fully support — only when Triton is installed. A configuration the kernels
do not support raises a clear error; nothing falls back to another backend.

Example::

    >>> import longmix, torch                                   # doctest: +SKIP
    >>> o = longmix.attention(q, k, v, "retention", backend="triton")  # doctest: +SKIP
"""
from __future__ import annotations

import importlib.util

# Mechanisms whose every option maps onto what the kernels support (no gate, scalar or
# per-key gate; any feature dim; initial and final state). Delta-rule ones come later.
SUPPORTED = ("linear", "transnormer", "retention", "lightning", "mamba2", "gla")


def available() -> bool:
    """Whether Triton is installed (the kernels then run on CUDA, or on CPU under TRITON_INTERPRET=1)."""
    return importlib.util.find_spec("triton") is not None


def _chunk(q, k, v, g, beta, s0, chunk_size):
    from .chunk import chunk

    return chunk(q, k, v, g, beta, s0, chunk_size=chunk_size)


def _single_step(q, k, v, g, beta, s0, chunk_size):
    """The recurrent form for one token (decoding) is one chunk of length 1."""
    if k.shape[1] != 1:
        raise ValueError("the triton backend has no token-by-token kernel for T > 1; use form='chunk' "
                         "(same result) or backend='reference'")
    return _chunk(q, k, v, g, beta, s0, chunk_size=16)


def _no_parallel(*args, **kwargs):
    raise ValueError("the triton backend has no parallel (T×T) form for recurrent mechanisms; use form='chunk'")


def register() -> None:
    """Add the Triton kernels to the kernel table and the backend to the supported mechanisms."""
    from ...mechanisms import base
    from ... import registry

    base.KERNELS[("triton", "chunk")] = _chunk
    base.KERNELS[("triton", "recurrent")] = _single_step
    base.KERNELS[("triton", "parallel")] = _no_parallel
    for name in SUPPORTED:
        registry.add_backend(name, "triton")


if available():
    register()
