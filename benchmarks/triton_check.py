"""GPU check of the Triton chunk kernels: correctness against the reference, then speed.

Run on a CUDA machine (``PYTHONUNBUFFERED=1 python benchmarks/triton_check.py``). It
streams one JSON row per case to ``$OUT/triton_check.jsonl`` (or ./triton_check.jsonl):

1. correctness, forward and all gradients, fp32 and bf16, against
   ``longmix.kernels.reference.chunk.chunk`` run in float64 (and in float32, whose error
   is the yardstick), for no gate / scalar gate / per-key gate, T up to 32K;
2. speed with ``triton.testing.do_bench`` (bf16, B·T = 32K, H = 16, D = 128), forward and
   forward+backward, against PyTorch SDPA with the cuDNN (and flash) backend;
3. ``sweep``: a few tile/warp settings of ``CONFIG``; ``profile``: per-kernel times.

Environment: ONLY (comma list of sections: check,speed,sweep), TS (comma list of T for
speed), CHECK_TS (comma list of T for correctness), BUDGET_S (stop starting new cases after).
"""
from __future__ import annotations

import json
import os
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
ONLY = os.environ.get("ONLY", "check,speed").split(",")


def emit(row):
    row["t"] = round(time.time() - START, 1)
    print(json.dumps(row), flush=True)
    with open(OUT, "a") as f:
        f.write(json.dumps(row) + "\n")


def rel(a, b):
    return ((a.double() - b.double()).norm() / b.double().norm().clamp_min(1e-30)).item()


def make(B, T, H, K, V, gate, s0=True, seed=0):
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
    return q, k, v, g, S


def run_grads(fn, xs, dtype, do, dS, C=64):
    ins = []
    for i, x in enumerate(xs):
        if x is None:
            ins.append(None)
            continue
        dt = torch.float64 if dtype == torch.float64 else (torch.float32 if i >= 3 else dtype)
        ins.append(x.detach().to(dt).requires_grad_())
    o, S = fn(*ins[:4], None, ins[4], chunk_size=C)
    ((o.float() * do).sum() + (S.float() * dS).sum()).backward()
    return [o, S] + [None if x is None else x.grad for x in ins]


def check():
    names = ["o", "state", "dq", "dk", "dv", "dg", "ds0"]
    Ts = [int(t) for t in os.environ.get("CHECK_TS", "1000,8192,32768").split(",")]
    for gate in (None, "scalar", "key"):
        for T in Ts:
            if time.time() - START > BUDGET * 0.45:
                emit({"section": "check", "skipped": f"{gate} T={T}: time"})
                continue
            H = 2 if gate == "key" and T > 8192 else 4
            xs = make(1, T, H, 128, 128, gate)
            do = torch.randn(1, T, H, 128, device="cuda")
            dS = torch.randn(1, H, 128, 128, device="cuda")
            try:
                exact = run_grads(ref_chunk, xs, torch.float64, do, dS)
                ref32 = run_grads(ref_chunk, xs, torch.float32, do, dS)
                for dtype in (torch.float32, torch.bfloat16):
                    got = run_grads(tri_mod.chunk, xs, dtype, do, dS)
                    row = {"section": "check", "gate": gate, "T": T, "H": H, "dtype": str(dtype)}
                    for n, a, r, e in zip(names, got, ref32, exact):
                        if e is not None:
                            row[n] = f"{rel(a, e):.2e} (ref32 {rel(r, e):.1e})"
                            row.setdefault("finite", True)
                            row["finite"] &= bool(torch.isfinite(a).all())
                    emit(row)
                del exact, ref32, got
            except Exception as exc:  # report and go on
                emit({"section": "check", "gate": gate, "T": T, "error": repr(exc)[:400]})
            torch.cuda.empty_cache()


def bench(fn, grads):
    from triton.testing import do_bench

    return do_bench(fn, warmup=5, rep=30, grad_to_none=grads)


