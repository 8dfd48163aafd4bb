"""Where TransNormer's bf16 dq error sits, token by token (the test's inputs, B16 H16 D128 T300): the Triton and
the reference backends against float64, and the kernel's raw output x (before SRMSNorm) at those tokens."""
import sys
sys.path.insert(0, "tests")
import torch, torch.nn.functional as F, longmix
from test_cuda import _fwd_bwd, _inputs
from longmix.kernels.triton.chunk import chunk
from longmix.kernels.reference import chunk as refchunk


def rel(a, b):
    return ((a.double() - b.double()).norm() / b.double().norm()).item()


for T in (300, 200):
    for C in (64, 128):
        qkv, kw = _inputs("transnormer", dtype=torch.bfloat16, B=16, T=T, H=16, D=128)
        kw["chunk_size"] = C
        w = torch.randn(qkv[2].shape, generator=torch.Generator().manual_seed(1)).cuda()
        tri = _fwd_bwd("transnormer", "triton", qkv, kw, w)
        ref = _fwd_bwd("transnormer", "reference", qkv, kw, w)
        ex = _fwd_bwd("transnormer", "reference", [x.double() for x in qkv], kw, w.double())
        print(f"T {T} C {C}: triton", {n: f"{rel(a, e):.1e}" for n, a, e in zip("o dq dk dv".split(), tri, ex)},
              "reference", {n: f"{rel(a, e):.1e}" for n, a, e in zip("o dq dk dv".split(), ref, ex)})
        err = (tri[1].double() - ex[1]).norm(dim=-1)  # [B, T, H]
        top = err.flatten().topk(3)
        fq, fk = (F.elu(x) for x in qkv[:2])
        x_tri, _ = chunk(fq, fk, qkv[2], chunk_size=C, scale=128 ** -0.5)
        fq64, fk64 = (F.elu(x.double()) for x in qkv[:2])
        x64, _ = refchunk.chunk(fq64 * 128 ** -0.5, fk64, qkv[2].double(), chunk_size=C)
        for val, i in zip(top.values, top.indices):
            b, t, h = (int(j) for j in torch.unravel_index(i, err.shape))
            print(f"   token b{b} t{t} h{h}: |dq err| {val:.3e} (share {val**2 / (err**2).sum():.2f}), |dq exact| "
                  f"{ex[1][b, t, h].norm():.3e}, |x| exact {x64[b, t, h].norm():.3e}, kernel x rel err "
                  f"{rel(x_tri[b, t, h], x64[b, t, h]):.1e}, kernel x(bf16) vs x(fp32 ref) {rel(x_tri[b, t, h], x64[b, t, h].float()):.1e}")
        print(f"   overall kernel x rel err {rel(x_tri, x64):.1e}", flush=True)
