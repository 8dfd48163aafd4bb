"""Triton chunkwise kernels against the PyTorch reference, forward and every gradient.

On a machine without CUDA the kernels run in Triton's interpreter (TRITON_INTERPRET=1,
set here before the kernels are imported). Tolerance (flash-attn's rule): the kernel's
error against the float64 reference may be at most twice the float32 reference's error
against it, plus a small floor.
"""
import os
from functools import partial

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


def _inputs(B, T, H, K, V, gate, s0, strength=1.0, seed=0, beta=None, knorm=None):
    """q, k, v, g, initial state, beta. ``beta``: None or (low, high) of a uniform draw;
    ``knorm``: rescale each key to this L2 norm (the delta rule's keys), else N(0, 1) entries."""
    gen = torch.Generator().manual_seed(seed)
    q = torch.randn(B, T, H, K, generator=gen) * K ** -0.5
    k = torch.randn(B, T, H, K, generator=gen)
    if knorm is not None:
        k = F.normalize(k, dim=-1) * knorm
    v = torch.randn(B, T, H, V, generator=gen)
    shape = {None: None, "scalar": (B, T, H), "key": (B, T, H, K)}[gate]
    g = None if shape is None else F.logsigmoid(torch.randn(*shape, generator=gen) + 2) * strength
    S = torch.randn(B, H, K, V, generator=gen) if s0 else None
    b = None if beta is None else beta[0] + (beta[1] - beta[0]) * torch.rand(B, T, H, generator=gen)
    return [None if x is None else x.to(DEVICE) for x in (q, k, v, g, S, b)]


def _run(fn, xs, dtype, do, dS, C):
    ins = [None if x is None else x.detach().to(dtype).requires_grad_() for x in xs]  # dtype: fp32 or fp64
    o, S = fn(*ins[:4], ins[5] if len(ins) > 5 else None, ins[4], chunk_size=C)
    ((o * do.to(o.dtype)).sum() + (S * dS.to(S.dtype)).sum()).backward()
    return [o, S] + [None if x is None else x.grad for x in ins]


def _per_document(fn, bounds):
    """``fn`` run on each packed document alone (its own slice of every time-indexed input and its own
    initial state), outputs concatenated along T and states along the batch: what cu_seqlens means."""
    def run(q, k, v, g, beta, s0, chunk_size):
        outs, states = [], []
        for i, (s, e) in enumerate(zip(bounds, bounds[1:])):
            cut = [None if x is None else x[:, s:e] for x in (q, k, v, g, beta)]
            o, S = fn(*cut, None if s0 is None else s0[i:i + 1], chunk_size=chunk_size)
            outs.append(o)
            states.append(S)
        return torch.cat(outs, 1), torch.cat(states, 0)
    return run


def _count_launches(monkeypatch, module, name) -> list:
    """Replace Triton kernel ``module.name`` by one that records each launch's grid, then launches."""
    grids = []
    real = getattr(module, name)
    spy = type("Spy", (), {"__getitem__": lambda self, grid: grids.append(grid) or real[grid]})
    monkeypatch.setattr(module, name, spy())
    return grids


def _compare_forward(outs, xs, C, floor):
    """A forward without gradients, (o, final state), against the float64 reference of the same inputs
    (q, k, v, g, beta, initial state): finite, and within twice the float32 reference's error plus ``floor``."""
    exact = ref_chunk(*(None if x is None else x.double() for x in xs), chunk_size=C)
    ref32 = ref_chunk(*xs, chunk_size=C)
    for name, a, r, e in zip(["o", "state"], outs, ref32, exact):
        assert torch.isfinite(a).all(), name
        assert _rel(a, e) <= 2 * _rel(r, e) + floor, name


def _compare(xs, C=16, bounds=None):
    """Kernel against the float64 reference (see the module docstring); ``bounds``: packed documents
    (B = 1, initial state [N, ...]), the kernel in one call with cu_seqlens, the reference per document."""
    B, T, H, _ = xs[2].shape
    N = B if bounds is None else len(bounds) - 1
    gen = torch.Generator().manual_seed(1)
    do = torch.randn(*xs[2].shape, generator=gen).to(DEVICE)
    dS = torch.randn(N, H, xs[0].shape[-1], xs[2].shape[-1], generator=gen).to(DEVICE)
    ref, kernel = ref_chunk, tri_chunk
    if bounds is not None:
        ref = _per_document(ref_chunk, bounds)
        kernel = partial(tri_chunk, cu_seqlens=torch.tensor(bounds))
    exact = _run(ref, xs, torch.float64, do, dS, C)
    ref32 = _run(ref, xs, torch.float32, do, dS, C)
    tri = _run(kernel, xs, torch.float32, do, dS, C)
    names = ["o", "state", "dq", "dk", "dv", "dg", "dinitial_state", "dbeta"]
    floor = FLOOR + _cumsum_floor(xs[3], C)
    for name, a, r, e in zip(names, tri, ref32, exact):
        if e is None:
            assert a is None, name
            continue
        assert torch.isfinite(e).all(), f"{name}: the float64 reference itself is not finite (bad test inputs)"
        assert torch.isfinite(a).all() or not torch.isfinite(r).all(), f"{name}: NaN/inf where the reference has none"
        err, base = _rel(a, e), _rel(r, e)
        assert err <= 2 * base + floor, f"{name}: kernel error {err:.2e} vs reference fp32 error {base:.2e} (floor {floor:.1e})"


@pytest.mark.parametrize("gate", [None, "scalar", "key"])
@pytest.mark.parametrize("T", [1, 15, 64, 100])
def test_chunk_matches_reference(gate, T):
    _compare(_inputs(2, T, 2, 16, 32, gate, s0=T != 64), C=32 if T == 100 else 16)


@pytest.mark.parametrize("gate", [None, "scalar", "key"])
@pytest.mark.parametrize("s0", [False, True], ids=["zero-state", "initial-state"])
def test_state_passes_in_segments(gate, s0, monkeypatch):
    """``chunk.CONFIG["state_seg_programs"]``: a long sequence with few programs walks its state passes in
    segments (the segments' ends from zero, then the states, each segment's entering state folded from the
    others; forward and reverse). 13 chunks of 16 in 5 segments of at most 3 chunks, the last one short,
    against the float64 reference: output, final state and every gradient (initial state included)."""
    from longmix.kernels.triton import _state
    from longmix.kernels.triton import chunk as tchunk

    monkeypatch.setitem(tchunk.CONFIG, "state_seg_programs", 1 << 20)
    monkeypatch.setitem(tchunk.CONFIG, "state_seg_min_chunks", 2)
    monkeypatch.setitem(tchunk.CONFIG, "state_seg_gates", (0, 1, 2))
    monkeypatch.setitem(tchunk.CONFIG, "state_seg_below", 1 << 20)
    fwd = _count_launches(monkeypatch, _state, "fwd_states")
    bwd = _count_launches(monkeypatch, _state, "bwd_states")
    _compare(_inputs(1, 200, 2, 16, 16, gate, s0=s0, seed=3), C=16)
    # two launches a pass (ends, then states), each with B·H = 2 sequences × 5 segments
    assert len(fwd) == 2 and len(bwd) == 2 and all(grid[2] == 10 for grid in fwd + bwd), (fwd, bwd)


def test_state_pass_segments_only_where_they_apply(monkeypatch):
    """Segments need a diagonal transition and one sequence per program: never with the delta rule or
    packed documents; only for the gates chosen, below the program target and with enough chunks; never
    empty. Where they run the tiles stay larger (state_seg_tile_programs); where they do not, the usual rule."""
    from longmix.kernels.triton import chunk as tchunk

    monkeypatch.setitem(tchunk.CONFIG, "state_seg_programs", 1024)
    monkeypatch.setitem(tchunk.CONFIG, "state_seg_min_chunks", 8)
    monkeypatch.setitem(tchunk.CONFIG, "state_seg_gates", (2,))
    monkeypatch.setitem(tchunk.CONFIG, "state_seg_tile_programs", 64)
    monkeypatch.setitem(tchunk.CONFIG, "state_seg_below", 128)
    monkeypatch.setitem(tchunk.CONFIG, "state_min_programs", 256)
    monkeypatch.setitem(tchunk.CONFIG, "state_min_programs_delta", (128, 256, 128))
    monkeypatch.setitem(tchunk.CONFIG, "state_min_tile", 32)
    assert tchunk._segments(1024, 512) == (1, 512)
    assert tchunk._segments(256, 512) == (4, 128)
    assert tchunk._segments(16, 100) == (12, 9)  # at most 100 // 8 segments
    plan = tchunk._state_plan
    # B·H = 16, K = V = 128: 64x64 tiles (64 programs), 16 segments of 32 chunks
    assert plan(16, 128, 128, 512, gate=2, delta=False, varlen=False) == (64, 64, 16, 32)
    unsegmented = (32, 32, 1, 512)  # the usual rule: 32x32 tiles, 256 programs
    assert plan(16, 128, 128, 512, gate=1, delta=False, varlen=False) == unsegmented
    assert plan(16, 128, 128, 512, gate=0, delta=False, varlen=False) == unsegmented
    assert plan(16, 128, 128, 512, gate=2, delta=False, varlen=True) == unsegmented
    assert plan(16, 128, 128, 512, gate=2, delta=True, varlen=False) == (128, 16, 1, 512)
    # the delta rule's own targets by gate: at 128 programs (no gate, per-key gates) B·H = 64 keeps its V tiles
    # of 64; at 256 (scalar gates) they halve
    assert plan(64, 128, 128, 128, gate=0, delta=True, varlen=False) == (128, 64, 1, 128)
    assert plan(64, 128, 128, 128, gate=2, delta=True, varlen=False) == (128, 64, 1, 128)
    assert plan(64, 128, 128, 128, gate=1, delta=True, varlen=False) == (128, 32, 1, 128)
    assert plan(16, 128, 128, 8, gate=2, delta=False, varlen=False) == (32, 32, 1, 8)  # too few chunks
    assert plan(256, 128, 128, 32, gate=2, delta=False, varlen=False) == (64, 64, 1, 32)  # enough programs
    # B·H = 32: 128 programs of 64x64 tiles, not below state_seg_below: no segments, the usual 32x64 tiles
    assert plan(32, 128, 128, 256, gate=2, delta=False, varlen=False) == (64, 32, 1, 256)
    monkeypatch.setitem(tchunk.CONFIG, "state_seg_below", 256)
    assert plan(32, 128, 128, 256, gate=2, delta=False, varlen=False) == (64, 64, 8, 32)
    monkeypatch.setitem(tchunk.CONFIG, "state_seg_below", 128)
    monkeypatch.setitem(tchunk.CONFIG, "state_seg_gates", (0, 1, 2))
    assert plan(16, 128, 128, 512, gate=0, delta=False, varlen=False) == (64, 64, 16, 32)
    monkeypatch.setitem(tchunk.CONFIG, "state_seg_programs", 0)
    assert tchunk._segments(16, 512) == (1, 512)
    assert plan(16, 128, 128, 512, gate=2, delta=False, varlen=False) == unsegmented


