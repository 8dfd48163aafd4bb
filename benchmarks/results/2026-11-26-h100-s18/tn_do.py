"""TransNormer bf16: the kernels' dφ(q) against float64 of the same bf16 operands (φ(q), φ(k), v and the dO the
kernel received), overall and at the ill-conditioned token b9 t0 h7."""
import sys
sys.path.insert(0, "tests")
import torch, torch.nn.functional as F
from test_cuda import _inputs
from longmix.kernels.triton.chunk import chunk

for C in (64,):
    qkv, _ = _inputs("transnormer", dtype=torch.bfloat16, B=16, T=300, H=16, D=128)
    w = torch.randn(qkv[2].shape, generator=torch.Generator().manual_seed(1)).cuda()
    fq, fk = (F.elu(x).detach().requires_grad_() for x in qkv[:2])
    v = qkv[2].detach().requires_grad_()
    s = 128 ** -0.5
    x, _ = chunk(fq, fk, v, chunk_size=C, scale=s)
    x.retain_grad()
    x32 = x.float()
    o = x32 / (x32.norm(dim=-1, keepdim=True) * 128 ** -0.5 + 1e-8)
    (o * w).sum().backward()
    dO = x.grad.double()
    Q, K, V = (t.detach().double() for t in (fq, fk, v))
    A = torch.einsum("bthk,bshk->bhts", Q, K).tril() * s
    dP = torch.einsum("bthv,bshv->bhts", dO, V).tril() * s
    dq = torch.einsum("bhts,bshk->bthk", dP, K)
    dk = torch.einsum("bhts,bthk->bshk", dP, Q)
    dv = torch.einsum("bhts,bthv->bshv", A, dO)
    rel = lambda a, b: ((a.double() - b).norm() / b.norm()).item()
    print(f"C {C}: kernel against float64 of its own operands: dq {rel(fq.grad, dq):.1e} dk {rel(fk.grad, dk):.1e} "
          f"dv {rel(v.grad, dv):.1e}")
    b, t, h = 9, 0, 7
    d0, v0, k0 = dO[b, t, h], V[b, t, h], K[b, t, h]
    print(f"  token b9 t0 h7: |dO| {d0.norm():.3e}, dO·v {d0 @ v0:.3e}, |x| {x[b, t, h].double().norm():.3e}, "
          f"kernel dq {fq.grad[b, t, h].double().norm():.3e} float64 {dq[b, t, h].norm():.3e}, "
          f"dq·k/(s|k|²) kernel {(fq.grad[b, t, h].double() @ k0) / (s * k0 @ k0):.3e}")
    e = (fq.grad.double() - dq).norm(dim=-1)
    print(f"  worst token of the kernel's own error: {[int(j) for j in torch.unravel_index(e.flatten().argmax(), e.shape)]} "
          f"share {(e.max() ** 2 / (e ** 2).sum()):.2f}")
    # the intra product of that token by cuBLAS in bf16, for comparison
    print(f"  dO·v by torch bf16 matmul: {(x.grad[b, t, h:h+1] @ v[b, t, h].detach()[:, None]).item():.3e}, fp32: "
          f"{(x.grad[b, t, h].float() @ v[b, t, h].detach().float()).item():.3e}")
