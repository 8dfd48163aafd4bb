"""Where the one-pass forward's walk spends its time: the forward timed with parts of ``_output._walk`` (the loop of
``fwd_fused``) cut out.

    PYTHONPATH=src python benchmarks/ablate_walk.py [B T]   # GPU; default B=16 T=2048; writes $OUT/ablate.jsonl
    TRITON_INTERPRET=1 PYTHONPATH=src python benchmarks/ablate_walk.py --check   # CPU: every cut compiles and runs

Each variant is ``_output.py`` with some statements of the walk replaced (the gate's four scalings, the
q kᵀ product), loaded as a module of its own and put in ``chunk._output``'s place for the forward without
gradients (the path that runs the walk). Its outputs are wrong on purpose; only its time matters. The time
a cut saves is what that statement costs inside the compiled loop (the walk issues its products one after
another and waits for each, so a cut can also change what overlaps). ``MECHS`` (environment, default
``gated_deltanet,retention,deltanet``) and ``WARPS`` (default ``4,8``: the walk's warps for every mode)
choose what runs; every variant is timed in turn, ``ROUNDS`` times (default 3), keeping the best. The cuts
address the per-element walk, so Gated DeltaNet runs it here (``fused_khat`` off: its decayed-key walk has no
per-element decay and no u scaling to cut).
"""
from __future__ import annotations

import importlib.util
import json
import os
import re
import sys
import tempfile

import torch

from longmix.kernels.triton import _output, chunk

# (name, [(statement as in _output._walk, its replacement)]); each statement must occur once in _walk
GATE_CUTS = {
    "P gate": ("P *= pair_decay(g, g, causal)", "P = P"),
    "o scale": ("acc *= tl.exp(g)[:, None]", "acc = acc"),
    "u scale": ("vs = (vv * tl.exp(g_last - g)[:, None]).to(vv.dtype)", "vs = vv"),
    "S scale": ("S *= tl.exp(g_last)", "S = S"),
}
VARIANTS = [("as is", [])] + [(f"no {k}", [v]) for k, v in GATE_CUTS.items()] + [
    ("no gate math", list(GATE_CUTS.values())),
    ("no q kT", [("P = tl.dot(qq, kT, input_precision=PREC)", "P = tl.zeros([BT, BT], dtype=tl.float32)")]),
]


def variant_module(cuts, tag):
    """``_output.py`` with ``cuts`` applied, imported from a file of its own (Triton reads a kernel's source)."""
    path = _output.__file__
    src = open(path).read()
    start = src.index("def _walk(")
    end = src.index("@triton.jit", start)
    body = src[start:end]
    for old, new in cuts:
        assert body.count(old) == 1, f"{old!r} occurs {body.count(old)} times in _walk ({path})"
        body = body.replace(old, new)
    src = src[:start] + body + src[end:]
    # the module's relative imports made absolute (it is loaded from a file outside the package)
    src = re.sub(r"^from \.(\w*) import", lambda m: f"from longmix.kernels.triton{'.' + m[1] if m[1] else ''} import",
                 src, flags=re.M)
    folder = tempfile.mkdtemp(prefix="ablate_")
    file = os.path.join(folder, f"walk_{tag}.py")
    open(file, "w").write(src)
    spec = importlib.util.spec_from_file_location(f"walk_{tag}", file)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def _inputs(name, B, T, device, dtype):
    from longmix.bench.speed import make_inputs

    return make_inputs(name, B=B, Tq=T, Tk=T, H=16 if device == "cuda" else 2, D=128 if device == "cuda" else 32,
                       device=device, dtype=dtype)


def check():
    """On the CPU (interpreter): every variant runs the walk; the uncut one matches the library's forward."""
    from longmix.bench.speed import _longmix_fns

    chunk.CONFIG.update(fused_min_programs=0, fused_khat=False)
    for name in ("gated_deltanet", "retention"):
        x = _inputs(name, 2, 200, "cpu", torch.float32)  # 4 chunks: a cut of the state decay shows in o
        fwd = _longmix_fns(name, "triton")[0]
        with torch.no_grad():
            want = fwd(x, True)
        original = chunk._output
        for i, (label, cuts) in enumerate(VARIANTS):
            chunk._output = variant_module(cuts, f"c{i}")
            try:
                with torch.no_grad():
                    got = fwd(x, True)
            finally:
                chunk._output = original
            same = torch.equal(got, want)
            print(f"{name:>15} {label:>14}: {'same as the library' if same else 'differs'}", flush=True)
            assert same == (not cuts), (name, label)  # every cut acts on these two (the gated walk)


def main(argv):
    from triton.testing import do_bench

    from longmix.bench.speed import _longmix_fns, _time_pass

    B, T = (int(argv[0]), int(argv[1])) if len(argv) > 1 else (16, 2048)
    chunk.CONFIG["fused_khat"] = False
    rounds = int(os.environ.get("ROUNDS", "3"))
    out = open(os.path.join(os.environ.get("OUT", "."), "ablate.jsonl"), "a")
    print(f"{torch.cuda.get_device_name()} · B={B} T={T} H=16 D=128 bf16 · forward without gradients", flush=True)
    modules = {label: variant_module(cuts, f"v{i}") for i, (label, cuts) in enumerate(VARIANTS)}
    original = chunk._output
    warp_keys = ("fused_warps", "fused_warps_delta", "fused_warps_delta_gated")
    for name in os.environ.get("MECHS", "gated_deltanet,retention,deltanet").split(","):
        x = _inputs(name, B, T, "cuda", torch.bfloat16)
        fwd = _longmix_fns(name, "triton")[0]
        times = {}
        for _ in range(rounds):
            for warps in map(int, os.environ.get("WARPS", "4,8").split(",")):
                saved = {k: chunk.CONFIG[k] for k in warp_keys}
                chunk.CONFIG.update({k: warps for k in warp_keys})
                for label, mod in modules.items():
                    chunk._output = mod
                    try:
                        t = do_bench(_time_pass(fwd, None, x, "fwd", True, "cuda", 1), warmup=25, rep=100)
                        key = f"{label} · {warps} warps"
                        times[key] = min(t, times.get(key, t))
                    finally:
                        chunk._output = original
                chunk.CONFIG.update(saved)
        base = min(v for k, v in times.items() if k.startswith("as is"))
        for key, t in times.items():
            print(f"{name:>15} {key:>26}: fwd {t:.3f} ms ({t / base:.2f} of the best uncut)", flush=True)
        out.write(json.dumps(dict(mechanism=name, B=B, T=T, times=times)) + "\n")
        out.flush()
        del x


if __name__ == "__main__":
    check() if "--check" in sys.argv else main(sys.argv[1:])
