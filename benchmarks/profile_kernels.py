"""Where the GPU time of one call goes: longmix's kernels beside fla's, per kernel, at one shape.

    PYTHONPATH=src python benchmarks/profile_kernels.py [MECHANISMS] [B T]   # default: all fla runs, B=16 T=2048

For each mechanism, the forward and forward+backward of longmix (Triton backend, as the Mixer calls
it) and of fla (when installed) run a few times under ``torch.profiler``; the table lists every GPU
kernel's total time per call, longest first, so a slower implementation shows which stage costs it.
The inputs are the speed sweep's (``longmix.bench.speed.make_inputs``: bf16, H = 16, D = 128).
Writes the tables to stdout and to ``$OUT/profile.txt`` when OUT is set. ``IMPLS`` (environment, default
``longmix,fla``) picks the implementations (``longmix`` alone skips fla's compiles); ``CONFIG`` (JSON) changes
longmix's kernel settings first (``longmix.kernels.triton.configure``).
"""
from __future__ import annotations

import json
import os
import sys
from collections import defaultdict

import torch
from torch.profiler import ProfilerActivity, profile

from longmix.bench.anchors import ANCHORS, FLA_OPS
from longmix.bench.speed import _longmix_fns, _time_pass, make_inputs
from longmix.kernels.triton import configure

REPS = 5


def _kernels(fn) -> tuple[float, list[tuple[str, float, int]]]:
    """(GPU ms per call, [(kernel, ms per call, launches per call)]) of ``fn``, after a warm-up."""
    for _ in range(2):
        fn()
    torch.cuda.synchronize()
    with profile(activities=[ProfilerActivity.CUDA]) as prof:
        for _ in range(REPS):
            fn()
        torch.cuda.synchronize()
    total, count = defaultdict(float), defaultdict(int)
    for e in prof.events():
        if e.device_type.name == "CUDA":
            total[e.name] += e.device_time / 1e3 / REPS
            count[e.name] += 1
    rows = sorted(((n, t, count[n] // REPS) for n, t in total.items()), key=lambda r: -r[1])
    return sum(total.values()), rows


def main(argv):
    names = argv[0].split(",") if argv else list(FLA_OPS)
    B, T = (int(argv[1]), int(argv[2])) if len(argv) > 2 else (16, 2048)
    lines = []

    def say(s=""):
        print(s, flush=True)
        lines.append(s)

    configure(json.loads(os.environ.get("CONFIG") or "{}"))
    say(f"{torch.cuda.get_device_name()} · torch {torch.__version__} · B={B} T={T} H=16 D=128 bf16"
        + (f" · CONFIG={os.environ['CONFIG']}" if os.environ.get("CONFIG") else ""))
    for name in names:
        x = make_inputs(name, B=B, Tq=T, Tk=T, H=16, D=128, device="cuda", dtype=torch.bfloat16)
        impls = {"longmix": _longmix_fns(name, "triton")[0]}
        anchor = ANCHORS.get(f"fla:{name}")
        if "fla" in os.environ.get("IMPLS", "longmix,fla").split(",") and anchor is not None \
                and anchor.missing("cuda") is None:
            impls["fla"] = anchor.fn
        for label, fn in impls.items():
            for pass_ in ("fwd", "fwdbwd"):  # the calls the speed sweep times
                try:
                    ms, rows = _kernels(_time_pass(fn, None, x, pass_, True, "cuda", 1))
                except Exception as e:  # fla refuses some backward passes on Hopper
                    say(f"\n## {name} {label} {pass_}: {type(e).__name__}: {str(e)[:120]}")
                    continue
                say(f"\n## {name} {label} {pass_}: {ms:.3f} ms of GPU time per call")
                for n, t, c in rows[:14]:
                    say(f"  {t:8.3f} ms  x{c:<3d} {n[:110]}")
    if os.environ.get("OUT"):
        with open(os.path.join(os.environ["OUT"], "profile.txt"), "w") as fh:
            fh.write("\n".join(lines) + "\n")


if __name__ == "__main__":
    main(sys.argv[1:])
