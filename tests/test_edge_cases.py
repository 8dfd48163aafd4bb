"""Edge cases: empty sequences, rows that see no key, extreme gates, extreme beta, unnormalised
keys. The rule everywhere: no NaN/Inf where the definition has none, and agreement with it."""
import pytest
import torch

import longmix
import naive
from helpers import assert_close, check_forward, check_grads, is_recurrent, lib
from inputs import f64, make_case

f32 = torch.float32
MECHS = longmix.mechanisms()
NAME_FORM = [(n, f) for n in MECHS for f in longmix.describe(n).forms]
DENSE = [n for n in MECHS if not is_recurrent(n)]
GATED = [n for n in MECHS if "g" in longmix.describe(n).inputs]
DELTA = [n for n in MECHS if "beta" in longmix.describe(n).inputs]
FORMS = ("parallel", "chunk", "recurrent")


@pytest.mark.parametrize("dtype", [f32, f64], ids=["fp32", "fp64"])
@pytest.mark.parametrize("name,form", NAME_FORM)
def test_zero_length(name, form, dtype):
    """T = 0: an empty output of the right shape and dtype; the state passes through."""
    rec = is_recurrent(name)
    case = make_case(name, T=0, dtype=dtype, initial_state=rec)
    kw = dict(output_final_state=True) if rec else {}
    o, S = lib(case, form=form, chunk_size=4, **kw)
    assert o.shape == (2, 0, 4, 6) and o.dtype == dtype
    if rec:
        assert_close(S, case.initial_state)
        case.initial_state = None
        assert lib(case, form=form, output_final_state=True)[1].abs().max() == 0
        assert lib(case, form=form, causal=False)[0].shape == (2, 0, 4, 6)


@pytest.mark.parametrize("T_q,T_k", [(0, 5), (5, 0)])
@pytest.mark.parametrize("form", FORMS)
@pytest.mark.parametrize("name", DENSE)
def test_dense_empty_side(name, form, T_q, T_k):
    """No queries: empty output. No keys: every row sees nothing, so zeros (with sinks too)."""
    case = make_case(name, T=T_q, T_k=T_k, options=tuple(longmix.describe(name).inputs))
    for causal in (True, False):
        o, _ = lib(case, form=form, causal=causal)
        assert o.shape == (2, T_q, 4, 6)
        assert torch.equal(o, torch.zeros_like(o))


# Rows that see no key: (T_q, T_k, options, causal) where some query rows have no visible key.
EMPTY_ROWS = [
    ("causal-Tq>Tk", 12, 5, {}, True),
    ("causal-window-Tq>Tk", 12, 5, {"window": 3}, True),
    ("noncausal-window-Tq>Tk", 20, 5, {"window": 3}, False),
    ("noncausal-block-Tq>Tk", 12, 5, {"block_size": 4}, False),
]


@pytest.mark.parametrize("name,form,T_q,T_k,fixed,causal", [
    pytest.param(n, f, *rest, id=f"{n}-{f}-{i}") for n in DENSE for f in FORMS for i, *rest in EMPTY_ROWS
    if set(rest[2]) <= set(longmix.describe(n).inputs)])
def test_rows_without_keys_are_zero(name, form, T_q, T_k, fixed, causal):
    """Rows that see no key output exactly 0 (not NaN), with every other option on (sinks
    included), and their gradients are finite and right; all against the definition, fp64."""
    opts = tuple(o for o in longmix.describe(name).inputs if o not in fixed)
    case = make_case(name, T=T_q, T_k=T_k, options=opts, **fixed)
    o, _ = check_forward(case, form=form, causal=causal, chunk_size=4)
    empty = torch.tensor([not any(naive.visible(i + T_k - T_q, j, causal=causal, window=fixed.get("window"),
                                                block_size=fixed.get("block_size")) for j in range(T_k))
                          for i in range(T_q)])
    assert empty.any(), "the case should have rows without keys"
    assert torch.equal(o[:, empty], torch.zeros_like(o[:, empty]))
    small = make_case(name, T=T_q, T_k=T_k, B=1, H=2, H_kv=1, D_k=4, D_v=3, options=opts, **fixed)
    check_grads(small, form=form, causal=causal, chunk_size=4)


def _set_gate(g, kind):
    g = g.clone()
    if kind == "strong":
        g[:] = -1e4
    elif kind == "zero":
        g[:] = 0.0
    elif kind == "mixed":  # a strong gate (a reset) at every 5th entry, ordinary gates elsewhere
        g.view(-1)[::5] = -1e4
    elif kind == "-inf":
        g.view(-1)[::3] = float("-inf")
    return g


