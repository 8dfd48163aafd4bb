"""``longmix bench speed``: time and memory of every mechanism × length × pass × backend × pattern.

* mechanisms: every registered one (so a new mechanism shows up by being registered),
  with each backend it declares that can run on the device; anchors beside them
  (``bench/anchors.py``: SDPA per backend, FlexAttention, flash-attn, fla), reported as
  missing where they cannot run, never faked;
* passes: ``fwd`` (no grad), ``fwdbwd`` (forward + backward of all inputs), ``decode``
  (one token against a state or a KV cache of T tokens, causal self-attention only);
* patterns (CAB's four): ``causal_self``, ``noncausal_self``, ``causal_cross``,
  ``noncausal_cross``; cross uses T/2 queries against T keys (causal aligned bottom-right).
  A mechanism that has no cross form (recurrences over one sequence) gets an
  ``unsupported`` row;
* numbers: median ms (``measure.timeit``: ``triton.testing.do_bench`` on CUDA, a repeated
  timer on the CPU), tokens/s (query tokens), TFLOP/s for the dense family
  (4·B·H·D·pairs, pairs = T_q·T_k halved when causal; ×3.5 for forward+backward), peak
  memory beyond the inputs (MiB), and ``first_call_s``: the untimed first call, which compiles
  (Triton, torch.compile) and autotunes.

A length is skipped for an implementation once a shorter one ran out of memory or took
more than ``max_ms``; such rows say why.

Example::

    >>> cfg = SpeedConfig(mechanisms=["retention"], lengths=[64], patterns=["causal_self"], anchors=["sdpa_math"], reps=1)
    >>> rows = run_speed(cfg, progress=False)
    >>> sorted({(r["label"], r["pass"]) for r in rows if "ms" in r})
    [('retention', 'decode'), ('retention', 'fwd'), ('retention', 'fwdbwd'), ('sdpa_math', 'decode'), ('sdpa_math', 'fwd'), ('sdpa_math', 'fwdbwd')]
"""
from __future__ import annotations

import math
import time
from dataclasses import dataclass, field

import torch
import torch.nn.functional as F

from .. import api, checks
from ..decode import Decoder
from ..models.mixer import DECAY_A, DECAY_DT, GLA_GATE_SCALE, inverse_softplus
from .anchors import ANCHORS
from .measure import peak_memory, timeit
from .progress import Progress

PASSES = ("fwd", "fwdbwd", "decode")
PATTERNS = ("causal_self", "noncausal_self", "causal_cross", "noncausal_cross")
DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}


@dataclass
class SpeedConfig:
    """One speed sweep. ``tokens`` fixes B·T (B = max(1, tokens // T)); else ``batch`` is used."""

    device: str = "cpu"
    dtype: str = "float32"
    mechanisms: list | None = None
    backends: list | None = None
    anchors: list | None = None
    lengths: list = field(default_factory=lambda: [128, 256, 512, 1024, 2048])
    passes: list = field(default_factory=lambda: list(PASSES))
    patterns: list = field(default_factory=lambda: list(PATTERNS))
    pattern_lengths: list | None = None  # lengths at which patterns other than causal_self run (default: all)
    tokens: int | None = None
    batch: int = 1
    heads: int = 2
    head_dim: int = 32
    reps: int = 3
    max_ms: float = 2000.0
    memory: bool = True

    @classmethod
    def gpu(cls, **kw) -> "SpeedConfig":
        """The GPU defaults: bf16, H=16, D=128, B·T = 32K tokens for T from 1K to 32K, then B = 1 up to
        T = 512K (what does not fit becomes an out-of-memory row, and longer T are skipped)."""
        base = dict(device="cuda", dtype="bfloat16", heads=16, head_dim=128, tokens=32768,
                    lengths=[1024 * 2 ** i for i in range(10)], pattern_lengths=[1024, 4096, 16384],
                    reps=1, max_ms=1000.0)
        return cls(**{**base, **kw})

    @classmethod
    def cpu(cls, **kw) -> "SpeedConfig":
        """The CPU quick defaults: float32, B=1, H=2, D=32, T 128…2048; the other patterns at T = 256."""
        base = dict(pattern_lengths=[256])
        return cls(**{**base, **kw})


