"""Is the TransNormer bf16 gradient error an ill-conditioned token? float64 exact gradients of the test's inputs,
and the same with dO (the kernel's input) rounded to bf16, the rest exact."""
import sys, torch, torch.nn.functional as F
B, H, D, T = (int(x) for x in sys.argv[1:5])
gen = torch.Generator().manual_seed(0)
q, k, v = (torch.randn(B, T, H, D, generator=gen).to(torch.bfloat16).double() for _ in range(3))
w = torch.randn(B, T, H, D, generator=torch.Generator().manual_seed(1)).double()
scale = D ** -0.5
def core(fq, fk, v):
    A = torch.einsum("bthk,bshk->bhts", fq * scale, fk).tril()
    return torch.einsum("bhts,bshv->bthv", A, v)
q_, k_ = q.clone().requires_grad_(), k.clone().requires_grad_()
fq, fk = F.elu(q_), F.elu(k_)
x = core(fq, fk, v)
xd = x.detach().requires_grad_()
o = xd / (xd.norm(dim=-1, keepdim=True) * D ** -0.5 + 1e-8)
(o * w).sum().backward()
dO = xd.grad
x.backward(dO)
dq_ex = q_.grad.clone()
# per token: |dO| and the token's exact dq
nd = dO.norm(dim=-1)
i = nd.flatten().argmax()
print("max |dO| token", [int(j) for j in torch.unravel_index(i, nd.shape)], f"|dO| {nd.max():.3e} median {nd.median():.3e}",
      f"|x| there {x.detach().norm(dim=-1).flatten()[i]:.3e}")
for name, r in (("bf16 dO", lambda t: t.to(torch.bfloat16).double()), ("fp32 dO", lambda t: t.float().double())):
    q_.grad = None; k_.grad = None
    fq, fk = F.elu(q_), F.elu(k_)
    core(fq, fk, v).backward(r(dO))
    err = (q_.grad - dq_ex).norm() / dq_ex.norm()
    tok = (q_.grad - dq_ex).norm(dim=-1)
    print(name, f"dq rel {err:.2e}; share of the error in the worst token {(tok.max()**2 / (tok**2).sum()):.2f}")
# the Triton path: the kernel's output x rounded to bf16 before SRMSNorm (fp32), the gradient rounded to bf16
q_.grad = None
fq, fk = F.elu(q_), F.elu(k_)
x = core(fq, fk, v)
xr = x.detach().to(torch.bfloat16).double().requires_grad_()
o = xr / (xr.norm(dim=-1, keepdim=True) * D ** -0.5 + 1e-8)
(o * w).sum().backward()
for name, r in (("x bf16, bf16 dO", lambda t: t.to(torch.bfloat16).double()), ("x bf16, exact dO", lambda t: t)):
    q_.grad = None
    fq, fk = F.elu(q_), F.elu(k_)
    core(fq, fk, v).backward(r(xr.grad))
    err = (q_.grad - dq_ex).norm() / dq_ex.norm()
    tok = (q_.grad - dq_ex).norm(dim=-1)
    print(name, f"dq rel {err:.2e}; share of the error in the worst token {(tok.max()**2 / (tok**2).sum()):.2f}")
# the Triton path's inputs: φ(q), φ(k) rounded to bf16 (the feature map runs on bf16 tensors), x rounded to bf16
# before SRMSNorm, dO rounded to bf16; products exact
rb = lambda t: t.to(torch.bfloat16).double()
for name, rx, rd in (("φ bf16 only", False, False), ("φ bf16, x bf16, dO bf16", True, True)):
    q_.grad = None
    fq, fk = F.elu(q_), F.elu(k_)
    fqr = fq + (rb(fq) - fq).detach()   # rounded value, exact elu gradient
    fkr = fk + (rb(fk) - fk).detach()
    x = core(fqr, fkr, v)
    xr = (rb(x.detach()) if rx else x.detach()).requires_grad_()
    o = xr / (xr.norm(dim=-1, keepdim=True) * D ** -0.5 + 1e-8)
    (o * w).sum().backward()
    x.backward(rb(xr.grad) if rd else xr.grad)
    err = (q_.grad - dq_ex).norm() / dq_ex.norm()
    tok = (q_.grad - dq_ex).norm(dim=-1)
    i = tok.flatten().argmax()
    print(name, f"dq rel {err:.2e}; share of the error in the worst token {(tok.max()**2 / (tok**2).sum()):.2f} "
          f"{[int(j) for j in torch.unravel_index(i, tok.shape)]}, x rel err there "
          f"{((x.detach() - xd.detach()).norm(dim=-1) / xd.detach().norm(dim=-1)).flatten()[i]:.2f}")
