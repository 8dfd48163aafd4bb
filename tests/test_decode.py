"""Decoding: stepping token by token equals one call over the whole sequence.

Recurrent mechanisms carry (initial_state → output_final_state); dense ones attend from one
query (T_q = 1) to a growing KV cache (T_k = t, causal, bottom-right aligned).
"""
import math

import pytest
import torch

import longmix
from helpers import assert_close, is_recurrent, lib
from inputs import f64, make_case

MECHS = longmix.mechanisms()
RECURRENT = [n for n in MECHS if is_recurrent(n)]
DENSE = [n for n in MECHS if not is_recurrent(n)]
T = 11


@pytest.mark.parametrize("options", ["required", "all"])
@pytest.mark.parametrize("name", RECURRENT)
def test_recurrent_token_by_token(name, options):
    """Steps of one token (form auto → recurrent) reproduce the full chunked call's outputs and state."""
    opts = tuple(longmix.describe(name).inputs) if options == "all" else ()
    case = make_case(name, T=T, options=opts, initial_state=True)
    o_full, S_full = lib(case, form="chunk", chunk_size=4, output_final_state=True)
    S, outs = case.initial_state, []
    for t in range(T):
        step = case.slice_time(t, t + 1)
        step.initial_state = S
        o_t, S = lib(step, output_final_state=True)  # form="auto" picks recurrent for T_q = 1
        outs.append(o_t)
    assert_close(torch.cat(outs, 1), o_full, what="decoded outputs")
    assert_close(S, S_full, what="decoded state")


@pytest.mark.parametrize("name", RECURRENT)
def test_recurrent_prefill_then_decode_mixed_forms(name):
    """Prefill 6 tokens (parallel), 1 token (recurrent), 4 tokens (chunk): same as one call."""
    case = make_case(name, T=T, options=tuple(longmix.describe(name).inputs))
    o_full, S_full = lib(case, form="recurrent", output_final_state=True)
    S, outs = None, []
    for (s, e), form in zip([(0, 6), (6, 7), (7, 11)], ["parallel", "recurrent", "chunk"]):
        part = case.slice_time(s, e)
        part.initial_state = S
        o, S = lib(part, form=form, chunk_size=3, output_final_state=True)
        outs.append(o)
    assert_close(torch.cat(outs, 1), o_full)
    assert_close(S, S_full)


@pytest.mark.parametrize("form", ["parallel", "chunk", "recurrent"])
@pytest.mark.parametrize("name", DENSE)
def test_dense_decode_against_growing_cache(name, form):
    """Query t against keys 0..t (T_q = 1, T_k = t + 1, causal) equals row t of the full causal call,
    with every documented option (bias sliced to the row and the cache)."""
    case = make_case(name, T=T, options=tuple(longmix.describe(name).inputs))
    o_full, _ = lib(case, form=form, chunk_size=4)
    outs = []
    for t in range(T):
        opts = dict(case.opts)
        if torch.is_tensor(opts.get("bias")):
            opts["bias"] = opts["bias"][..., t:t + 1, : t + 1]
        o_t = longmix.attention(case.q[:, t:t + 1], case.k[:, : t + 1], case.v[:, : t + 1], name, form=form,
                                chunk_size=4, **opts)
        outs.append(o_t)
    assert_close(torch.cat(outs, 1), o_full)


@pytest.mark.parametrize("name", DENSE)
def test_dense_decode_default_options(name):
    """The same without options. Sigmoid's default bias is −ln T_k of the call, i.e. −ln(t + 1) for
    a cache of t + 1 keys, so its full-call counterpart gets that bias row by row."""
    case = make_case(name, T=T)
    full_opts = {}
    if name == "sigmoid":
        full_opts["bias"] = torch.tensor([-math.log(t + 1) for t in range(T)], dtype=f64)[:, None]
    o_full = longmix.attention(case.q, case.k, case.v, name, **full_opts)
    outs = [longmix.attention(case.q[:, t:t + 1], case.k[:, : t + 1], case.v[:, : t + 1], name) for t in range(T)]
    assert_close(torch.cat(outs, 1), o_full)


# ------------------------------------------------------------------ longmix.Decoder

PIECES = [(0, 1), (1, 2), (2, 5), (5, 5), (5, 6), (6, 11)]  # one token, a few, none, then the rest


def _split_options(case):
    """(options that hold for every step, per-token options sliced later): a tensor whose dim 1 is
    time goes with the tokens."""
    T_ = case.q.shape[1]
    fixed = {n: x for n, x in case.opts.items() if not (torch.is_tensor(x) and x.dim() >= 3 and x.shape[1] == T_)}
    return fixed, [n for n in case.opts if n not in fixed]