def validate(cfg: SpeedConfig) -> list:
    """Check the config before anything runs; returns the implementations to time. ValueError names the field."""
    if cfg.dtype not in DTYPES:
        raise ValueError(f"dtype must be one of {', '.join(DTYPES)}, got {cfg.dtype!r}")
    dev = torch.device(cfg.device)
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise ValueError("device cuda asked for, but torch sees no GPU")
    for name in ("heads", "head_dim", "batch", "reps"):
        v = getattr(cfg, name)
        if not isinstance(v, int) or v < 1:
            raise ValueError(f"{name} must be a positive int, got {v!r}")
    if cfg.tokens is not None and (not isinstance(cfg.tokens, int) or cfg.tokens < 1):
        raise ValueError(f"tokens must be a positive int, got {cfg.tokens!r}")
    if not cfg.lengths or any(not isinstance(T, int) or T < 2 for T in cfg.lengths):
        raise ValueError(f"lengths must be ints ≥ 2, got {cfg.lengths}")
    for name, allowed in (("passes", PASSES), ("patterns", PATTERNS)):
        bad = [x for x in getattr(cfg, name) if x not in allowed]
        if bad:
            raise ValueError(f"unknown {name} {bad}; {name} are: {', '.join(allowed)}")
    if cfg.anchors is not None:
        bad = [a for a in cfg.anchors if a not in ANCHORS and a != "fla"]
        if bad:
            raise ValueError(f"unknown anchors {bad}; anchors are: {', '.join(_anchor_names())}")
    names = cfg.mechanisms or api.mechanisms()
    for n in names:
        api.describe(n)
    if cfg.backends:  # "none": time no longmix backend (anchors only)
        known = {b for n in api.mechanisms() for b in api.describe(n).backends} | {"none"}
        bad = [b for b in cfg.backends if b not in known]
        if bad:
            raise ValueError(f"unknown backends {bad}; backends are: {', '.join(sorted(known))}")
    impls = []
    for n in names:
        backends = api.describe(n).backends
        for b in backends:
            if cfg.backends and b not in cfg.backends:
                continue
            if b == "triton" and dev.type != "cuda":
                continue  # Triton kernels run on CUDA (the CPU interpreter is for tests, not timing)
            if b == "reference" and dev.type == "cuda" and not cfg.backends and len(backends) > 1:
                continue  # on a GPU the PyTorch reference of a mechanism with kernels is only timed on request
            impls.append(("longmix", n, b))
    wanted = _anchor_names() if cfg.anchors is None else cfg.anchors
    for a in ANCHORS:
        if a in wanted or (a.startswith("fla:") and "fla" in wanted):
            if a.startswith("fla:") and cfg.mechanisms and ANCHORS[a].mechanism not in cfg.mechanisms:
                continue
            impls.append(("anchor", a, "-"))
    return impls


def _anchor_names():
    return [a for a in ANCHORS if not a.startswith("fla:")] + ["fla"]


