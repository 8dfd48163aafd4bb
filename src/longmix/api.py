"""The public API: ``attention``, ``mechanisms``, ``describe``.

Example::

    >>> import torch, longmix
    >>> q, k, v = torch.randn(3, 2, 128, 4, 32).unbind(0)
    >>> beta = torch.rand(2, 128, 4)
    >>> g = torch.nn.functional.logsigmoid(torch.randn(2, 128, 4))
    >>> k = torch.nn.functional.normalize(k, dim=-1)
    >>> o, S = longmix.attention(q, k, v, "gated_deltanet", g=g, beta=beta, output_final_state=True)
    >>> o.shape, S.shape, S.dtype
    (torch.Size([2, 128, 4, 32]), torch.Size([2, 4, 32, 32]), torch.float32)
"""
from __future__ import annotations

import logging

import torch

from . import checks, registry
from .mechanisms.base import VARLEN
from .registry import BACKENDS, FORMS, Mechanism

log = logging.getLogger("longmix")

# Options that belong to some mechanisms only; a mechanism refuses those it does not list.
MECHANISM_OPTIONS = (
    "g", "beta", "feature_map", "normalize", "window", "sinks", "alibi_slopes", "softcap", "bias",
    "block_size", "length_scaling",
)
# Dense attention below this many weight entries (B·H·T_q·T_k) runs the parallel form under "auto".
AUTO_PARALLEL_MAX = 1 << 24


def mechanisms() -> list[str]:
    """Names of every registered mechanism, in registration order."""
    return registry.names()


def describe(name: str) -> Mechanism:
    """What mechanism ``name`` computes: formula, paper, forms, backends, inputs, state,
    complexity and noncausal definition (``print(describe(name))`` shows them all)."""
    return registry.get(name)


def _choose_backend(mech: Mechanism, backend: str, q: torch.Tensor, given: dict) -> str:
    if not isinstance(backend, str) or (backend != "auto" and backend not in BACKENDS):
        raise ValueError(f"backend must be 'auto' or one of {BACKENDS}, got {backend!r}")
    if backend != "auto":
        if backend not in mech.backends:
            raise ValueError(f"mechanism {mech.name!r} has no backend {backend!r}; its backends are {mech.backends}")
        lacks = sorted(set(given) & set(mech.backend_unsupported.get(backend, ())))
        if lacks:
            raise ValueError(f"backend {backend!r} of {mech.name!r} cannot serve {', '.join(lacks)}; "
                             f"use backend='reference' (or 'auto')")
        return backend
    chosen, why = "reference", "the PyTorch reference"
    if q.is_cuda:
        for b in ("triton", "sdpa"):
            if b in mech.backends and not set(given) & set(mech.backend_unsupported.get(b, ())):
                chosen, why = b, f"CUDA tensors and {b} serves every option given"
                break
    log.debug("longmix: %s backend=%s (%s)", mech.name, chosen, why)
    return chosen


def _choose_form(mech: Mechanism, backend: str, form: str, B: int, H: int, T_q: int, T_k: int, causal: bool) -> str:
    if not isinstance(form, str) or (form != "auto" and form not in FORMS):
        raise ValueError(f"form must be 'auto' or one of {FORMS}, got {form!r}")
    allowed = mech.backend_forms.get(backend, mech.forms)
    if form != "auto":
        if form not in mech.forms:
            raise ValueError(f"mechanism {mech.name!r} has no form {form!r}; its forms are {mech.forms}")
        if form not in allowed:
            raise ValueError(f"backend {backend!r} of {mech.name!r} serves the forms {allowed}, not {form!r}")
        return form
    if len(allowed) == 1:
        chosen, why = allowed[0], f"the only form of backend {backend!r}"
    elif mech.family == "dense":
        chosen = "parallel" if B * H * T_q * T_k <= AUTO_PARALLEL_MAX else "chunk"
        why = f"B·H·T_q·T_k = {B * H * T_q * T_k} {'≤' if chosen == 'parallel' else '>'} {AUTO_PARALLEL_MAX}"
    elif T_q == 1 and causal:
        chosen, why = "recurrent", "a single query token (decoding)"
    else:
        chosen, why = "chunk", "the chunkwise form is the training/prefill path"
    log.debug("longmix: %s form=%s (%s)", mech.name, chosen, why)
    return chosen


