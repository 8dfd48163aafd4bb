"""Passkey retrieval (Mohtashami & Jaggi 2023, "Landmark Attention", arXiv 2305.16300), in tokens.

A 5-digit pass key hides at a random place in repetitive filler: ``KEY d1 … d5`` inside a
cycle of filler tokens (the paper repeats "The grass is green. The sky is blue. …"). The
sequence ends with ``QUERY d1 … d4``: at QUERY the model must emit d1, at d_i emit
d_{i+1} (five scored positions). Train short, then test at growing ``seq_len``
(``generate(..., seq_len=8 * train_len)``): length extrapolation of recall.

Tokens: digits 0–9, KEY = 10, QUERY = 11, filler 12 … 12 + ``filler_vocab`` − 1.

Example::

    >>> b = Passkey(seq_len=40).generate(1, seed=0)
    >>> key = b.labels[0][b.labels[0] != -100]
    >>> start = int((b.inputs[0] == 10).nonzero()) + 1
    >>> bool((b.inputs[0, start:start + 5] == key).all())
    True
"""
from __future__ import annotations

from dataclasses import dataclass

import torch

from .base import IGNORE, Batch, accuracy, check_positive, generator

DIGITS, KEY, QUERY, FILLER = 5, 10, 11, 12


@dataclass
class Passkey:
    """Pass-key retrieval in sequences of ``seq_len`` tokens."""

    seq_len: int = 128
    filler_vocab: int = 8
    name: str = "passkey"

    @property
    def vocab_size(self) -> int:
        return FILLER + self.filler_vocab

    def generate(self, n_examples: int, *, seed: int = 0, split: str = "train", seq_len: int | None = None) -> Batch:
        """``n_examples`` sequences of ``seq_len`` (default ``self.seq_len``) tokens."""
        T = seq_len or self.seq_len
        check_positive(n_examples=n_examples, seq_len=T, filler_vocab=self.filler_vocab)
        if T < 2 * (DIGITS + 1) + 1:
            raise ValueError(f"passkey needs seq_len ≥ {2 * (DIGITS + 1) + 1}, got {T}")
        gen = generator(seed, split)
        N = n_examples
        filler = FILLER + torch.arange(T) % self.filler_vocab
        inputs = filler.repeat(N, 1)
        keys = torch.randint(0, 10, (N, DIGITS), generator=gen)
        free = T - 2 * DIGITS - 1  # the query block takes the last DIGITS positions
        start = torch.randint(0, free, (N,), generator=gen)
        idx = start[:, None] + torch.arange(DIGITS + 1)
        inputs.scatter_(1, idx, torch.cat([torch.full((N, 1), KEY), keys], 1))
        inputs[:, T - DIGITS] = QUERY
        inputs[:, T - DIGITS + 1:] = keys[:, :-1]
        labels = torch.full((N, T), IGNORE, dtype=torch.long)
        labels[:, T - DIGITS:] = keys
        return Batch(inputs, labels, {"seq_len": T})

    def evaluate(self, logits, batch: Batch) -> dict:
        """Digit accuracy and whole-key accuracy (``sequence_accuracy``)."""
        return accuracy(logits, batch)
