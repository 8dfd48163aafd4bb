"""Packed documents (cu_seqlens) on one GPU, in one run: longmix's one-launch kernels against the
same call run document by document (what ``attention`` did before the kernels took cu_seqlens) and
against fla's varlen kernels.

    PYTHONUNBUFFERED=1 python benchmarks/varlen_gpu.py        # writes $OUT/varlen.json (+ .jsonl as it goes)

Shape: bf16, H=16, D_k=D_v=128, one packed row of 32K tokens (B=1), causal. Layouts (``variant``):
``docs_1x32768`` (one document: the map's cost against the plain call, impl ``longmix_plain``),
``docs_64x512``, ``docs_512x64`` and ``docs_mixed`` (48 documents of seeded log-normal lengths from
about 20 to 4K tokens). Impls: ``longmix`` (cu_seqlens, one launch per kernel), ``longmix_loop``
(the documents one after another through the same kernels; ``docs_mixed`` only), ``fla``
(its chunk op with cu_seqlens). Rows as ``kernels_gpu.py``: {impl, mechanism, variant, B, T, H, D,
dtype, fwd_ms, fwdbwd_ms, peak_gib}. Environment: MECHS, LAYOUTS, BUDGET_S, COMMIT, BOUNDS_ON (``host``:
longmix gets cu_seqlens as a CPU tensor, read on the host for an exact chunk count; default: the GPU
tensor, never read back, an upper bound of chunk slots).
"""
from __future__ import annotations

import importlib
import json
import os
import random
import sys
import time

import torch

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "src"))
sys.path.insert(0, os.path.dirname(__file__))
import longmix  # noqa: E402
from longmix.bench.anchors import FLA_OPS, _fla_inputs  # noqa: E402
from longmix.mechanisms import base  # noqa: E402

import kernels_gpu as kg  # noqa: E402  (inputs and timing, shared with the kernel benchmark)

TOK = 32768
OUT = os.environ.get("OUT", ".")
START, BUDGET = time.time(), float(os.environ.get("BUDGET_S", "400"))
rows = []
emit = kg.emitter(rows, "varlen.jsonl")


def layouts() -> dict[str, list[int]]:
    rng = random.Random(0)
    lens = [max(16, int(rng.lognormvariate(6.5, 1.0))) for _ in range(48)]
    scale = TOK / sum(lens)
    lens = [max(16, int(x * scale)) for x in lens]
    lens[-1] += TOK - sum(lens)
    out = {"docs_1x32768": [TOK], "docs_64x512": [512] * 64, "docs_512x64": [64] * 512, "docs_mixed": lens}
    want = os.environ.get("LAYOUTS")
    return {k: v for k, v in out.items() if not want or k in want.split(",")}


def bounds(lens):
    cu = [0]
    for n in lens:
        cu.append(cu[-1] + n)
    return torch.tensor(cu, device="cuda")


def row(impl, name, variant, fn, leaves):
    if time.time() - START > BUDGET:
        emit(dict(impl=impl, mechanism=name, variant=variant, skipped="time budget"))
        return
    try:
        fwd, fwdbwd, peak = kg.measure(fn, leaves)
        emit(dict(impl=impl, mechanism=name, variant=variant, B=1, T=TOK, H=kg.H, D=kg.D, dtype="bf16",
                  fwd_ms=round(fwd, 3), fwdbwd_ms=round(fwdbwd, 3), peak_gib=round(peak, 3)))
    except Exception as e:  # keep going; the row says what failed
        emit(dict(impl=impl, mechanism=name, variant=variant, error=f"{type(e).__name__}: {str(e)[:200]}"))
    torch.cuda.empty_cache()


def main():
    header = dict(command="python benchmarks/varlen_gpu.py", gpu=torch.cuda.get_device_name(), torch=torch.__version__,
                  triton=__import__("triton").__version__, commit=os.environ.get("COMMIT", "unknown"),
                  fla=getattr(importlib.import_module("fla"), "__version__", "?") if importlib.util.find_spec("fla") else None)
    print(json.dumps(header), flush=True)
    names = [n for n in longmix.mechanisms() if "triton" in longmix.describe(n).backends]
    if os.environ.get("MECHS"):
        names = [n for n in names if n in os.environ["MECHS"].split(",")]
    lays = layouts()
    header["layouts"] = {k: (v if len(v) <= 64 else f"{len(v)} x {v[0]}") for k, v in lays.items()}
    host = os.environ.get("BOUNDS_ON") == "host"  # cu_seqlens on the host: exact chunk count, read there
    header["bounds_on"] = "host" if host else "gpu"
    for variant, lens in lays.items():
        cu = bounds(lens)
        cu_l = cu.cpu() if host else cu  # what longmix is given; fla always gets the GPU tensor
        for name in names:
            qkv, kw = kg.inputs(name, 1, TOK)
            if name == "linear":  # as fla runs it (and the quality suite): elu + 1, normalised
                kw.update(feature_map="elu1", normalize=True)
            leaves = [x.requires_grad_() for x in qkv + [kw[n] for n in ("g", "beta") if n in kw]]
            row("longmix", name, variant,
                lambda: longmix.attention(*qkv, name, backend="triton", cu_seqlens=cu_l, **kw), leaves)
            if len(lens) == 1:
                row("longmix_plain", name, variant, lambda: longmix.attention(*qkv, name, backend="triton", **kw), leaves)
            elif variant == "docs_mixed":
                saved = set(base.VARLEN)
                base.VARLEN.clear()  # attention then runs the documents one after another
                try:
                    row("longmix_loop", name, variant,
                        lambda: longmix.attention(*qkv, name, backend="triton", cu_seqlens=cu, **kw), leaves)
                finally:
                    base.VARLEN.update(saved)
            if name in FLA_OPS and importlib.util.find_spec("fla"):
                module, op, _, opts = FLA_OPS[name]
                fn = getattr(importlib.import_module(module), op)
                row("fla", name, variant, lambda: fn(**_fla_inputs(name, *qkv), **{n: kw[n] for n in opts},
                                                     cu_seqlens=cu.long())[0], leaves)
    with open(os.path.join(OUT, "varlen.json"), "w") as fh:
        json.dump({"header": header, "rows": rows}, fh, indent=1)


if __name__ == "__main__":
    main()