def _slice_doc(opts: dict, s: int, e: int) -> dict:
    """The options of one packed document: time-indexed tensors cut to [s, e)."""
    out = dict(opts)
    for name in ("g", "beta"):
        x = opts.get(name)
        if x is not None and x.dim() >= 3:
            out[name] = x[:, s:e]
    b = opts.get("bias")
    if torch.is_tensor(b) and b.dim() >= 1:  # [..., T_q, T_k], each of the two dims full or 1
        kcut = slice(s, e) if b.shape[-1] > 1 else slice(None)
        if b.dim() == 1:
            out["bias"] = b[kcut]
        else:
            out["bias"] = b[..., slice(s, e) if b.shape[-2] > 1 else slice(None), kcut]
    return out


def attention(q, k, v, mechanism, *, causal=True, scale=None, g=None, beta=None, feature_map=None,
              normalize=None, window=None, sinks=None, alibi_slopes=None, softcap=None, bias=None,
              block_size=None, length_scaling=None, cu_seqlens=None, initial_state=None,
              output_final_state=False, chunk_size=None, form="auto", backend="auto"):
    """Run attention mechanism ``mechanism`` on q [B, T_q, H, D_k], k [B, T_k, H_kv, D_k], v [B, T_k, H_kv, D_v].

    Args:
        mechanism: a name from :func:`mechanisms`; :func:`describe` lists its options.
        causal: causal (query i sees keys j ≤ i, bottom-right aligned when T_q ≠ T_k) or not.
        scale: multiplies q (φ(q) for linear attention); default D_k^-½ (F^-½ after a feature map).
        g, beta, feature_map, normalize, window, sinks, alibi_slopes, softcap, bias, block_size,
            length_scaling: mechanism options (see ``describe(mechanism).inputs``); an option the
            mechanism does not take raises ValueError.
        cu_seqlens: int tensor [N+1] of packed-document boundaries (B must be 1); attention and
            state never cross a boundary. The triton backend runs every document in one launch per
            kernel: on the GPU the tensor is never read back (no host sync); a CPU tensor is read
            on the host, which gives an exact chunk count (less memory with many short documents).
        initial_state: [B, H, D_k, D_v] (or [N, ...] with cu_seqlens) for recurrent mechanisms.
        output_final_state: also return the final state, float32 (float64 for float64 inputs).
        chunk_size: chunk length of the chunkwise form (default 64; 128 query/key tiles for dense).
            The triton backend takes 16, 32, 64 or 128 and is tuned for 64 (128 took 1.2-3.1x its
            time on an H100 at B=16, T=2K and at B=1, T=32K, benchmarks/results/2026-11-26-h100-s16/,
            2026-11-27-h100-s22/).
        form: "auto", "parallel", "chunk" or "recurrent".
        backend: "auto", "reference", "triton" (GPU kernels of the recurrent mechanisms) or "sdpa"
            (PyTorch's fused softmax kernels). "auto" picks triton or sdpa for CUDA tensors when the
            mechanism has it and it serves every option given, else the reference.

    Returns:
        o [B, T_q, H, D_v] in q's dtype, or (o, state) with ``output_final_state=True``.
    """
    mech = registry.get(mechanism)
    B, T_q, T_k, H, H_kv, D_k, D_v = checks.qkv(q, k, v)
    if not isinstance(causal, bool):
        raise TypeError(f"causal must be a bool, got {type(causal).__name__}")
    if scale is not None:
        scale = checks.positive_float(scale, "scale")
    if chunk_size is not None:
        checks.positive_int(chunk_size, "chunk_size")
    if not isinstance(output_final_state, bool):
        raise TypeError(f"output_final_state must be a bool, got {type(output_final_state).__name__}")

    given = {n: val for n, val in zip(MECHANISM_OPTIONS, (g, beta, feature_map, normalize, window, sinks, alibi_slopes,
                                                          softcap, bias, block_size, length_scaling)) if val is not None}
    extra = [n for n in given if n not in mech.inputs]
    if extra:
        takes = ", ".join(mech.inputs) or "none"
        raise ValueError(f"mechanism {mech.name!r} does not take {', '.join(extra)}; its options are: {takes}")
    missing = sorted(mech.required - set(given))
    if missing:
        raise ValueError(f"mechanism {mech.name!r} needs {', '.join(missing)}: " +
                         "; ".join(f"{n} = {mech.inputs[n]}" for n in missing))
    if T_q != T_k and not mech.cross:
        raise ValueError(f"mechanism {mech.name!r} is a recurrence over one sequence: q and k must have the same "
                         f"length, got T_q={T_q}, T_k={T_k}")
    recurrent = mech.family != "dense"
    if not recurrent and (initial_state is not None or output_final_state):
        raise ValueError(f"mechanism {mech.name!r} carries no recurrent state (its cache is k, v themselves): "
                         "initial_state and output_final_state are for recurrent mechanisms")
    if not causal and (initial_state is not None or output_final_state):
        raise ValueError("noncausal (bidirectional) attention has no recurrent state: initial_state and "
                         "output_final_state need causal=True")
    opts = dict(given, causal=causal, scale=scale, chunk_size=chunk_size)
    backend = _choose_backend(mech, backend, q, given)
    form = _choose_form(mech, backend, form, B, H, T_q, T_k, causal)
    with checks.deferred_values():  # on CUDA, value checks resolve after launching (see checks.py)
        mech.check(q, k, v, opts)
        return _run(mech, form, backend, q, k, v, opts, cu_seqlens, initial_state, output_final_state)


