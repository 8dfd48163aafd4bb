"""The ``longmix`` command line: a thin layer over ``longmix.bench``.

    longmix list                       # registered mechanisms, one line each
    longmix describe gla               # formula, inputs, forms, complexity, paper
    longmix bench                      # quick speed sweep + quick quality run → report/ (the main benchmark)
    longmix bench speed [--lengths …]  # mechanisms × T × pass × backend × pattern, anchors beside them
    longmix bench quality [--tasks …]  # small LMs trained on MQAR, passkey, copying, … with exact metrics
    longmix bench report               # re-render report/ from its JSON rows and benchmarks/results/
    longmix compare [--lengths 256,1024,4096] [--mechanisms a,b] [--device cpu] [--json out.json]
                                       # every form of every mechanism against its parallel form (a check)
"""
from __future__ import annotations

import argparse
import json
import sys

from . import api


def _csv(kind):
    def parse(s):
        try:
            return [kind(x) for x in s.split(",") if x]
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected a comma-separated list of {kind.__name__}, got {s!r}") from None
    return parse


def _cmd_list(args):
    for name in api.mechanisms():
        m = api.describe(name)
        print(f"{name:<16} {m.family:<7} {m.formula}")


def _cmd_describe(args):
    print(api.describe(args.name))


def _cmd_compare(args):
    import torch
    from rich.console import Console

    from .bench.compare import render_table, run_compare

    device = args.device or "cpu"
    if device.startswith("cuda") and not torch.cuda.is_available():
        raise SystemExit("longmix compare: --device cuda asked for, but torch sees no GPU")
    if any(t < 1 for t in args.lengths):
        raise SystemExit(f"longmix compare: lengths must be ≥ 1, got {args.lengths}")
    torch.manual_seed(0)
    rows = run_compare(lengths=args.lengths, mechanisms=args.mechanisms, device=device, B=args.batch,
                       H=args.heads, D=args.head_dim, max_parallel_T=args.max_parallel_T, reps=args.reps)
    Console().print(render_table(rows))
    if args.json:
        with open(args.json, "w") as fh:
            json.dump({"command": " ".join(sys.argv), "torch": torch.__version__, "device": device, "rows": rows}, fh, indent=1)
        print(f"rows written to {args.json}")


def build_parser() -> argparse.ArgumentParser:
    from .bench.cli import add_bench_parser

    p = argparse.ArgumentParser(prog="longmix", description="Efficient attention mechanisms for long sequences.")
    sub = p.add_subparsers(dest="cmd", required=True)
    sub.add_parser("list", help="list registered mechanisms").set_defaults(fn=_cmd_list)
    d = sub.add_parser("describe", help="what a mechanism computes")
    d.add_argument("name")
    d.set_defaults(fn=_cmd_describe)
    c = sub.add_parser("compare", help="time, memory and error of every mechanism and form")
    c.add_argument("--lengths", type=_csv(int), default=[256, 1024, 4096], help="sequence lengths (default 256,1024,4096)")
    c.add_argument("--mechanisms", type=_csv(str), default=None, help="comma-separated names (default: all)")
    c.add_argument("--device", default=None, help="cpu (default) or cuda")
    c.add_argument("--batch", type=int, default=1)
    c.add_argument("--heads", type=int, default=4)
    c.add_argument("--head-dim", type=int, default=64)
    c.add_argument("--max-parallel-T", type=int, default=1024, help="largest T at which the parallel form is run")
    c.add_argument("--reps", type=int, default=3)
    c.add_argument("--json", default=None, help="also write the rows to this JSON file")
    c.set_defaults(fn=_cmd_compare)
    add_bench_parser(sub)
    return p


def main(argv=None):
    args = build_parser().parse_args(argv)
    try:
        args.fn(args)
    except ValueError as e:  # bad mechanism names and the like: a message, not a traceback
        raise SystemExit(f"longmix {args.cmd}: {e}") from None


if __name__ == "__main__":
    main()