def test_state_pass_depth_by_gate_pass_and_tile(monkeypatch):
    """``chunk._stages``: the delta rule's state passes take their pipeline depth by gate (per-key or not),
    pass (KDA's reverse has its own) and V tile (16: the narrow tiles of long single sequences); the other
    passes take ``state_stages``, per-key gates ``state_stages_key`` (None: Triton's default)."""
    from longmix.kernels.triton import chunk as tchunk

    depths = {"state_stages_delta": 12, "state_stages_delta_narrow": 13, "state_stages_delta_key": 22,
              "state_stages_delta_key_narrow": 23, "state_stages_delta_key_bwd": 24, "state_stages": None,
              "state_stages_key": None}
    for key, value in depths.items():
        monkeypatch.setitem(tchunk.CONFIG, key, value)
    depth = lambda *a, **kw: tchunk._stages(*a, **kw).get("num_stages")  # noqa: E731
    for gate in (0, 1):
        assert [depth(gate, True, bv) for bv in (16, 32, 64)] == [13, 12, 12]
        assert [depth(gate, True, bv, reverse=True) for bv in (16, 64)] == [13, 12]
    assert [depth(2, True, bv) for bv in (16, 32, 64)] == [23, 22, 22]
    assert [depth(2, True, bv, reverse=True) for bv in (16, 64)] == [24, 24]
    assert depth(2, False, 16) is None and depth(0, False, 64, reverse=True) is None
    monkeypatch.setitem(tchunk.CONFIG, "state_stages", 4)
    assert depth(1, False, 16) == 4 and depth(0, False, 64, reverse=True) == 4 and depth(2, False, 16) is None
    monkeypatch.setitem(tchunk.CONFIG, "state_stages_key", 3)
    assert depth(2, False, 16) == 3 and depth(1, True, 16) == 13


@pytest.mark.parametrize("gate", ["scalar", "key"])
def test_strong_gates_and_odd_dims(gate):
    # chunk-summed log-gates far below −88 (exp would overflow if split naively); K, V not powers of two
    _compare(_inputs(1, 70, 1, 48, 20, gate, s0=True, strength=30.0), C=64)


@pytest.mark.parametrize("mode", ["additive", "scalar-gate", "delta", "scalar-gate-delta", "key-gate", "key-gate-delta"])
@pytest.mark.parametrize("T,K,V,C,s0", [(1, 16, 32, 16, True), (100, 16, 32, 32, False), (70, 48, 20, 64, True),
                                         (33, 128, 160, 16, True), (150, 32, 16, 64, False)])
def test_inference_forward_in_one_pass(mode, T, K, V, C, s0, monkeypatch):
    """Without gradients, in a mode of ``fused_modes`` (no gate or a scalar one, with or without the delta
    rule), the forward runs as one walk over the chunks (``_output.fwd_fused``, state in registers, no
    per-chunk states stored; the delta rule's u formed on the way): outputs and final state against the
    float64 reference, T = 1, T not a multiple of the chunk, K and V not powers of two, V over several
    tiles, several chunks of 64 (the delta rule's register-resident prep), β up to 2; per-key gates
    (``FUSED_MODES_KEY``, not in the default modes) read the intra matrix from ``_gla.fwd_intra``. With
    gradients wanted (where the training walk, ``test_training_forward_by_the_walk``, is off), a mode not
    listed (per-key gates by default), or chunks of 128, the two-kernel path runs instead."""
    from longmix.kernels.triton import _output, chunk as chunk_mod

    monkeypatch.setitem(chunk_mod.CONFIG, "fused_min_programs", 0)  # the test's few heads would not fill a GPU
    modes = chunk_mod.FUSED_MODES_ALL + chunk_mod.FUSED_MODES_KEY
    monkeypatch.setitem(chunk_mod.CONFIG, "fused_modes", modes)
    calls = _count_launches(monkeypatch, _output, "fwd_fused")
    delta, key = mode.endswith("delta"), mode.startswith("key")
    q, k, v, g, S, beta = _inputs(2, T, 3, K, V, "key" if key else "scalar", s0=s0,
                                  beta=(0.0, 2.0) if delta else None, knorm=1.0 if delta else None, seed=T)
    g = g if mode.startswith(("scalar", "key")) else None
    with torch.no_grad():
        o, ST = tri_chunk(q, k, v, g, beta, S, chunk_size=C)
    # float32 inputs with the delta rule and K > 64: the two-kernel path (the tiles overflow shared memory)
    assert len(calls) == (0 if delta and K > 64 else 1)
    _compare_forward((o, ST), (q, k, v, g, beta, S), C, FLOOR + _cumsum_floor(g, C))
    if T != 70:  # the refusals once per mode (the interpreter is slow)
        return
    with torch.no_grad():
        tri_chunk(q, k, v, g, beta, S, chunk_size=128)
        assert len(calls) == 1  # chunks of 128: the two-kernel path (the one-pass tiles overflow shared memory)
        gk = _inputs(2, T, 3, K, V, "key", s0=False)[3]
        monkeypatch.setitem(chunk_mod.CONFIG, "fused_modes", chunk_mod.FUSED_MODES_ALL)
        tri_chunk(q, k, v, gk, beta, S, chunk_size=C)
        assert len(calls) == 1  # per-key gates: not in the default modes
        unlisted = tuple(m for m in modes if m != (chunk_mod._gate_mode(g), delta))
        monkeypatch.setitem(chunk_mod.CONFIG, "fused_modes", unlisted)
        tri_chunk(q, k, v, g, beta, S, chunk_size=C)
        assert len(calls) == 1  # a mode not listed
        monkeypatch.setitem(chunk_mod.CONFIG, "fused_modes", modes)
    monkeypatch.setitem(chunk_mod.CONFIG, "train_walk_gates", ())
    tri_chunk(q.requires_grad_(), k, v, g, beta, S, chunk_size=C)
    assert len(calls) == 1  # gradients wanted (and the training walk off): the stored-state path


@pytest.mark.parametrize("gate,delta,khat_walk", [("scalar", False, False), ("key", False, False),
                                                   ("scalar", True, False), ("scalar", True, True),
                                                   ("key", True, False)])
def test_inference_forward_in_one_pass_strong_gates(gate, delta, khat_walk, monkeypatch):
    """The one-pass walk with chunk-summed log-gates far below −88 and a −inf gate (a hard reset) in the
    middle chunk of one head, between two chunks of ordinary gates, and a head of ordinary gates, β near 0
    and 2: finite, and as close to the float64 reference as the float32 one (the walk's decays are all ≤ 1;
    per-key gates' intra matrix comes from _gla.fwd_intra's split products; scalar gates with the delta rule
    take it, chunk by chunk, from keys decayed to the chunk's end or from ``_output.fwd_strong_intra``,
    ``fwd_fused``'s ``KHAT``; ``khat_walk``: the walk decays the keys itself, the prep stores none)."""
    from longmix.kernels.triton import _delta, _output, chunk as chunk_mod

    monkeypatch.setitem(chunk_mod.CONFIG, "fused_min_programs", 0)
    monkeypatch.setitem(chunk_mod.CONFIG, "fused_modes", chunk_mod.FUSED_MODES_ALL + chunk_mod.FUSED_MODES_KEY)
    monkeypatch.setitem(chunk_mod.CONFIG, "khat_walk", khat_walk)
    calls = _count_launches(monkeypatch, _output, "fwd_fused")
    stored = []  # whether the prep stored decayed keys, per call
    real_prep = _delta.prep
    monkeypatch.setattr(_delta, "prep", lambda *a, **kw: stored.append(kw["khat"]) or real_prep(*a, **kw))
    q, k, v, g, S, beta = _inputs(1, 150, 2, 24, 20, gate, s0=True, strength=30.0,
                                  beta=(0.0, 2.0) if delta else None, knorm=1.0 if delta else None, seed=7)
    g = g.clone()
    g[:, :64] /= 30.0  # the first and the last chunk ordinary (gates summing to about −10 and −3)
    g[:, 128:] /= 30.0
    g[:, 70, 0] = float("-inf")
    g[:, :, 1] /= 30.0  # the second head's gates all ordinary
    with torch.no_grad():
        o, ST = tri_chunk(q, k, v, g, beta, S, chunk_size=64)
    assert len(calls) == 1
    assert stored == ([gate == "scalar" and not khat_walk] if delta else [])
    gr = g.clamp_min(-1e4)  # the references take −inf as the mechanisms hand it to them (api clamps at −1e4)
    floor = FLOOR + _cumsum_floor(g.clamp_min(-200), 64)  # the kernel clamps each log-gate at −200
    _compare_forward((o, ST), (q, k, v, gr, beta, S), 64, floor)


