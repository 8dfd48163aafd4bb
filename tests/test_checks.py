"""Bad input raises ValueError/TypeError naming the argument (and its expected shape)."""
import dataclasses

import pytest
import torch

import longmix
from inputs import documented_shape, make_case
from longmix import api, registry

MECHS = longmix.mechanisms()
f32 = torch.float32


def _qkv(B=2, T=8, H=4, H_kv=2, D=16, T_k=None, dtype=f32):
    T_k = T if T_k is None else T_k
    return torch.randn(B, T, H, D, dtype=dtype), torch.randn(B, T_k, H_kv, D, dtype=dtype), \
        torch.randn(B, T_k, H_kv, D, dtype=dtype)


q, k, v = _qkv()

GENERIC = [  # (id, kwargs replacing q/k/v/mechanism or adding options, exception, regex on the message)
    ("unknown-mechanism", dict(mechanism="flash"), ValueError, r"unknown mechanism 'flash'; registered mechanisms: softmax"),
    ("mechanism-not-str", dict(mechanism=3), TypeError, r"mechanism must be a str"),
    ("q-rank", dict(q=q[0]), ValueError, r"q must have 4 dims \[B, T_q, H, D_k\], got shape \(8, 4, 16\)"),
    ("k-rank", dict(k=k[..., 0]), ValueError, r"k must have 4 dims \[B, T_k, H_kv, D_k\]"),
    ("v-rank", dict(v=v[None]), ValueError, r"v must have 4 dims \[B, T_k, H_kv, D_v\]"),
    ("q-not-tensor", dict(q=q.tolist()), TypeError, r"q must be a torch.Tensor of shape \[B, T_q, H, D_k\]"),
    ("batch-mismatch", dict(k=k[:1], v=v[:1]), ValueError, r"batch size mismatch: q has B=2, k has 1"),
    ("kv-length-mismatch", dict(v=v[:, :7]), ValueError, r"k and v must have the same length T_k, got 8 and 7"),
    ("kv-heads-mismatch", dict(v=v[:, :, :1]), ValueError, r"k and v must have the same number of heads H_kv"),
    ("head-dim-mismatch", dict(k=k[..., :8]), ValueError, r"k must have q's head dim D_k=16"),
    ("H-not-multiple", dict(k=torch.randn(2, 8, 3, 16), v=torch.randn(2, 8, 3, 16)), ValueError,
     r"query heads H=4 must be a multiple of key/value heads H_kv=3"),
    ("dtype-mix", dict(k=k.double()), TypeError, r"q, k and v must share one dtype, got q torch.float32, k torch.float64"),
    ("int-dtype", dict(q=q.int(), k=k.int(), v=v.int()), TypeError, r"q must be float16, bfloat16, float32 or float64"),
    ("unknown-form", dict(form="blocked"), ValueError, r"form must be 'auto' or one of \('parallel', 'chunk', 'recurrent'\)"),
    ("unknown-backend", dict(backend="cuda"), ValueError, r"backend must be 'auto' or one of"),
    ("causal-not-bool", dict(causal=1), TypeError, r"causal must be a bool"),
    ("scale-negative", dict(scale=-1.0), ValueError, r"scale must be > 0"),
    ("scale-str", dict(scale="big"), TypeError, r"scale must be a number"),
    ("chunk-size-zero", dict(chunk_size=0), ValueError, r"chunk_size must be ≥ 1"),
    ("chunk-size-float", dict(chunk_size=2.5), TypeError, r"chunk_size must be an int"),
    ("output-final-state-not-bool", dict(output_final_state=1), TypeError, r"output_final_state must be a bool"),
]


@pytest.mark.parametrize("name", MECHS)
@pytest.mark.parametrize("replace,exc,match", [g[1:] for g in GENERIC], ids=[g[0] for g in GENERIC])
def test_generic_bad_input(name, replace, exc, match):
    case = make_case(name, T=8, H=4, H_kv=2, D_k=16, D_v=16, dtype=f32)
    args = dict(q=case.q, k=case.k, v=case.v, mechanism=name, **case.opts)
    args.update(replace)
    with pytest.raises(exc, match=match):
        longmix.attention(args.pop("q"), args.pop("k"), args.pop("v"), args.pop("mechanism"), **args)


