"""The Mixer layer and the small LM: decoding equals the full forward, training lowers the loss,
what the Mixer builds follows describe(), bad arguments are refused clearly."""
import pytest
import torch
import torch.nn.functional as F

import longmix
from longmix.models import LM, LMConfig, Mixer, loss_fn
from longmix.models.mixer import _DecayGate, _GLAGate, rope
from longmix.tasks import MQAR

MECHS = longmix.mechanisms()


def _fixed_options(name):
    # sigmoid's default bias −ln T_k depends on the cache length: give every mechanism that takes
    # a bias a fixed one, so decoding and the full call compute the same function
    return {"bias": -2.0} if "bias" in longmix.describe(name).inputs else {}


def prefill_then_steps(model, x, n_prefill):
    """Run ``model`` on x[:, :n_prefill] with a cache, then one token at a time; outputs concatenated."""
    y, cache = model(x[:, :n_prefill], use_cache=True)
    outs = [y]
    for t in range(n_prefill, x.shape[1]):
        y, cache = model(x[:, t:t + 1], cache, use_cache=True)
        outs.append(y)
    return torch.cat(outs, 1), cache


@pytest.mark.parametrize("name", MECHS)
def test_mixer_prefill_then_steps_equals_full(name):
    torch.manual_seed(0)
    m = Mixer(16, 2, name, **_fixed_options(name)).double()
    x = torch.randn(2, 9, 16, dtype=torch.float64)
    full = m(x)
    stepped, cache = prefill_then_steps(m, x, 5)
    torch.testing.assert_close(stepped, full, atol=1e-9, rtol=1e-7)
    assert cache.length == 9
    if m.recurrent:
        assert cache.state is not None and cache.k is None
    else:
        assert cache.state is None and cache.k.shape == (2, 9, 2, 8)


def test_mixer_decode_token_by_token_from_empty():
    """Recurrent (gated_deltanet) and dense (softmax): pure one-token steps from an empty cache."""
    torch.manual_seed(0)
    for name in ("gated_deltanet", "softmax"):
        m = Mixer(16, 2, name).double()
        x = torch.randn(1, 7, 16, dtype=torch.float64)
        cache, outs = None, []
        for t in range(7):
            y, cache = m(x[:, t:t + 1], cache, use_cache=True)
            outs.append(y)
        torch.testing.assert_close(torch.cat(outs, 1), m(x), atol=1e-9, rtol=1e-7)


def test_mixer_parametrisation_follows_describe():
    kinds = {n: Mixer(16, 2, n) for n in ("gla", "kda", "mamba2", "gated_deltanet", "deltanet", "retention", "softmax", "linear")}
    assert isinstance(kinds["gla"].gate, _GLAGate) and kinds["gla"].gate_shape == (2, 8)
    assert isinstance(kinds["kda"].gate, _DecayGate) and kinds["kda"].gate_shape == (2, 8)
    assert isinstance(kinds["mamba2"].gate, _DecayGate) and kinds["mamba2"].gate_shape == (2,)
    assert kinds["gated_deltanet"].beta_proj is not None and kinds["deltanet"].gate is None
    assert kinds["deltanet"].l2_qk and not kinds["mamba2"].l2_qk
    assert kinds["retention"].gate is None and kinds["retention"].conv_size == 4
    assert kinds["softmax"].use_rope and kinds["softmax"].conv_size == 0
    assert kinds["linear"].options == {"feature_map": "elu1", "normalize": True}
    g = kinds["gated_deltanet"].gate(torch.randn(2, 5, 16))
    assert g.dtype == torch.float32 and (g <= 0).all()


def test_rope_is_relative():
    """q·k after RoPE depends on the position difference only."""
    q, k = torch.randn(1, 1, 1, 8).double(), torch.randn(1, 1, 1, 8).double()
    a = (rope(q, 3) * rope(k, 1)).sum()
    b = (rope(q, 10) * rope(k, 8)).sum()
    torch.testing.assert_close(a, b)


def test_mixer_bad_arguments():
    with pytest.raises(ValueError, match="unknown mechanism"):
        Mixer(16, 2, "nope")
    with pytest.raises(ValueError, match="divisible"):
        Mixer(15, 2, "softmax")
    with pytest.raises(ValueError, match="does not take"):
        Mixer(16, 2, "gla", window=4)(torch.randn(1, 4, 16))
    m = Mixer(16, 2, "softmax", causal=False)
    with pytest.raises(ValueError, match="noncausal"):
        m(torch.randn(1, 4, 16), use_cache=True)
    with pytest.raises(ValueError, match=r"\[B, T, d_model\]"):
        m(torch.randn(4, 16))


