"""GPU check of the Triton kernels: correctness against the reference, then speed.

Run on a CUDA machine (``PYTHONUNBUFFERED=1 python benchmarks/triton_check.py``). It
streams one JSON row per case to ``$OUT/triton_check.jsonl`` (or ./triton_check.jsonl):

1. ``check``: correctness, forward and all gradients, fp32 and bf16, against
   ``longmix.kernels.reference.chunk.chunk`` run in float64 (and in float32, whose error
   is the yardstick), for no gate / scalar gate / per-key gate, additive and delta rule
   (``+delta``: beta given, L2-normalised keys), T up to 32K;
2. ``speed``: ``triton.testing.do_bench`` (bf16, B·T = 32K, H = 16, D = 128), forward and
   forward+backward, against PyTorch SDPA with the cuDNN backend;
3. ``decode``: the fused recurrent kernel (T = 1 and 4, every gate kind, ± beta) against the
   reference scan, and its time for one token against the chunk path;
4. ``fla``: flash-linear-attention's chunk kernels for the same mechanisms (each in a
   subprocess with a time limit: some of them hang compiling on Triton 3.6 / Hopper);
5. ``sweep``, ``gla_sweep``: tile/warp settings; ``profile``: per-kernel times.

Environment: ONLY (comma list of sections), TS (comma list of T for speed), CHECK_TS
(comma list of T for correctness), BUDGET_S (stop starting new cases after), FLA_TIMEOUT_S.
"""
from __future__ import annotations

import json
import os
import subprocess
import sys
import time

import torch
import torch.nn.functional as F

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "src"))
from longmix.kernels.reference.chunk import chunk as ref_chunk  # noqa: E402
from longmix.kernels.triton import chunk as tri_mod  # noqa: E402

OUT = os.path.join(os.environ.get("OUT", "."), "triton_check.jsonl")
START = time.time()
BUDGET = float(os.environ.get("BUDGET_S", "380"))
ONLY = os.environ.get("ONLY", "check,speed,decode,fla").split(",")
CASES = [(None, True), ("scalar", True), ("key", True), (None, False), ("scalar", False), ("key", False)]


def case_name(gate, delta):
    return f"{gate or 'none'}{'+delta' if delta else ''}"


def emit(row):
    row["t"] = round(time.time() - START, 1)
    print(json.dumps(row), flush=True)
    with open(OUT, "a") as f:
        f.write(json.dumps(row) + "\n")


def rel(a, b):
    return ((a.double() - b.double()).norm() / b.double().norm().clamp_min(1e-30)).item()


def make(B, T, H, K, V, gate, s0=True, seed=0, delta=False):
    """q, k, v, g, initial state, beta (None unless ``delta``)."""
    torch.manual_seed(seed)
    q = torch.randn(B, T, H, K, device="cuda") * K ** -0.5
    k = F.normalize(torch.randn(B, T, H, K, device="cuda"), dim=-1)
    v = torch.randn(B, T, H, V, device="cuda")
    g = None
    if gate == "scalar":
        g = F.logsigmoid(torch.randn(B, T, H, device="cuda") + 3)
    elif gate == "key":
        g = F.logsigmoid(torch.randn(B, T, H, K, device="cuda")) / 16
    S = torch.randn(B, H, K, V, device="cuda") if s0 else None
    beta = torch.rand(B, T, H, device="cuda") if delta else None
    return q, k, v, g, S, beta


def run_grads(fn, xs, dtype, do, dS, C=64):
    ins = []
    for i, x in enumerate(xs):
        if x is None:
            ins.append(None)
            continue
        dt = torch.float64 if dtype == torch.float64 else (torch.float32 if i >= 3 else dtype)
        ins.append(x.detach().to(dt).requires_grad_())
    o, S = fn(*ins[:4], ins[5], ins[4], chunk_size=C)
    ((o.float() * do).sum() + (S.float() * dS).sum()).backward()
    return [o, S] + [None if x is None else x.grad for x in ins]


