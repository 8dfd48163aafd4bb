"""Selective copying (Gu & Dao 2023, "Mamba", arXiv 2312.00752, §4.1.1; after the copying
task of Arjovsky et al. 2016, arXiv 1511.06464).

A region of ``region_len`` tokens holds ``num_tokens`` data tokens (from [2, V)) at random
positions, in order, among noise tokens (0). Then ``num_tokens`` marker tokens (1) follow;
at the i-th marker the model must output the i-th data token. Only the marker positions
are scored. Unlike plain copying the data positions vary, so a time-invariant
convolution cannot solve it: the model must select by content.

Example::

    >>> b = SelectiveCopy(vocab_size=16, region_len=20, num_tokens=4).generate(1, seed=0)
    >>> data = b.inputs[0, :20][b.inputs[0, :20] >= 2]
    >>> bool((b.labels[0, 20:] == data).all()), b.inputs.shape
    (True, torch.Size([1, 24]))
"""
from __future__ import annotations

from dataclasses import dataclass

import torch

from .base import IGNORE, Batch, accuracy, check_positive, generator

NOISE, MARKER = 0, 1


@dataclass
class SelectiveCopy:
    """Copy ``num_tokens`` data tokens scattered in ``region_len`` noise tokens."""

    vocab_size: int = 16
    region_len: int = 64
    num_tokens: int = 8
    name: str = "selective_copy"

    @property
    def seq_len(self) -> int:
        return self.region_len + self.num_tokens

    def generate(self, n_examples: int, *, seed: int = 0, split: str = "train") -> Batch:
        """``n_examples`` sequences of ``region_len + num_tokens`` tokens."""
        check_positive(n_examples=n_examples, vocab_size=self.vocab_size, region_len=self.region_len,
                       num_tokens=self.num_tokens)
        if self.vocab_size < 3 or self.num_tokens > self.region_len:
            raise ValueError(f"selective copying needs vocab_size ≥ 3 and num_tokens ≤ region_len, got "
                             f"vocab_size={self.vocab_size}, num_tokens={self.num_tokens}, region_len={self.region_len}")
        gen = generator(seed, split)
        N, L, n = n_examples, self.region_len, self.num_tokens
        data = torch.randint(2, self.vocab_size, (N, n), generator=gen)
        pos = torch.rand(N, L, generator=gen).argsort(1)[:, :n].sort(1).values
        region = torch.full((N, L), NOISE, dtype=torch.long).scatter_(1, pos, data)
        inputs = torch.cat([region, torch.full((N, n), MARKER, dtype=torch.long)], 1)
        labels = torch.cat([torch.full((N, L), IGNORE, dtype=torch.long), data], 1)
        return Batch(inputs, labels, {"seq_len": L + n})

    def evaluate(self, logits, batch: Batch) -> dict:
        """Accuracy over the marker positions."""
        return accuracy(logits, batch)
