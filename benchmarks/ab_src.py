"""A/B of two source trees on one GPU: forward and forward+backward times through the benchmark's calls.

    PYTHONPATH= python benchmarks/ab_src.py SRC_DIR TAG ['{"config_key": value}']   # one JSON row per shape

Imports longmix from ``SRC_DIR`` (e.g. a ``git archive`` of an earlier commit's ``src``), applies the
optional ``chunk.CONFIG`` overrides, and times ``MECHS`` (environment, comma list) at B·T = 32K,
T = 2K, 8K and 32K (bf16, H = 16, D = 128; ``SHAPES`` environment, e.g. ``16x2048,4x8192``, picks
B×T pairs) with ``triton.testing.do_bench``. Run it for each tree in
turn, twice, in one sitting, and compare the best of the rounds.
"""
import json
import os
import sys

sys.path.insert(0, sys.argv[1])
import torch  # noqa: E402
from triton.testing import do_bench  # noqa: E402

from longmix.bench.speed import _longmix_fns, _time_pass, make_inputs  # noqa: E402
from longmix.kernels.triton import chunk  # noqa: E402

tag = sys.argv[2]
if len(sys.argv) > 3:
    chunk.CONFIG.update(json.loads(sys.argv[3]))
shapes = os.environ.get("SHAPES", "16x2048,4x8192,1x32768")
for B, T in [tuple(map(int, s.split("x"))) for s in shapes.split(",")]:
    for name in os.environ.get("MECHS", "retention,mamba2,gated_deltanet,linear").split(","):
        x = make_inputs(name, B=B, Tq=T, Tk=T, H=16, D=128, device="cuda", dtype=torch.bfloat16)
        fwd = _longmix_fns(name, "triton")[0]
        t = {p: round(do_bench(_time_pass(fwd, None, x, p, True, "cuda", 1), warmup=25, rep=100), 4)
             for p in ("fwd", "fwdbwd")}
        print(json.dumps(dict(src=tag, mechanism=name, B=B, T=T, **t)), flush=True)
        del x
