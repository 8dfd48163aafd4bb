"""The registry: the single list of mechanisms.

A :class:`Mechanism` is a small declarative description (what it computes, which
inputs it takes, which forms and backends it has) plus a ``run`` callable that
realises it. Tests, the CLI, benchmarks and models find mechanisms here, so adding a
mechanism means writing its own file under ``mechanisms/`` and calling
:func:`register` there.

Example::

    >>> import longmix
    >>> "gla" in longmix.mechanisms()
    True
    >>> print(longmix.describe("gla").formula)
    S_t = diag(α_t) S_{t-1} + k_t v_tᵀ;  o_t = S_tᵀ(scale·q_t)
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable, Mapping

FORMS = ("parallel", "chunk", "recurrent")
BACKENDS = ("reference", "triton", "sdpa")


@dataclass(frozen=True)
class Mechanism:
    """What a mechanism is: a row of the registry, returned by ``longmix.describe``.

    Attributes:
        name: registry name, e.g. ``"gated_deltanet"``.
        family: ``"dense"``, ``"linear"``, ``"decay"`` or ``"delta"``.
        formula: one-line definition (state recurrence or weight).
        paper: the paper(s) that define it.
        forms: execution forms it has (subset of ``parallel``, ``chunk``, ``recurrent``).
        backends: backends it has (``reference`` always; ``triton`` once kernels exist).
        inputs: option name → description, for every option it accepts.
        required: options that must be given.
        state: the recurrent state (or KV cache) it carries between calls.
        complexity: form → time/memory complexity for a sequence of length T.
        noncausal: how ``causal=False`` is defined for it.
        run: ``run(form, backend, q, k, v, opts, initial_state) -> (o, state)``; internal.
        check: ``check(q, k, v, opts)`` validates the mechanism's own options; internal.
        step: ``step(backend, q, k, v, opts, state) -> o`` advances a recurrent state in place
            (``longmix.Decoder``); None for dense mechanisms; internal.
        cross: whether T_q ≠ T_k (cross attention, KV-cache decoding) is allowed.
        backend_forms: backend → the forms it serves, where not all of ``forms``.
        backend_unsupported: backend → options it cannot serve (``auto`` then picks another).
    """

    name: str
    family: str
    formula: str
    paper: str
    forms: tuple[str, ...]
    inputs: Mapping[str, str]
    required: frozenset[str]
    state: str
    complexity: Mapping[str, str]
    noncausal: str
    run: Callable = field(repr=False, compare=False)
    check: Callable = field(repr=False, compare=False)
    backends: tuple[str, ...] = ("reference",)
    cross: bool = False
    backend_forms: Mapping[str, tuple] = field(default_factory=dict)
    backend_unsupported: Mapping[str, frozenset] = field(default_factory=dict)
    step: Callable | None = field(default=None, repr=False, compare=False)

    def __str__(self) -> str:  # what a user sees when printing describe(name)
        lines = [
            f"{self.name} ({self.family})",
            f"  formula:    {self.formula}",
            f"  paper:      {self.paper}",
            f"  forms:      {', '.join(self.forms)}",
            f"  backends:   {', '.join(self.backends)}",
            f"  state:      {self.state}",
            f"  noncausal:  {self.noncausal}",
            "  inputs:",
        ]
        for k, v in self.inputs.items():
            req = " (required)" if k in self.required else ""
            lines.append(f"    {k}{req}: {v}")
        lines.append("  complexity:")
        for k, v in self.complexity.items():
            lines.append(f"    {k}: {v}")
        return "\n".join(lines)


_REGISTRY: dict[str, Mechanism] = {}


def register(mech: Mechanism) -> Mechanism:
    """Add ``mech`` to the registry (called once, from the mechanism's own file)."""
    if mech.name in _REGISTRY:
        raise ValueError(f"mechanism {mech.name!r} is already registered")
    bad = set(mech.forms) - set(FORMS)
    if bad:
        raise ValueError(f"mechanism {mech.name!r}: unknown forms {sorted(bad)}; forms are {FORMS}")
    _REGISTRY[mech.name] = mech
    return mech


def add_backend(name: str, backend: str) -> None:
    """Declare that ``backend`` now serves mechanism ``name`` (used by kernel packages)."""
    mech = get(name)
    if backend not in mech.backends:
        object.__setattr__(mech, "backends", mech.backends + (backend,))


def _load() -> None:
    import importlib

    importlib.import_module("longmix.mechanisms")  # importing registers every mechanism


def get(name: str) -> Mechanism:
    """The mechanism called ``name``; ValueError naming the registered ones otherwise."""
    _load()
    if not isinstance(name, str):
        raise TypeError(f"mechanism must be a str (one of {sorted(_REGISTRY)}), got {type(name).__name__}")
    try:
        return _REGISTRY[name]
    except KeyError:
        raise ValueError(f"unknown mechanism {name!r}; registered mechanisms: {', '.join(_REGISTRY)}") from None


def names() -> list[str]:
    """Registered mechanism names, in registration order."""
    _load()
    return list(_REGISTRY)
