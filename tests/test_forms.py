"""Every form of every registered mechanism against its plain sequential definition.

Parametrised over ``longmix.mechanisms()``: a newly registered mechanism is picked up here
(it needs a definition in naive.py, which ``test_every_mechanism_has_a_definition`` demands,
and generators for its documented inputs in inputs.py).
"""
import pytest
import torch

import longmix
import naive
from helpers import check_forward, check_grads, is_recurrent, lib, ref, assert_close
from inputs import documented_shape, f64, make_case

MECHS = longmix.mechanisms()
RECURRENT = [n for n in MECHS if is_recurrent(n)]
NAME_FORM = [(n, f) for n in MECHS for f in longmix.describe(n).forms]
C = 16  # chunk size used below; T runs over 1, C−1, C, C+1 and a few hundred
f32 = torch.float32


def test_registry_is_not_empty_and_names_are_unique():
    assert len(MECHS) >= 12 and len(set(MECHS)) == len(MECHS)
    assert {"softmax", "linear", "retention", "gla", "deltanet", "kda"} <= set(MECHS)


@pytest.mark.parametrize("name", MECHS)
def test_every_mechanism_has_a_definition(name):
    """A registered mechanism needs a naive definition and generators for all its options."""
    mech = longmix.describe(name)
    assert name in naive.NAIVE, f"add the plain definition of {name!r} to tests/naive.py NAIVE"
    assert mech.required <= set(mech.inputs), f"{name}: required options {mech.required} not documented in inputs"
    assert set(mech.forms) <= {"parallel", "chunk", "recurrent"} and mech.forms
    for opt, desc in mech.inputs.items():
        assert documented_shape(desc), f"{name}.{opt}: its description should start with a shape or a type"
    make_case(name, options=tuple(mech.inputs))  # every documented option can be generated
    assert str(mech).startswith(name) and mech.formula in str(mech)


@pytest.mark.parametrize("T", [1, C - 1, C, C + 1, 200])
@pytest.mark.parametrize("dtype", [f32, f64], ids=["fp32", "fp64"])
@pytest.mark.parametrize("name,form", NAME_FORM)
def test_forward(name, form, dtype, T):
    """Outputs (and final states) of every form, GQA (H=4, H_kv=2), D_k ≠ D_v, no initial state."""
    check_forward(make_case(name, T=T, dtype=dtype), form=form, chunk_size=C)


@pytest.mark.parametrize("T", [1, C + 1])
@pytest.mark.parametrize("dtype", [f32, f64], ids=["fp32", "fp64"])
@pytest.mark.parametrize("name,form", [(n, f) for n, f in NAME_FORM if n in RECURRENT])
def test_initial_state(name, form, dtype, T):
    case = make_case(name, T=T, dtype=dtype, initial_state=True)
    check_forward(case, form=form, chunk_size=C)
    # the initial state matters: a different one changes the output
    o1, _ = lib(case, form=form, chunk_size=C)
    case.initial_state = case.initial_state * 2
    o2, _ = lib(case, form=form, chunk_size=C)
    assert (o1 - o2).abs().max() > 1e-3


@pytest.mark.parametrize("form", ["chunk", "auto"])
@pytest.mark.parametrize("name", MECHS)
def test_default_chunk_size_long_sequence(name, form):
    """T = 300 with the default chunk size (64 recurrent, 128 dense), fp32."""
    check_forward(make_case(name, T=300, B=1, H=2, H_kv=1, dtype=f32), form=form)


@pytest.mark.parametrize("name,form", NAME_FORM)
def test_gradients(name, form):
    """Gradients w.r.t. q, k, v and every floating option (g, beta, initial_state), fp64."""
    case = make_case(name, T=7, B=2, H=2, H_kv=1, D_k=4, D_v=3, initial_state=is_recurrent(name))
    got = check_grads(case, form=form, chunk_size=3)
    assert {"q", "k", "v"} | {n for n, x in case.opts.items() if torch.is_tensor(x)} <= set(got)


@pytest.mark.parametrize("name,form", [(n, f) for n, f in NAME_FORM if f != "recurrent"])
def test_gradients_large_chunks(name, form):
    """fp64 gradients with chunks of 32 (T = 37): paths for big chunks (e.g. two-level per-key gates)."""
    case = make_case(name, T=37, B=1, H=2, H_kv=1, D_k=4, D_v=3, initial_state=is_recurrent(name))
    check_grads(case, form=form, chunk_size=32)


@pytest.mark.parametrize("H,H_kv", [(3, 1), (2, 2)], ids=["MQA", "MHA"])
@pytest.mark.parametrize("name", MECHS)
def test_head_grouping(name, H, H_kv):
    check_forward(make_case(name, T=9, H=H, H_kv=H_kv), form="chunk", chunk_size=4)


