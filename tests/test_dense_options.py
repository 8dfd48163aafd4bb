"""Dense mechanisms: each documented option against the naive definition (naive.dense).

The (mechanism, option) pairs come from ``describe(name).inputs``, so an option added to a
dense mechanism is tested here as soon as inputs.py can generate it.
"""

import pytest
import torch

import longmix
from helpers import assert_close, check_forward, check_grads, lib, ref
from inputs import f64, make_case

f32 = torch.float32
DENSE = [n for n in longmix.mechanisms() if longmix.describe(n).family == "dense"]
NAME_OPTION = [(n, o) for n in DENSE for o in longmix.describe(n).inputs]
FORMS = ("parallel", "chunk", "recurrent")
C = 8


@pytest.mark.parametrize("causal", [True, False], ids=["causal", "noncausal"])
@pytest.mark.parametrize("form", FORMS)
@pytest.mark.parametrize("name,option", NAME_OPTION)
def test_option(name, option, form, causal):
    """One option at a time, T = 37 over chunks of 8 (windows and blocks straddle chunks), fp32."""
    check_forward(make_case(name, T=37, dtype=f32, options=(option,)), form=form, causal=causal, chunk_size=C)


@pytest.mark.parametrize("causal", [True, False], ids=["causal", "noncausal"])
@pytest.mark.parametrize("T_q,T_k", [(13, 37), (37, 13)])
@pytest.mark.parametrize("name,option", NAME_OPTION)
def test_option_cross_attention(name, option, T_q, T_k, causal):
    """T_q ≠ T_k: causal aligned bottom-right; with T_q > T_k the first rows see no key."""
    case = make_case(name, T=T_q, T_k=T_k, dtype=f32, options=(option,))
    o, _ = check_forward(case, form="chunk", causal=causal, chunk_size=C)
    if causal and T_q > T_k:
        assert o[:, : T_q - T_k].abs().max() == 0, "rows before the first key must be exactly 0"


@pytest.mark.parametrize("form", FORMS)
@pytest.mark.parametrize("name,option", NAME_OPTION)
def test_option_gradients(name, option, form):
    """fp64 gradients w.r.t. q, k, v and the option's tensor (sinks, alibi_slopes, bias)."""
    case = make_case(name, T=11, B=1, H=2, H_kv=1, D_k=4, D_v=3, options=(option,))
    check_grads(case, form=form, chunk_size=4)


@pytest.mark.parametrize("causal", [True, False], ids=["causal", "noncausal"])
@pytest.mark.parametrize("form", FORMS)
@pytest.mark.parametrize("name", DENSE)
def test_all_options_together(name, form, causal):
    options = tuple(longmix.describe(name).inputs)
    case = make_case(name, T=29, T_k=41, options=options)
    check_forward(case, form=form, causal=causal, chunk_size=C)
    check_grads(make_case(name, T=9, T_k=12, B=1, H=2, H_kv=1, D_k=4, D_v=3, options=options),
                form=form, causal=causal, chunk_size=4)


@pytest.mark.parametrize("name", [n for n in DENSE if "length_scaling" in longmix.describe(n).inputs])
@pytest.mark.parametrize("extra", [(), ("window",), ("block_size",), ("softcap",)])
@pytest.mark.parametrize("shape", [(23, 23), (9, 23), (23, 9)])
@pytest.mark.parametrize("causal", [True, False], ids=["causal", "noncausal"])
def test_length_scaling(name, extra, shape, causal):
    """λ_i = ln(number of keys row i sees), with windows, blocks and cross attention, fp64."""
    case = make_case(name, T=shape[0], T_k=shape[1], options=("length_scaling",) + extra)
    check_forward(case, form="chunk", causal=causal, chunk_size=C)
    off = lib(make_case(name, T=shape[0], T_k=shape[1], options=extra), causal=causal)[0]
    assert (lib(case, causal=causal)[0] - off).abs().max() > 1e-3, "length_scaling must change the output"


@pytest.mark.parametrize("other", ["alibi_slopes", "bias"])
def test_length_scaling_scales_the_whole_logit(other):
    """describe('softplus'): w_ij = softplus(λ_i·l_ij) with l_ij including −m|i−j| and bias_ij."""
    check_forward(make_case("softplus", T=20, options=("length_scaling", other)), form="parallel")


@pytest.mark.parametrize("name", DENSE)
@pytest.mark.parametrize("bias_shape", ["number", (1, 1, 1, 19), (2, 1, 11, 1), (1, 4, 11, 19), (2, 4, 11, 19), (11, 19)])
def test_bias_broadcasts(name, bias_shape):
    case = make_case(name, T=11, T_k=19)
    bias = -0.7 if bias_shape == "number" else torch.randn(bias_shape, dtype=f64)
    case.opts["bias"] = bias
    check_forward(case, form="chunk", chunk_size=4)
    check_forward(case, form="parallel")


@pytest.mark.parametrize("name", DENSE)
def test_bias_rejects_non_broadcastable(name):
    case = make_case(name, T=11, T_k=19)
    for bad in [torch.zeros(1, 4, 11, 18), torch.zeros(3, 4, 11, 19), torch.zeros(1, 1, 1, 1, 19)]:
        with pytest.raises(ValueError, match=r"bias must broadcast to \[B, H, T_q, T_k\]"):
            longmix.attention(case.q, case.k, case.v, name, bias=bad)


