"""``longmix compare``: every registered mechanism, every form, a few sequence lengths.

For each mechanism × T × form it measures the forward and forward+backward time
(median), the peak memory of forward+backward, and the largest error against the
mechanism's own parallel form (relative to the largest output entry), computed in
float32 where the parallel form fits (``--max-parallel-T``). Runs on the CPU unless
``--device cuda`` is given.

Example::

    >>> rows = run_compare(lengths=[32], mechanisms=["retention"], progress=False)
    >>> sorted({r["form"] for r in rows})
    ['chunk', 'parallel', 'recurrent']
"""
from __future__ import annotations

import math

import torch

from .. import api
from .measure import peak_memory, timeit
from .speed import make_inputs as speed_inputs


def make_inputs(name: str, *, B: int, T: int, H: int, D: int, device, dtype=torch.float32, seed: int = 0) -> dict:
    """Random self-attention inputs for ``name``: q, k, v and its options, as ``bench speed`` makes them."""
    x = speed_inputs(name, B=B, Tq=T, Tk=T, H=H, D=D, device=device, dtype=dtype, seed=seed)
    return dict(q=x["q"], k=x["k"], v=x["v"], **{n: x[n] for n in ("g", "beta") if n in x}, **x.get("opts", {}))


def _one(name, form, inputs, *, device, reps):
    tensors = {n: t for n, t in inputs.items() if torch.is_tensor(t) and t.is_floating_point()}

    def fwd():
        with torch.no_grad():
            return api.attention(inputs["q"], inputs["k"], inputs["v"], name, form=form, **_opts(inputs))

    leaves = {n: t.detach().requires_grad_() for n, t in tensors.items()}

    def fwdbwd():
        args = {**inputs, **leaves}
        o = api.attention(args["q"], args["k"], args["v"], name, form=form, **_opts(args))
        o.sum().backward()
        for t in leaves.values():
            t.grad = None

    out = fwd()
    return out, timeit(fwd, device=device, reps=reps), timeit(fwdbwd, device=device, reps=reps), peak_memory(fwdbwd, device=device)


def _parallel_fits(name, B, H, T, D, max_T) -> bool:
    """The parallel form materialises B·H·T² weights (×D_k with per-key gates): run it only while small."""
    mech = api.describe(name)
    per_key = "g" in mech.inputs and "D_k" in mech.inputs["g"]
    return "parallel" in mech.forms and T <= max_T and B * H * T * T * (D if per_key else 1) * 4 <= 2**29


def _opts(inputs):
    return {n: t for n, t in inputs.items() if n not in ("q", "k", "v")}


def run_compare(*, lengths=(256, 1024, 4096), mechanisms=None, device="cpu", B=1, H=4, D=64,
                max_parallel_T=1024, max_recurrent_T=256, reps=3, progress=True) -> list[dict]:
    """Measure every mechanism and form; returns one dict per (mechanism, T, form)."""
    names = mechanisms or api.mechanisms()
    for n in names:
        api.describe(n)  # unknown names fail before anything runs
    jobs = []
    for name in names:
        for T in lengths:
            for form in api.describe(name).forms:
                if form == "parallel" and not _parallel_fits(name, B, H, T, D, max_parallel_T):
                    continue
                if form == "recurrent" and T > max_recurrent_T:  # a Python loop over tokens: slow by design
                    continue
                jobs.append((name, T, form))
    rows, refs = [], {}
    bar = _progress(len(jobs), progress)
    for name, T, form in jobs:
        bar.update(f"{name} T={T} {form}")
        inputs = make_inputs(name, B=B, T=T, H=H, D=D, device=device)
        row = dict(mechanism=name, T=T, form=form, B=B, H=H, D=D, device=str(device))
        try:
            out, t_f, t_fb, mem = _one(name, form, inputs, device=device, reps=reps)
            row.update(fwd_ms=t_f * 1e3, fwdbwd_ms=t_fb * 1e3, peak_mib=mem / 2**20)
            if form == "parallel":
                refs[(name, T)] = out
            ref = refs.get((name, T))
            if ref is None and _parallel_fits(name, B, H, T, D, max_parallel_T):
                ref = refs[(name, T)] = api.attention(inputs["q"], inputs["k"], inputs["v"], name, form="parallel", **_opts(inputs))
            row["max_err"] = None if ref is None else ((out.float() - ref.float()).abs().max() / ref.float().abs().max().clamp_min(1e-30)).item()
        except (RuntimeError, ValueError, MemoryError) as e:  # keep the rows already measured
            row["error"] = f"{type(e).__name__}: {str(e).splitlines()[0][:120]}"
        rows.append(row)
    bar.close()
    return rows


class _progress:
    """A rich progress bar, or nothing."""

    def __init__(self, total, enabled):
        self.p = None
        if enabled:
            from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn

            self.p = Progress(TextColumn("{task.description:<36}"), BarColumn(), TextColumn("{task.completed}/{task.total}"),
                              TimeElapsedColumn(), TimeRemainingColumn(), transient=False)
            self.p.start()
            self.task = self.p.add_task("compare", total=total)
        self.started = False

    def update(self, desc):
        if self.p is not None:
            if self.started:
                self.p.advance(self.task)
            self.p.update(self.task, description=desc)
        self.started = True

    def close(self):
        if self.p is not None:
            if self.started:
                self.p.advance(self.task)
            self.p.stop()


def render_table(rows: list[dict]):
    """A rich Table of the rows (time, memory, error per mechanism × T × form)."""
    from rich.table import Table

    t = Table(title="longmix compare — forward / forward+backward time, peak memory, error vs parallel form")
    for col, just in [("mechanism", "left"), ("T", "right"), ("form", "left"), ("fwd ms", "right"),
                      ("fwd+bwd ms", "right"), ("peak MiB", "right"), ("max rel err", "right")]:
        t.add_column(col, justify=just)
    last = None
    for r in rows:
        name = r["mechanism"] if r["mechanism"] != last else ""
        if r["mechanism"] != last and last is not None:
            t.add_section()
        last = r["mechanism"]
        if "error" in r:
            t.add_row(name, str(r["T"]), r["form"], f"[red]{r['error']}", "", "", "")
            continue
        err = r.get("max_err")
        err_s = "—" if err is None else (f"[red]{err:.1e}" if not math.isfinite(err) or err > 1e-3 else f"{err:.1e}")
        t.add_row(name, str(r["T"]), r["form"], f"{r['fwd_ms']:.2f}", f"{r['fwdbwd_ms']:.2f}", f"{r['peak_mib']:.1f}", err_s)
    return t