def test_gqa_maps_query_head_to_kv_head_h_over_group():
    """GQA equals MHA with k, v repeated so that query head h reads key/value head h // (H/H_kv)."""
    case = make_case("softmax", T=6, H=4, H_kv=2)
    o, _ = lib(case)
    k = case.k[:, :, [0, 0, 1, 1]]
    v = case.v[:, :, [0, 0, 1, 1]]
    assert_close(o, longmix.attention(case.q, k, v, "softmax"))
    k_wrong = case.k[:, :, [0, 1, 0, 1]]
    assert (o - longmix.attention(case.q, k_wrong, case.v[:, :, [0, 1, 0, 1]], "softmax")).abs().max() > 1e-3


CU = [0, 5, 5, 21, 40]  # four documents, the second one empty


@pytest.mark.parametrize("dtype", [f32, f64], ids=["fp32", "fp64"])
@pytest.mark.parametrize("name,form", NAME_FORM)
def test_varlen(name, form, dtype):
    """cu_seqlens: each document is computed alone (own initial state, own final state; sigmoid's
    default bias −ln T_k is per document)."""
    rec = is_recurrent(name)
    case = make_case(name, T=CU[-1], B=1, dtype=dtype)
    cu = torch.tensor(CU, dtype=torch.int32)
    S0 = None
    if rec:
        S0 = torch.cat([make_case(name, T=1, B=1, initial_state=True, seed=i, dtype=dtype).initial_state
                        for i in range(4)])
    out = longmix.attention(case.q, case.k, case.v, name, cu_seqlens=cu, initial_state=S0, output_final_state=rec,
                            form=form, chunk_size=8, **case.opts)
    o, S = out if rec else (out, None)
    refs, states = [], []
    for i, (s, e) in enumerate(zip(CU, CU[1:])):
        doc = case.slice_time(s, e)
        if rec:
            doc.initial_state = S0[i:i + 1]
        r, rS = ref(doc.cast(f64))
        lo, loS = (None, None) if dtype == f64 else ref(doc)
        refs.append((r, lo))
        states.append((rS, loS))
    cat = lambda xs, d: None if xs[0] is None else torch.cat(xs, d)  # noqa: E731
    assert_close(o, cat([r for r, _ in refs], 1), cat([lo for _, lo in refs], 1), what="varlen output")
    if rec:
        assert S.shape[0] == 4
        assert_close(S, cat([r for r, _ in states], 0), cat([lo for _, lo in states], 0), what="varlen final states")
        assert torch.equal(S[1], S0[1].to(S.dtype)), "an empty document passes its initial state through"


@pytest.mark.parametrize("name", MECHS)
def test_varlen_differs_from_one_sequence(name):
    """Documents do not see each other: packing changes the output after the first boundary."""
    case = make_case(name, T=12, B=1)
    cu = torch.tensor([0, 6, 12])
    o_packed = longmix.attention(case.q, case.k, case.v, name, cu_seqlens=cu, **case.opts)
    o_whole, _ = lib(case)
    assert_close(o_packed[:, :6], lib(case.slice_time(0, 6))[0])
    assert_close(o_packed[:, 6:], lib(case.slice_time(6, 12))[0])
    assert (o_packed[:, 6:] - o_whole[:, 6:]).abs().max() > 1e-4


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16], ids=["fp16", "bf16"])
@pytest.mark.parametrize("name", MECHS)
def test_half_precision(name, dtype):
    """Half-precision inputs: output in the input dtype, state float32, accuracy by the same rule."""
    case = make_case(name, T=C + 1, B=1, H=2, H_kv=1, dtype=dtype, initial_state=is_recurrent(name))
    check_forward(case, form="chunk", chunk_size=C // 2)


@pytest.mark.parametrize("name", RECURRENT)
def test_recurrent_mechanisms_refuse_cross_attention(name):
    case = make_case(name, T=8)
    k, v = case.k[:, :5], case.v[:, :5]
    with pytest.raises(ValueError, match=r"T_q=8, T_k=5"):
        longmix.attention(case.q, k, v, name, **case.opts)


@pytest.mark.parametrize("name", MECHS)
def test_describe_documents_the_noncausal_and_state(name):
    mech = longmix.describe(name)
    assert mech.noncausal and mech.state and set(mech.complexity) >= set(mech.forms)
    assert mech.cross == (mech.family == "dense")


@pytest.mark.parametrize("name", MECHS)
def test_auto_says_what_it_chose(name, caplog):
    """form="auto" logs its choice and why: recurrent for one causal query of a recurrent mechanism,
    chunk for longer ones, parallel for small dense problems; the result equals that form's."""
    case = make_case(name, T=1 if is_recurrent(name) else 9, dtype=f32)
    with caplog.at_level("DEBUG", logger="longmix"):
        o_auto, _ = lib(case)
    expected = "recurrent" if is_recurrent(name) else "parallel"
    assert f"{name} form={expected}" in caplog.text and "backend=reference" in caplog.text
    assert torch.equal(o_auto, lib(case, form=expected)[0])
    if is_recurrent(name):
        caplog.clear()
        with caplog.at_level("DEBUG", logger="longmix"):
            lib(make_case(name, T=5, dtype=f32))
        assert f"{name} form=chunk" in caplog.text
