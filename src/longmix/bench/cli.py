"""``longmix bench [speed|quality|report]``: argument parsing and the run → save → report loop.

Rows are saved to ``<out>/speed.json`` / ``<out>/quality.json`` after every measurement, so
an error, an out-of-memory or Ctrl-C keeps what was measured; the summary is rebuilt from
the JSON rows present in ``<out>`` (so ``bench speed`` then ``bench quality`` make one report)
plus the kernel results files in ``--results-dir``.

Example::

    >>> p = argparse.ArgumentParser(); sub = p.add_subparsers(dest="cmd")
    >>> add_bench_parser(sub)
    >>> p.parse_args(["bench", "speed", "--lengths", "64,128"]).lengths
    [64, 128]
"""
from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import sys
import time

from ..cli import _csv  # the one comma-list parser of the CLI

DEFAULT_OUT = "report"
DEFAULT_RESULTS = os.path.join("benchmarks", "results")
CPU_QUALITY = dict(tasks=["mqar", "passkey", "induction"], models=["softmax", "retention", "mamba2", "gated_deltanet",
                                                                   "gated_deltanet@LS"], steps=120, batch_size=16, lr=1e-2)
# GPU: every mechanism and the 3:1 hybrid, 4 layers (the hybrid needs them), d_model 128 (2 heads of 64);
# in an H100 trial, 1000 steps gave 0.86–1.00 on MQAR at 4 pairs for every model that finished
# (benchmarks/results/2026-11-25-h100-quality-trial); 1200 leaves a margin
GPU_QUALITY = dict(tasks=None, models=None, steps=1200, batch_size=64, d_model=128, n_layers=4, lr=3e-3,
                   widths=(64, 256), workers=None, quick=False)  # workers: 2 per visible GPU (see _quality)


def _device(name):
    import torch

    if name in (None, "auto"):
        return "cuda" if torch.cuda.is_available() else "cpu"
    if name.startswith("cuda") and not torch.cuda.is_available():
        raise ValueError("--device cuda asked for, but torch sees no GPU")
    if name != "cpu" and not name.startswith("cuda"):
        raise ValueError(f"--device must be cpu, cuda or auto, got {name!r}")
    return name


def _meta(device, **extra):
    import torch

    name = torch.cuda.get_device_name(0) if device.startswith("cuda") else f"CPU ({platform.processor() or platform.machine()}, " \
        f"{torch.get_num_threads()} threads)"
    meta = dict(command="longmix " + " ".join(sys.argv[1:]) if sys.argv[0].endswith("longmix") else " ".join(sys.argv),
                date=datetime.datetime.now().isoformat(timespec="seconds"), torch=torch.__version__, device=device,
                device_name=name, **extra)
    try:
        import triton

        meta["triton"] = triton.__version__
    except ImportError:
        pass
    commit = os.environ.get("LONGMIX_COMMIT") or _git_commit()
    if commit:
        meta["commit"] = commit
    return meta


def _git_commit():
    """The checkout's commit (None outside a git checkout; a GPU machine gets LONGMIX_COMMIT instead)."""
    import subprocess

    try:
        here = os.path.dirname(os.path.abspath(__file__))
        return subprocess.run(["git", "-C", here, "rev-parse", "--short", "HEAD"], capture_output=True, text=True,
                              timeout=5).stdout.strip() or None
    except (OSError, subprocess.SubprocessError):
        return None


def _load(out, name, key="rows"):
    """``key`` ("rows" or "meta") of a saved rows file, empty when there is none."""
    path = os.path.join(out, name)
    if not os.path.exists(path):
        return [] if key == "rows" else {}
    try:
        with open(path) as fh:
            return json.load(fh).get(key) or ([] if key == "rows" else {})
    except (OSError, json.JSONDecodeError):
        return [] if key == "rows" else {}


def _saver(out, name, meta):
    os.makedirs(out, exist_ok=True)
    sitting = len(meta.get("sittings", ()))

    def save(rows):
        if sitting:  # a resumed run: each row says which sitting (meta["sittings"][i - 1]) measured it
            rows = [r if "sitting" in r else {**r, "sitting": sitting} for r in rows]
        tmp = os.path.join(out, name + ".tmp")
        with open(tmp, "w") as fh:
            json.dump({"meta": meta, "rows": rows}, fh)
        os.replace(tmp, os.path.join(out, name))
    return save


