"""``Decoder``: step a recurrent mechanism token by token against a state held in place.

``attention(..., initial_state=S, output_final_state=True)`` decodes too, but each call checks
every input, picks a backend and a form, and allocates a new state: on a GPU that host work
(~0.1 ms) is longer than the step itself (reading and writing a [64, 16, 128, 128] float32 state
takes ~0.04 ms on an H200). A ``Decoder`` validates the whole call once per *signature* (shapes,
dtypes, devices and option names of the inputs; it remembers a few, so steps of 1 and of k
tokens may alternate) and then only launches: the fused recurrent kernel advances its state in
place and allocates just the output. A signature's first step runs through ``attention`` for
the validation, whose result it drops, and then as every later step does, so that all steps
round alike.

Value checks (gates ≤ 0, beta in [0, 2]) still run on every step unless the step is inside
:func:`longmix.trusted_values` — on CUDA each checked step waits for the GPU, so serving loops
whose gates are in range by construction should use it. Steps are inference only (inputs that
need gradients raise); train with ``attention``.

Example::

    >>> import torch, longmix
    >>> q, k, v = torch.randn(3, 2, 9, 4, 16).unbind(0)
    >>> g = torch.nn.functional.logsigmoid(torch.randn(2, 9, 4) + 2)
    >>> o, S = longmix.attention(q[:, :8], k[:, :8], v[:, :8], "mamba2", g=g[:, :8], output_final_state=True)
    >>> dec = longmix.Decoder("mamba2", S)            # continue from the prefill's state
    >>> o9 = dec.step(q[:, 8:], k[:, 8:], v[:, 8:], g=g[:, 8:])
    >>> full = longmix.attention(q, k, v, "mamba2", g=g)
    >>> torch.allclose(o9, full[:, 8:], atol=1e-5), dec.state is S   # S itself was advanced
    (True, True)
"""
from __future__ import annotations

import torch

from . import api, checks, registry
from .mechanisms.base import compute_dtype

# what a Decoder takes besides q, k, v: the mechanism's options and the output scale
_OPTIONS = frozenset(api.MECHANISM_OPTIONS) | {"scale"}


def _signature(q, k, v, options: dict) -> tuple:
    """What must not change between steps for the first step's validation to hold."""
    opts = tuple((n, (x.shape, x.dtype, x.device, x.requires_grad) if torch.is_tensor(x) else id(x))
                 for n, x in options.items())
    return (q.shape, k.shape, v.shape, q.dtype, k.dtype, v.dtype, q.device, k.device, v.device,
            torch.is_grad_enabled() and (q.requires_grad or k.requires_grad or v.requires_grad), opts)


