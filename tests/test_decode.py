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