@pytest.mark.parametrize("name", [n for n in MECHS if longmix.describe(n).required])
def test_missing_required_option(name):
    mech = longmix.describe(name)
    case = make_case(name, T=8, dtype=f32)
    for opt in mech.required:
        opts = {n: x for n, x in case.opts.items() if n != opt}
        shape = documented_shape(mech.inputs[opt]).replace("[", r"\[").replace("]", r"\]")
        with pytest.raises(ValueError, match=rf"mechanism '{name}' needs {opt}: {opt} = {shape}"):
            longmix.attention(case.q, case.k, case.v, name, **opts)


_ANY_VALUE = {"g": torch.zeros(1), "beta": torch.zeros(1), "feature_map": "elu1", "normalize": True, "window": 4,
              "sinks": torch.zeros(4), "alibi_slopes": torch.zeros(4), "softcap": 1.0, "bias": 0.5,
              "block_size": 4, "length_scaling": True}


@pytest.mark.parametrize("name", MECHS)
def test_extra_option(name):
    """Every option the API knows but the mechanism does not list is refused by name."""
    mech = longmix.describe(name)
    case = make_case(name, T=8, dtype=f32)
    extras = [o for o in api.MECHANISM_OPTIONS if o not in mech.inputs]
    assert set(_ANY_VALUE) == set(api.MECHANISM_OPTIONS)
    for opt in extras:
        with pytest.raises(ValueError, match=rf"mechanism '{name}' does not take {opt}; its options are"):
            longmix.attention(case.q, case.k, case.v, name, **case.opts, **{opt: _ANY_VALUE[opt]})


def _gated():
    return [(n, documented_shape(longmix.describe(n).inputs["g"])) for n in MECHS if "g" in longmix.describe(n).inputs]


@pytest.mark.parametrize("name,shape", _gated())
def test_gate_checks(name, shape):
    case = make_case(name, T=8, dtype=f32, options=("g",))
    base = dict(case.opts)
    g = base["g"]
    esc = shape.replace("[", r"\[").replace("]", r"\]")

    def call(**kw):
        longmix.attention(case.q, case.k, case.v, name, **{**base, **kw})

    pos = g.clone()
    pos.view(-1)[0] = 0.1
    with pytest.raises(ValueError, match=r"g is a log-space decay and must be ≤ 0 .*max is 0.1"):
        call(g=pos)
    nan = g.clone()
    nan.view(-1)[-1] = float("nan")
    with pytest.raises(ValueError, match=r"g \(log-space gate\) contains NaN"):
        call(g=nan)
    for dtype in (torch.float16, torch.bfloat16):
        with pytest.raises(TypeError, match=r"g \(a log-space gate\) must be float32"):
            call(g=g.to(dtype))
    with pytest.raises(TypeError, match=r"g \(a log-space gate\) must be float32, got torch.float64"):
        call(g=g.double())  # float64 gates only with float64 inputs
    for bad in (g[..., :-1], g[None], g.reshape(-1)[:-1] if g.dim() == 1 else g.flatten(-2)):
        with pytest.raises(ValueError, match=rf"g must have shape {esc} = "):
            call(g=bad)
    with pytest.raises(TypeError, match=r"g must be a torch.Tensor"):
        call(g=-0.1)
    call(g=g)  # and the valid gate passes
    call(g=torch.zeros_like(g))  # g = 0 (no decay) is valid


@pytest.mark.parametrize("name", [n for n in MECHS if "beta" in longmix.describe(n).inputs])
def test_beta_checks(name):
    case = make_case(name, T=8, dtype=f32)
    base = dict(case.opts)
    beta = base["beta"]

    def call(**kw):
        longmix.attention(case.q, case.k, case.v, name, **{**base, **kw})

    for bad_value in (2.01, -0.01, float("nan")):
        b = beta.clone()
        b[0, 3, 1] = bad_value
        with pytest.raises(ValueError, match=r"beta must lie in \[0, 2\]"):
            call(beta=b)
    with pytest.raises(ValueError, match=r"beta must have shape \[B, T, H\] = \(2, 8, 4\)"):
        call(beta=beta[..., :2])
    with pytest.raises(TypeError, match=r"beta must have q's dtype \(torch.float32\) or float32, got torch.float16"):
        call(beta=beta.half())
    call(beta=torch.zeros_like(beta))
    call(beta=torch.full_like(beta, 2.0))


