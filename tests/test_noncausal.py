"""causal=False for recurrent mechanisms (describe(name).noncausal).

Linear/decayed/GLA: an explicit O(T²) weight matrix, w_ij = product of the gates from i
(inclusive) toward j (exclusive), w_ii = 1 (naive.noncausal_additive). Delta family: the
recurrence run left→right and right→left, o_i = fwd_i + bwd_i − β_i (scale·q_i·k_i) v_i
(naive.noncausal_delta).
"""
import pytest
import torch

import longmix
from helpers import assert_close, check_forward, check_grads, is_recurrent, lib
from inputs import f64, make_case

RECURRENT = [n for n in longmix.mechanisms() if is_recurrent(n)]
NAME_FORM = [(n, f) for n in RECURRENT for f in longmix.describe(n).forms]


@pytest.mark.parametrize("T", [1, 9, 24])
@pytest.mark.parametrize("dtype", [torch.float32, f64], ids=["fp32", "fp64"])
@pytest.mark.parametrize("name,form", NAME_FORM)
def test_noncausal_forward(name, form, dtype, T):
    case = make_case(name, T=T, dtype=dtype, options=tuple(longmix.describe(name).inputs))
    check_forward(case, form=form, causal=False, chunk_size=4)


@pytest.mark.parametrize("name,form", NAME_FORM)
def test_noncausal_gradients(name, form):
    case = make_case(name, T=6, B=1, H=2, H_kv=1, D_k=4, D_v=3)
    check_grads(case, form=form, causal=False, chunk_size=4)


@pytest.mark.parametrize("form", ["parallel", "chunk", "recurrent"])
def test_constant_decay_weighs_gamma_to_the_distance(form):
    """Retention noncausal with D_k = 1, q = k = 1 and one-hot values: o_i = scale·Σ_j γ^|i−j| e_j."""
    T, gamma = 7, 0.8
    q = torch.ones(1, T, 1, 1, dtype=f64)
    v = torch.eye(T, dtype=f64)[None, :, None, :]
    g = torch.tensor([gamma], dtype=f64).log()
    W = longmix.attention(q, q, v, "retention", g=g, causal=False, form=form, chunk_size=3)[0, :, 0]
    d = (torch.arange(T)[:, None] - torch.arange(T)[None, :]).abs()
    assert_close(W, gamma ** d.to(f64))


@pytest.mark.parametrize("form", ["parallel", "chunk", "recurrent"])
def test_data_dependent_decay_direction(form):
    """Mamba-2 noncausal: key j < i is weighed by α_{j+1}…α_i, key j > i by α_i…α_{j−1}."""
    T = 5
    q = torch.ones(1, T, 1, 1, dtype=f64)
    v = torch.eye(T, dtype=f64)[None, :, None, :]
    alpha = torch.tensor([0.9, 0.5, 0.8, 0.7, 0.6], dtype=f64)
    W = longmix.attention(q, q, v, "mamba2", g=alpha.log()[None, :, None], causal=False, form=form, scale=1.0)
    W = W[0, :, 0]
    assert_close(W[3, 1], alpha[2] * alpha[3])   # j < i: gates (j, i]
    assert_close(W[1, 3], alpha[1] * alpha[2])   # j > i: gates [i, j)
    assert_close(W.diagonal(), torch.ones(T, dtype=f64))


@pytest.mark.parametrize("name", RECURRENT)
def test_noncausal_has_no_state(name):
    case = make_case(name, T=5)
    with pytest.raises(ValueError, match="initial_state and output_final_state need causal=True"):
        longmix.attention(case.q, case.k, case.v, name, causal=False, output_final_state=True, **case.opts)
    S0 = make_case(name, T=5, initial_state=True).initial_state
    with pytest.raises(ValueError, match="initial_state"):
        longmix.attention(case.q, case.k, case.v, name, causal=False, initial_state=S0, **case.opts)


@pytest.mark.parametrize("name", RECURRENT)
def test_noncausal_sees_the_future(name):
    """Changing the last token changes the first output noncausally, never causally."""
    case = make_case(name, T=6)
    o1, _ = lib(case, causal=False)
    c1, _ = lib(case)
    case.v = case.v.clone()
    case.v[:, -1] += 1.0
    o2, _ = lib(case, causal=False)
    c2, _ = lib(case)
    assert (o1[:, 0] - o2[:, 0]).abs().max() > 1e-6
    assert_close(c2[:, :-1], c1[:, :-1])