def speed(tag=""):
    from torch.nn.attention import SDPBackend, sdpa_kernel

    H, D, TOK = 16, 128, 32768
    for T in [int(t) for t in os.environ.get("TS", "2048,8192,32768").split(",")]:
        B = TOK // T
        torch.manual_seed(0)
        q, k, v = (torch.randn(B, T, H, D, device="cuda", dtype=torch.bfloat16, requires_grad=True) for _ in range(3))
        do = torch.randn_like(q)
        if not tag:
            for name, be in (("sdpa_cudnn", SDPBackend.CUDNN_ATTENTION), ("sdpa_flash", SDPBackend.FLASH_ATTENTION)):
                try:
                    def f():
                        with sdpa_kernel(be):
                            return F.scaled_dot_product_attention(q.transpose(1, 2), k.transpose(1, 2), v.transpose(1, 2),
                                                                  is_causal=True)
                    fwd = bench(f, None)
                    fb = bench(lambda: f().backward(do.transpose(1, 2)), [q, k, v])
                    emit({"section": "speed", "impl": name, "T": T, "B": B, "fwd_ms": round(fwd, 3), "fwdbwd_ms": round(fb, 3)})
                except Exception as exc:
                    emit({"section": "speed", "impl": name, "T": T, "error": repr(exc)[:300]})
        for gate in (None, "scalar", "key"):
            if time.time() - START > BUDGET:
                emit({"section": "speed", "skipped": f"{gate} T={T}: time"})
                continue
            g = None
            if gate == "scalar":
                g = F.logsigmoid(torch.randn(B, T, H, device="cuda") + 3).requires_grad_()
            elif gate == "key":
                g = (F.logsigmoid(torch.randn(B, T, H, D, device="cuda")) / 16).requires_grad_()
            try:
                def f():
                    return tri_mod.chunk(q, k, v, g)[0]
                fwd = bench(f, None)
                fb = bench(lambda: f().backward(do), [q, k, v] + ([g] if g is not None else []))
                emit({"section": "speed" + tag, "impl": f"triton_{gate or 'none'}", "T": T, "B": B,
                      "config": dict(tri_mod.CONFIG), "fwd_ms": round(fwd, 3), "fwdbwd_ms": round(fb, 3)})
            except Exception as exc:
                emit({"section": "speed" + tag, "impl": f"triton_{gate or 'none'}", "T": T, "error": repr(exc)[:400]})


def profile():
    """Per-kernel GPU time of one forward+backward (torch.profiler), T=8K and 32K, bf16."""
    from torch.profiler import ProfilerActivity
    from torch.profiler import profile as prof

    H, D = 16, 128
    for T in (8192, 32768):
        B = 32768 // T
        for gate in (None, "scalar", "key"):
            q, k, v = (torch.randn(B, T, H, D, device="cuda", dtype=torch.bfloat16, requires_grad=True) for _ in range(3))
            g = None
            if gate == "scalar":
                g = F.logsigmoid(torch.randn(B, T, H, device="cuda") + 3).requires_grad_()
            elif gate == "key":
                g = (F.logsigmoid(torch.randn(B, T, H, D, device="cuda")) / 16).requires_grad_()
            tri_mod.chunk(q, k, v, g)[0].sum().backward()
            torch.cuda.synchronize()
            with prof(activities=[ProfilerActivity.CUDA]) as p:
                for _ in range(3):
                    tri_mod.chunk(q, k, v, g)[0].sum().backward()
                torch.cuda.synchronize()
            rows = sorted(p.key_averages(), key=lambda e: -e.self_device_time_total)[:10]
            emit({"section": "profile", "gate": gate, "T": T,
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
    emit({"device": torch.cuda.get_device_name(), "torch": torch.__version__,
          "triton": __import__("triton").__version__})
    for section in ONLY:
        {"check": check, "speed": speed, "sweep": sweep, "profile": profile,
         "gla_sweep": gla_sweep}[section]()