def check():
    names = ["o", "state", "dq", "dk", "dv", "dg", "ds0", "dbeta"]
    # T divisible by 16 and H = 16 as in ``speed``: Triton specialises integer arguments on
    # divisibility by 16, so other shapes would compile every kernel again (1008: a ragged last chunk)
    Ts = [int(t) for t in os.environ.get("CHECK_TS", "1008,32768").split(",")]
    wanted = os.environ.get("CHECK_CASES", "")  # comma list of case names (none, scalar, key, none+delta, ...)
    for gate, delta in CASES:
        if wanted and case_name(gate, delta) not in wanted.split(","):
            continue
        for T in (Ts if delta else Ts[:1]):  # the additive kernels were checked before; regression only
            if time.time() - START > BUDGET * float(os.environ.get("CHECK_FRACTION", "0.45")):
                emit({"section": "check", "skipped": f"{case_name(gate, delta)} T={T}: time"})
                continue
            H = int(os.environ.get("CHECK_H", "16"))
            xs = make(1, T, H, 128, 128, gate, delta=delta)
            do = torch.randn(1, T, H, 128, device="cuda")
            dS = torch.randn(1, H, 128, 128, device="cuda")
            exact = ref32 = got = None
            try:
                exact = run_grads(ref_chunk, xs, torch.float64, do, dS)
                ref32 = run_grads(ref_chunk, xs, torch.float32, do, dS)
                # fp32 (IEEE matmuls: slow to compile) at the first T only
                for dtype in (torch.float32, torch.bfloat16) if T == Ts[0] else (torch.bfloat16,):
                    got = run_grads(tri_mod.chunk, xs, dtype, do, dS)
                    row = {"section": "check", "case": case_name(gate, delta), "T": T, "H": H, "dtype": str(dtype)}
                    for n, a, r, e in zip(names, got, ref32, exact):
                        if e is not None:
                            row[n] = f"{rel(a, e):.2e} (ref32 {rel(r, e):.1e})"
                            row.setdefault("finite", True)
                            row["finite"] &= bool(torch.isfinite(a).all())
                    emit(row)
                del exact, ref32, got
            except Exception as exc:  # report and go on
                emit({"section": "check", "case": case_name(gate, delta), "T": T, "error": repr(exc)[:400]})
            torch.cuda.empty_cache()


def bench_gates(B, T, H, D, gate, delta, dtype):
    """The log-gate (None, scalar [B,T,H] or per-key [B,T,H,D]) and beta of a timed case, as leaves."""
    g = None
    if gate == "scalar":
        g = F.logsigmoid(torch.randn(B, T, H, device="cuda") + 3).requires_grad_()
    elif gate == "key":
        g = (F.logsigmoid(torch.randn(B, T, H, D, device="cuda")) / 16).requires_grad_()
    beta = torch.rand(B, T, H, device="cuda", dtype=dtype).requires_grad_() if delta else None
    return g, beta


def bench(fn, grads):
    from triton.testing import do_bench

    return do_bench(fn, warmup=5, rep=30, grad_to_none=grads)


def speed(tag=""):
    from torch.nn.attention import SDPBackend, sdpa_kernel

    H, D, TOK = 16, 128, 32768
    for T in [int(t) for t in os.environ.get("TS", "8192").split(",")]:
        B = TOK // T
        torch.manual_seed(0)
        q, k, v = (torch.randn(B, T, H, D, device="cuda", dtype=torch.bfloat16, requires_grad=True) for _ in range(3))
        do = torch.randn_like(q)
        if not tag:
            try:
                def f():
                    with sdpa_kernel(SDPBackend.CUDNN_ATTENTION):
                        return F.scaled_dot_product_attention(q.transpose(1, 2), k.transpose(1, 2), v.transpose(1, 2),
                                                              is_causal=True)
                fwd = bench(f, None)
                fb = bench(lambda: f().backward(do.transpose(1, 2)), [q, k, v])
                emit({"section": "speed", "impl": "sdpa_cudnn", "T": T, "B": B, "fwd_ms": round(fwd, 3), "fwdbwd_ms": round(fb, 3)})
            except Exception as exc:
                emit({"section": "speed", "impl": "sdpa_cudnn", "T": T, "error": repr(exc)[:300]})
        kn = F.normalize(k.detach().float(), dim=-1).to(k.dtype).requires_grad_()
        for gate, delta in CASES:
            if time.time() - START > BUDGET * 0.7:
                emit({"section": "speed", "skipped": f"{case_name(gate, delta)} T={T}: time"})
                continue
            g, beta = bench_gates(B, T, H, D, gate, delta, q.dtype)
            kk = kn if delta else k
            try:
                def f():
                    return tri_mod.chunk(q, kk, v, g, beta)[0]
                fwd = bench(f, None)
                fb = bench(lambda: f().backward(do), [x for x in (q, kk, v, g, beta) if x is not None])
                emit({"section": "speed" + tag, "impl": f"triton_{case_name(gate, delta)}", "T": T, "B": B,
                      "fwd_ms": round(fwd, 3), "fwdbwd_ms": round(fb, 3)})
            except Exception as exc:
                emit({"section": "speed" + tag, "impl": f"triton_{case_name(gate, delta)}", "T": T, "error": repr(exc)[:400]})


