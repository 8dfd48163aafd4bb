"""Induction heads (Olsson et al. 2022, "In-context Learning and Induction Heads",
arXiv 2209.11895), in the single-query form of H3 (Fu et al. 2023, arXiv 2212.14052).

Random tokens from [1, V); a trigger token (0) appears once at a random position, followed
by a target token; the sequence ends with the trigger again, and the model must output the
target (the one scored position, the last).

Example::

    >>> b = Induction(vocab_size=16, seq_len=32).generate(1, seed=0)
    >>> p = int((b.inputs[0, :-1] == 0).nonzero())
    >>> int(b.inputs[0, -1]), int(b.labels[0, -1]) == int(b.inputs[0, p + 1])
    (0, True)
"""
from __future__ import annotations

from dataclasses import dataclass

import torch

from .base import IGNORE, Batch, accuracy, check_positive, generator

TRIGGER = 0


@dataclass
class Induction:
    """Recall the token that followed the trigger, ``seq_len`` tokens of vocabulary ``vocab_size``."""

    vocab_size: int = 16
    seq_len: int = 64
    name: str = "induction"

    def generate(self, n_examples: int, *, seed: int = 0, split: str = "train", seq_len: int | None = None) -> Batch:
        """``n_examples`` sequences of ``seq_len`` tokens."""
        T = seq_len or self.seq_len
        check_positive(n_examples=n_examples, seq_len=T, vocab_size=self.vocab_size)
        if T < 4 or self.vocab_size < 3:
            raise ValueError(f"induction needs seq_len ≥ 4 and vocab_size ≥ 3, got {T}, {self.vocab_size}")
        gen = generator(seed, split)
        N = n_examples
        inputs = torch.randint(1, self.vocab_size, (N, T), generator=gen)
        pos = torch.randint(0, T - 3, (N,), generator=gen)
        inputs.scatter_(1, pos[:, None], TRIGGER)
        inputs[:, -1] = TRIGGER
        labels = torch.full((N, T), IGNORE, dtype=torch.long)
        labels[:, -1] = inputs.gather(1, pos[:, None] + 1)[:, 0]
        return Batch(inputs, labels, {"seq_len": T})

    def evaluate(self, logits, batch: Batch) -> dict:
        """Accuracy at the final trigger."""
        return accuracy(logits, batch)