def _speed(args, device, progress=True):
    from .speed import SpeedConfig, run_speed

    base = SpeedConfig.gpu if device.startswith("cuda") else SpeedConfig.cpu
    kw = {k: v for k, v in dict(mechanisms=args.mechanisms, backends=getattr(args, "backends", None),
                                anchors=getattr(args, "anchors", None), lengths=getattr(args, "lengths", None),
                                passes=getattr(args, "passes", None), patterns=getattr(args, "patterns", None),
                                pattern_lengths=getattr(args, "pattern_lengths", None),
                                dtype=getattr(args, "dtype", None), tokens=getattr(args, "tokens", None),
                                batch=getattr(args, "batch", None), heads=getattr(args, "heads", None),
                                head_dim=getattr(args, "head_dim", None), reps=getattr(args, "reps", None),
                                max_ms=getattr(args, "max_ms", None)).items() if v is not None}
    if getattr(args, "batch", None) is not None and getattr(args, "tokens", None) is None:
        kw["tokens"] = None
    if getattr(args, "no_memory", False):
        kw["memory"] = False
    cfg = base(device=device, **kw)
    meta, done = _resume(args, "speed.json", _meta(device, tokens=cfg.tokens))
    return run_speed(cfg, progress=progress, on_rows=_saver(args.out, "speed.json", meta), done=done), meta


def _quality(args, device, progress=True):
    from .quality import QualityConfig, run_quality

    defaults = dict(GPU_QUALITY if device.startswith("cuda") else CPU_QUALITY)
    given = dict(tasks=getattr(args, "tasks", None), models=getattr(args, "models", None) or args.mechanisms,
                 seeds=getattr(args, "seeds", None), steps=getattr(args, "steps", None),
                 batch_size=getattr(args, "batch_size", None), d_model=getattr(args, "d_model", None),
                 n_layers=getattr(args, "layers", None), n_heads=getattr(args, "quality_heads", None), lr=getattr(args, "lr", None), lrs=getattr(args, "lrs", None),
                 widths=getattr(args, "widths", None), workers=getattr(args, "workers", None),
                 budget_s=getattr(args, "budget_s", None), conv_size=getattr(args, "conv_size", None),
                 backend=getattr(args, "backend", None))
    if getattr(args, "no_cuda_graph", False):
        given["cuda_graph"] = False
    if getattr(args, "no_tf32", False):
        given["tf32"] = False
    kw = {**defaults, **{k: v for k, v in given.items() if v is not None}}
    if kw.get("workers") is None:
        import torch

        # two trainings per GPU: one's CPU work (data, capture, eval) overlaps the other's replays;
        # more only time-slice the GPU (on an H100, 3 per GPU ran each step 3× slower)
        kw["workers"] = 2 * torch.cuda.device_count() if device.startswith("cuda") else 1
    if getattr(args, "full", False):
        kw["quick"] = False
    if kw.get("tasks") in (None, ["all"]):
        kw.pop("tasks")
    if kw.get("models") is None:
        kw.pop("models")
        if device.startswith("cuda"):
            from .quality import full_models

            kw["models"] = full_models()
    for k in ("seeds", "lrs", "widths"):
        if kw.get(k) is not None:
            kw[k] = tuple(kw[k])
    if getattr(args, "lr", None) is not None and getattr(args, "lrs", None) is None:
        kw["lrs"] = None  # --lr alone: that one learning rate, no sweep
    cfg = QualityConfig(device=device, **kw)
    meta, done = _resume(args, "quality.json", _meta(device))
    return run_quality(cfg, progress=progress, on_rows=_saver(args.out, "quality.json", meta), done=done), meta


def _resume(args, name, meta):
    """With ``--resume``: the rows already in ``<out>/name`` and their run's header, which records
    each sitting's command and date; else no rows and ``meta``."""
    if not getattr(args, "resume", False):
        return meta, None
    old, rows = _load(args.out, name, key="meta"), _load(args.out, name)
    if not old:
        return meta, None
    sittings = old.get("sittings") or [dict(command=old.get("command"), date=old.get("date"))]
    if len(sittings) == 1:  # the first sitting's rows, from before rows were tagged
        rows = [r if "sitting" in r else {**r, "sitting": 1} for r in rows]
    this = {k: meta[k] for k in ("command", "date", "commit") if meta.get(k)}
    if os.environ.get("CUDA_VISIBLE_DEVICES"):  # which GPU of the machine measured this sitting
        this["gpu"] = f"{meta.get('device_name')} (CUDA_VISIBLE_DEVICES={os.environ['CUDA_VISIBLE_DEVICES']})"
    return {**old, "sittings": sittings + [this]}, rows


def _finish(args, meta, t0):
    from rich.console import Console

    from .summary import render_table, write_report

    srows, qrows = _load(args.out, "speed.json"), _load(args.out, "quality.json")
    path = write_report(args.out, srows, qrows, meta=meta, results_dir=args.results_dir)
    Console(width=max(Console().width, 104)).print(render_table(srows, qrows))
    print(f"report written to {path} ({time.perf_counter() - t0:.0f} s)")


def _cmd(args):
    t0 = time.perf_counter()
    device = _device(args.device)
    what = args.what or "all"
    meta = _meta(device)
    if what == "report":  # re-render: the header is the one of the run that measured the rows
        meta = _load(args.out, "speed.json", key="meta") or _load(args.out, "quality.json", key="meta") or meta
        return _finish(args, meta, t0)
    if what == "all":  # a fresh report: drop the rows of earlier runs in the folder
        for name in ("speed.json", "quality.json"):
            if os.path.exists(os.path.join(args.out, name)):
                os.remove(os.path.join(args.out, name))
    try:
        if what in ("all", "speed"):
            _, meta = _speed(args, device)
        if what in ("all", "quality"):
            _, meta = _quality(args, device)
    except KeyboardInterrupt:
        print("interrupted: writing the report from the rows measured so far", file=sys.stderr)
        _finish(args, meta, t0)
        raise SystemExit(130)
    _finish(args, meta, t0)