def make_inputs(name: str, *, B, Tq, Tk, H, D, device, dtype, seed=0) -> dict:
    """Inputs for mechanism ``name`` built from what ``describe(name)`` says it takes, plus
    one-token decoding inputs (``q1``, ``k1``, ``v1``, gates ``g1``/``beta1``); data-dependent gates as a
    ``Mixer`` makes them at initialisation (their magnitude decides how the per-key-gate kernels split
    their exponents: KDA's span more than GLA's). Drawn on ``device``
    itself (at B·T = 32K, H = 16, D = 128 drawing them on the host took ~2 s a row, most of a sweep)."""
    gen = torch.Generator(device=device).manual_seed(seed)
    mech = api.describe(name)

    def draw(*shape, uniform=False):
        return (torch.rand if uniform else torch.randn)(*shape, generator=gen, device=device)

    def rnd(*shape):
        return draw(*shape).to(dtype)

    x = {"q": rnd(B, Tq, H, D), "k": rnd(B, Tk, H, D), "v": rnd(B, Tk, H, D), "q1": rnd(B, 1, H, D)}
    x["k1"], x["v1"] = rnd(B, 1, H, D), rnd(B, 1, H, D)
    if mech.family == "delta":
        x["k"], x["k1"] = F.normalize(x["k"], dim=-1), F.normalize(x["k1"], dim=-1)
    if "g" in mech.required:  # as a Mixer at initialisation parametrises it (models/mixer.py), x W ~ N(0, ½²)
        per_key = "D_k" in mech.inputs["g"]
        chan = (H, D) if per_key else (H,)
        if per_key and mech.family == "decay":  # GLA: logsigmoid(x W₁W₂ + b) / 16
            def gate(z):
                return F.logsigmoid(z) / GLA_GATE_SCALE
        else:  # −exp(A_log)·softplus(x W + dt_bias) per channel, A ∈ [1, 16], softplus(dt_bias) ∈ [1e-3, 0.1]
            (a0, a1), (d0, d1) = DECAY_A, DECAY_DT
            A = a0 + (a1 - a0) * draw(*chan, uniform=True)
            bias = inverse_softplus(torch.exp(math.log(d0) + math.log(d1 / d0) * draw(*chan, uniform=True)))

            def gate(z):
                return -A * F.softplus(z + bias)
        for key, T in (("g", Tk), ("g1", 1)):
            x[key] = gate(0.5 * draw(B, T, *chan))
    if "beta" in mech.required:
        x["beta"], x["beta1"] = draw(B, Tk, H, uniform=True).to(dtype), draw(B, 1, H, uniform=True).to(dtype)
    if "normalize" in mech.inputs:  # as the Mixer builds linear attention
        x["opts"] = {"feature_map": "elu1", "normalize": True}
    return x


def _mech_opts(x, one=False):
    opts = dict(x.get("opts", {}))
    for n in ("g", "beta"):
        if n in x:
            opts[n] = x[n + "1"] if one else x[n]
    return opts


def _longmix_fns(name, backend):
    """Forward and decode calls as a model makes them: inside ``trusted_values()``, as the Mixer
    (whose gates are in range by construction), so no call waits for a value check on the GPU; a
    recurrent mechanism decodes as a serving loop does, with a ``Decoder`` stepping its state in place."""
    def fwd(x, causal):
        with checks.trusted_values():
            return api.attention(x["q"], x["k"], x["v"], name, causal=causal, backend=backend, **_mech_opts(x))

    def decode(x):
        with checks.trusted_values():
            if "state" in x:
                if "decoder" not in x:
                    x["decoder"] = Decoder(name, x["state"].clone(), backend=backend)
                return x["decoder"].step(x["q1"], x["k1"], x["v1"], **_mech_opts(x, one=True))
            return api.attention(x["q1"], x["k"], x["v"], name, backend=backend, **_mech_opts(x))

    return fwd, decode


def flops(family: str, pattern: str, pass_: str, B, Tq, Tk, H, D) -> float | None:
    """The agreed FLOP count of dense attention (None for other families)."""
    if family != "dense":
        return None
    if pass_ == "decode":
        return 4.0 * B * H * D * Tk
    pairs = Tq * Tk - (Tq * Tq / 2 if pattern.startswith("causal") else 0)
    f = 4.0 * B * H * D * pairs
    return f * 3.5 if pass_ == "fwdbwd" else f


def _time_pass(fwd, decode, x, pass_, causal, device, reps):
    if pass_ == "fwd":
        def call():
            with torch.no_grad():
                fwd(x, causal)
    elif pass_ == "decode":
        def call():
            with torch.no_grad():
                decode(x)
    else:
        leaves = {n: t.detach().requires_grad_() for n, t in x.items()
                  if n in ("q", "k", "v", "g", "beta") and torch.is_tensor(t)}
        xg = {**x, **leaves}
        do = None

        def call():
            nonlocal do
            o = fwd(xg, causal)
            if do is None:
                do = torch.randn_like(o)
            o.backward(do)
            for t in leaves.values():
                t.grad = None
    return call


def _row_key(r) -> tuple:
    return (r.get("label"), r.get("pattern"), r.get("T"), r.get("pass"), r.get("B"), r.get("H"), r.get("D"), r.get("dtype"))