@pytest.mark.parametrize("name", [n for n in MECHS if longmix.describe(n).family != "dense"])
def test_initial_state_checks(name):
    case = make_case(name, T=8, dtype=f32, initial_state=True)
    S0 = case.initial_state
    with pytest.raises(ValueError, match=r"initial_state must have shape \[B, H, D_k, D_v\] = "):
        longmix.attention(case.q, case.k, case.v, name, initial_state=S0[..., :-1], **case.opts)
    with pytest.raises(ValueError, match=r"initial_state must have shape \[B, H, D_k, D_v\]"):
        longmix.attention(case.q, case.k, case.v, name, initial_state=S0[:1], **case.opts)
    with pytest.raises(TypeError, match=r"initial_state must be floating point"):
        longmix.attention(case.q, case.k, case.v, name, initial_state=S0.int(), **case.opts)
    with pytest.raises(TypeError, match=r"initial_state must be a torch.Tensor"):
        longmix.attention(case.q, case.k, case.v, name, initial_state=S0.tolist(), **case.opts)


@pytest.mark.parametrize("name", [n for n in MECHS if longmix.describe(n).family == "dense"])
def test_dense_has_no_recurrent_state(name):
    q, k, v = _qkv()
    with pytest.raises(ValueError, match=r"initial_state and output_final_state are for recurrent mechanisms"):
        longmix.attention(q, k, v, name, output_final_state=True)
    with pytest.raises(ValueError, match=r"carries no recurrent state"):
        longmix.attention(q, k, v, name, initial_state=torch.zeros(2, 4, 16, 16))


DENSE_BAD = [
    ("window", 0, ValueError, r"window must be ≥ 1, got 0"),
    ("window", 2.5, TypeError, r"window must be an int"),
    ("window", True, TypeError, r"window must be an int, got bool"),
    ("block_size", -3, ValueError, r"block_size must be ≥ 1"),
    ("softcap", 0.0, ValueError, r"softcap must be > 0"),
    ("softcap", "x", TypeError, r"softcap must be a number"),
    ("sinks", torch.zeros(3), ValueError, r"sinks must have shape \[H\] = \(4,\), got \(3,\)"),
    ("sinks", torch.zeros(4, dtype=torch.int64), TypeError, r"sinks must be a floating tensor"),
    ("sinks", 0.5, TypeError, r"sinks must be a torch.Tensor of shape \[H\]"),
    ("alibi_slopes", torch.zeros(1, 4), ValueError, r"alibi_slopes must have shape \[H\]"),
    ("bias", torch.zeros(2, 4, 8, 7), ValueError, r"bias must broadcast to \[B, H, T_q, T_k\] = \(2, 4, 8, 8\)"),
    ("bias", "zero", TypeError, r"bias must be a torch.Tensor of shape \[B, H, T_q, T_k\]"),
    ("length_scaling", 1, TypeError, r"length_scaling must be a bool"),
]


@pytest.mark.parametrize("name,option,value,exc,match", [
    pytest.param(n, *bad, id=f"{n}-{bad[0]}-{i}") for n in MECHS for i, bad in enumerate(DENSE_BAD)
    if bad[0] in longmix.describe(n).inputs])
def test_dense_option_checks(name, option, value, exc, match):
    q, k, v = _qkv()
    with pytest.raises(exc, match=match):
        longmix.attention(q, k, v, name, **{option: value})


@pytest.mark.parametrize("name", MECHS)
def test_cu_seqlens_checks(name):
    case = make_case(name, T=8, B=1, dtype=f32)

    def call(cu, **kw):
        args = dict(q=case.q, k=case.k, v=case.v, **case.opts)
        args.update(kw)
        longmix.attention(args.pop("q"), args.pop("k"), args.pop("v"), name, cu_seqlens=cu, **args)

    for bad in ([0, 5, 3, 8], [0, 3, 7], [1, 8], [0], [0, 3, 9]):
        with pytest.raises(ValueError, match=r"cu_seqlens must be non-decreasing, start at 0 and end at T=8"):
            call(torch.tensor(bad))
    with pytest.raises(TypeError, match=r"cu_seqlens must be int32 or int64, got torch.float32"):
        call(torch.tensor([0.0, 8.0]))
    with pytest.raises(ValueError, match=r"cu_seqlens must have 1 dims \[N\+1\]"):
        call(torch.tensor([[0, 8]]))
    with pytest.raises(TypeError, match=r"cu_seqlens must be a torch.Tensor"):
        call([0, 8])
    two = make_case(name, T=8, B=2, dtype=f32)
    with pytest.raises(ValueError, match=r"cu_seqlens packs documents along T, so the batch size must be 1, got B=2"):
        call(torch.tensor([0, 8]), q=two.q, k=two.k, v=two.v, **two.opts)
    if longmix.describe(name).family != "dense":
        with pytest.raises(ValueError, match=r"initial_state must have shape \[N, H, D_k, D_v\] with N=2 documents"):
            S0 = make_case(name, T=8, B=1, initial_state=True, dtype=f32).initial_state
            call(torch.tensor([0, 3, 8]), initial_state=S0)
    else:
        with pytest.raises(ValueError, match=r"cu_seqlens packs one sequence of documents: T_q must equal T_k"):
            call(torch.tensor([0, 8]), q=case.q[:, :5])
    call(torch.tensor([0, 3, 3, 8], dtype=torch.int32))  # valid, with an empty document


