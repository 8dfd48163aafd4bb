"""Multi-query associative recall (MQAR), as defined in Zoology (Arora et al. 2023,
"Zoology: Measuring and Improving Recall in Efficient Language Models", arXiv 2312.04927).

A sequence of ``seq_len + 1`` tokens starts with ``num_kv_pairs`` key–value pairs
``k1 v1 k2 v2 …`` (distinct keys from [1, V/2), distinct values from [V/2, V)). The
rest is filled with random tokens, among which every key is queried once: the
query of pair i sits at ``2·num_kv_pairs + 2·gap_i``, the ``gap_i`` drawn without
replacement with probability ∝ gap^(a−1) (power law, ``a = power_a``; small gaps are
likely), and the token after it is its value. Inputs are the first ``seq_len`` tokens,
labels the next-token targets with −100 everywhere except at the query positions,
where the label is the queried key's value.

Example::

    >>> b = MQAR(vocab_size=64, seq_len=32, num_kv_pairs=4).generate(2, seed=0)
    >>> b.inputs.shape, int((b.labels != -100).sum(1)[0])
    (torch.Size([2, 32]), 4)
"""
from __future__ import annotations

from dataclasses import dataclass

import torch

from .base import IGNORE, Batch, accuracy, check_positive, generator


@dataclass
class MQAR:
    """MQAR with vocabulary ``vocab_size``, input length ``seq_len`` and ``num_kv_pairs`` pairs."""

    vocab_size: int = 8192
    seq_len: int = 256
    num_kv_pairs: int = 16
    power_a: float = 0.01
    name: str = "mqar"

    def check(self, seq_len=None, num_kv_pairs=None):
        T, n, V = seq_len or self.seq_len, num_kv_pairs or self.num_kv_pairs, self.vocab_size
        check_positive(vocab_size=V, seq_len=T, num_kv_pairs=n)
        if V // 2 - 1 < n:
            raise ValueError(f"MQAR needs num_kv_pairs ({n}) ≤ vocab_size/2 − 1 ({V // 2 - 1}) distinct keys")
        if T < 4 * n:
            raise ValueError(f"MQAR needs seq_len ≥ 4·num_kv_pairs (context and one query slot per pair), "
                             f"got seq_len={T}, num_kv_pairs={n}")
        return T, n, V

    def generate(self, n_examples: int, *, seed: int = 0, split: str = "train", seq_len=None, num_kv_pairs=None) -> Batch:
        """``n_examples`` MQAR sequences; ``seq_len``/``num_kv_pairs`` override the defaults."""
        T, n, V = self.check(seq_len, num_kv_pairs)
        check_positive(n_examples=n_examples)
        gen = generator(seed, split)
        N, ctx = n_examples, 2 * n
        keys = torch.rand(N, V // 2 - 1, generator=gen).argsort(1)[:, :n] + 1
        values = torch.rand(N, V - V // 2, generator=gen).argsort(1)[:, :n] + V // 2
        seq = torch.randint(0, V, (N, T + 1), generator=gen)
        seq[:, 0:ctx:2], seq[:, 1:ctx:2] = keys, values
        space = (T + 1 - ctx) // 2
        p = self.power_a * torch.arange(1, space + 1, dtype=torch.float64) ** (self.power_a - 1)
        gaps = torch.multinomial(p.expand(N, space), n, replacement=False, generator=gen)
        pos = ctx + 2 * gaps  # where each key is queried
        seq.scatter_(1, pos, keys)
        seq.scatter_(1, pos + 1, values)
        labels = torch.full((N, T + 1), IGNORE, dtype=torch.long)
        labels.scatter_(1, pos + 1, values)
        return Batch(seq[:, :-1].contiguous(), labels[:, 1:].contiguous(), {"num_kv_pairs": n, "seq_len": T})

    def evaluate(self, logits, batch: Batch) -> dict:
        """Accuracy over the query positions."""
        return accuracy(logits, batch)