@pytest.mark.parametrize("kind", ["strong", "zero", "mixed", "-inf"])
@pytest.mark.parametrize("dtype", [f32, f64], ids=["fp32", "fp64"])
@pytest.mark.parametrize("form", FORMS)
@pytest.mark.parametrize("name", GATED)
def test_extreme_gates(name, form, dtype, kind):
    """g = −1e4 everywhere (α underflows to 0), g = 0 (no decay), −1e4 mixed with ordinary gates,
    and g = −inf (α = 0 exactly, which the checks accept): finite, and equal to the definition."""
    case = make_case(name, T=40, dtype=dtype, options=("g",), initial_state=True)
    case.opts["g"] = _set_gate(case.opts["g"], kind)
    o, S = lib(case, form=form, chunk_size=16, output_final_state=True)
    assert torch.isfinite(o).all() and torch.isfinite(S).all(), "non-finite output where the definition is finite"
    check_forward(case, form=form, chunk_size=16)


@pytest.mark.parametrize("kind", ["strong", "mixed", "zero"])
@pytest.mark.parametrize("form", FORMS)
@pytest.mark.parametrize("name", GATED)
def test_extreme_gate_gradients(name, form, kind):
    case = make_case(name, T=9, B=1, H=2, H_kv=1, D_k=4, D_v=3, options=("g",), initial_state=True)
    case.opts["g"] = _set_gate(case.opts["g"], kind)
    check_grads(case, form=form, chunk_size=4)


@pytest.mark.parametrize("mixed", [False, True], ids=["strong-only", "mixed"])
@pytest.mark.parametrize("form", ["parallel", "chunk"])
@pytest.mark.parametrize("name", [n for n in GATED if longmix.describe(n).inputs["g"].startswith("[B")])
def test_strong_gates_fp32_stay_finite(name, form, mixed):
    """Whatever the precision loss, strong gates in fp32 never produce NaN/Inf (values or grads)."""
    case = make_case(name, T=40, dtype=f32, options=("g",), initial_state=True)
    case.opts["g"] = _set_gate(case.opts["g"], "mixed" if mixed else "strong")
    leaves = case.grad_leaves()
    o, S = lib(case, form=form, chunk_size=16, output_final_state=True)
    grads = torch.autograd.grad(o.sum() + S.sum(), list(leaves.values()))
    assert torch.isfinite(o).all() and torch.isfinite(S).all()
    assert all(torch.isfinite(g).all() for g in grads)


@pytest.mark.parametrize("value", [0.0, 2.0])
@pytest.mark.parametrize("dtype", [f32, f64], ids=["fp32", "fp64"])
@pytest.mark.parametrize("form", FORMS)
@pytest.mark.parametrize("name", DELTA)
def test_beta_bounds(name, form, dtype, value):
    """β = 0 (never write: only the decayed initial state is read) and β = 2 (reflection)."""
    case = make_case(name, T=20, dtype=dtype, initial_state=True)
    case.opts["beta"] = torch.full_like(case.opts["beta"], value)
    check_forward(case, form=form, chunk_size=8)
    if value == 0.0:
        case.initial_state = None
        o, S = lib(case, form=form, chunk_size=8, output_final_state=True)
        assert o.abs().max() == 0 and S.abs().max() == 0


@pytest.mark.parametrize("form", FORMS)
@pytest.mark.parametrize("name", DELTA)
def test_beta_bounds_gradients(name, form):
    for value in (0.0, 2.0):
        case = make_case(name, T=7, B=1, H=2, H_kv=1, D_k=4, D_v=3, initial_state=True)
        case.opts["beta"] = torch.full_like(case.opts["beta"], value)
        check_grads(case, form=form, chunk_size=3)


@pytest.mark.parametrize("dtype", [f32, f64], ids=["fp32", "fp64"])
@pytest.mark.parametrize("form", FORMS)
@pytest.mark.parametrize("name", DELTA)
def test_unnormalised_keys(name, form, dtype):
    """Keys with ‖k‖ ≈ 2–4 (the transition is then expansive: the state grows, but stays finite
    over 24 tokens): the forms follow the definition and produce no NaN/Inf."""
    case = make_case(name, T=24, dtype=f64, initial_state=True)
    case.k = case.k * (2.0 + 2.0 * torch.rand(case.k.shape[:-1] + (1,), dtype=f64))
    case = case.cast(dtype)
    o, S = check_forward(case, form=form, chunk_size=8)
    assert torch.isfinite(o).all() and torch.isfinite(S).all()
    assert o.abs().max() > 10, "unnormalised keys should make this case hard (a growing state)"
    if dtype == f64:
        small = make_case(name, T=7, B=1, H=2, H_kv=1, D_k=4, D_v=3, initial_state=True)
        small.k = small.k * 3.0
        check_grads(small, form=form, chunk_size=3)