def test_cu_seqlens_device_count_disagreeing_with_the_host_is_reported():
    """The kernels count broken cu_seqlens entries on the device; if that count said "broken" for bounds
    the host finds valid (a kernel fault), the error says so instead of raising a bare TypeError."""
    from longmix import checks

    with pytest.raises(RuntimeError, match=r"counted 1 broken cu_seqlens entries in \[0, 3, 8\].*kernel fault"):
        checks.cu_seqlens_values(torch.tensor([0, 3, 8]), torch.tensor([1]), 8)
    checks.cu_seqlens_values(torch.tensor([0, 3, 8]), torch.tensor([0]), 8)  # agreeing: nothing raised
    with pytest.raises(ValueError, match=r"cu_seqlens must be non-decreasing"):
        checks.cu_seqlens_values(torch.tensor([0, 9, 8]), torch.tensor([1]), 8)


@pytest.mark.parametrize("name", MECHS)
def test_backend_and_form_refusals(name, monkeypatch):
    case = make_case(name, T=8, dtype=f32)
    mech = longmix.describe(name)
    if "triton" not in mech.backends:
        with pytest.raises(ValueError, match=rf"mechanism '{name}' has no backend 'triton'"):
            longmix.attention(case.q, case.k, case.v, name, backend="triton", **case.opts)
    for form in {"parallel", "chunk", "recurrent"} - set(mech.forms):
        with pytest.raises(ValueError, match=rf"mechanism '{name}' has no form '{form}'"):
            longmix.attention(case.q, case.k, case.v, name, form=form, **case.opts)
    # a mechanism with one form only refuses the others by name (and keeps the one it has)
    toy = dataclasses.replace(mech, name="toy_" + name, forms=("recurrent",))
    monkeypatch.setitem(registry._REGISTRY, toy.name, toy)
    for form in ("parallel", "chunk"):
        with pytest.raises(ValueError, match=rf"mechanism 'toy_{name}' has no form '{form}'; its forms are \('recurrent',\)"):
            longmix.attention(case.q, case.k, case.v, toy.name, form=form, **case.opts)
    longmix.attention(case.q, case.k, case.v, toy.name, form="recurrent", **case.opts)


def test_registry_refuses_duplicates_and_unknown_forms():
    mech = longmix.describe("softmax")
    with pytest.raises(ValueError, match="mechanism 'softmax' is already registered"):
        registry.register(mech)
    with pytest.raises(ValueError, match=r"unknown forms \['blocked'\]"):
        registry.register(dataclasses.replace(mech, name="toy_forms", forms=("blocked",)))
    assert "toy_forms" not in longmix.mechanisms()


@pytest.mark.parametrize("name", [n for n in MECHS if "g" in longmix.describe(n).inputs
                                  and documented_shape(longmix.describe(n).inputs["g"]) == "[H]"])
def test_constant_gate_shape(name):
    case = make_case(name, T=8, dtype=f32)
    with pytest.raises(ValueError, match=r"g must have shape \[H\] = \(4,\)"):
        longmix.attention(case.q, case.k, case.v, name, g=torch.zeros(2, 8, 4))


def test_trusted_values_skips_value_checks_only():
    """Inside trusted_values() a positive gate is not refused (the caller vouches for it); outside it is,
    and shape errors are raised either way."""
    import longmix

    q, k, v = torch.randn(3, 1, 8, 2, 16).unbind(0)
    g = torch.full((1, 8, 2), 0.5)
    with pytest.raises(ValueError, match="must be ≤ 0"):
        longmix.attention(q, k, v, "mamba2", g=g)
    with longmix.trusted_values():
        assert longmix.attention(q, k, v, "mamba2", g=g).shape == (1, 8, 2, 16)
        with pytest.raises(ValueError, match="shape"):
            longmix.attention(q, k, v, "mamba2", g=g[:, :4])
    with pytest.raises(ValueError, match="must be ≤ 0"):  # the block ended: checked again
        longmix.attention(q, k, v, "mamba2", g=g)
