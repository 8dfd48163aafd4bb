"""The ``sdpa`` backend of softmax (PyTorch's fused kernels) against the reference backend,
which tests/test_forms.py checks against the naive definition: outputs and gradients, fp32 and
fp64, causal bottom-right with T_q < T_k and T_q > T_k (rows that see no key are zeros), GQA,
bias, packed documents; and the refusals."""
import pytest
import torch

import longmix

TOL = {torch.float32: 2e-5, torch.float64: 1e-11}  # relative to max|ref|; SDPA's fp32 math path rounds like ours


def _qkv(Tq, Tk, dtype, H=4, H_kv=2, seed=0):
    gen = torch.Generator().manual_seed(seed)
    mk = lambda *s: torch.randn(*s, generator=gen, dtype=torch.float64).to(dtype).requires_grad_()  # noqa: E731
    return mk(2, Tq, H, 16), mk(2, Tk, H_kv, 16), mk(2, Tk, H_kv, 12)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("Tq,Tk", [(1, 1), (17, 17), (9, 30), (30, 9), (1, 40), (0, 5)])
@pytest.mark.parametrize("causal", [True, False])
@pytest.mark.parametrize("bias", [None, -0.7, "tensor"])
def test_sdpa_matches_reference(dtype, Tq, Tk, causal, bias):
    q, k, v = _qkv(Tq, Tk, dtype)
    b = torch.randn(1, 4, Tq, Tk, dtype=dtype) if bias == "tensor" else bias
    outs = {}
    for backend in ("sdpa", "reference"):
        o = longmix.attention(q, k, v, "softmax", causal=causal, bias=b, backend=backend)
        w = torch.randn(o.shape, generator=torch.Generator().manual_seed(3), dtype=torch.float64).to(dtype)
        grads = torch.autograd.grad((o * w).sum(), (q, k, v), allow_unused=True) if o.numel() else ()
        outs[backend] = [o, *grads]
    for a, r in zip(outs["sdpa"], outs["reference"]):
        assert torch.isfinite(a).all()
        scale = r.abs().max().clamp_min(1e-30) if r.numel() else 1
        assert ((a - r).abs().max() / scale if a.numel() else 0) <= TOL[dtype]
    if causal and Tq > Tk:  # the first T_q − T_k queries see no key: zeros, as flash-attn
        assert (outs["sdpa"][0][:, : Tq - Tk] == 0).all()


def test_sdpa_with_packed_documents():
    q, k, v = (x[:1] for x in _qkv(40, 40, torch.float64))
    cu = torch.tensor([0, 7, 7, 25, 40])  # with an empty document
    a = longmix.attention(q, k, v, "softmax", cu_seqlens=cu, backend="sdpa")
    r = longmix.attention(q, k, v, "softmax", cu_seqlens=cu, backend="reference")
    assert (a - r).abs().max() < 1e-12


@pytest.mark.parametrize("option", [dict(window=4), dict(block_size=8), dict(sinks=torch.zeros(4)),
                                    dict(alibi_slopes=torch.ones(4)), dict(softcap=30.0)])
def test_sdpa_refuses_options_it_lacks(option):
    q, k, v = _qkv(8, 8, torch.float32)
    with pytest.raises(ValueError, match=f"cannot serve {next(iter(option))}"):
        longmix.attention(q, k, v, "softmax", backend="sdpa", **option)


def test_sdpa_forms_and_other_mechanisms():
    q, k, v = _qkv(8, 8, torch.float32)
    with pytest.raises(ValueError, match="serves the forms"):
        longmix.attention(q, k, v, "softmax", backend="sdpa", form="recurrent")
    with pytest.raises(ValueError, match="no backend 'sdpa'"):
        longmix.attention(q, k, v, "sigmoid", backend="sdpa")
    assert "sdpa" in longmix.describe("softmax").backends
