"""Time longmix's Triton kernels through the public API against PyTorch SDPA, on one GPU, in one run.

    PYTHONUNBUFFERED=1 python benchmarks/kernels_gpu.py            # writes $OUT/kernels.json (+ .jsonl as it goes)

Shape: bf16, H=16, D_k=D_v=128, B·T = 32K tokens (T = 2K, 8K, 32K) and B=1 at T=128K; causal.
Rows follow the results format of the kernel issue:
``{"header": {command, gpu, torch, triton, commit}, "rows": [{impl, mechanism, variant, B, T, H, D,
dtype, fwd_ms, fwdbwd_ms, peak_gib}]}``; SDPA rows say mechanism "softmax". A decode row times
one token against a [B=64, H=16, 128, 128] fp32 state: through the API (``decode_api``: input
checks included, each waiting for the GPU; ``decode_api_trusted``: inside ``trusted_values()``, as
a model calls it), through ``longmix.Decoder`` (``decode_step``: validated once, the state advanced
in place, inside ``trusted_values()``), the kernel alone updating the state in place
(``decode_kernel``), and fla's fused recurrent kernel where fla is installed (impl "fla"), with the
fraction of the measured copy bandwidth each reaches on the state's read + write.
Environment: TS (comma list of T; empty: decode rows only), BUDGET_S (stop starting new rows
after), ROUNDS (decode rows: median of this many interleaved rounds, default 3), COMMIT.
"""
from __future__ import annotations

import json
import os
import sys
import time

import torch
import torch.nn.functional as F
from triton.testing import do_bench

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "src"))
import longmix  # noqa: E402
from longmix.bench.anchors import FLA_OPS, _fla  # noqa: E402
from longmix.kernels.triton.recurrent import recurrent as tri_recurrent  # noqa: E402

H, D, TOK = 16, 128, 32768
DT = torch.bfloat16
OUT = os.environ.get("OUT", ".")
START, BUDGET = time.time(), float(os.environ.get("BUDGET_S", "300"))
ROUNDS = int(os.environ.get("ROUNDS", "3"))  # decode rows: the median of this many interleaved rounds
rows = []


def emitter(rows: list, name: str):
    """``emit(row)``: keep the row, print it and append it to $OUT/``name`` as it comes."""
    def emit(row):
        rows.append(row)
        print(json.dumps(row), flush=True)
        with open(os.path.join(OUT, name), "a") as fh:
            fh.write(json.dumps(row) + "\n")
    return emit


emit = emitter(rows, "kernels.jsonl")


def inputs(name, B, T):
    torch.manual_seed(0)
    q, k, v = (torch.randn(B, T, H, D, device="cuda", dtype=DT) for _ in range(3))
    kw = {}
    mech = longmix.describe(name)
    if mech.family == "delta":
        k = F.normalize(k.float(), dim=-1).to(DT)
        kw["beta"] = torch.rand(B, T, H, device="cuda", dtype=DT)
    if "g" in mech.required:
        per_key = "D_k" in mech.inputs["g"]
        g = torch.randn(B, T, H, D, device="cuda") if per_key else torch.randn(B, T, H, device="cuda") + 3
        kw["g"] = F.logsigmoid(g) / (16 if per_key else 1)
    return [q, k, v], kw


def measure(fn, leaves):
    fwd = do_bench(lambda: fn(), warmup=5, rep=40, return_mode="median")
    out = fn()
    do = torch.randn_like(out)

    def fb():
        fn().backward(do)

    fwdbwd = do_bench(fb, warmup=5, rep=40, grad_to_none=leaves, return_mode="median")
    torch.cuda.synchronize()
    torch.cuda.reset_peak_memory_stats()
    fb()
    torch.cuda.synchronize()
    return fwd, fwdbwd, torch.cuda.max_memory_allocated() / 2**30


def row(impl, mechanism, variant, B, T, fn, leaves):
    if time.time() - START > BUDGET:
        emit(dict(impl=impl, mechanism=mechanism, variant=variant, B=B, T=T, skipped="time budget"))
        return
    try:
        fwd, fwdbwd, peak = measure(fn, leaves)
        emit(dict(impl=impl, mechanism=mechanism, variant=variant, B=B, T=T, H=H, D=D, dtype="bf16",
                  fwd_ms=round(fwd, 3), fwdbwd_ms=round(fwdbwd, 3), peak_gib=round(peak, 3)))
    except Exception as e:  # keep going; the row says what failed
        emit(dict(impl=impl, mechanism=mechanism, variant=variant, B=B, T=T, error=f"{type(e).__name__}: {str(e)[:200]}"))
    torch.cuda.empty_cache()


def sdpa(backend):
    from torch.nn.attention import sdpa_kernel

    def fn(q, k, v):
        with sdpa_kernel(backend):
            return F.scaled_dot_product_attention(q.transpose(1, 2), k.transpose(1, 2), v.transpose(1, 2),
                                                  is_causal=True).transpose(1, 2)
    return fn