def decode():
    """The fused recurrent kernel: correctness (fp32, bf16) and one-token time against the chunk path."""
    from longmix.kernels.reference.recurrent import scan
    from longmix.kernels.triton.recurrent import recurrent

    for gate, delta in CASES:
        for T in (1, 4):
            q, k, v, g, S, beta = make(2, T, 4, 128, 128, gate, delta=delta)
            ex = scan(*(None if x is None else x.double() for x in (q, k, v, g, beta, S)))
            row = {"section": "decode_check", "case": case_name(gate, delta), "T": T}
            for dt in (torch.float32, torch.bfloat16):
                with torch.no_grad():
                    o, S1 = recurrent(q.to(dt), k.to(dt), v.to(dt), g, None if beta is None else beta.to(dt), S)
                row[str(dt)[6:]] = f"o {rel(o, ex[0]):.1e} S {rel(S1, ex[1]):.1e}"
            emit(row)
    B, H, D = 64, 16, 128
    for gate, delta in CASES:
        q, k, v, g, S, beta = make(B, 1, H, D, D, gate, delta=delta)
        q, k, v = (x.bfloat16() for x in (q, k, v))
        beta = None if beta is None else beta.bfloat16()
        with torch.no_grad():
            fused = bench(lambda: recurrent(q, k, v, g, beta, S, inplace=True), None)
            via_chunk = bench(lambda: tri_mod.chunk(q, k, v, g, beta, S, chunk_size=16), None)
        gbs = 2 * S.numel() * 4 / fused / 1e6
        emit({"section": "decode_speed", "case": case_name(gate, delta), "B": B, "H": H, "D": D,
              "fused_ms": round(fused, 4), "chunk_path_ms": round(via_chunk, 4), "state_GBps": round(gbs)})


FLA_IMPLS = {  # in order of interest; FLA_ONLY (comma list) picks some
    "chunk_gla": ("key", False), "chunk_kda": ("key", True), "chunk_gated_delta_rule": ("scalar", True),
    "chunk_delta_rule": (None, True), "chunk_simple_gla": ("scalar", False),
}


def fla():
    """fla's chunk kernels, one subprocess each (FLA_TIMEOUT_S) so a hang or miscompile is reported, not fatal."""
    for name in os.environ.get("FLA_ONLY", ",".join(FLA_IMPLS)).split(","):
        left = BUDGET - (time.time() - START)
        if left < 30:
            emit({"section": "fla", "impl": name, "skipped": "time"})
            continue
        env = dict(os.environ, ONLY="fla_one", FLA_IMPL=name)
        try:
            r = subprocess.run([sys.executable, __file__], env=env, timeout=min(left - 10, float(os.environ.get("FLA_TIMEOUT_S", "75"))),
                               capture_output=True, text=True)
            if r.returncode:
                emit({"section": "fla", "impl": name, "error": r.stderr[-400:]})
        except subprocess.TimeoutExpired:
            emit({"section": "fla", "impl": name, "error": "timed out (compiling?)"})


def fla_one():
    from fla import ops

    name = os.environ["FLA_IMPL"]
    gate, delta = FLA_IMPLS[name]
    fn = getattr(ops, name)
    H, D, TOK = 16, 128, 32768
    for T in [int(t) for t in os.environ.get("TS", "8192").split(",")]:
        B = TOK // T
        torch.manual_seed(0)
        q, k, v = (torch.randn(B, T, H, D, device="cuda", dtype=torch.bfloat16, requires_grad=True) for _ in range(3))
        if delta:
            k = F.normalize(k.detach().float(), dim=-1).bfloat16().requires_grad_()
        do = torch.randn_like(q)
        g, beta = bench_gates(B, T, H, D, gate, delta, q.dtype)
        args = [q, k, v] + ([g] if g is not None else []) + ([beta] if beta is not None else [])

        def f():
            return fn(*args)[0]
        # correctness of fla itself against our reference at a small size is not checked here
        fwd = bench(f, None)
        fb = bench(lambda: f().backward(do), args)
        emit({"section": "fla", "impl": name, "T": T, "B": B, "fwd_ms": round(fwd, 3), "fwdbwd_ms": round(fb, 3)})


