"""Random inputs for any registered mechanism, built from what the registry documents.

``describe(name).inputs`` maps each option to a description that starts with its shape
(``"[B, T, H] float32 ... log-decay ≤ 0"``) or its type (``"int: ..."``). ``GENERATORS``
maps (option name, documented shape) to a random generator, so a new mechanism whose
options reuse documented shapes is tested just by registering it; a new kind of input
fails loudly in :func:`generate` and needs one line here.

Everything is drawn in float64 and then *lowered* (``Case.cast``): q/k/v-like tensors to
the test dtype, log-space gates to float32 (the library's convention), so the float64
reference sees exactly the values the low-precision run saw.
"""
from __future__ import annotations

import dataclasses
import re
from dataclasses import dataclass, field

import torch
import torch.nn.functional as F

import longmix

f64 = torch.float64


@dataclass
class Ctx:
    B: int
    T_q: int
    T_k: int
    H: int
    D_k: int
    D_v: int
    gen: torch.Generator

    def randn(self, *shape):
        return torch.randn(*shape, generator=self.gen, dtype=f64)

    def rand(self, *shape):
        return torch.rand(*shape, generator=self.gen, dtype=f64)


def _gate(ctx, *shape):
    """log α = logsigmoid(x + 2): decays mostly in (0.6, 1), some much stronger."""
    return F.logsigmoid(ctx.randn(*shape) + 2.0)