def copy_bandwidth():
    x = torch.empty(2**30 // 2, device="cuda", dtype=torch.float16)
    y = torch.empty_like(x)
    ms = do_bench(lambda: y.copy_(x), warmup=5, rep=50, return_mode="median")
    return 2 * x.numel() * x.element_size() / (ms / 1e3)  # bytes read + written per second


def main():
    from torch.nn.attention import SDPBackend

    header = dict(command="python benchmarks/kernels_gpu.py", gpu=torch.cuda.get_device_name(), torch=torch.__version__,
                  triton=__import__("triton").__version__, commit=os.environ.get("COMMIT", "unknown"))
    print(json.dumps(header), flush=True)
    bw = copy_bandwidth()
    header["copy_bandwidth_gbs"] = round(bw / 1e9, 1)
    Ts = [int(t) for t in os.environ.get("TS", "2048,8192,32768,131072").split(",") if t]  # TS="": decode rows only
    names = [n for n in longmix.mechanisms() if "triton" in longmix.describe(n).backends]
    for T in Ts:
        B = max(1, TOK // T)
        qkv, _ = inputs("softmax", B, T)
        leaves = [x.requires_grad_() for x in qkv]
        for impl, be in (("sdpa_cudnn", SDPBackend.CUDNN_ATTENTION), ("sdpa_flash", SDPBackend.FLASH_ATTENTION)):
            row(impl, "softmax", "causal", B, T, lambda f=sdpa(be): f(*leaves), leaves)
        for name in names:
            qkv, kw = inputs(name, B, T)
            leaves = [x.requires_grad_() for x in qkv + [kw[n] for n in ("g", "beta") if n in kw]]
            row("longmix", name, "causal", B, T,
                lambda name=name, kw=kw, qkv=qkv: longmix.attention(*qkv, name, backend="triton", **kw), leaves)
    # decode: one token against a state, B=64 (state read + written once)
    Bd = 64
    for name in names:
        if time.time() - START > BUDGET:
            break
        qkv, kw = inputs(name, Bd, 1)
        S = torch.randn(Bd, H, D, D, device="cuda")
        state_bytes = 2 * S.numel() * 4  # fp32 state read once and written once
        scale = D ** -0.5
        gk = {n: kw[n] for n in ("g", "beta") if n in kw}
        if "g" not in gk and name in ("retention", "lightning"):
            gk["g"] = torch.full((Bd, 1, H), -0.05, device="cuda")
        api = lambda: longmix.attention(*qkv, name, backend="triton", initial_state=S, output_final_state=True, **kw)  # noqa: E731
        kern = lambda: tri_recurrent(qkv[0] * scale, qkv[1], qkv[2], gk.get("g"), gk.get("beta"), S, inplace=True)  # noqa: E731
        dec = longmix.Decoder(name, S.clone(), backend="triton")

        def api_trusted():
            with longmix.trusted_values():
                return api()

        def step():  # a serving loop: validated once, then one launch per token, the state advanced in place
            with longmix.trusted_values():
                return dec.step(*qkv, **kw)

        fns = [("longmix", "decode_api", api), ("longmix", "decode_api_trusted", api_trusted),
               ("longmix", "decode_step", step), ("longmix", "decode_kernel", kern)]
        if name in FLA_OPS and name != "linear":  # (fla's linear attention is normalised; longmix's rows are not)
            fla_decode = _fla(name)[1]
            x = dict(q1=qkv[0], k1=qkv[1], v1=qkv[2], state=S, **{n + "1": t for n, t in gk.items()})
            fns.append(("fla", "decode", lambda x=x: fla_decode(x)))
        times = {variant: [] for _, variant, _ in fns}  # ROUNDS interleaved rounds: a slow moment hits all alike
        for _ in range(ROUNDS):
            for impl, variant, fn in fns:
                try:
                    with torch.no_grad():
                        times[variant].append(do_bench(fn, warmup=10, rep=100, return_mode="median"))
                except Exception as e:
                    times[variant] = f"{type(e).__name__}: {str(e)[:200]}"
        for impl, variant, _ in fns:
            got = times[variant]
            if isinstance(got, str):
                emit(dict(impl=impl, mechanism=name, variant=variant, error=got))
                continue
            ms = sorted(got)[len(got) // 2]
            emit(dict(impl=impl, mechanism=name, variant=variant, B=Bd, T=1, H=H, D=D, dtype="bf16",
                      fwd_ms=round(ms, 4), fwdbwd_ms=None, peak_gib=None, rounds_ms=[round(t, 4) for t in got],
                      state_bandwidth_fraction=round(state_bytes / (ms / 1e3) / bw, 3)))
    with open(os.path.join(OUT, "kernels.json"), "w") as fh:
        json.dump({"header": header, "rows": rows}, fh, indent=1)


if __name__ == "__main__":
    main()
