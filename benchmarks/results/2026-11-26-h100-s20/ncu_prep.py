"""One Gated DeltaNet forward (no gradients, bf16, 16x2K, H=16, D=128) by longmix and by fla, for ncu to read."""
import os, sys
sys.path.insert(0, "src")
import torch
from longmix.bench.anchors import ANCHORS
from longmix.bench.speed import _longmix_fns, _time_pass, make_inputs

x = make_inputs("gated_deltanet", B=16, Tq=2048, Tk=2048, H=16, D=128, device="cuda", dtype=torch.bfloat16)
fns = {"longmix": _longmix_fns("gated_deltanet", "triton")[0], "fla": ANCHORS["fla:gated_deltanet"].fn}
for name in os.environ.get("IMPLS", "longmix,fla").split(","):
    _time_pass(fns[name], None, x, "fwd", True, "cuda", 1)()
    torch.cuda.synchronize()