def run_speed(cfg: SpeedConfig, *, progress: bool = True, on_rows=None, done: list[dict] | None = None) -> list[dict]:
    """Run the sweep of ``cfg``; ``on_rows(rows)`` after each measurement (to save as it goes).

    ``done``: rows of an earlier run of the same sweep (``bench speed --resume``): they are kept,
    and what they measured (or found missing, unsupported, out of memory, too slow) is not run again,
    so a sweep longer than one sitting can be finished in several."""
    impls = validate(cfg)
    dtype = DTYPES[cfg.dtype]
    jobs = []
    for pattern in cfg.patterns:
        lengths = cfg.lengths if pattern == "causal_self" or cfg.pattern_lengths is None else \
            [T for T in cfg.lengths if T in cfg.pattern_lengths] or cfg.lengths[:1]
        for impl in impls:
            for T in lengths:
                for p in cfg.passes:
                    if p == "decode" and pattern != "causal_self":
                        continue
                    jobs.append((impl, pattern, T, p))
    # shortest lengths first, every implementation side by side: a run cut short (time limit,
    # Ctrl-C) keeps complete comparisons at the lengths it reached
    jobs.sort(key=lambda j: j[2])
    # an anchor missing in an earlier sitting (not installed there) is measured if it is present now
    rows: list[dict] = [r for r in done or [] if not ("missing" in r and r.get("label") in ANCHORS
                                                      and ANCHORS[r["label"]].missing(cfg.device) is None)]
    have = {_row_key(r) for r in rows if "ms" in r or "missing" in r or "unsupported" in r or "error" in r}
    skip: dict = {}
    for r in rows:  # what an earlier sitting learnt: too slow or out of memory from some T on
        _learn_skip(skip, r, cfg.max_ms)
    with Progress(len(jobs), enabled=progress, title="speed") as bar:
        for (kind, name, backend), pattern, T, p in jobs:
            bar.step(f"{name}{'' if backend == '-' else '/' + backend} {pattern} T={T} {p}")
            row = _measure(cfg, kind, name, backend, pattern, T, p, dtype, skip, have)
            if row is None:  # measured in an earlier sitting
                continue
            key = _row_key(row)  # an earlier sitting's skipped row for this job gives way to the new one
            rows = [r for r in rows if _row_key(r) != key] + [row]
            if on_rows is not None:
                on_rows(rows)
    return rows


def _skip_key(row) -> tuple:
    """The implementation × pattern × pass a row belongs to (what ``skip`` is keyed by)."""
    anchor = row["impl"] != "longmix"
    return ("anchor" if anchor else "longmix", row["label"] if anchor else row["mechanism"], row["backend"],
            row["pattern"], row["pass"])


def _learn_skip(skip: dict, row: dict, max_ms: float) -> None:
    """Once an implementation took longer than ``max_ms`` or ran out of memory, skip its longer lengths."""
    if row.get("ms", 0) > max_ms:
        skip[_skip_key(row)] = f"T={row['T']} already took {row['ms']:.0f} ms > max_ms={max_ms:.0f}"
    elif row.get("error", "").startswith("out of memory"):
        skip[_skip_key(row)] = f"out of memory at T={row['T']}"