class Decoder:
    """Decode with recurrent mechanism ``mechanism``, advancing ``state`` in place.

    Args:
        mechanism: a recurrent mechanism's name (``describe(name).family != "dense"``).
        state: [B, H, D_k, D_v] contiguous float32 (float64 for float64 inputs on the reference),
            e.g. the final state of a prefill ``attention(..., output_final_state=True)``; it is
            updated in place by every step. None: zeros, made at the first step.
        backend: as in :func:`longmix.attention` ("auto": triton for CUDA tensors where the
            mechanism has it, else the reference).
        **options: options that hold for every step (``scale``, ``feature_map``, ``normalize``,
            a constant ``g`` [H]); per-token ones (``g`` [B, T, H…], ``beta``) go to :meth:`step`.
    """

    def __init__(self, mechanism: str, state: torch.Tensor | None = None, *, backend: str = "auto", **options):
        self.mechanism = registry.get(mechanism)
        if self.mechanism.step is None:
            raise ValueError(f"Decoder steps recurrent mechanisms; {mechanism!r} is dense (its cache is the keys and "
                             "values: call attention(q, k_cache, v_cache) with the cache grown by each step)")
        _check_names(options)
        self.options = options
        self.backend = backend
        self.state = state

    @property
    def state(self) -> torch.Tensor | None:
        """The recurrent state [B, H, D_k, D_v] (D_v + 1 with ``normalize=True``), advanced in place."""
        return self._state

    @state.setter
    def state(self, state: torch.Tensor | None) -> None:
        if state is not None:
            checks.tensor(state, "state", ndim=4, shape_doc="[B, H, D_k, D_v]")
            if state.dtype not in (torch.float32, torch.float64) or not state.is_contiguous():
                raise ValueError(f"state must be a contiguous float32 tensor (it is updated in place), got "
                                 f"{state.dtype}{'' if state.is_contiguous() else ', not contiguous'}; "
                                 "pass state.float().contiguous()")
        self._state = state
        self._keys = set()  # the signatures validated against this state: validate the next step in full

    def step(self, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, **options) -> torch.Tensor:
        """Advance the state by q [B, T, H, D_k], k [B, T, H_kv, D_k], v [B, T, H_kv, D_v] (T ≥ 0,
        usually 1) with per-token ``options`` (``g``, ``beta``); return o [B, T, H, D_v] in q's dtype."""
        if options:
            options = {**self.options, **options}
        else:
            options = self.options
        key = _signature(q, k, v, options)
        if key not in self._keys:
            return self._first(q, k, v, options, key)
        opts = dict(options, causal=True, chunk_size=None, scale=options.get("scale"))
        if checks.is_trusted():
            return self.mechanism.step(self._backend, q, k, v, opts, self._state)
        with checks.deferred_values():  # shapes are known to hold; this re-checks gate and beta values
            self.mechanism.check(q, k, v, opts)
            return self.mechanism.step(self._backend, q, k, v, opts, self._state)

    def prefill(self, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, **options) -> torch.Tensor:
        """Run T tokens at once (the chunkwise form: the prompt) from the state, which then holds
        their end; return o. Differentiable like :func:`longmix.attention`, apart from the state."""
        options = {**self.options, **options}
        _check_names(options)
        o, S = api.attention(q, k, v, self.mechanism.name, initial_state=self._state, output_final_state=True,
                             backend=self.backend, **options)
        self._store(S.detach() if self._state is not None else S.detach().clone())  # never autograd's own tensor
        return o

    def reset(self) -> None:
        """Zero the state in place (a new sequence in every batch row)."""
        if self._state is not None:
            self._state.zero_()

    def _first(self, q, k, v, options, key):
        """A new input signature: the whole of ``attention``'s validation, then the step."""
        _check_names(options)
        tensors = [q, k, v] + [x for x in options.values() if torch.is_tensor(x)]
        if torch.is_grad_enabled() and any(x.requires_grad for x in tensors):
            raise ValueError("Decoder steps are inference only (the state is overwritten): run them under "
                             "torch.no_grad(), or use attention(..., initial_state=S) for gradients")
        checks.qkv(q, k, v)
        if self._state is not None:
            if self._state.dtype != compute_dtype(q):
                raise TypeError(f"state must be {compute_dtype(q)} for {q.dtype} inputs, got {self._state.dtype}")
            if self._state.device != q.device:
                raise ValueError(f"state must be on the inputs' device {q.device}, got {self._state.device}")
        # the whole validation (state included); its result is dropped: every step, this one too, then
        # runs the same path (the step fuses an elementwise feature map and an output norm, which round
        # differently from the general path's separate ops)
        _, S = api.attention(q, k, v, self.mechanism.name, initial_state=self._state, output_final_state=True,
                             form="recurrent", backend=self.backend, **options)
        given = {n: x for n, x in options.items() if n != "scale" and x is not None}
        self._backend = api._choose_backend(self.mechanism, self.backend, q, given)
        if self._state is None:
            self._state = torch.zeros_like(S, memory_format=torch.contiguous_format)
        if len(self._keys) >= 8:  # a few signatures alternate (e.g. 1 and k tokens a step); more is unusual
            self._keys.clear()
        self._keys.add(key)
        opts = dict(options, causal=True, chunk_size=None, scale=options.get("scale"))
        return self.mechanism.step(self._backend, q, k, v, opts, self._state)

    def _store(self, S):
        if self._state is None or self._state.shape != S.shape:
            self._state = S.contiguous()
            self._keys = set()
        else:
            self._state.copy_(S)


def _check_names(options: dict) -> None:
    bad = sorted(set(options) - _OPTIONS)
    if bad:
        raise TypeError(f"Decoder got unexpected options {', '.join(bad)}; it takes scale and the mechanism's "
                        f"options ({', '.join(api.MECHANISM_OPTIONS)})")