def test_lm_pattern_and_decode():
    torch.manual_seed(0)
    cfg = LMConfig(vocab_size=32, d_model=16, n_layers=4, n_heads=2, mechanism="gated_deltanet", pattern="LLLS")
    assert cfg.layer_mechanisms() == ["gated_deltanet"] * 3 + ["softmax"]
    lm = LM(cfg).double()
    ids = torch.randint(0, 32, (2, 8))
    full = lm(ids)
    stepped, _ = prefill_then_steps(lm, ids, 4)
    torch.testing.assert_close(stepped, full, atol=1e-9, rtol=1e-7)
    assert lm.state_floats(100) == 3 * 2 * 8 * 8 + 2 * 100 * 2 * 8
    with pytest.raises(ValueError, match="pattern"):
        LMConfig(pattern="LXS").layer_mechanisms()


@pytest.mark.parametrize("name", ["softmax", "gated_deltanet"])
def test_lm_trains_loss_decreases(name):
    torch.manual_seed(0)
    task = MQAR(vocab_size=16, seq_len=16, num_kv_pairs=2)
    lm = LM(LMConfig(vocab_size=16, d_model=32, n_layers=2, n_heads=2, mechanism=name))
    opt = torch.optim.AdamW(lm.parameters(), lr=1e-2)
    data = task.generate(16 * 30, seed=0)
    losses = []
    for s in range(30):
        b = data.slice(16 * s, 16 * (s + 1))
        loss = loss_fn(lm(b.inputs), b.labels)
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(loss.item())
    # the values live in [V/2, V): even that much knowledge takes the loss from ln 16 to ≤ ln 8 + a bit
    assert sum(losses[-5:]) / 5 < sum(losses[:5]) / 5 - 0.4, losses


def test_lm_regression_head():
    lm = LM(LMConfig(in_dim=5, out_dim=1, d_model=16, n_heads=2, mechanism="retention"))
    out = lm(torch.randn(2, 6, 5))
    assert out.shape == (2, 6, 1)
    labels = torch.full((2, 6), float("nan"))
    labels[:, ::2] = 1.0
    assert torch.isfinite(loss_fn(out, labels))
    with pytest.raises(ValueError, match="token ids"):
        LM(LMConfig(vocab_size=8, d_model=16, n_heads=2))(torch.randn(2, 6))


def test_output_gate_starts_open_and_conv_can_be_given_to_every_layer():
    """A recurrent Mixer's output gate starts at silu(bias) ≈ 1 (a closed gate stalls short training
    runs); LMConfig.conv_size gives dense layers the short convolution too (as Zoology's MQAR models)."""
    import torch.nn.functional as F

    from longmix.models import LM, LMConfig, Mixer

    m = Mixer(32, 2, "gla")
    assert torch.allclose(F.silu(m.out_gate_bias), torch.ones(32), atol=1e-4)
    lm = LM(LMConfig(vocab_size=16, d_model=32, n_layers=2, mechanism="softmax", conv_size=4))
    assert all(layer.mixer.conv_size == 4 for layer in lm.layers)
    assert LM(LMConfig(vocab_size=16, d_model=32, n_layers=1, mechanism="softmax")).layers[0].mixer.conv_size == 0


def test_mse_loss_is_the_mean_over_labelled_positions():
    out = torch.randn(3, 5, 1, requires_grad=True)
    labels = torch.randn(3, 5)
    labels[0, 1:] = float("nan")
    labels[2, :2] = float("nan")
    mask = ~torch.isnan(labels)
    want = F.mse_loss(out[..., 0][mask], labels[mask])
    got = loss_fn(out, labels)
    torch.testing.assert_close(got, want)
    got.backward()
    assert torch.isfinite(out.grad).all() and (out.grad[..., 0][~mask] == 0).all()


@pytest.mark.parametrize("mechanism", longmix.mechanisms())
def test_training_step_moves_nothing_between_host_and_device(mechanism):
    """After its first call a model's step must not copy between host and device, nor read a value
    back (``.item()``): either would make the CPU wait for the GPU, and CUDA-graph capture (the quality
    benchmark's training loop) refuses both. Run on the meta device, where a host tensor meeting a
    device tensor shows up as a copy and a read-back raises."""
    from torch.utils._python_dispatch import TorchDispatchMode

    copies = []

    class Spy(TorchDispatchMode):
        def __torch_dispatch__(self, func, types, args=(), kwargs=None):
            kwargs = kwargs or {}
            if func in (torch.ops.aten._to_copy.default, torch.ops.aten.copy_.default):
                if any(isinstance(a, torch.Tensor) and a.device.type == "cpu" for a in (*args, *kwargs.values())):
                    copies.append(func)
            return func(*args, **kwargs)

    lm = LM(LMConfig(vocab_size=64, d_model=32, n_layers=1, n_heads=2, mechanism=mechanism, conv_size=4)).to("meta")
    x = torch.zeros(2, 16, dtype=torch.long, device="meta")
    lm(x).sum().backward()  # the first call may make its constants on the device
    with Spy():
        loss_fn(lm(x), torch.zeros(2, 16, dtype=torch.long, device="meta")).backward()
    assert not copies, copies