def _measure(cfg, kind, name, backend, pattern, T, p, dtype, skip, have=frozenset()) -> dict | None:
    B = max(1, cfg.tokens // T) if cfg.tokens else cfg.batch
    cross = pattern.endswith("cross")
    Tq = max(1, T // 2) if cross else T
    causal = pattern.startswith("causal")
    anchor = ANCHORS[name] if kind == "anchor" else None
    mech_name = anchor.mechanism if anchor else name
    mech = api.describe(mech_name)
    row = dict(impl=anchor.name if anchor else "longmix", mechanism=mech_name, backend=backend,
               label=name if anchor else f"{name}" + ("" if backend == "reference" else f"[{backend}]"),
               family=mech.family, pattern=pattern, **{"pass": p}, B=B, T=T, T_q=1 if p == "decode" else Tq,
               H=cfg.heads, D=cfg.head_dim, dtype=cfg.dtype, device=str(cfg.device))
    if _row_key(row) in have:
        return None
    if anchor is not None:
        why = anchor.missing(cfg.device)
        if why:
            return {**row, "missing": why}
    if cross and not (anchor.cross if anchor else mech.cross):
        return {**row, "unsupported": f"{mech_name} is a recurrence over one sequence: no cross (T_q ≠ T_k) form"}
    if _skip_key(row) in skip:
        return {**row, "skipped": skip[_skip_key(row)]}
    try:
        x = make_inputs(mech_name, B=B, Tq=Tq, Tk=T, H=cfg.heads, D=cfg.head_dim, device=cfg.device, dtype=dtype)
        if anchor is not None:
            fwd, decode = anchor.fn, anchor.decode_fn
        else:
            fwd, decode = _longmix_fns(name, backend)
        if p == "decode" and mech.family != "dense":
            S = api.attention(x["q1"], x["k1"], x["v1"], mech_name, output_final_state=True,
                              **_mech_opts(x, one=True))[1]
            x["state"] = torch.randn_like(S) * 0.1
        call = _time_pass(fwd, decode, x, p, causal, cfg.device, cfg.reps)
        t0 = time.perf_counter()
        call()  # the first call compiles (Triton, torch.compile) and autotunes: reported, not timed
        if torch.device(cfg.device).type == "cuda":
            torch.cuda.synchronize()
        row["first_call_s"] = round(time.perf_counter() - t0, 3)
        sec = timeit(call, device=cfg.device, warmup=0, reps=cfg.reps)  # the first call was the warm-up
        row["ms"] = sec * 1e3
        row["tokens_per_s"] = B * row["T_q"] / sec
        f = flops(mech.family, pattern, p, B, row["T_q"], T, cfg.heads, cfg.head_dim)
        row["tflops"] = None if f is None else f / sec / 1e12
        if cfg.memory:
            row["peak_mib"] = peak_memory(call, device=cfg.device) / 2**20
    except (RuntimeError, ValueError, TypeError, MemoryError, ImportError, AttributeError) as e:
        msg = str(e).splitlines()[0][:200] if str(e) else type(e).__name__
        oom = isinstance(e, MemoryError) or "out of memory" in msg.lower()
        if oom and torch.cuda.is_available():
            torch.cuda.empty_cache()
        row["error"] = ("out of memory: " if oom else "") + f"{type(e).__name__}: {msg}"
    _learn_skip(skip, row, cfg.max_ms)
    return row


def best_longmix(rows: list[dict], pass_: str) -> dict:
    """mechanism → {T: ms of its fastest longmix backend} for causal self-attention (what crossovers
    and comparisons with other implementations use)."""
    best: dict = {}
    for r in rows:
        if r.get("impl") == "longmix" and r["pass"] == pass_ and "ms" in r and r.get("pattern") == "causal_self":
            d = best.setdefault(r["mechanism"], {})
            d[r["T"]] = min(d.get(r["T"], math.inf), r["ms"])
    return best


def crossovers(rows: list[dict], passes=("fwdbwd", "decode")) -> list[dict]:
    """Per mechanism and pass (causal self-attention), the T above which its best longmix backend
    beats the best SDPA backend, interpolated log–log between measured lengths.

    ``crossover_T`` is None when it never wins in the measured range; ``below_range`` is True
    when it already wins at the shortest length measured."""
    out = []
    ok = [r for r in rows if "ms" in r and r["pattern"] == "causal_self"]
    for p in passes:
        base: dict = {}
        for r in ok:
            if r["pass"] == p and r["impl"].startswith("sdpa"):
                base[r["T"]] = min(base.get(r["T"], math.inf), r["ms"])
        if not base:
            continue
        for mech, times in best_longmix(rows, p).items():
            Ts = sorted(T for T in times if T in base)
            if not Ts:
                continue
            ratio = [times[T] / base[T] for T in Ts]
            row = dict(mechanism=mech, **{"pass": p}, lengths=Ts, ratio=[round(x, 3) for x in ratio],
                       crossover_T=None, below_range=False)
            if ratio[-1] < 1:
                i = len(Ts) - 1
                while i > 0 and ratio[i - 1] < 1:
                    i -= 1
                if i == 0:
                    row.update(crossover_T=Ts[0], below_range=True)
                else:  # log-log interpolation between Ts[i-1] (ratio ≥ 1) and Ts[i] (ratio < 1)
                    a, b = math.log(ratio[i - 1]), math.log(ratio[i])
                    t = a / (a - b) if a != b else 0.0
                    row["crossover_T"] = round(math.exp(math.log(Ts[i - 1]) + t * (math.log(Ts[i]) - math.log(Ts[i - 1]))))
            out.append(row)
    return out