def _common(p):
    p.add_argument("--device", default="auto", help="cpu, cuda or auto (default: cuda if present)")
    p.add_argument("--resume", action="store_true", help="keep the rows already in --out and measure only what they lack")
    p.add_argument("--mechanisms", type=_csv(str), default=None, help="comma-separated mechanisms (default: all)")
    p.add_argument("--out", default=DEFAULT_OUT, help=f"report folder (default {DEFAULT_OUT}/)")
    p.add_argument("--results-dir", default=DEFAULT_RESULTS, help="kernel results files to include")


def add_bench_parser(sub) -> None:
    """Add ``bench`` to the ``longmix`` sub-command parser ``sub``."""
    b = sub.add_parser("bench", help="which mechanism for my length, GPU and task: speed, memory, quality → report/",
                       description="Without a sub-command: a quick speed sweep and a quick quality run on the best device "
                                   "present, written to report/ (summary.md, JSON rows, PNG plots).")
    b.set_defaults(fn=_cmd, what=None)
    _common(b)
    bs = b.add_subparsers(dest="what")
    s = bs.add_parser("speed", help="time, tokens/s, TFLOP/s and peak memory against T")
    _common(s)
    s.add_argument("--lengths", type=_csv(int), help="sequence lengths (CPU default 128,…,2048; GPU 1K…512K)")
    s.add_argument("--passes", type=_csv(str), help="fwd,fwdbwd,decode (default all)")
    s.add_argument("--patterns", type=_csv(str), help="causal_self,noncausal_self,causal_cross,noncausal_cross")
    s.add_argument("--pattern-lengths", type=_csv(int), help="lengths at which the patterns other than causal_self run")
    s.add_argument("--backends", type=_csv(str), help="longmix backends to time (default: all the device runs; none: anchors only)")
    s.add_argument("--anchors", type=_csv(str), help="sdpa_math,sdpa_flash,sdpa_efficient,sdpa_cudnn,flex,flash_attn,fla")
    s.add_argument("--dtype", help="float32 (CPU default), bfloat16 (GPU default), float16")
    s.add_argument("--tokens", type=int, help="fix B·T (GPU default 32768); B = max(1, tokens // T)")
    s.add_argument("--batch", type=int, help="fixed batch size instead of --tokens")
    s.add_argument("--heads", type=int)
    s.add_argument("--head-dim", type=int)
    s.add_argument("--reps", type=int, help="timed repetitions on the CPU")
    s.add_argument("--max-ms", type=float, help="skip longer T for an implementation once a call takes longer")
    s.add_argument("--no-memory", action="store_true", help="skip the peak-memory measurement")
    q = bs.add_parser("quality", help="small LMs on synthetic tasks with exact metrics")
    _common(q)
    q.add_argument("--tasks", type=_csv(str), help="mqar,passkey,selective_copy,induction,regression,listops,text or all")
    q.add_argument("--models", type=_csv(str), help="mechanisms or hybrids name@PATTERN, e.g. gated_deltanet@LLLS")
    q.add_argument("--seeds", type=_csv(int))
    q.add_argument("--steps", type=int)
    q.add_argument("--batch-size", type=int)
    q.add_argument("--lr", type=float, help="one learning rate (no sweep)")
    q.add_argument("--lrs", type=_csv(float), help="learning rates to sweep; the report keeps each model's best")
    q.add_argument("--widths", type=_csv(int), help="d_model values for the MQAR recall–memory sweep")
    q.add_argument("--workers", type=int, help="trainings run at once, in separate processes (GPU default: 2 per visible GPU)")
    q.add_argument("--budget-s", type=float, help="start only trainings expected to end within this many seconds")
    q.add_argument("--conv-size", type=int, help="short-conv width in every mixer (default 4; 0: none)")
    q.add_argument("--backend", help="attention backend of every layer: auto (default), reference, triton, sdpa")
    q.add_argument("--no-cuda-graph", action="store_true",
                   help="run each training step eagerly on CUDA instead of replaying it as one CUDA graph")
    q.add_argument("--no-tf32", action="store_true",
                   help="full float32 products on CUDA (default: TF32, as LM training usually runs)")
    q.add_argument("--d-model", type=int)
    q.add_argument("--layers", type=int)
    q.add_argument("--heads", dest="quality_heads", type=int,
                   help="heads per layer (default 2; head dim = d_model / heads, kept by --widths)")
    q.add_argument("--full", action="store_true", help="the GPU task sizes (MQAR T 64–256 with 4–32 pairs, …)")
    _common(bs.add_parser("report", help="re-render the report from its JSON rows"))