def _run(mech, form, backend, q, k, v, opts, cu_seqlens, initial_state, output_final_state):
    """Run a validated call: packed documents in one call where the kernels take them
    (``mechanisms.base.VARLEN``), else one document after another."""
    B, T_q, H = q.shape[:3]
    T_k = k.shape[1]

    if cu_seqlens is None:
        o, state = mech.run(form, backend, q, k, v, opts, initial_state)
        return (o, state) if output_final_state else o
    if T_q != T_k:
        raise ValueError(f"cu_seqlens packs one sequence of documents: T_q must equal T_k, got {T_q} and {T_k}")
    if mech.family != "dense" and opts["causal"] and (backend, form) in VARLEN:
        # one launch for all documents; the bounds stay on the device (the kernels' map checks the values,
        # deferred on CUDA like the gate checks)
        N = checks.cu_seqlens_shape(cu_seqlens, T_k, B)
        _check_doc_states(initial_state, N)
        o, state = mech.run(form, backend, q, k, v, opts, initial_state, cu_seqlens=cu_seqlens)
        return (o, state) if output_final_state else o
    bounds = checks.cu_seqlens(cu_seqlens, T_k, B)
    _check_doc_states(initial_state, len(bounds) - 1)
    outs, states = [], []
    for i, (s, e) in enumerate(zip(bounds, bounds[1:])):
        o_i, st_i = mech.run(form, backend, q[:, s:e], k[:, s:e], v[:, s:e], _slice_doc(opts, s, e),
                             None if initial_state is None else initial_state[i:i + 1])
        outs.append(o_i)
        states.append(st_i)
    o = torch.cat(outs, 1)
    state = torch.cat(states, 0) if output_final_state else None
    return (o, state) if output_final_state else o


def _check_doc_states(initial_state, N: int) -> None:
    if initial_state is not None and (not torch.is_tensor(initial_state) or initial_state.shape[0] != N):
        shape = tuple(initial_state.shape) if torch.is_tensor(initial_state) else type(initial_state).__name__
        raise ValueError(f"with cu_seqlens, initial_state must have shape [N, H, D_k, D_v] with N={N} documents, got {shape}")