# (option, documented shape or type word) → (generator(ctx), how it is lowered: "gate" | "like_q" | None)
GENERATORS = {
    ("g", "[B, T, H]"): (lambda c: _gate(c, c.B, c.T_q, c.H), "gate"),
    ("g", "[B, T, H, D_k]"): (lambda c: _gate(c, c.B, c.T_q, c.H, c.D_k), "gate"),
    ("g", "[H]"): (lambda c: -0.5 * c.rand(c.H), "gate"),
    ("beta", "[B, T, H]"): (lambda c: 2.0 * c.rand(c.B, c.T_q, c.H), "like_q"),
    ("sinks", "[H]"): (lambda c: c.randn(c.H), "like_q"),
    ("alibi_slopes", "[H]"): (lambda c: 0.1 + 0.5 * c.rand(c.H), "like_q"),
    ("bias", "number"): (lambda c: c.randn(1, c.H, c.T_q, c.T_k), "like_q"),
    ("window", "int"): (lambda c: max(2, c.T_k // 4), None),
    ("block_size", "int"): (lambda c: max(2, c.T_k // 3), None),
    ("softcap", "float"): (lambda c: 1.5, None),
    ("length_scaling", "bool"): (lambda c: True, None),
    ("normalize", "bool"): (lambda c: True, None),
    ("feature_map", None): (lambda c: "elu1", None),
}


def documented_shape(desc: str) -> str:
    """"[B, T, H] float32 …" → "[B, T, H]"; "int: …" → "int"."""
    m = re.match(r"\s*(\[[^\]]*\])", desc)
    return m.group(1) if m else re.split(r"[\s:]", desc.strip(), 1)[0]


def generate(name: str, option: str, ctx: Ctx):
    desc = longmix.describe(name).inputs[option]
    key = (option, documented_shape(desc))
    if key not in GENERATORS:
        key = (option, None)
    if key not in GENERATORS:
        raise KeyError(f"tests/inputs.py has no generator for {name}'s option {option!r} documented as {desc!r}: "
                       f"add one to GENERATORS keyed by ({option!r}, {documented_shape(desc)!r})")
    gen, lowering = GENERATORS[key]
    return gen(ctx), lowering


@dataclass
class Case:
    """q, k, v and options for one call; ``lowering`` says how each tensor option is cast."""

    name: str
    q: torch.Tensor
    k: torch.Tensor
    v: torch.Tensor
    opts: dict = field(default_factory=dict)
    lowering: dict = field(default_factory=dict)
    initial_state: torch.Tensor | None = None

    @property
    def dtype(self):
        return self.q.dtype

    def cast(self, dtype) -> "Case":
        """Same values in ``dtype`` (gates float32 unless dtype is float64; states float32/64)."""
        def low(x, how):
            if not torch.is_tensor(x) or not x.is_floating_point():
                return x
            if how == "gate" or how == "state":
                return x.to(f64 if dtype == f64 else torch.float32)
            return x.to(dtype)
        opts = {n: low(x, self.lowering.get(n)) for n, x in self.opts.items()}
        s0 = None if self.initial_state is None else low(self.initial_state, "state")
        return dataclasses.replace(self, q=self.q.to(dtype), k=self.k.to(dtype), v=self.v.to(dtype), opts=opts,
                                   initial_state=s0)

    def detached(self) -> "Case":
        d = lambda x: x.detach().clone() if torch.is_tensor(x) else x  # noqa: E731
        return dataclasses.replace(self, q=d(self.q), k=d(self.k), v=d(self.v),
                                   opts={n: d(x) for n, x in self.opts.items()}, initial_state=d(self.initial_state))

    def grad_leaves(self) -> dict:
        """Every floating tensor input, set to require grad: {name: tensor}."""
        leaves = {"q": self.q, "k": self.k, "v": self.v}
        leaves.update({n: x for n, x in self.opts.items() if torch.is_tensor(x) and x.is_floating_point()})
        if self.initial_state is not None:
            leaves["initial_state"] = self.initial_state
        for x in leaves.values():
            x.requires_grad_(True)
        return leaves

    def slice_time(self, s, e) -> "Case":
        """Tokens [s, e) of a self-attention case (time-indexed options cut too)."""
        T = self.q.shape[1]
        opts = {}
        for n, x in self.opts.items():
            if torch.is_tensor(x) and x.dim() >= 3 and x.shape[1] == T and n != "bias":
                x = x[:, s:e]
            elif torch.is_tensor(x) and n == "bias" and x.dim() >= 2:  # [..., T_q, T_k], each full or 1
                x = x[..., slice(s, e) if x.shape[-2] > 1 else slice(None), slice(s, e) if x.shape[-1] > 1 else slice(None)]
            opts[n] = x
        return dataclasses.replace(self, q=self.q[:, s:e], k=self.k[:, s:e], v=self.v[:, s:e], opts=opts)


def make_case(name, *, T=17, T_k=None, B=2, H=4, H_kv=2, D_k=8, D_v=6, options=(), dtype=f64, seed=0,
              initial_state=False, **fixed) -> Case:
    """Random inputs for mechanism ``name``: its required options plus ``options`` (names of
    optional ones, generated from the table), plus ``fixed`` values given verbatim.
    Keys are unit-norm for the delta family (its documented use: L2-normalised keys)."""
    mech = longmix.describe(name)
    T_k = T if T_k is None else T_k
    ctx = Ctx(B, T, T_k, H, D_k, D_v, torch.Generator().manual_seed(seed))
    q = ctx.randn(B, T, H, D_k)
    k = ctx.randn(B, T_k, H_kv, D_k)
    v = ctx.randn(B, T_k, H_kv, D_v)
    if mech.family == "delta":
        k = F.normalize(k, dim=-1)
    opts, lowering = {}, {}
    for opt in sorted(mech.required) + [o for o in options if o not in mech.required]:
        if opt not in fixed:
            opts[opt], lowering[opt] = generate(name, opt, ctx)
    for opt, val in fixed.items():
        opts[opt] = val
        lowering[opt] = "gate" if opt == "g" else "like_q"
    case = Case(name, q, k, v, opts, lowering)
    if initial_state:
        case.initial_state = random_state(case, ctx.gen)
    return case.cast(dtype)


def state_shape(case: Case) -> tuple:
    """The recurrent state's shape, from the naive definition on zero tokens."""
    import naive

    c = case.slice_time(0, 0).cast(f64)
    _, S = naive.NAIVE[case.name](c.q, c.k, c.v, **c.opts)
    return tuple(S.shape)


def random_state(case: Case, gen=None) -> torch.Tensor:
    S = 0.5 * torch.randn(*state_shape(case), generator=gen, dtype=f64)
    if case.opts.get("normalize"):  # last column is z = Σ φ(k): keep it positive, as a real prefix would
        S[..., -1] = S[..., -1].abs() + 1.0
    return S