@pytest.mark.parametrize("gate", [None, "scalar", "strong"])
@pytest.mark.parametrize("s0", [False, True], ids=["zero-state", "initial-state"])
def test_inference_forward_in_segments(gate, s0, monkeypatch):
    """Below ``fused_min_programs``, the one-pass forward of no gate and scalar gates splits each sequence into
    segments walked in parallel (their ends from zero first, by ``_state.fwd_states``' ENDS launch; each
    segment's entering state folded from the ones before it): 13 chunks of 16 in 5 segments of at most 3
    chunks, the last one short, V over two tiles; ``strong``: gates summing far below −88 and a −inf gate (a
    reset) inside the second segment. Output and final state against the float64 reference."""
    from longmix.kernels.triton import _output, _state
    from longmix.kernels.triton import chunk as tchunk

    monkeypatch.setitem(tchunk.CONFIG, "fused_min_programs", 1 << 20)
    monkeypatch.setitem(tchunk.CONFIG, "fused_seg_programs", 1 << 20)
    monkeypatch.setitem(tchunk.CONFIG, "fused_seg_min_chunks", 2)
    monkeypatch.setitem(tchunk.CONFIG, "fused_bv", 16)
    walks = _count_launches(monkeypatch, _output, "fwd_fused")
    ends = _count_launches(monkeypatch, _state, "fwd_states")
    q, k, v, g, S, _ = _inputs(1, 200, 2, 16, 32, "scalar" if gate else None, s0=s0,
                               strength=30.0 if gate == "strong" else 1.0, seed=5)
    if gate == "strong":
        g[:, 100:, 1] /= 30.0  # the second head ordinary from the middle on
        g[:, 70, 0] = float("-inf")
    with torch.no_grad():
        o, ST = tri_chunk(q, k, v, g, None, S, chunk_size=16)
    # one ENDS launch and one walk, each over B·H = 2 sequences × 5 segments (the walk: 2 V tiles)
    assert [w[1] for w in walks] == [10] and [e[2] for e in ends] == [10], (walks, ends)
    assert walks[0][0] == 2
    gr = None if g is None else g.clamp_min(-1e4)
    floor = FLOOR + (0.0 if g is None else _cumsum_floor(g.clamp_min(-200), 16))
    _compare_forward((o, ST), (q, k, v, gr, None, S), 16, floor)


@pytest.mark.parametrize("gate", [None, "scalar", "strong"])
@pytest.mark.parametrize("segments", [False, True], ids=["one-walk", "segments"])
def test_training_forward_by_the_walk(gate, segments, monkeypatch):
    """``train_walk_gates`` / ``train_walk_seg_gates``: the training forward of no gate and scalar gates takes the
    one-pass walk, which also stores each chunk's entering state for the backward (no state pass, no output
    kernel), in one walk or in segments: output, final state and every gradient (initial state included)
    against the float64 reference, 13 chunks of 16 (5 segments, the last one short), V over two tiles;
    ``strong``: gates summing far below −88 and a −inf gate (a reset)."""
    from longmix.kernels.triton import _output, _state
    from longmix.kernels.triton import chunk as tchunk

    monkeypatch.setitem(tchunk.CONFIG, "train_walk_gates", () if segments else (0, 1))
    monkeypatch.setitem(tchunk.CONFIG, "train_walk_seg_gates", (0, 1) if segments else ())
    monkeypatch.setitem(tchunk.CONFIG, "fused_min_programs", 1 << 20 if segments else 0)
    monkeypatch.setitem(tchunk.CONFIG, "fused_seg_programs", 1 << 20)
    monkeypatch.setitem(tchunk.CONFIG, "fused_seg_min_chunks", 2)
    monkeypatch.setitem(tchunk.CONFIG, "fused_bv", 16)
    walks = _count_launches(monkeypatch, _output, "fwd_fused")
    outputs = _count_launches(monkeypatch, _output, "fwd_output")
    states = _count_launches(monkeypatch, _state, "fwd_states")
    xs = _inputs(1, 200, 2, 16, 32, "scalar" if gate else None, s0=True, strength=30.0 if gate == "strong" else 1.0,
                 seed=11)
    if gate == "strong":
        xs[3][:, 100:, 1] /= 30.0
        xs[3][:, 70, 0] = float("-inf")
        xs[3] = xs[3].clamp_min(-1e4)  # as the mechanisms hand −inf to the kernels (the reference's exp needs it)
    _compare(xs, C=16)
    # the forward (three times: float64 and float32 references apart, _compare runs the kernel once)
    assert [w[1] for w in walks] == [10 if segments else 2] and not outputs, (walks, outputs)
    assert [s[2] for s in states] == ([10] if segments else []), states  # the segments' ends


def test_training_walk_only_where_it_applies(monkeypatch):
    """The training forward takes the walk for the gates listed for its form (one pass or segments), never with
    the delta rule, per-key gates, documents, K > 128 or chunks over 64."""
    from longmix.kernels.triton import chunk as tchunk

    for key, value in {"fused_min_programs": 128, "fused_seg_programs": 256, "fused_seg_min_chunks": 8,
                       "fused_bv": 64, "fused_seg_gates": (0, 1), "fused_modes": tchunk.FUSED_MODES_ALL,
                       "train_walk_gates": (0, 1), "train_walk_seg_gates": (0,)}.items():
        monkeypatch.setitem(tchunk.CONFIG, key, value)
    plain, docs = tchunk.Chunks(32, 4, False), tchunk.Chunks(512, 1, True)
    walk = tchunk._train_walk
    assert walk(64, 128, 128, 64, 1, False, plain) and walk(64, 128, 128, 64, 0, False, plain)  # one pass
    long = tchunk.Chunks(512, 1, False)
    assert walk(16, 128, 128, 64, 0, False, long) and not walk(16, 128, 128, 64, 1, False, long)  # segments
    assert not walk(64, 128, 128, 64, 2, False, plain)  # per-key gates
    assert not walk(64, 128, 128, 64, 1, True, plain)  # the delta rule
    assert not walk(64, 128, 128, 64, 0, False, docs)
    assert not walk(64, 256, 128, 64, 0, False, plain) and not walk(64, 128, 128, 128, 0, False, plain)
    assert not walk(16, 128, 128, 64, 0, False, tchunk.Chunks(15, 1, False))  # too few chunks to segment
    monkeypatch.setitem(tchunk.CONFIG, "fused_modes", ())
    assert not walk(64, 128, 128, 64, 0, False, plain)


def test_inference_forward_segments_only_where_they_apply(monkeypatch):
    """The one-pass forward: one segment where its programs reach ``fused_min_programs``; below it, segments
    for the gates in ``fused_seg_gates`` only (never the delta rule), enough of them to reach
    ``fused_seg_programs``, each at least ``fused_seg_min_chunks`` chunks long and none empty; None (the
    two-kernel forward) where they cannot run."""
    from longmix.kernels.triton import chunk as tchunk

    for key, value in {"fused_min_programs": 128, "fused_seg_programs": 256, "fused_seg_min_chunks": 8,
                       "fused_seg_gates": (0, 1), "fused_bv": 64, "fused_bv_delta": 64}.items():
        monkeypatch.setitem(tchunk.CONFIG, key, value)
    seg = tchunk._fused_segments
    assert seg(64, 128, 32, gate=1, delta=False) == (1, 32)  # B = 4, T = 8K: 128 programs
    assert seg(16, 128, 512, gate=1, delta=False) == (8, 64)  # B = 1, T = 32K: 32 programs × 8
    assert seg(16, 128, 2048, gate=0, delta=False) == (8, 256)
    assert seg(32, 128, 256, gate=0, delta=False) == (4, 64)
    assert seg(16, 128, 100, gate=1, delta=False) == (8, 13)  # 13 chunks each, the last 9
    assert seg(16, 128, 20, gate=1, delta=False) == (2, 10)  # at most 20 // 8 segments
    assert seg(16, 128, 15, gate=1, delta=False) is None  # too few chunks for two
    assert seg(16, 128, 512, gate=2, delta=False) is None  # per-key gates: not in fused_seg_gates
    assert seg(16, 128, 512, gate=1, delta=True) is None  # the delta rule: no diagonal transition
    assert seg(64, 128, 32, gate=1, delta=True) == (1, 32)
    monkeypatch.setitem(tchunk.CONFIG, "fused_seg_gates", ())
    assert seg(16, 128, 512, gate=0, delta=False) is None


@pytest.mark.parametrize("gate", [None, "scalar", "key"])
@pytest.mark.parametrize("delta", [False, True])
def test_chunks_of_128(gate, delta):
    """chunk_size = 128, the largest the backend takes: T = 150 gives a full chunk and a short one."""
    beta, knorm = ((0.0, 2.0), 1.0) if delta else (None, None)
    _compare(_inputs(1, 150, 2, 16, 32, gate, s0=True, beta=beta, knorm=knorm, seed=7), C=128)


def test_wide_heads_tile_loops():
    _compare(_inputs(1, 40, 1, 80, 144, "key", s0=True), C=32)


def test_refusals():
    q, k, v, g, _, _ = _inputs(1, 8, 1, 16, 16, "scalar", s0=False)
    with pytest.raises(ValueError, match="chunk_size"):
        tri_chunk(q, k, v, g, chunk_size=48)
    with pytest.raises(TypeError, match="float64"):
        tri_chunk(q.double(), k.double(), v.double())
    with pytest.raises(ValueError, match="beta must be"):
        tri_chunk(q, k, v, beta=torch.rand(1, 4, 1, device=DEVICE))
    with pytest.raises(ValueError, match="g must be"):
        tri_chunk(q, k, v, g[:, :4])
    big = torch.randn(1, 8, 1, 272, device=DEVICE)
    with pytest.raises(ValueError, match="D_k ≤ 256"):
        tri_chunk(big, big, v, beta=torch.rand(1, 8, 1, device=DEVICE))


# ----------------------------------------------------------------------------- delta rule


@pytest.mark.parametrize("gate", [None, "scalar", "key"])
@pytest.mark.parametrize("T", [1, 15, 64, 100])
def test_delta_matches_reference(gate, T):
    xs = _inputs(1, T, 2, 16, 16, gate, s0=T != 64, beta=(0.0, 2.0), knorm=1.0, seed=T)
    _compare(xs, C=32 if T == 100 else 16)


@pytest.mark.parametrize("gate", [None, "scalar", "key"])
@pytest.mark.parametrize("beta", [(0.0, 1e-3), (1.9, 2.0)])
def test_delta_beta_extremes(gate, beta):
    _compare(_inputs(1, 40, 1, 16, 16, gate, s0=True, beta=beta, knorm=1.0), C=32)


@pytest.mark.parametrize("gate", [None, "key"])
def test_delta_unnormalised_keys(gate):
    # key norms 2–3: the transition (I − β k kᵀ) expands, the triangular system is badly
    # conditioned; the kernel must stay finite wherever the reference does (and agree).
    xs = _inputs(1, 24, 1, 16, 16, gate, s0=True, beta=(0.0, 0.3), seed=5)
    xs[1] = xs[1] * (2 + torch.rand(1, 24, 1, 1, generator=torch.Generator().manual_seed(6)).to(DEVICE)) / 16 ** 0.5
    _compare(xs, C=16)