def profile():
    """Per-kernel GPU time of one forward+backward (torch.profiler), bf16; PROFILE_TS, PROFILE_CASES (e.g. key+delta)."""
    from torch.profiler import ProfilerActivity
    from torch.profiler import profile as prof

    H, D = 16, 128
    wanted = os.environ.get("PROFILE_CASES", ",".join(case_name(*c) for c in CASES)).split(",")
    for T in [int(t) for t in os.environ.get("PROFILE_TS", "8192,32768").split(",")]:
        B = 32768 // T
        for gate, delta in CASES:
            if case_name(gate, delta) not in wanted or time.time() - START > BUDGET:
                continue
            q, k, v = (torch.randn(B, T, H, D, device="cuda", dtype=torch.bfloat16, requires_grad=True) for _ in range(3))
            g, beta = bench_gates(B, T, H, D, gate, delta, q.dtype)
            tri_mod.chunk(q, k, v, g, beta)[0].sum().backward()
            torch.cuda.synchronize()
            with prof(activities=[ProfilerActivity.CUDA]) as p:
                for _ in range(3):
                    tri_mod.chunk(q, k, v, g, beta)[0].sum().backward()
                torch.cuda.synchronize()
            rows = sorted(p.key_averages(), key=lambda e: -e.self_device_time_total)[:10]
            emit({"section": "profile", "case": case_name(gate, delta), "T": T,
                  "kernels_ms": {e.key[:60]: round(e.self_device_time_total / 3e3, 3) for e in rows}})


def sweep():
    base = dict(tri_mod.CONFIG)
    variants = [
        {"state_min_programs": 0},
        {"state_min_programs": 512, "state_warps": 2},
        {"state_bk": 128, "state_bv": 64, "state_warps": 8, "out_bk": 128, "out_bv": 64, "out_warps": 4,
         "bwd_bk": 128, "bwd_bv": 64, "bwd_warps": 4},
        {"out_bk": 128, "out_bv": 128, "out_warps": 8, "bwd_bk": 128, "bwd_bv": 64, "bwd_warps": 8},
    ]
    os.environ["TS"] = os.environ.get("SWEEP_TS", "2048,32768")
    for i, var in enumerate(variants):
        if time.time() - START > BUDGET:
            break
        tri_mod.CONFIG.update(base)
        tri_mod.CONFIG.update(var)
        speed(tag=f"_sweep{i}")
    tri_mod.CONFIG.update(base)


def gla_sweep():
    """Sub-tile key width and warps of the per-key-gate kernels: quick fp32/bf16 check, then T=8K speed."""
    from longmix.kernels.triton import _gla

    base = dict(_gla.CONFIG)
    for bk, warps in ((32, 4), (32, 2), (16, 1), (16, 2), (64, 4)):
        var = {"fwd_bk": bk, "fwd_warps": warps, "bwd_bk": bk, "bwd_warps": warps}
        if time.time() - START > BUDGET:
            break
        _gla.CONFIG.update(var)
        xs = make(1, 1000, 4, 128, 128, "key")
        do = torch.randn(1, 1000, 4, 128, device="cuda")
        dS = torch.randn(1, 4, 128, 128, device="cuda")
        exact = run_grads(ref_chunk, xs, torch.float64, do, dS)
        row = {"section": "gla_sweep", **var}
        for dtype in (torch.float32, torch.bfloat16):
            got = run_grads(tri_mod.chunk, xs, dtype, do, dS)
            row[str(dtype)[6:]] = max(rel(a, e) for a, e in zip(got, exact) if e is not None)
        os.environ["TS"] = "8192"
        H, D, T, B = 16, 128, 8192, 4
        q, k, v = (torch.randn(B, T, H, D, device="cuda", dtype=torch.bfloat16, requires_grad=True) for _ in range(3))
        g = (F.logsigmoid(torch.randn(B, T, H, D, device="cuda")) / 16).requires_grad_()
        dO = torch.randn_like(q)
        row["fwd_ms"] = round(bench(lambda: tri_mod.chunk(q, k, v, g)[0], None), 3)
        row["fwdbwd_ms"] = round(bench(lambda: tri_mod.chunk(q, k, v, g)[0].backward(dO), [q, k, v, g]), 3)
        emit(row)
    _gla.CONFIG.update(base)


if __name__ == "__main__":
    if ONLY != ["fla_one"]:
        emit({"device": torch.cuda.get_device_name(), "torch": torch.__version__,
              "triton": __import__("triton").__version__})
    for section in ONLY:
        {"check": check, "speed": speed, "decode": decode, "fla": fla, "fla_one": fla_one, "sweep": sweep,
         "profile": profile, "gla_sweep": gla_sweep}[section]()
