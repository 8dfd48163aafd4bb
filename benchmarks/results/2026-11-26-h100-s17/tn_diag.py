"""TransNormer (and linear) bf16 at chunks of 64 / 128: the Triton and the reference backends' errors against
a float64 reference from the same inputs (is a large difference between them the kernel's, or bf16's?)."""
import sys
sys.path.insert(0, "tests")
import torch
from test_cuda import _fwd_bwd, _inputs


def rel(a, b):
    return ((a.double() - b.double()).norm() / b.double().norm()).item()


for name in ("transnormer", "linear"):
    for shape in ({"B": 16, "H": 16, "D": 128}, {"B": 2, "H": 4, "D": 64}):
        for C in (64, 128):
            qkv, kw = _inputs(name, dtype=torch.bfloat16, T=300, **shape)
            kw["chunk_size"] = C
            w = torch.randn(qkv[2].shape, generator=torch.Generator().manual_seed(1)).cuda()
            tri = _fwd_bwd(name, "triton", qkv, kw, w)
            ref = _fwd_bwd(name, "reference", qkv, kw, w)
            kw64 = {n: t.double() if torch.is_tensor(t) else t for n, t in kw.items()}
            ex = _fwd_bwd(name, "reference", [x.double() for x in qkv], kw64, w.double())
            names = ["o", "dq", "dk", "dv"]
            print(name, shape, "C", C, "| triton:", {n: f"{rel(a, e):.1e}" for n, a, e in zip(names, tri, ex)},
                  "| reference bf16:", {n: f"{rel(a, e):.1e}" for n, a, e in zip(names, ref, ex)}, flush=True)