@pytest.mark.parametrize("gate", ["scalar", "key"])
def test_delta_strong_gates_odd_dims(gate):
    _compare(_inputs(1, 70, 1, 24, 20, gate, s0=True, strength=30.0, beta=(0.0, 2.0), knorm=1.0), C=64)


@pytest.mark.parametrize("gate", ["scalar", "key"])
def test_delta_wide_heads_tile_loops(gate):
    # K, V above one 64-wide tile: the K/V tile loops of the triangular-system kernels
    _compare(_inputs(1, 33, 1, 80, 72, gate, s0=True, beta=(0.0, 2.0), knorm=1.0), C=32)


@pytest.mark.parametrize("gate", [None, "scalar", "key"])
@pytest.mark.parametrize("T,K,V,beta", [(1, 16, 16, (0.0, 2.0)), (64, 16, 16, (0.0, 2.0)), (150, 16, 16, (1.9, 2.0)),
                                         (70, 80, 72, (0.0, 2.0))])
def test_delta_four_block_prep_at_the_default_chunk(gate, T, K, V, beta):
    """Chunks of 64 (the default) take fwd_prep4, which inverts the triangular system in registers by
    16-row blocks; against the reference (forward and every gradient), with T = 1, a whole chunk, a
    ragged last chunk, β near 2 and key/value dims over one tile."""
    _compare(_inputs(1, T, 1, K, V, gate, s0=True, beta=beta, knorm=1.0, seed=T), C=64)


@pytest.mark.parametrize("gate", [None, "scalar", "key"])
def test_delta_four_block_prep_16_bit_products(gate, monkeypatch):
    """``uw_lowp``: U and W from the inverse's blocks rounded to the inputs' 16-bit dtype (fp16 here; the
    interpreter has no bf16). Against the float64 solve: no worse than the fp16 inputs allow."""
    q, k, v, g, _, beta = _inputs(1, 150, 2, 32, 16, gate, s0=False, beta=(0.0, 2.0), knorm=1.0, seed=4)
    monkeypatch.setitem(_delta_config(), "inv_tf32", 0)  # the same IEEE inverse both ways (TF32's: the test below)
    errs = _prep_errors(k.half(), v.half(), g, beta, gate, "uw_lowp", (False, True), "tf32", monkeypatch)
    # Tinv: the same fp32 solve, stored rounded to fp16 (relative rounding ≤ 2^-11 per entry)
    assert errs[True][0] <= errs[False][0] + 2 ** -11, errs
    for name, e, e_full in zip(("U", "W"), errs[True][1:], errs[False][1:]):
        # the full-precision products' error is the fp16 output's rounding (2e-4); rounding the blocks and
        # β·x adds about as much again (3e-4 to 5e-4 seen)
        assert e <= 4 * e_full, (name, errs)


# fwd_prep4's two other ways to U and W, each against its 16-row block products: (knob, off, on, how far Tinv
# may move; the same solve: bit for bit in the interpreter, and on an H100 uw_whole's compiled code moved
# Tinv's error by 1e-9 of itself through the compiler's order of roundings)
PREP_PRODUCTS = [("prep_split", False, True, 0.0), ("uw_whole", (), (0, 1, 2), 1e-6)]


@pytest.mark.parametrize("gate", [None, "scalar", "key"])
@pytest.mark.parametrize("knob,off,on,tinv_tol", PREP_PRODUCTS, ids=[p[0] for p in PREP_PRODUCTS])
def test_delta_four_block_prep_whole_chunk_products(gate, knob, off, on, tinv_tol, monkeypatch):
    """U and W by whole-chunk products: ``prep_split`` (fwd_prep4 stores Tinv only, and fwd_uw forms U and W,
    as the general chunk always does) and ``uw_whole`` (fwd_prep4 joins the inverse's blocks into one
    [64, 64] tile and forms U, W and the decayed keys itself; the gates it serves: all here, against none).
    The same Tinv; U and W as accurate against the float64 solve as the 16-row block products, with IEEE
    fp32 and with fp16 inputs (16-bit products); then the forward and every gradient against the reference
    (a ragged last chunk, K and V over one tile, packed documents) and the one-pass forward."""
    q, k, v, g, _, beta = _inputs(1, 150, 2, 32, 16, gate, s0=False, beta=(0.0, 2.0), knorm=1.0, seed=5)
    for inputs, prec in (((k, v), "ieee"), ((k.half(), v.half()), "tf32")):
        errs = _prep_errors(*inputs, g, beta, gate, knob, (off, on), prec, monkeypatch)
        assert abs(errs[on][0] - errs[off][0]) <= tinv_tol * errs[off][0], errs
        for e_whole, e_blocks in zip(errs[on][1:], errs[off][1:]):
            # fp32: both near 1e-7; fp16: both the outputs' rounding (2e-4 to 5e-4), summed in another order
            assert e_whole <= 1.5 * e_blocks + 1e-6, errs
    monkeypatch.setitem(_delta_config(), knob, on)
    _compare(_inputs(1, 150, 1, 80, 72, gate, s0=True, beta=(0.0, 2.0), knorm=1.0, seed=3), C=64)
    xs = _inputs(1, 150, 1, 16, 16, gate, s0=False, beta=(0.0, 2.0), knorm=1.0, seed=6)
    xs[4] = torch.randn(3, 1, 16, 16, generator=torch.Generator().manual_seed(7)).to(DEVICE)
    _compare(xs, C=64, bounds=[0, 70, 71, 150])
    if gate != "key":  # the one-pass forward (uw_whole with scalar gates: from the decayed keys the prep stores)
        from longmix.kernels.triton import chunk as chunk_mod

        monkeypatch.setitem(chunk_mod.CONFIG, "fused_min_programs", 0)
        q, k, v, g, S, beta = _inputs(2, 150, 3, 32, 16, "scalar", s0=True, beta=(0.0, 2.0), knorm=1.0, seed=8)
        g = g if gate else None
        with torch.no_grad():
            o, ST = tri_chunk(q, k, v, g, beta, S, chunk_size=64)
        _compare_forward((o, ST), (q, k, v, g, beta, S), 64, FLOOR + _cumsum_floor(g, 64))


@pytest.mark.parametrize("gate", [None, "scalar", "key"])
def test_delta_four_block_prep_tf32_inverse(gate, monkeypatch):
    """``inv_tf32``: fwd_prep4's inverse for 16-bit inputs with TF32 block products. One TF32 product (2)
    loses digits where the system is badly conditioned (nearly aligned keys, β near 2: Tinv's error 8e-3
    against IEEE float32's 1.5e-3 on an H100); three (3, ``tf32x3``) keep float32's accuracy, but were slower
    than IEEE float32 for Gated DeltaNet and KDA; 4 (the diagonal blocks in TF32, then one IEEE Newton step),
    the default where ``inv_tf32_gates`` holds the gate, is the fast one that keeps it. On ordinary and on
    badly conditioned systems, against the float64 solve, 3 and 4 within a quarter of the IEEE products' (0)
    error (the 16-bit roundings') plus 1e-5, every gate here; 2's errors printed. (The interpreter computes
    TF32 as float32, so this test tells only on a GPU, in bf16 there; in the interpreter it still checks the
    Newton step's algebra.)"""
    monkeypatch.setitem(_delta_config(), "inv_tf32_gates", (0, 1, 2))
    dtype = torch.bfloat16 if DEVICE == "cuda" else torch.float16
    q, k, v, g, _, beta = _inputs(1, 150, 2, 32, 16, gate, s0=False, beta=(0.0, 2.0), knorm=1.0, seed=5)
    _, ka, va, ga, _, ba = _inputs(1, 100, 2, 32, 16, gate, s0=False, beta=(1.9, 2.0), seed=9)
    ka = F.normalize(ka[:, :1] + 0.05 * ka, dim=-1)  # nearly aligned keys
    for xs in ((k, v, g, beta), (ka, va, ga, ba)):
        errs = _prep_errors(xs[0].to(dtype), xs[1].to(dtype), *xs[2:], gate, "inv_tf32", (0, 2, 3, 4), "tf32",
                            monkeypatch)
        print(gate, {val: [f"{e:.1e}" for e in es] for val, es in errs.items()})
        for val in (3, 4):
            for e, e_ieee in zip(errs[val], errs[0]):
                assert e <= 1.25 * e_ieee + 1e-5, (val, errs)