@pytest.mark.parametrize("options", ["required", "all"])
@pytest.mark.parametrize("name", RECURRENT)
def test_decoder_steps_match_one_call(name, options):
    """Steps of 1, 1, 3, 0, 1 and 5 tokens advance the given state tensor itself and reproduce one
    call over all T tokens (outputs and final state); constant options go to the constructor."""
    opts = tuple(longmix.describe(name).inputs) if options == "all" else ()
    case = make_case(name, T=T, options=opts, initial_state=True)
    o_full, S_full = lib(case, form="chunk", chunk_size=4, output_final_state=True)
    fixed, per_token = _split_options(case)
    S = case.initial_state.clone()
    dec = longmix.Decoder(name, S, **fixed)
    outs = []
    with torch.no_grad():
        for s, e in PIECES:
            part = case.slice_time(s, e)
            outs.append(dec.step(part.q, part.k, part.v, **{n: part.opts[n] for n in per_token}))
    assert dec.state is S
    assert_close(torch.cat(outs, 1), o_full, what="decoded outputs")
    assert_close(S, S_full, what="decoded state")


@pytest.mark.parametrize("name", ["mamba2", "linear", "kda"])
def test_decoder_prefill_then_steps_from_no_state(name):
    """No state given: zeros, made by the first call (here a prefill); reset() zeroes it in place."""
    case = make_case(name, T=T, options=("feature_map", "normalize") if name == "linear" else ())
    o_full, S_full = lib(case, output_final_state=True)
    fixed, per_token = _split_options(case)
    dec = longmix.Decoder(name, **fixed)
    head = case.slice_time(0, 7)
    outs = [dec.prefill(head.q, head.k, head.v, **{n: head.opts[n] for n in per_token})]
    S = dec.state
    with torch.no_grad():
        for t in range(7, T):
            part = case.slice_time(t, t + 1)
            outs.append(dec.step(part.q, part.k, part.v, **{n: part.opts[n] for n in per_token}))
    assert dec.state is S
    assert_close(torch.cat(outs, 1), o_full)
    assert_close(dec.state, S_full)
    dec.reset()
    assert dec.state is S and not S.any()


def test_decoder_checks_values_on_every_step_unless_trusted():
    """The first step validates everything; later steps with the same signature still check gate
    values (a positive log-gate raises), except inside trusted_values()."""
    case = make_case("gated_deltanet", T=3)
    dec = longmix.Decoder("gated_deltanet")
    with torch.no_grad():
        dec.step(case.q[:, :1], case.k[:, :1], case.v[:, :1], g=case.opts["g"][:, :1], beta=case.opts["beta"][:, :1])
        bad = case.opts["g"][:, 1:2].abs() + 0.5
        with pytest.raises(ValueError, match="must be ≤ 0"):
            dec.step(case.q[:, 1:2], case.k[:, 1:2], case.v[:, 1:2], g=bad, beta=case.opts["beta"][:, 1:2])
        with pytest.raises(ValueError, match=r"beta must lie in \[0, 2\]"):
            dec.step(case.q[:, 1:2], case.k[:, 1:2], case.v[:, 1:2], g=case.opts["g"][:, 1:2],
                     beta=case.opts["beta"][:, 1:2] + 5)
        with longmix.trusted_values():
            dec.step(case.q[:, 1:2], case.k[:, 1:2], case.v[:, 1:2], g=bad, beta=case.opts["beta"][:, 1:2])


def test_decoder_refusals():
    case = make_case("mamba2", T=2, initial_state=True)
    q, k, v, g = case.q, case.k, case.v, case.opts["g"]
    with pytest.raises(ValueError, match="dense"):
        longmix.Decoder("softmax")
    with pytest.raises(TypeError, match="unexpected options causal"):
        longmix.Decoder("mamba2", causal=True)
    with pytest.raises(ValueError, match="contiguous float32"):
        longmix.Decoder("mamba2", case.initial_state.transpose(-1, -2))
    with pytest.raises(ValueError, match="contiguous float32"):
        longmix.Decoder("mamba2", case.initial_state.half())
    with pytest.raises(TypeError, match="state must be torch.float64 for torch.float64 inputs"):
        longmix.Decoder("mamba2", case.initial_state.float()).step(q, k, v, g=g)
    with pytest.raises(ValueError, match="initial_state must have shape"):  # the batch changed
        longmix.Decoder("mamba2", case.initial_state[:1].contiguous()).step(q, k, v, g=g)
    with pytest.raises(ValueError, match="needs g"):
        longmix.Decoder("mamba2").step(q, k, v)
    with pytest.raises(ValueError, match="inference only"):
        longmix.Decoder("mamba2").step(q.clone().requires_grad_(), k, v, g=g)
    dec = longmix.Decoder("mamba2", case.initial_state.clone())
    with torch.no_grad():
        dec.step(q[:, :1], k[:, :1], v[:, :1], g=g[:, :1])
        with pytest.raises(ValueError, match="same length"):  # a new signature is validated in full again
            dec.step(q[:, :1], k, v, g=g[:, :1])
