"""stop 16: longmix at chunk_size 64 and 128 beside fla, same sitting; one JSON row per (shape, mechanism, impl)."""
import json, os, sys, time
import torch
from triton.testing import do_bench
from longmix.bench.speed import _longmix_fns, _time_pass, make_inputs
from longmix.bench.anchors import ANCHORS

shapes = os.environ.get("SHAPES", "16x2048,1x32768")
mechs = os.environ.get("MECHS", "retention,lightning,mamba2,linear,gla,deltanet,gated_deltanet,kda").split(",")
impls = os.environ.get("IMPLS", "fla,64,128").split(",")
rounds = int(os.environ.get("ROUNDS", "2"))
deadline = time.time() + float(os.environ.get("SECONDS_LEFT", "1e9"))
for B, T in [tuple(map(int, s.split("x"))) for s in shapes.split(",")]:
    for name in mechs:
        x = make_inputs(name, B=B, Tq=T, Tk=T, H=16, D=128, device="cuda", dtype=torch.bfloat16)
        best = {}
        for r in range(rounds):
            for impl in impls:
                if time.time() > deadline:
                    sys.exit(0)
                for p in ("fwd", "fwdbwd"):
                    key = (impl, p)
                    if best.get(key) == "err":
                        continue
                    try:
                        if impl == "fla":
                            fwd = ANCHORS[f"fla:{name}"].fn
                            xx = x
                        else:
                            fwd = _longmix_fns(name, "triton")[0]
                            xx = dict(x, opts=dict(x.get("opts", {}), chunk_size=int(impl)))
                        t = do_bench(_time_pass(fwd, None, xx, p, True, "cuda", 1), warmup=25, rep=100)
                        best[key] = min(best.get(key, 1e9), t)
                    except Exception as e:  # noqa: BLE001
                        best[key] = "err"
                        print(json.dumps(dict(mechanism=name, B=B, T=T, impl=impl, p=p, error=str(e).splitlines()[0][:160])), flush=True)
        for impl in impls:
            row = {p: (round(best[(impl, p)], 4) if best.get((impl, p)) not in (None, "err") else None) for p in ("fwd", "fwdbwd")}
            print(json.dumps(dict(mechanism=name, B=B, T=T, impl=impl, **row)), flush=True)
        del x
        torch.cuda.empty_cache()