def _prep_errors(k, v, g, beta, gate, knob, values, prec, monkeypatch):
    """``_delta.prep``'s relative errors (Tinv, U, W) against the float64 solve, for each value of one of
    ``_delta.CONFIG``'s knobs (chunks of 64)."""
    from longmix.kernels.triton import _delta, _gla
    from longmix.kernels.triton._cumsum import chunk_cumsum

    G = None if g is None else chunk_cumsum(g, 64, clamp=True)
    gid = {None: 0, "scalar": 1, "key": 2}[gate]
    Kp = _gla.fwd_intra(k, k, G, 64, "ieee") if gid == 2 else None
    exact = _exact_prep(k.cpu(), v.cpu(), beta.cpu(), None if G is None else G.cpu(), gid, 64)
    errs = {}
    for val in values:
        monkeypatch.setitem(_delta.CONFIG, knob, val)
        *got, Kh = _delta.prep(k, v, beta, G, Kp, gid, 64, prec, khat=True)
        assert all(torch.isfinite(x).all() for x in got)
        # the keys decayed to their chunk's end, for the one-pass walk: scalar gates on fwd_prep4's path, not fp16
        if gid == 1 and (knob, val) not in (("prep4", False), ("prep_split", True)) and k.dtype != torch.float16:
            last = torch.minimum(torch.arange(k.shape[1]) // 64 * 64 + 63, torch.tensor(k.shape[1] - 1))
            Gd = G.double().cpu()
            want = k.double().cpu() * torch.exp(Gd[:, last] - Gd)[..., None]
            # float32 here, or on a GPU bf16 (each key rounded once: relative 2^-9 at most)
            assert _rel(Kh.double().cpu(), want) < (1e-6 if k.dtype == torch.float32 else 2 ** -9), (knob, val)
        else:
            assert Kh is None, (knob, val)
        errs[val] = [_rel(a.float().cpu(), e) for a, e in zip(got, exact)]
    return errs


def _exact_prep(k, v, beta, G, gate, C):
    """Tinv, U, W of ``_delta.prep`` in float64, chunk by chunk with torch.linalg.inv."""
    B, T, H, K = k.shape
    k, v, beta = k.double(), v.double(), beta.double()
    G = None if G is None else G.double()
    Tinv = torch.zeros(B, T, H, C, dtype=torch.float64)
    U, W = torch.zeros_like(v), torch.zeros_like(k)
    for t0 in range(0, T, C):
        s = slice(t0, min(t0 + C, T))
        n = s.stop - t0
        for b in range(B):
            for h in range(H):
                kk, bt = k[b, s, h], beta[b, s, h]
                if gate == 2:
                    e = G[b, s, h]
                    kp = torch.einsum("td,ud,tud->tu", kk, kk, torch.exp(e[:, None] - e[None, :]).clamp_max(1e30))
                else:
                    kp = kk @ kk.T
                    if gate == 1:
                        e = G[b, s, h]
                        kp = kp * torch.exp((e[:, None] - e[None, :]).tril(-1))
                A = bt[:, None] * kp.tril(-1)
                ti = torch.linalg.inv(torch.eye(n, dtype=torch.float64) + A)
                Tinv[b, s, h, :n] = ti
                kg = kk if gate == 0 else kk * torch.exp(G[b, s, h] if gate == 2 else G[b, s, h][:, None])
                U[b, s, h], W[b, s, h] = ti @ (bt[:, None] * v[b, s, h]), ti @ (bt[:, None] * kg)
    return Tinv, U, W


@pytest.mark.parametrize("gate", [None, "scalar", "key"])
def test_delta_four_block_prep_as_accurate_as_the_general_kernel(gate, monkeypatch):
    """fwd_prep4 and the general block-row kernel against the float64 inverse (nearly aligned keys and
    β near 2: badly conditioned systems, where a less careful inverse loses digits; the power series
    (I + N)⁻¹ = Π (I + N^{2^p}) lost 1e-2 on such 16×16 blocks, which is why the blocks are inverted
    by rows or by exact block algebra, see the next test)."""
    q, k, v, g, _, beta = _inputs(1, 100, 2, 32, 16, gate, s0=False, beta=(1.9, 2.0), seed=9)
    k = F.normalize(k[:, :1] + 0.05 * k, dim=-1)  # nearly aligned keys
    errs = _prep_errors(k, v, g, beta, gate, "prep4", (True, False), "ieee", monkeypatch)
    for e4, eg in zip(errs[True], errs[False]):
        assert e4 <= 2 * eg + 1e-6, errs


@pytest.mark.parametrize("gate", [None, "scalar", "key"])
def test_delta_inverse_by_doubling_blocks(gate, monkeypatch):
    """``_delta.CONFIG["inverse"]``: the 16×16 diagonal blocks of the inverse by block triangular inversion
    with doubling blocks (X − X E X, the default) or by row substitution. On the badly conditioned
    systems of the test above (nearly aligned keys, β near 2), against the float64 inverse: doubling as
    accurate as the substitution (the power series, which cancels large terms, was not); then, with each
    form, the general block-row kernel (chunks of 32) and fwd_prep4 (64) against the reference, forward and
    every gradient."""
    q, k, v, g, _, beta = _inputs(1, 100, 2, 32, 16, gate, s0=False, beta=(1.9, 2.0), seed=9)
    k = F.normalize(k[:, :1] + 0.05 * k, dim=-1)  # nearly aligned keys
    errs = _prep_errors(k, v, g, beta, gate, "inverse", ("substitution", "doubling"), "ieee", monkeypatch)
    assert max(errs["substitution"]) > 1e-7, errs  # the systems do cost digits: the comparison can fail
    for e_dbl, e_sub in zip(errs["doubling"], errs["substitution"]):
        assert e_dbl <= 2 * e_sub + 1e-6, errs
    for inverse in ("doubling", "substitution"):
        monkeypatch.setitem(_delta_config(), "inverse", inverse)
        for C, T in ((32, 70), (64, 150)):
            _compare(_inputs(1, T, 1, 16, 16, gate, s0=True, beta=(0.0, 2.0), knorm=1.0, seed=T), C=C)


def _delta_config():
    from longmix.kernels.triton import _delta

    return _delta.CONFIG


def _spans(G, C, BC):
    """What decides whether ``_gla`` takes a whole chunk (BC = C: the larger of its halves' gate spans
    around its middle row) or a 16-row block's diagonal tile (BC = 16: G at the row before the block,
    0 at a chunk's start, minus G at its last row) into one product; max over batch, heads, key dims."""
    spans = []
    for t in range(0, G.shape[1], BC):
        last = G[:, min(t + BC, G.shape[1]) - 1]
        if BC == C:
            mid = G[:, min(t + C // 2, G.shape[1]) - 1]
            spans.append(torch.maximum(-mid, mid - last).max().item())
        else:
            ref = G[:, t - 1] if t % C else torch.zeros_like(G[:, 0])
            spans.append((ref - last).max().item())
    return torch.tensor(spans)


def _both_ways(G, C, span_max):
    """Assert that chunks and 16-row blocks fall on both sides of ``span_max`` (so a test runs every path)."""
    for BC in (C, 16):
        s = _spans(G, C, BC)
        assert (s > span_max).any() and (s <= span_max).any(), (BC, s)


@pytest.mark.parametrize("span_max,diag_loop", [(-1.0, False), (-1.0, True), (36.0, False), (36.0, True), (None, False)],
                         ids=["3d", "loop", "mixed-3d", "mixed-loop", "default"])
@pytest.mark.parametrize("beta", [None, (0.0, 2.0)], ids=["gla", "kda"])
def test_per_key_intra_matrix_variants(span_max, diag_loop, beta, monkeypatch):
    """The per-key-gate intra matrix and its backward, by whole chunks, by blocks with their diagonal tile
    in the block's product, or with it apart (the exact 3-D product, or column by column): everything
    apart (span_max −1), and with gates ever stronger along time, so that chunks and blocks fall on both
    sides of span_max (checked); at the default chunk with a ragged last chunk and a key dim over one
    tile, against the reference (forward and every gradient)."""
    from longmix.kernels.triton import _gla
    from longmix.kernels.triton._cumsum import chunk_cumsum

    span_max = _gla.CONFIG["span_max"] if span_max is None else span_max  # None: the default
    monkeypatch.setitem(_gla.CONFIG, "span_max", span_max)
    monkeypatch.setitem(_gla.CONFIG, "diag_loop", diag_loop)
    monkeypatch.setitem(_gla.CONFIG, "diag_loop_keys", diag_loop)
    xs = _inputs(1, 150, 1, 40, 24, "key", s0=True, strength=8.0, beta=beta, knorm=1.0 if beta else None, seed=4)
    xs[3] = xs[3] * (3 * torch.linspace(0, 1, 150) ** 2)[None, :, None, None].to(DEVICE)
    if span_max > 0:
        _both_ways(chunk_cumsum(xs[3], 64, clamp=True), 64, span_max)
    _compare(xs, C=64)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float16])
def test_per_key_intra_matrix_exact_across_gate_spans(dtype):
    """``_gla.fwd_intra`` (the matrix and the key-key matrix) against a float64 sum over key dims, on gates
    whose block spans run from about 1 to far past ``span_max`` (so both ways of the diagonal tile are
    taken), with keys of norm up to 30: float16 inputs take float32 operands, as a key scaled by up to
    e^{span_max} (60) would overflow float16; no entry may be inf or NaN."""
    from longmix.kernels.triton import _gla
    from longmix.kernels.triton._cumsum import chunk_cumsum

    gen = torch.Generator().manual_seed(3)
    T, H, K, C = 150, 2, 40, 64
    q = (torch.randn(1, T, H, K, generator=gen) * 3).to(dtype)
    k = (torch.randn(1, T, H, K, generator=gen) * 5).to(dtype)
    ramp = (20 * torch.linspace(0, 1, T) ** 3)[None, :, None, None]  # gates ever stronger: block spans 0.1 to 250
    G = chunk_cumsum((F.logsigmoid(torch.randn(1, T, H, K, generator=gen)) * ramp).to(DEVICE), C, clamp=True).cpu()
    _both_ways(G, C, _gla.CONFIG["span_max"])
    A, A2 = _gla.fwd_intra(q.to(DEVICE), k.to(DEVICE), G.to(DEVICE), C, "ieee", with_keys=True)
    qd, kd, Gd = q.double(), k.double(), G.double()
    for t0 in range(0, T, C):
        s = slice(t0, min(t0 + C, T))
        n = s.stop - t0
        causal = torch.ones(n, n, dtype=torch.bool).tril()
        e = torch.exp((Gd[0, s][:, None] - Gd[0, s][None]).clamp_max(0.0))  # [n, n, H, K]: e^{G_r − G_u}, u ≤ r
        for got, x in ((A, qd), (A2, kd)):
            want = torch.einsum("ruhd,rhd,uhd->rhu", e, x[0, s], kd[0, s])
            have = got[0, s, :, :n].cpu().double()
            have = torch.where(causal[:, None, :], have, torch.zeros((), dtype=have.dtype))
            want = torch.where(causal[:, None, :], want, torch.zeros((), dtype=want.dtype))
            assert torch.isfinite(have).all()
            assert _rel(have, want) < 1e-5, (t0, _rel(have, want))


def _grads_qkv_as(xs, dtype, do, C, cu=None):
    """The output, final state and every gradient of ``tri_chunk`` with q, k, v in ``dtype`` (the gates, β and
    the initial state as given: the backend takes float32 gates), for the loss ⟨o, do⟩ + Σ S."""
    q, k, v = (x.detach().to(dtype).requires_grad_() for x in xs[:3])
    g, s0 = (x.detach().clone().requires_grad_() for x in xs[3:5])
    b = None if xs[5] is None else xs[5].detach().clone().requires_grad_()
    o, S = tri_chunk(q, k, v, g, b, s0, chunk_size=C, cu_seqlens=cu)
    ((o.float() * do).sum() + S.sum()).backward()
    return [o, S] + [x.grad for x in (q, k, v, g, s0, b) if x is not None]


@pytest.mark.parametrize("C", [64, 128])
@pytest.mark.parametrize("beta", [None, (0.0, 2.0)], ids=["gla", "kda"])
def test_per_key_intra_matrix_stored_in_the_input_dtype(beta, C, monkeypatch):
    """The forward stores the intra matrix P in the inputs' 16-bit dtype, half the bytes of fp32: its readers
    (the output kernel, bwd_dv) round it to that dtype for their products anyway, so the output, the final
    state and every gradient are bit for bit those of P kept in fp32 (fp16 here, bf16 on a GPU; at the
    default chunk and at 128, with a ragged last chunk, an initial state and, for KDA, the delta rule's
    key-key matrix, which stays fp32)."""
    from longmix.kernels.triton import _gla

    dtype = torch.bfloat16 if DEVICE == "cuda" else torch.float16
    xs = _inputs(1, 150, 2, 32, 24, "key", s0=True, beta=beta, knorm=1.0 if beta else None, seed=6)
    do = torch.randn(*xs[2].shape, generator=torch.Generator().manual_seed(1)).to(DEVICE)

    seen = []
    real = _gla.fwd_intra
    monkeypatch.setattr(_gla, "fwd_intra", lambda *a, **kw: seen.append(kw["dtype"]) or real(*a, **kw))
    stored = _grads_qkv_as(xs, dtype, do, C)
    monkeypatch.setattr(_gla, "fwd_intra", lambda *a, **kw: real(*a, **{**kw, "dtype": torch.float32}))
    kept = _grads_qkv_as(xs, dtype, do, C)
    assert seen == [dtype]
    for i, (a, b) in enumerate(zip(stored, kept)):
        assert torch.isfinite(a).all() and torch.equal(a, b), i


@pytest.mark.parametrize("case", ["gla", "kda", "gla-fp16", "kda-fp16", "gla-segments", "kda-documents",
                                  "gla-kh-alone", "kda-kh-alone"])
def test_per_key_scaled_operands_change_no_result(case, monkeypatch):
    """``_gla.CONFIG["fwd_scaled_bh"]`` (at and below that many sequences × heads, taken here at its boundary): fwd_A
    also stores q ⊙ e^G and k ⊙ e^{G_last − G}, which the output kernel and the forward state pass read instead of
    forming them from G's tiles. The same operations in the same order, so the output, the final state and every
    gradient are bit for bit those without it: float32 and fp16, with an initial state, a ragged last chunk and
    gates strong enough for the block-split intra matrix; GLA's state pass in segments; KDA with packed
    documents; Kh alone (``fwd_scaled_q`` False: the output kernel forms q ⊙ e^G itself)."""
    from longmix.kernels.triton import _gla, _state
    from longmix.kernels.triton import chunk as tchunk

    beta = (0.0, 2.0) if case.startswith("kda") else None
    dtype = torch.float16 if case.endswith("fp16") else torch.float32
    bounds = [0, 40, 41, 150] if case.endswith("documents") else None
    if case.endswith("segments"):
        monkeypatch.setitem(tchunk.CONFIG, "state_seg_programs", 1 << 20)
        monkeypatch.setitem(tchunk.CONFIG, "state_seg_min_chunks", 1)
        monkeypatch.setitem(tchunk.CONFIG, "state_seg_below", 1 << 20)
    xs = _inputs(1, 150, 2, 32, 24, "key", s0=True, strength=4.0, beta=beta, knorm=1.0 if beta else None, seed=7)
    if bounds:
        xs[4] = torch.randn(len(bounds) - 1, 2, 32, 24, generator=torch.Generator().manual_seed(8)).to(DEVICE)
    cu = None if bounds is None else torch.tensor(bounds, device=DEVICE)
    do = torch.randn(*xs[2].shape, generator=torch.Generator().manual_seed(1)).to(DEVICE)

    asked = []
    real = _gla.fwd_intra
    monkeypatch.setattr(_gla, "fwd_intra",
                        lambda *a, **kw: asked.append((kw.get("scaled"), kw.get("scaled_q"))) or real(*a, **kw))
    ns = (len(bounds) - 1 if bounds else 1) * 2  # sequences × heads: the threshold's boundary
    monkeypatch.setitem(_gla.CONFIG, "fwd_scaled_bh", ns - 1)
    plain = _grads_qkv_as(xs, dtype, do, 64, cu)
    monkeypatch.setitem(_gla.CONFIG, "fwd_scaled_bh", ns)
    monkeypatch.setitem(_gla.CONFIG, "fwd_scaled_q", not case.endswith("kh-alone"))
    states = _count_launches(monkeypatch, _state, "fwd_states")
    scaled = _grads_qkv_as(xs, dtype, do, 64, cu)
    want = [(False, True), (True, not case.endswith("kh-alone"))]
    assert asked == want and len(states) == (2 if case.endswith("segments") else 1), (asked, states)
    for i, (a, b) in enumerate(zip(scaled, plain)):
        assert torch.isfinite(a).all() and torch.equal(a, b), i


# ----------------------------------------------------------------------------- packed documents

# documents of 1, 0, 17, 32 and 33 tokens: a one-token document, an empty one, lengths on and off
# the chunk grid (16)
BOUNDS = [0, 1, 1, 18, 50, 83]


@pytest.fixture(params=["host-bounds", "device-bounds"])
def bounds_where(request, monkeypatch):
    """Both ways the chunk map is built: from bounds read on the host (exact chunk count) and as for
    bounds on the GPU (an upper bound of chunk slots, the empty ones returning at once)."""
    from longmix.kernels.triton import _varlen

    monkeypatch.setattr(_varlen, "READ_HOST_BOUNDS", request.param == "host-bounds")
    return request.param


@pytest.mark.parametrize("gate", [None, "scalar", "key"])
@pytest.mark.parametrize("beta", [None, (0.0, 2.0)], ids=["additive", "delta"])
@pytest.mark.parametrize("s0", [False, True], ids=["zero-state", "initial-state"])
def test_varlen_matches_per_document(gate, beta, s0, bounds_where):
    """cu_seqlens in one call (every kernel reads the chunk map, the state kernels run one program per
    document) against the reference run document by document: outputs, per-document final states
    and every gradient, initial states included."""
    xs = _inputs(1, BOUNDS[-1], 2, 16, 24, gate, s0=False, beta=beta, knorm=1.0 if beta else None, seed=11)
    if s0:
        xs[4] = torch.randn(len(BOUNDS) - 1, 2, 16, 24, generator=torch.Generator().manual_seed(12)).to(DEVICE)
    _compare(xs, C=16, bounds=BOUNDS)


@pytest.mark.parametrize("gate", [None, "scalar", "key"])
def test_varlen_default_chunk(gate, bounds_where):
    """The default chunk (64: the delta rule's register-resident prep, fwd_prep4) with documents of
    70, 64 and 3 tokens."""
    bounds = [0, 70, 134, 137]
    xs = _inputs(1, bounds[-1], 1, 16, 16, gate, s0=False, beta=(0.0, 2.0), knorm=1.0, seed=13)
    xs[4] = torch.randn(3, 1, 16, 16, generator=torch.Generator().manual_seed(14)).to(DEVICE)
    _compare(xs, C=64, bounds=bounds)


@pytest.mark.parametrize("lens", [[5], [0, 0, 3], [64, 1, 0, 129, 63], [16] * 9, [0]])
def test_varlen_chunk_map(lens, bounds_where):
    """The device-built chunk map against a plain host walk: every document's chunks in order (first
    token, end of the document), documents' first chunks, and (device bounds) empty slots (T, T) up
    to the bound."""
    from longmix.kernels.triton._varlen import Documents, chunks, documents

    C = 16
    cu = torch.tensor([0] + list(torch.tensor(lens).cumsum(0).tolist()))
    T = int(cu[-1])
    m = chunks(1, T, C, documents(cu, T, 1, DEVICE))
    want, co = [], [0]
    for s, e in zip(cu.tolist(), cu.tolist()[1:]):
        want += [[t, e] for t in range(s, e, C)]
        co.append(len(want))
    assert m.NT == (len(want) if bounds_where == "host-bounds" else T // C + len(lens))
    assert m.ch[:m.NT].tolist() == want + [[T, T]] * (m.NT - len(want))
    assert m.co.tolist() == co
    assert m.cu.tolist() == cu.tolist()
    assert m.doc[:len(want)].tolist() == [i for i, (s, e) in enumerate(zip(cu.tolist(), cu.tolist()[1:]))
                                          for _ in range(s, e, C)]
    # a bad tensor is clamped into [0, T] before any kernel reads it (on CUDA its error comes after the
    # launch), and it raises
    bad = torch.tensor([3, T + 50, 1][:len(lens) + 1] + [T] * max(0, len(lens) - 2))
    with pytest.raises(ValueError, match="non-decreasing"):
        chunks(1, T, C, documents(bad, T, 1, DEVICE))
    with pytest.MonkeyPatch.context() as mp:  # what the kernels would read before a deferred error
        mp.setattr(longmix.checks, "cu_seqlens_values", lambda *a: None)
        m = chunks(1, T, C, Documents(bad.to(DEVICE), None))
    assert m.ch.min() >= 0 and m.ch.max() <= T and m.cu.min() >= 0 and m.cu.max() <= T
    assert (m.cu[1:] >= m.cu[:-1]).all()


def test_varlen_refusals():
    q, k, v, _, _, _ = _inputs(1, 10, 1, 16, 16, None, s0=False)
    with pytest.raises(ValueError, match="end at T=10"):
        tri_chunk(q, k, v, cu_seqlens=torch.tensor([0, 4, 9]))
    with pytest.raises(ValueError, match=r"\[N, H, K, V\] \(N documents\)"):
        tri_chunk(q, k, v, initial_state=torch.zeros(1, 1, 16, 16, device=DEVICE), cu_seqlens=[0, 4, 10])
    with pytest.raises(ValueError, match="batch size must be 1"):
        tri_chunk(q.expand(2, -1, -1, -1), k.expand(2, -1, -1, -1), v.expand(2, -1, -1, -1), cu_seqlens=[0, 10])


# ----------------------------------------------------------------------------- decode kernel


@pytest.mark.parametrize("gate", [None, "scalar", "key"])
@pytest.mark.parametrize("delta", [False, True])
def test_recurrent_decode(gate, delta):
    from longmix.kernels.reference.recurrent import scan
    from longmix.kernels.triton.recurrent import recurrent

    q, k, v, g, S, b = _inputs(2, 5, 2, 20, 24, gate, s0=True, beta=(0.0, 2.0) if delta else None, knorm=1.0)
    o_ref, S_ref = scan(q.double(), k.double(), v.double(), None if g is None else g.double(),
                        None if b is None else b.double(), S.double())
    o, S1 = recurrent(q, k, v, g, b, S)
    assert _rel(o, o_ref) < 1e-5 and _rel(S1, S_ref) < 1e-5
    S2 = S.clone()
    o2, S3 = recurrent(q, k, v, g, b, S2, inplace=True)  # state updated in place, read and written once
    assert S3.data_ptr() == S2.data_ptr() and torch.equal(S2, S1) and torch.equal(o2, o)
    o4, S4 = recurrent(q[:, :0], k[:, :0], v[:, :0], None, None, S)
    assert o4.shape[1] == 0 and torch.equal(S4, S)
    vt = v.transpose(1, 2).contiguous().transpose(1, 2)  # same values, strides of a [B, H, T, V] layout
    o5, _ = recurrent(q, k, vt, g, b, S)
    assert o5.is_contiguous() and torch.equal(o5, o)  # the output is row-major whatever v's strides


def test_recurrent_decode_reads_a_constant_gate_per_head():
    """A per-head decay expanded over batch and time (how RetNet and Lightning pass theirs) is read
    as its [H] values, not copied: same output and state as the materialised gate."""
    from longmix.kernels.triton.recurrent import recurrent

    q, k, v, _, S, _ = _inputs(3, 4, 5, 16, 24, None, s0=True)
    g_h = -torch.rand(5, generator=torch.Generator().manual_seed(2)).to(DEVICE)
    o, S1 = recurrent(q, k, v, g_h.expand(3, 4, 5), None, S)
    o2, S2 = recurrent(q, k, v, g_h.expand(3, 4, 5).contiguous(), None, S)
    assert torch.allclose(o, o2, rtol=1e-6, atol=1e-6) and torch.allclose(S1, S2, rtol=1e-6, atol=1e-6)
    assert _rel(o, recurrent(q, k, v, None, None, S)[0]) > 1e-2  # (the gate acts)


@pytest.mark.parametrize("gate,delta", [(None, False), ("scalar", True), ("key", True)])
def test_recurrent_decode_packed_documents(gate, delta):
    """The decode kernel with cu_seqlens: one program per (document, head, V tile), each from its own
    state; documents of 2, 0, 1 and 4 tokens."""
    from longmix.kernels.reference.recurrent import scan
    from longmix.kernels.triton.recurrent import recurrent

    bounds = [0, 2, 2, 3, 7]
    q, k, v, g, _, b = _inputs(1, 7, 2, 20, 24, gate, s0=False, beta=(0.0, 2.0) if delta else None, knorm=1.0)
    S = torch.randn(4, 2, 20, 24, generator=torch.Generator().manual_seed(2)).to(DEVICE)
    want = _per_document(lambda *a, chunk_size: scan(*(None if x is None else x.double() for x in a)), bounds)(
        q, k, v, g, b, S, chunk_size=None)
    got = recurrent(q, k, v, g, b, S, cu_seqlens=torch.tensor(bounds))
    assert _rel(got[0], want[0]) < 1e-5 and _rel(got[1], want[1]) < 1e-5


def test_recurrent_decode_refuses_gradients():
    from longmix.kernels.triton.recurrent import recurrent

    q, k, v, g, S, _ = _inputs(1, 3, 1, 16, 16, "scalar", s0=True)
    with pytest.raises(ValueError, match="forward only"):
        recurrent(q.requires_grad_(), k, v, g, None, S)
    o, _ = recurrent(q[:, :1], k[:, :1], v[:, :1], g[:, :1], None, S)  # T = 1: differentiable chunk step
    o.sum().backward()
    assert q.grad is not None


MECH_OPTS = {
    "linear": [{}, {"feature_map": "elu1", "normalize": True}],
    "transnormer": [{}],
    "retention": [{}],
    "lightning": [{}],
    "mamba2": [{"g": "scalar"}],
    "gla": [{"g": "key"}],
    "deltanet": [{"beta": True}],
    "gated_deltanet": [{"g": "scalar", "beta": True}],
    "kda": [{"g": "key", "beta": True}],
}


def _mech_inputs(opts, k, gen):
    """One entry of MECH_OPTS made concrete for keys k [B, T, H, D]: random log-sigmoid gates of the
    named kind, β in [0, 2] (the delta rule's keys then normalised); returns (options, keys)."""
    B, T, H, D = k.shape
    opts = dict(opts)
    if "g" in opts:
        shape = (B, T, H) if opts["g"] == "scalar" else (B, T, H, D)
        opts["g"] = F.logsigmoid(torch.randn(*shape, generator=gen)).to(DEVICE)
    if "beta" in opts:
        opts["beta"] = (2 * torch.rand(B, T, H, generator=gen)).to(DEVICE)
        k = F.normalize(k, dim=-1)
    return opts, k


@pytest.mark.parametrize("name", SUPPORTED)
def test_api_backend_triton(name):
    assert "triton" in longmix.describe(name).backends
    B, T, H, D = 1, 40, 2, 16
    gen = torch.Generator().manual_seed(3)
    q, k, v, w = (torch.randn(B, T, H, D, generator=gen).to(DEVICE) for _ in range(4))
    for opts in MECH_OPTS[name]:
        opts, k = _mech_inputs(opts, k, gen)
        outs = {}
        for backend in ("reference", "triton"):
            qq, kk, vv = (x.clone().requires_grad_() for x in (q, k, v))
            o, S = longmix.attention(qq, kk, vv, name, backend=backend, form="chunk", output_final_state=True,
                                     chunk_size=16, **opts)
            ((o * w).sum() + S.sum()).backward()
            outs[backend] = [o, S, qq.grad, kk.grad, vv.grad]
        for a, r in zip(outs["triton"], outs["reference"]):
            assert _rel(a, r) < 1e-4, name
    # decoding a few tokens against a state through the recurrent form (the fused kernel)
    S0 = torch.randn(*S.shape, generator=gen).to(DEVICE)
    outs = [longmix.attention(q[:, :3], k[:, :3], v[:, :3], name, backend=backend, form="recurrent",
                              initial_state=S0, output_final_state=True,
                              **{n: (x[:, :3] if torch.is_tensor(x) else x) for n, x in opts.items()})
            for backend in ("triton", "reference")]
    assert _rel(outs[0][0], outs[1][0]) < 1e-4 and _rel(outs[0][1], outs[1][1]) < 1e-4


@pytest.mark.parametrize("name", SUPPORTED)
def test_api_packed_documents_in_one_launch(name, monkeypatch):
    """attention(..., cu_seqlens=..., backend="triton") calls the chunk kernel once for all documents
    (not once per document) and matches the reference, which runs them one by one: outputs,
    per-document states and gradients."""
    from longmix.mechanisms import base

    bounds = torch.tensor([0, 9, 9, 30, 40])
    B, T, H, D = 1, 40, 2, 16
    gen = torch.Generator().manual_seed(5)
    q, k, v, w = (torch.randn(B, T, H, D, generator=gen).to(DEVICE) for _ in range(4))
    calls = []
    real = base.KERNELS[("triton", "chunk")]
    monkeypatch.setitem(base.KERNELS, ("triton", "chunk"), lambda *a, **kw: calls.append(kw) or real(*a, **kw))
    for opts in MECH_OPTS[name]:
        opts, k = _mech_inputs(opts, k, gen)
        Vs = D + 1 if opts.get("normalize") else D
        S0 = torch.rand(4, H, D, Vs, generator=gen).to(DEVICE)
        outs = {}
        for backend in ("reference", "triton"):
            calls.clear()
            qq, kk, vv, ss = (x.clone().requires_grad_() for x in (q, k, v, S0))
            o, S = longmix.attention(qq, kk, vv, name, backend=backend, form="chunk", output_final_state=True,
                                     chunk_size=16, cu_seqlens=bounds, initial_state=ss, **opts)
            ((o * w).sum() + S.sum()).backward()
            outs[backend] = [o, S, qq.grad, kk.grad, vv.grad, ss.grad]
        assert len(calls) == 1 and torch.equal(calls[0]["cu_seqlens"].cpu(), bounds), calls
        assert outs["triton"][1].shape == (4, H, D, Vs)
        for a, r in zip(outs["triton"], outs["reference"]):
            assert _rel(a, r) < 1e-4, name


@pytest.mark.parametrize("name", SUPPORTED)
def test_decoder_steps_in_place_with_the_fused_kernel(name, monkeypatch):
    """longmix.Decoder on the triton backend: steps of 1, 2, 0 and 1 tokens (GQA: 2 query heads per
    key/value head; v a transposed view) advance the state in place, one fused launch each, and
    match the reference decoding the same tokens; a signature's first step validates, later ones only launch."""
    from longmix.kernels.triton import recurrent as rec

    B, T, H, D = 2, 4, 4, 16
    gen = torch.Generator().manual_seed(6)
    q = torch.randn(B, T, H, D, generator=gen).to(DEVICE)
    k = torch.randn(B, T, H // 2, D, generator=gen).to(DEVICE)
    v = torch.randn(B, H // 2, T, D, generator=gen).to(DEVICE).transpose(1, 2)  # strides of a [B, H, T, D] layout
    launches = _count_launches(monkeypatch, rec, "fused_recurrent")
    for opts in MECH_OPTS[name]:
        opts, k = _mech_inputs(opts, k, gen)
        if "g" in opts or "beta" in opts:  # per query head: B, T, H (…)
            opts = {n: (x.repeat_interleave(2, 2) if x.shape[2] == H // 2 else x) for n, x in opts.items()}
        fixed = {n: x for n, x in opts.items() if not torch.is_tensor(x)}
        per_token = {n: x for n, x in opts.items() if torch.is_tensor(x)}
        Vs = D + 1 if opts.get("normalize") else D
        S0 = torch.rand(B, H, D, Vs, generator=gen).to(DEVICE)
        want, S_want = longmix.attention(q, k, v, name, backend="reference", initial_state=S0, output_final_state=True,
                                         **opts)
        S = S0.clone()
        dec = longmix.Decoder(name, S, backend="triton", **fixed)
        launches.clear()
        outs = []
        with torch.no_grad():
            for s, e in [(0, 1), (1, 3), (3, 3), (3, 4)]:
                outs.append(dec.step(q[:, s:e], k[:, s:e], v[:, s:e], **{n: x[:, s:e] for n, x in per_token.items()}))
        assert dec.state is S
        assert _rel(torch.cat(outs, 1), want) < 1e-5 and _rel(S, S_want) < 1e-5, name
        if not opts.get("normalize"):
            # one per step with tokens (the empty step launches nothing), and one more for the validation
            # of each new signature with tokens (T = 1 and T = 2; the last step's T = 1 is known)
            assert len(launches) == 5, launches


@pytest.mark.parametrize("name,feature_map", [("transnormer", None), ("transnormer", "relu"), ("linear", "elu1"),
                                              ("linear", "elu"), ("linear", "relu"), ("linear", "taylor2")])
def test_decoder_fuses_elementwise_feature_maps_and_the_output_norm(name, feature_map, monkeypatch):
    """A Decoder step of linear attention / TransNormer with an elementwise feature map (and TransNormer's
    SimpleRMSNorm) applies them inside its one launch (q, k reach the kernel unmapped), the first step
    too (after validating through attention()), so its output is the later steps'; D_v = 24 is not a
    power of two (the norm must ignore the padded value columns), D_k = 20 neither (elu + 1 is 1 at the
    padding); taylor2 (not elementwise) is mapped before the kernel. Against the reference."""
    from longmix.kernels.triton import recurrent as rec

    B, T, H, K, V = 2, 3, 2, 20, 24
    gen = torch.Generator().manual_seed(8)
    q, k = (torch.randn(B, T, H, K, generator=gen).to(DEVICE) for _ in range(2))
    v = torch.randn(B, T, H, V, generator=gen).to(DEVICE)
    opts = {} if feature_map is None else {"feature_map": feature_map}
    F_ = 1 + K + K * K if feature_map == "taylor2" else K
    S0 = torch.rand(B, H, F_, V, generator=gen).to(DEVICE)
    want, S_want = longmix.attention(q, k, v, name, backend="reference", initial_state=S0, output_final_state=True,
                                     **opts)
    seen = []
    real = rec.fused_recurrent
    spy = type("Spy", (), {"__getitem__": lambda self, grid: lambda *a, **kw: seen.append(kw) or real[grid](*a, **kw)})
    monkeypatch.setattr(rec, "fused_recurrent", spy())
    S = S0.clone()
    dec = longmix.Decoder(name, S, backend="triton", **opts)
    with torch.no_grad():
        outs = [dec.step(q[:, t:t + 1], k[:, t:t + 1], v[:, t:t + 1]) for t in range(T)]
    assert _rel(torch.cat(outs, 1), want) < 1e-5 and _rel(S, S_want) < 1e-5
    assert len(seen) == T + 1  # the first step's validation through attention(), then one launch a step
    fused = feature_map != "taylor2"
    steps = seen[1:]  # every step, the first included, runs the fused launch
    assert all(kw["PHI"] == (rec.PHI[feature_map or "elu"] if fused else 0) for kw in steps), steps
    assert all(kw["NORM"] == (name == "transnormer") for kw in steps), steps
    # so a signature's first step gives what a later one does from the same state, to the bit
    S.copy_(S0)
    with torch.no_grad():
        again = dec.step(q[:, :1], k[:, :1], v[:, :1])
    assert torch.equal(again, outs[0])


def test_minus_inf_gate_is_a_hard_reset():
    # g = −inf (α = 0) must behave like the reference (which clamps at −1e4): no NaN
    q, k, v, g, S = _inputs(1, 40, 2, 16, 16, "scalar", s0=True)[:5]
    g = g.clone()
    g[:, 7] = float("-inf")
    ref = longmix.attention(q, k, v, "mamba2", g=g, initial_state=S, output_final_state=True, backend="reference")
    tri = longmix.attention(q, k, v, "mamba2", g=g, initial_state=S, output_final_state=True, backend="triton", chunk_size=16)
    # the kernel clamps g at −200 (exp is 0 in fp32 either way); after the reset its fp32 cumsum
    # carries |G| ≈ 200, so weights are exact to about 8·eps·200 (see _cumsum_floor)
    tol = _cumsum_floor(g.clamp_min(-200), 16) + FLOOR
    for a, b in zip(tri, ref):
        assert torch.isfinite(a).all()
        assert _rel(a, b) < tol


def test_float32_products_follow_torch_matmul_precision():
    from longmix.kernels.triton.chunk import _prec

    before = torch.get_float32_matmul_precision()
    x32, x16 = torch.zeros(1), torch.zeros(1, dtype=torch.float16)
    try:
        torch.set_float32_matmul_precision("highest")
        assert (_prec(x32), _prec(x16)) == ("ieee", "tf32")
        torch.set_float32_matmul_precision("high")
        assert (_prec(x32), _prec(x16)) == ("tf32", "tf32")
    finally:
        torch.set_float32_matmul_precision(before)


@pytest.mark.parametrize("causal", [True, False], ids=["causal", "noncausal"])
@pytest.mark.parametrize("T,K,V", [(1, 16, 16), (63, 20, 24), (64, 16, 16), (130, 72, 80), (0, 16, 16)])
def test_linear_normalizer_kernel(causal, T, K, V):
    """The fused normalised output o / (q_t·z_t) against the PyTorch one, with and without z0, and
    its gradients in o, q, k, z0; one row has zero key mass (q = 0: its denominator is exactly 0)."""
    from longmix.kernels.triton.normalizer import normalized
    from longmix.mechanisms.base import _reference_normalized

    gen = torch.Generator().manual_seed(T + K)
    q, k = (torch.rand(2, T, 3, K, generator=gen).to(DEVICE) for _ in range(2))  # feature maps are ≥ 0
    if T > 1:
        q[0, 1, 2] = 0.0
    o = torch.randn(2, T, 3, V, generator=gen).to(DEVICE)
    z0 = torch.rand(2, 3, K, generator=gen).to(DEVICE)
    w = torch.randn(2, T, 3, V, generator=gen).to(DEVICE)
    for z in (None, z0):
        outs = []
        for fn in (normalized, _reference_normalized):
            leaves = [x.clone().requires_grad_() for x in ((o, q, k) if z is None else (o, q, k, z))]
            out = fn(leaves[0], leaves[1], leaves[2], leaves[3] if z is not None else None, causal)
            (out * w).sum().backward()
            outs.append([out] + [x.grad for x in leaves])
        assert outs[0][0].shape == o.shape and outs[0][0].dtype == o.dtype
        for a, r in zip(*outs):
            assert torch.isfinite(a).all()
            assert a.shape == r.shape and _rel(a, r) < 1e-5


def test_linear_normalizer_packed_documents():
    """The normaliser with cu_seqlens: each document's running key sum starts from its own z0
    (documents of 70, 0, 1 and 59 tokens, across the normaliser's 64-token chunks)."""
    from longmix.kernels.triton.normalizer import normalized
    from longmix.mechanisms.base import _reference_normalized

    bounds = [0, 70, 70, 71, 130]
    gen = torch.Generator().manual_seed(4)
    q, k = (torch.rand(1, 130, 2, 20, generator=gen).to(DEVICE) for _ in range(2))
    o, w = (torch.randn(1, 130, 2, 24, generator=gen).to(DEVICE) for _ in range(2))
    z0 = torch.rand(4, 2, 20, generator=gen).to(DEVICE)
    leaves = [x.clone().requires_grad_() for x in (o, q, k, z0)]
    (normalized(*leaves, True, bounds) * w).sum().backward()
    got = [leaves[0].grad, leaves[1].grad, leaves[2].grad, leaves[3].grad]
    ref = [x.clone().requires_grad_() for x in (o, q, k, z0)]
    out = torch.cat([_reference_normalized(ref[0][:, s:e], ref[1][:, s:e], ref[2][:, s:e], ref[3][i:i + 1], True)
                     for i, (s, e) in enumerate(zip(bounds, bounds[1:]))], 1)
    (out * w).sum().backward()
    assert _rel(normalized(o, q, k, z0, True, bounds), out) < 1e-5
    for a, r in zip(got, [x.grad for x in ref]):
        assert _rel(a, r) < 1e-5


def test_linear_normalize_uses_the_fused_normalizer(monkeypatch):
    """backend="triton" routes linear attention's normaliser through the kernel (a wrong route would
    pass every comparison silently, the two agree)."""
    from longmix.kernels.triton import normalizer as mod

    calls = []
    real = mod.normalized
    monkeypatch.setattr(mod, "normalized", lambda *a, **kw: calls.append(1) or real(*a, **kw))
    q, k, v = (torch.rand(1, 20, 2, 16).to(DEVICE) for _ in range(3))
    longmix.attention(q, k, v, "linear", normalize=True, backend="triton")
    assert calls


@pytest.mark.parametrize("gate,beta", [(None, None), ("scalar", None), ("key", (0.5, 1.5)), ("scalar", (0.5, 1.5))])
def test_scale_folded_into_the_output(gate, beta):
    """chunk(..., scale=s) and the decode kernel apply s to the output as they store it (no pass over
    q): the same result and gradients as the recurrence with s·q."""
    from longmix.kernels.triton.recurrent import recurrent

    s = 0.37
    xs = _inputs(1, 40, 2, 16, 16, gate, s0=True, beta=beta, knorm=1.0 if beta else None)
    gen = torch.Generator().manual_seed(5)
    do = torch.randn(*xs[2].shape, generator=gen).to(DEVICE)
    dS = torch.randn(*xs[4].shape, generator=gen).to(DEVICE)

    def scaled_ref(q, *a, **kw):
        return ref_chunk(q * s, *a, **kw)

    want = _run(scaled_ref, xs, torch.float32, do, dS, 16)
    got = _run(partial(tri_chunk, scale=s), xs, torch.float32, do, dS, 16)
    for a, r in zip(got, want):
        assert (a is None) == (r is None)
        if r is not None:
            assert _rel(a, r) < 1e-5
    q, k, v, g, S0, b = xs
    with torch.no_grad():
        o, S = recurrent(q[:, :3], k[:, :3], v[:, :3], None if g is None else g[:, :3], None if b is None else b[:, :3],
                         S0, scale=s)
        o_r, S_r = ref_chunk(q[:, :3] * s, k[:, :3], v[:, :3], None if g is None else g[:, :3],
                             None if b is None else b[:, :3], S0, chunk_size=16)
    assert _rel(o, o_r) < 1e-5 and _rel(S, S_r) < 1e-5
