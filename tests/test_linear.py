"""Linear attention: every named feature map, a callable (learnable Hedgehog), normalize,
the D_v + 1 state, and TransNormer's output norm."""

import pytest
import torch

import longmix
import naive
from helpers import assert_close, check_forward, check_grads, lib, ref
from inputs import f64, make_case
from longmix import feature_maps

MAPS = ["identity", "elu1", "elu", "relu", "taylor2", "hedgehog", "performer"]
FORMS = ["parallel", "chunk", "recurrent"]


def test_every_named_map_is_tested():
    assert set(feature_maps.FEATURE_MAPS) == set(MAPS) == set(naive.FEATURE_MAPS)


@pytest.mark.parametrize("fm", MAPS)
def test_feature_map_formula(fm):
    """The library's φ against naive.py's formula, fp64."""
    x = torch.randn(3, 5, 8, dtype=f64)
    assert_close(feature_maps.get(fm)(x), naive.FEATURE_MAPS[fm](x))


@pytest.mark.parametrize("normalize", [False, True], ids=["plain", "normalized"])
@pytest.mark.parametrize("dtype", [torch.float32, f64], ids=["fp32", "fp64"])
@pytest.mark.parametrize("form", FORMS)
@pytest.mark.parametrize("fm", MAPS)
def test_linear_feature_maps(fm, form, dtype, normalize):
    """Outputs and final state (D_v + 1 columns with normalize), with an initial state, T = 13 over chunks of 4."""
    case = make_case("linear", T=13, dtype=dtype, feature_map=fm, normalize=normalize, initial_state=True)
    o, S = check_forward(case, form=form, chunk_size=4)
    F = naive.FEATURE_MAPS[fm](case.q[..., :1, :]).shape[-1]
    assert S.shape == (2, 4, F, 6 + normalize)


@pytest.mark.parametrize("normalize", [False, True], ids=["plain", "normalized"])
@pytest.mark.parametrize("fm", MAPS)
def test_linear_feature_maps_noncausal(fm, normalize):
    check_forward(make_case("linear", T=9, feature_map=fm, normalize=normalize), form="chunk", causal=False, chunk_size=4)


@pytest.mark.parametrize("normalize", [False, True], ids=["plain", "normalized"])
@pytest.mark.parametrize("fm", MAPS)
def test_linear_feature_map_gradients(fm, normalize):
    case = make_case("linear", T=7, B=1, H=2, H_kv=1, D_k=4, D_v=3, feature_map=fm, normalize=normalize,
                     initial_state=True)
    check_grads(case, form="chunk", chunk_size=3)


def test_normalized_state_last_column_is_key_sum():
    """normalize=True: the state's last column is z_T = z_0 + Σ_t φ(k_t); the rest is S_T."""
    case = make_case("linear", T=10, H=2, H_kv=2, feature_map="elu1", normalize=True, initial_state=True)
    _, S = lib(case, output_final_state=True)
    z = case.initial_state[..., -1] + naive.fm_elu1(case.k).sum(1)
    assert_close(S[..., -1], z)
    S_plain = case.initial_state[..., :-1] + torch.einsum("bthf,bthv->bhfv", naive.fm_elu1(case.k), case.v)
    assert_close(S[..., :-1], S_plain)


def test_normalized_output_is_a_weighted_mean():
    """With a positive map and v constant per channel, the normalised output equals that constant,
    whatever the scale (the scale cancels)."""
    case = make_case("linear", T=9, feature_map="elu1", normalize=True)
    case.v = torch.ones_like(case.v) * 3.0
    for scale in (None, 0.1, 7.0):
        assert_close(lib(case, scale=scale)[0], torch.full_like(case.q[..., :6], 3.0))


def test_linear_default_scale_is_feature_dim():
    """scale defaults to F^-½ with F the feature dimension (taylor2: F = 1 + D + D²)."""
    case = make_case("linear", T=5, feature_map="taylor2")
    F = 1 + 8 + 64
    assert_close(lib(case)[0], lib(case, scale=F ** -0.5)[0])
    assert (lib(case)[0] - lib(case, scale=8 ** -0.5)[0]).abs().max() > 1e-3


def test_taylor2_approximates_exp_to_second_order():
    """φ(q)·φ(k) = 1 + q·k/√D + (q·k)²/(2D) (Based)."""
    q, k = torch.randn(2, 10, 16, dtype=f64).unbind(0)
    s = (q * k).sum(-1) / 4
    assert_close((feature_maps.taylor2(q) * feature_maps.taylor2(k)).sum(-1), 1 + s + s * s / 2)


def test_performer_features_are_orthogonal_and_fixed():
    """ω has orthogonal rows; it is the same on every call and in every dtype."""
    w = naive.performer_features(8)
    gram = w @ w.T
    assert_close(gram - torch.diag(gram.diagonal()), torch.zeros(8, 8, dtype=f64))
    assert gram.diagonal().min() > 0
    x = torch.randn(4, 8, dtype=f64)
    assert torch.equal(feature_maps.performer(x), feature_maps.performer(x))
    assert_close(feature_maps.performer(x.float()), feature_maps.performer(x), naive.fm_performer(x.float()))
    assert (feature_maps.performer(x) > 0).all()


