"""TransNormer bf16 D=128 dq/dk bug: each backward stage of the ungated chunk kernels against a float64
torch computation from the kernel's own inputs (h, dh as the kernels stored them), and bwd_dqk under other
launch options, to find which stage and which compile is wrong."""
import os, sys, itertools
import torch, torch.nn.functional as F, triton
from longmix.kernels.triton import chunk as ck, _output, _state

dev = "cuda" if torch.cuda.is_available() else "cpu"
dt = torch.bfloat16 if dev == "cuda" else torch.float16
small = dev == "cpu"


def rel(a, b):
    return ((a.double() - b.double()).norm() / b.double().norm()).item()


def torch_chunked(fq, fk, v, dO, C, scale):
    """float64 h[n], dh[n], dq, dk, dv of o = scale·causal(q kᵀ) v with dO, chunk by chunk."""
    fq, fk, v, dO = (x.double() for x in (fq, fk, v, dO))
    B, T, H, K = fk.shape
    V = v.shape[-1]
    NT = triton.cdiv(T, C)
    t = torch.arange(T, device=fq.device)
    blk = ((t[:, None] >= t[None, :]) & (t[:, None] // C == t[None, :] // C)).double()  # intra-chunk causal
    A = torch.einsum("bthk,bshk->bhts", fq, fk) * blk * scale
    dP = torch.einsum("bthv,bshv->bhts", dO, v) * blk * scale
    dq = torch.einsum("bhts,bshk->bthk", dP, fk)
    dk = torch.einsum("bhts,bthk->bshk", dP, fq)
    dv = torch.einsum("bhts,bthv->bshv", A, dO)
    S = torch.zeros(B, H, K, V, dtype=torch.float64, device=fq.device)
    hs = []
    for n in range(NT):
        hs.append(S.clone())
        sl = slice(n * C, min(T, (n + 1) * C))
        S = S + torch.einsum("bthk,bthv->bhkv", fk[:, sl], v[:, sl])
    dS = torch.zeros_like(S)
    dhs = [None] * NT
    for n in reversed(range(NT)):
        dhs[n] = dS.clone()
        sl = slice(n * C, min(T, (n + 1) * C))
        dS = dS + scale * torch.einsum("bthk,bthv->bhkv", fq[:, sl], dO[:, sl])
    return torch.stack(hs, 2), torch.stack(dhs, 2), dq, dk, dv


def case(label, B, H, T, D, V, C, fmap, structured):
    gen = torch.Generator().manual_seed(0)
    q, k = (torch.randn(B, T, H, D, generator=gen) for _ in range(2))
    v = torch.randn(B, T, H, V, generator=gen)
    fq, fk = fmap(q).to(dev).to(dt), fmap(k).to(dev).to(dt)
    v = v.to(dev).to(dt)
    dO = torch.randn(B, T, H, V, generator=gen).to(dev)
    scale = D ** -0.5
    if structured:  # dO orthogonal to each token's output, as SRMSNorm's backward gives
        x = torch.einsum("bhts,bshv->bthv", torch.einsum("bthk,bshk->bhts", fq.float(), fk.float()).tril(), v.float())
        dO = dO - (dO * x).sum(-1, keepdim=True) / (x * x).sum(-1, keepdim=True) * x
    dO = dO.to(dt).contiguous()
    o, sT, h, A, _ = ck._forward(fq, fk, v, None, 0, None, C, True, None, scale)
    H_, DH, DQ, DK, DV = torch_chunked(fq, fk, v, dO, C, scale)
    # the backward stages, as chunk._backward runs them, keeping dh
    NT = triton.cdiv(T, C)
    chunks = ck.Chunks(NT, B, False)
    CH, CO, CU = chunks.args(fq)
    prec = ck._prec(fq)
    dh = fq.new_empty(B, H, NT, D, V)
    plan = ck._state_plan(B * H, D, V, NT, 0, False, False, reverse=True, C=C)
    ck._state_pass(_state.bwd_states, plan, B * H,
                   (fq, dO, fq, dh, fq, fq, fk, fq, fq, CU, CO, T, H, D, V, NT, scale),
                   dict(GATE=0, HAS_DST=False, STORE_DS0=False, DELTA=False, BT=C, PREC=prec, VARLEN=False,
                        **ck._stages(0, False, plan[1], reverse=True, C=C)), D, V, fq.device)
    bk, bv = ck._tile(D, 64), ck._tile(V, 64)
    dv = torch.empty_like(v)
    _output.bwd_dv[(triton.cdiv(V, bv), NT, B * H)](fq, fk, fq, fq, dO, dh, dv, CH, T, H, D, V, NT, scale,
                                                    GATE=0, BT=C, BK=bk, BV=bv, PREC=prec, VARLEN=False, num_warps=4)
    hd = h.double().permute(0, 1, 2, 3, 4)
    # dq, dk the kernel should give from its own stored h and dh
    fqd, fkd, vd, dOd = (x.double() for x in (fq, fk, v, dO))
    Ti = torch.arange(T, device=fq.device) // C
    hp = h.double()[:, :, Ti]            # [B, H, T, K, V]
    dhp = dh.double()[:, :, Ti]
    DQk = DQ + scale * torch.einsum("bthv,bhtkv->bthk", dOd, hp)
    DKk = DK + torch.einsum("bthv,bhtkv->bthk", vd, dhp)
    DQ = DQ + scale * torch.einsum("bthv,bhtkv->bthk", dOd, H_[:, :, Ti])
    DK = DK + torch.einsum("bthv,bhtkv->bthk", vd, DH[:, :, Ti])
    DV = DV + torch.einsum("bthk,bhtkv->bthv", fkd, DH[:, :, Ti])
    print(f"{label}: h {rel(h, H_):.1e} dh {rel(dh, DH):.1e} dv {rel(dv, DV):.1e} | kernel's h/dh against exact: "
          f"dq {rel(DQk, DQ):.1e} dk {rel(DKk, DK):.1e}", flush=True)
    variants = [("default", dict(num_warps=4), 0, bk, bv)]
    if not small and (B, D, V, C) == (16, 128, 128, 64):
        variants += [(f"w{w} s{s}", dict(num_warps=w, num_stages=s), 0, bk, bv) for w, s in itertools.product((4, 8), (1, 2, 3, 4))]
        variants += [("gate1 zeros", dict(num_warps=4), 1, bk, bv), ("BV 128", dict(num_warps=4), 0, bk, ck._tile(V, 128)),
                     ("BV 32", dict(num_warps=4), 0, bk, 32), ("BK 32", dict(num_warps=4), 0, 32, bv),
                     ("BK 128", dict(num_warps=4), 0, ck._tile(D, 128), bv)]
    G0 = torch.zeros(B, T, H, device=fq.device)
    for name, opts, gate, BK, BV in variants:
        NK = triton.cdiv(D, BK)
        dq, dk = torch.empty_like(fq), torch.empty_like(fk)
        dG = torch.empty(NK, B, T, H, device=fq.device) if gate else fq
        try:
            _output.bwd_dqk[(NK, NT, B * H)](fq, fk, v, G0 if gate else fq, h, dO, dh, dq, dk, dG, fq, fq, fq, CH, T, H, D, V, NT, scale,
                                             GATE=gate, BT=C, BK=BK, BV=BV, PREC=prec, VARLEN=False, DELTA=False, **opts)
        except Exception as e:
            print(f"   {name}: {type(e).__name__} {str(e)[:80]}")
            continue
        print(f"   {name}: dq {rel(dq, DQk):.1e} dk {rel(dk, DKk):.1e} (vs exact {rel(dq, DQ):.1e} {rel(dk, DK):.1e})", flush=True)


elu1 = lambda x: F.elu(x) + 1
shapes = [(2, 2, 40, 32, 32, 16)] if small else [(16, 16, 300, 128, 128, 64), (16, 16, 300, 128, 128, 128),
                                                 (2, 4, 300, 128, 128, 64), (16, 16, 300, 64, 64, 64),
                                                 (16, 16, 300, 128, 129, 64)]
for (B, H, T, D, V, C) in shapes:
    for fname, fm in (("elu", F.elu), ("elu1", elu1)):
        for st in (False, True) if not small else (True,):
            case(f"B{B} H{H} T{T} D{D} V{V} C{C} {fname} {'srms-dO' if st else 'rand-dO'}", B, H, T, D, V, C, fm, st)