@pytest.mark.parametrize("T_k", [1, 7, 50])
def test_sigmoid_default_bias_is_minus_log_T_k(T_k):
    """Without a bias, sigmoid uses −ln T_k (naive.dense's default), fp32."""
    for causal in (True, False):
        check_forward(make_case("sigmoid", T=5, T_k=T_k, dtype=f32), causal=causal)


def test_sigmoid_default_bias_fp64():
    """The default −ln T_k is exact for float64 inputs (it was once rounded to float32)."""
    for causal in (True, False):
        check_forward(make_case("sigmoid", T=5, T_k=50), causal=causal)


@pytest.mark.parametrize("bias_shape", [(1, 1, 1, 12), (12,), (1, 4, 12, 1), (12, 12)])
def test_varlen_with_broadcast_bias(bias_shape):
    """cu_seqlens with a bias broadcast over T_q or T_k: each document gets its own slice."""
    case = make_case("softmax", T=12, B=1)
    bias = torch.randn(bias_shape, dtype=f64)
    o = longmix.attention(case.q, case.k, case.v, "softmax", bias=bias, cu_seqlens=torch.tensor([0, 5, 12]))
    full = bias.expand(1, 4, 12, 12)
    for s, e in [(0, 5), (5, 12)]:
        assert_close(o[:, s:e], ref(case.slice_time(s, e), bias=full[..., s:e, s:e])[0])


@pytest.mark.parametrize("name", DENSE)
def test_varlen_with_full_bias(name):
    case = make_case(name, T=12, B=1, options=("bias",))
    o = longmix.attention(case.q, case.k, case.v, name, cu_seqlens=torch.tensor([0, 5, 12]), **case.opts)
    for s, e in [(0, 5), (5, 12)]:
        assert_close(o[:, s:e], ref(case.slice_time(s, e))[0])


def test_window_definition_by_hand():
    """window=w causal keeps i−w < j ≤ i; noncausal |i−j| < w: softmax with v = one-hot positions
    gives the attention weights, which must be zero exactly outside the band."""
    T, w = 10, 3
    q = torch.randn(1, T, 1, 4, dtype=f64)
    k = torch.randn(1, T, 1, 4, dtype=f64)
    v = torch.eye(T, dtype=f64)[None, :, None, :]  # v_j = e_j, so o_i = weights of row i
    for causal in (True, False):
        for form in FORMS:
            W = longmix.attention(q, k, v, "softmax", window=w, causal=causal, form=form, chunk_size=4)[0, :, 0]
            i, j = torch.meshgrid(torch.arange(T), torch.arange(T), indexing="ij")
            band = ((j <= i) & (i - w < j)) if causal else ((i - j).abs() < w)
            assert torch.all(W[~band] == 0) and torch.all(W[band] > 0)
            assert_close(W.sum(-1), torch.ones(T, dtype=f64))


def test_block_size_definition_by_hand():
    T, bs = 10, 4
    q, k = torch.randn(2, 1, T, 1, 4, dtype=f64).unbind(0)
    v = torch.eye(T, dtype=f64)[None, :, None, :]
    W = longmix.attention(q, k, v, "softmax", block_size=bs, causal=False, form="chunk", chunk_size=3)[0, :, 0]
    i, j = torch.meshgrid(torch.arange(T), torch.arange(T), indexing="ij")
    same = (i // bs) == (j // bs)
    assert torch.all(W[~same] == 0) and torch.all(W[same] > 0)


def test_sinks_only_join_the_denominator():
    """With a sink, the weights sum to 1 − e^{s}/(e^{s} + Σ e^{l}) < 1 and keep their ratios."""
    q, k = torch.randn(2, 1, 6, 2, 4, dtype=f64).unbind(0)
    v = torch.eye(6, dtype=f64)[None, :, None, :].expand(1, 6, 2, 6)
    sinks = torch.tensor([0.5, -2.0], dtype=f64)
    W = longmix.attention(q, k, v, "softmax", causal=False, sinks=sinks)
    W0 = longmix.attention(q, k, v, "softmax", causal=False)
    assert_close(W / W.sum(-1, keepdim=True), W0)
    logits = torch.einsum("bihd,bjhd->bihj", q, k) / 2
    mass = logits.exp().sum(-1)
    assert_close(W.sum(-1), mass / (mass + sinks.exp()))


def test_alibi_uses_distance_both_sides():
    """ALiBi bias −m|i−j| (noncausal too): with q = 0, the weights are softmax(−m|i−j|)."""
    T = 7
    q = torch.zeros(1, T, 1, 4, dtype=f64)
    k = torch.randn(1, T, 1, 4, dtype=f64)
    v = torch.eye(T, dtype=f64)[None, :, None, :]
    m = torch.tensor([0.3], dtype=f64)
    W = longmix.attention(q, k, v, "softmax", causal=False, alibi_slopes=m)[0, :, 0]
    d = (torch.arange(T)[:, None] - torch.arange(T)[None, :]).abs().to(f64)
    assert_close(W, torch.softmax(-0.3 * d, -1))


def test_softcap_bounds_the_logits():
    """softcap c: logits c·tanh(l/c); with huge q the weights are softmax of ±c, not one-hot."""
    q = 1e3 * torch.randn(1, 4, 1, 4, dtype=f64)
    k = torch.randn(1, 4, 1, 4, dtype=f64)
    v = torch.eye(4, dtype=f64)[None, :, None, :]
    W = longmix.attention(q, k, v, "softmax", causal=False, softcap=1.0)[0, :, 0]
    l = 1.0 * torch.tanh(torch.einsum("id,jd->ij", q[0, :, 0], k[0, :, 0]) / 2)
    assert_close(W, torch.softmax(l, -1))