@pytest.mark.parametrize("form", FORMS)
def test_hedgehog_module_as_feature_map(form):
    """A learnable callable: outputs match, and its parameters get the definition's gradients."""
    torch.manual_seed(0)
    hh = feature_maps.Hedgehog(4).double()
    with torch.no_grad():  # move away from the identity initialisation
        hh.proj.weight.add_(0.3 * torch.randn_like(hh.proj.weight))
        hh.proj.bias.add_(0.3 * torch.randn_like(hh.proj.bias))
    case = make_case("linear", T=7, B=1, H=2, H_kv=1, D_k=4, D_v=3, feature_map=hh, normalize=True)
    assert_close(lib(case, form=form, chunk_size=3)[0], ref(case)[0])
    w = torch.randn(1, 7, 2, 3, dtype=f64)
    grads = []
    for fn in (lib, ref):
        hh.zero_grad()
        (fn(case, form=form, chunk_size=3)[0] * w).sum().backward()
        grads.append([p.grad.clone() for p in hh.parameters()])
    for g_lib, g_ref in zip(*grads):
        assert g_lib.abs().max() > 0
        assert_close(g_lib, g_ref, what="Hedgehog parameter grad")


def test_hedgehog_starts_as_the_named_map():
    x = torch.randn(3, 4)
    assert_close(feature_maps.Hedgehog(4)(x), naive.fm_hedgehog(x.double()).float(), naive.fm_hedgehog(x))


@pytest.mark.parametrize("form", FORMS)
@pytest.mark.parametrize("causal", [True, False], ids=["causal", "noncausal"])
def test_transnormer_output_norm(form, causal):
    """SRMSNorm: every output token has RMS 1 per head (up to the 1e-8 epsilon), and matches naive."""
    case = make_case("transnormer", T=11, feature_map="elu1" if causal else None)
    o = check_forward(case, form=form, causal=causal, chunk_size=4)[0]
    rms = o.pow(2).mean(-1).sqrt()
    assert torch.allclose(rms, torch.ones_like(rms), rtol=1e-6)


def test_custom_feature_map_shape_errors():
    case = make_case("linear", T=4)
    with pytest.raises(ValueError, match="feature_map must map"):
        longmix.attention(case.q, case.k, case.v, "linear", feature_map=lambda x: x.sum(0))
    with pytest.raises(ValueError, match="feature_map must be one of"):
        longmix.attention(case.q, case.k, case.v, "linear", feature_map="cosformer")
    with pytest.raises(TypeError, match="normalize must be a bool"):
        longmix.attention(case.q, case.k, case.v, "linear", normalize=1)


def test_relu_row_with_zero_denominator_is_zero():
    """normalize=True with relu: a query with φ(q) = 0 has denominator 0 and returns 0, not NaN."""
    case = make_case("linear", T=5, H=2, H_kv=2, feature_map="relu", normalize=True)
    case.q = case.q.clone()
    case.q[:, 2] = -case.q[:, 2].abs() - 0.1
    o, _ = lib(case)
    assert torch.isfinite(o).all() and o[:, 2].abs().max() == 0
    check_forward(case, form="chunk", chunk_size=2)


@pytest.mark.parametrize("causal", [True, False], ids=["causal", "noncausal"])
def test_normalizer_gradients_gradcheck(causal):
    """The denominators q_t·z_t run beside the recurrence with their own backward (the running key
    sum is recomputed, not saved): torch.autograd.gradcheck in float64, with and without z_0, and T = 0."""
    from longmix.mechanisms.base import _Denominator

    gen = torch.Generator().manual_seed(0)
    for T in (5, 1, 0):
        q, k = (torch.randn(2, T, 3, 4, generator=gen, dtype=torch.float64, requires_grad=True) for _ in range(2))
        z0 = torch.randn(2, 3, 4, generator=gen, dtype=torch.float64, requires_grad=True)
        for z in ((z0, None) if causal else (None,)):
            assert torch.autograd.gradcheck(lambda q, k, *z: _Denominator.apply(q, k, z[0] if z else None, causal),
                                            (q, k) + ((z,) if z is not None else ()))


def test_linear_normalized_noncausal_gradients():
    case = make_case("linear", T=7, B=1, H=2, H_kv=1, D_k=4, D_v=3, feature_map="elu1", normalize=True)
    check_grads(case, form="chunk", chunk_size=3, causal=False)


@pytest.mark.parametrize("T", [0, 1, 63, 64, 65, 64 * 64 + 3, 3 * 64 * 64 * 64 + 1])
def test_blocked_time_cumsum_is_a_cumsum(T):
    """The normaliser's running key sum scans in blocks (fast on a GPU at B = 1); same sums as a plain
    cumsum, to float32 rounding (the blocked order is as accurate as the sequential one)."""
    from longmix.mechanisms.base import time_cumsum

    gen = torch.Generator().manual_seed(T)
    x = torch.randn(1, T, 2, generator=gen, dtype=torch.float64)
    want = x.cumsum(1)
    got = time_cumsum(x.float())
    assert got.shape == want.shape
    if T:
        err = (got.double() - want).abs().max().item()
        assert err <= 2e-6 * max(1.0, want.abs().max().item()) * max(1, T) ** 0.5, err
