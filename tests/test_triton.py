"""Triton chunkwise kernels against the PyTorch reference, forward and every gradient.

On a machine without CUDA the kernels run in Triton's interpreter (TRITON_INTERPRET=1,
set here before the kernels are imported). Tolerance (flash-attn's rule): the kernel's
error against the float64 reference may be at most twice the float32 reference's error
against it, plus a small floor.
"""
import os

import pytest
import torch
import torch.nn.functional as F

DEVICE = "cuda" if torch.cuda.is_available() else "cpu"
if DEVICE == "cpu":  # must be set before Triton is imported
    os.environ.setdefault("TRITON_INTERPRET", "1")
    if os.environ["TRITON_INTERPRET"] != "1":
        pytest.skip("no CUDA and TRITON_INTERPRET is not 1", allow_module_level=True)
pytest.importorskip("triton")

import longmix  # noqa: E402
from longmix.kernels.reference.chunk import chunk as ref_chunk  # noqa: E402
from longmix.kernels.triton import SUPPORTED  # noqa: E402
from longmix.kernels.triton.chunk import chunk as tri_chunk  # noqa: E402

FLOOR = 2e-6
EPS32 = torch.finfo(torch.float32).eps


def _cumsum_floor(g, C):
    """The kernel keeps chunk-local gate cumsums in float32 (the reference in float64):
    a difference G_r − G_u then carries an absolute error of about eps·max|G|, which
    becomes a relative error of the same size in every decay weight and its gradient."""
    if g is None:
        return 0.0
    T = g.shape[1]
    pad = (-T) % C
    gc = F.pad(g.double().movedim(1, -1), (0, pad)).unflatten(-1, (-1, C)).cumsum(-1)
    return 8 * EPS32 * gc.abs().max().item()


def _rel(x, y):
    return ((x.double() - y.double()).norm() / y.double().norm().clamp_min(1e-30)).item()


def _inputs(B, T, H, K, V, gate, s0, strength=1.0, seed=0):
    gen = torch.Generator().manual_seed(seed)
    q = torch.randn(B, T, H, K, generator=gen) * K ** -0.5
    k = torch.randn(B, T, H, K, generator=gen)
    v = torch.randn(B, T, H, V, generator=gen)
    shape = {None: None, "scalar": (B, T, H), "key": (B, T, H, K)}[gate]
    g = None if shape is None else F.logsigmoid(torch.randn(*shape, generator=gen) + 2) * strength
    S = torch.randn(B, H, K, V, generator=gen) if s0 else None
    return [None if x is None else x.to(DEVICE) for x in (q, k, v, g, S)]


def _run(fn, xs, dtype, do, dS, C):
    ins = [None if x is None else x.detach().to(dtype).requires_grad_() for x in xs]  # dtype: fp32 or fp64
    o, S = fn(*ins[:4], None, ins[4], chunk_size=C)
    ((o * do.to(o.dtype)).sum() + (S * dS.to(S.dtype)).sum()).backward()
    return [o, S] + [None if x is None else x.grad for x in ins]


def _compare(xs, C=16):
    B, T, H, _ = xs[2].shape
    gen = torch.Generator().manual_seed(1)
    do = torch.randn(*xs[2].shape, generator=gen).to(DEVICE)
    dS = torch.randn(B, H, xs[0].shape[-1], xs[2].shape[-1], generator=gen).to(DEVICE)
    exact = _run(ref_chunk, xs, torch.float64, do, dS, C)
    ref32 = _run(ref_chunk, xs, torch.float32, do, dS, C)
    tri = _run(tri_chunk, xs, torch.float32, do, dS, C)
    names = ["o", "state", "dq", "dk", "dv", "dg", "dinitial_state"]
    floor = FLOOR + _cumsum_floor(xs[3], C)
    for name, a, r, e in zip(names, tri, ref32, exact):
        if e is None:
            assert a is None, name
            continue
        assert torch.isfinite(a).all(), name
        err, base = _rel(a, e), _rel(r, e)
        assert err <= 2 * base + floor, f"{name}: kernel error {err:.2e} vs reference fp32 error {base:.2e} (floor {floor:.1e})"


@pytest.mark.parametrize("gate", [None, "scalar", "key"])
@pytest.mark.parametrize("T", [1, 15, 64, 100])
def test_chunk_matches_reference(gate, T):
    _compare(_inputs(2, T, 2, 16, 32, gate, s0=T != 64), C=32 if T == 100 else 16)


@pytest.mark.parametrize("gate", ["scalar", "key"])
def test_strong_gates_and_odd_dims(gate):
    # chunk-summed log-gates far below −88 (exp would overflow if split naively); K, V not powers of two
    _compare(_inputs(1, 70, 1, 48, 20, gate, s0=True, strength=30.0), C=64)


def test_wide_heads_tile_loops():
    _compare(_inputs(1, 40, 1, 80, 144, "key", s0=True), C=32)


def test_refusals():
    q, k, v, g, _ = _inputs(1, 8, 1, 16, 16, "scalar", s0=False)
    with pytest.raises(ValueError, match="chunk_size"):
        tri_chunk(q, k, v, g, chunk_size=48)
    with pytest.raises(TypeError, match="float64"):
        tri_chunk(q.double(), k.double(), v.double())
    with pytest.raises(NotImplementedError, match="delta"):
        tri_chunk(q, k, v, beta=torch.rand(1, 8, 1, device=DEVICE))
    with pytest.raises(ValueError, match="g must be"):
        tri_chunk(q, k, v, g[:, :4])
    for name in ("deltanet", "gated_deltanet", "kda"):
        assert "triton" not in longmix.describe(name).backends


MECH_OPTS = {
    "linear": [{}, {"feature_map": "elu1", "normalize": True}],
    "transnormer": [{}],
    "retention": [{}],
    "lightning": [{}],
    "mamba2": [{"g": "scalar"}],
    "gla": [{"g": "key"}],
}


@pytest.mark.parametrize("name", SUPPORTED)
def test_api_backend_triton(name):
    assert "triton" in longmix.describe(name).backends
    B, T, H, D = 1, 40, 2, 16
    gen = torch.Generator().manual_seed(3)
    q, k, v, w = (torch.randn(B, T, H, D, generator=gen).to(DEVICE) for _ in range(4))
    for opts in MECH_OPTS[name]:
        opts = dict(opts)
        if "g" in opts:
            shape = (B, T, H) if opts["g"] == "scalar" else (B, T, H, D)
            opts["g"] = F.logsigmoid(torch.randn(*shape, generator=gen)).to(DEVICE)
        outs = {}
        for backend in ("reference", "triton"):
            qq, kk, vv = (x.clone().requires_grad_() for x in (q, k, v))
            o, S = longmix.attention(qq, kk, vv, name, backend=backend, form="chunk", output_final_state=True,
                                     chunk_size=16, **opts)
            ((o * w).sum() + S.sum()).backward()
            outs[backend] = [o, S, qq.grad, kk.grad, vv.grad]
        for a, r in zip(outs["triton"], outs["reference"]):
            assert _rel(a, r) < 1e-4, name
    # decoding one token through the recurrent form
    o1 = longmix.attention(q[:, :1], k[:, :1], v[:, :1], name, backend="triton", form="recurrent",
                           **{n: (x[:, :1] if torch.is_tensor(x) else x) for n, x in opts.items()})
    o2 = longmix.attention(q[:, :1], k[:, :1], v[:, :1], name, backend="reference", form="recurrent",
                           **{n: (x[:, :1] if torch.is_tensor(x) else x) for n, x in opts.items()})
    assert _rel(o1, o2) < 1e-4
