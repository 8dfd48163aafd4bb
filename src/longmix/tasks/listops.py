"""ListOps (Nangia & Bowman 2018, arXiv 1804.06028), as used by Long Range Arena
(Tay et al. 2021, arXiv 2011.04006).

Nested prefix expressions over digits 0–9 with the operators MAX, MIN, MED (the median,
``int(statistics.median)`` as LRA computes it) and SM (sum modulo 10), e.g.
``[MAX 2 9 [MIN 4 7 ] 0 ]`` = 9. Each sequence is left-padded to ``seq_len``, ends with an
``=`` token, and the label at ``=`` is the value (10 classes). Trees are grown at random
(each argument is a sub-expression with probability ``p_branch`` while depth <
``max_depth``, with 2 … ``max_args`` arguments) and rejected if they do not fit.

Tokens: PAD 0, ``=`` 1, ``]`` 2, ``[MAX`` 3, ``[MIN`` 4, ``[MED`` 5, ``[SM`` 6, digits 7–16.

Example::

    >>> evaluate_tokens([3, 7 + 2, 7 + 9, 4, 7 + 4, 7 + 7, 2, 7 + 0, 2])   # [MAX 2 9 [MIN 4 7 ] 0 ]
    9
    >>> ListOps(seq_len=64).generate(2, seed=0).inputs.shape
    torch.Size([2, 64])
"""
from __future__ import annotations

import random
import statistics
from dataclasses import dataclass

import torch

from .base import IGNORE, Batch, accuracy, check_positive, generator

PAD, EQ, CLOSE, DIGIT0 = 0, 1, 2, 7
OPS = {3: max, 4: min, 5: lambda xs: int(statistics.median(xs)), 6: lambda xs: sum(xs) % 10}
NAMES = {3: "[MAX", 4: "[MIN", 5: "[MED", 6: "[SM", CLOSE: "]", EQ: "=", PAD: "_"}


def evaluate_tokens(tokens: list[int]) -> int:
    """The value of a token list (a digit, or an operator … CLOSE expression)."""
    stack: list[list[int]] = []
    value = None
    for t in tokens:
        if t in OPS:
            stack.append([t])
        elif t == CLOSE:
            op, *args = stack.pop()
            value = OPS[op](args)
            if stack:
                stack[-1].append(value)
        elif DIGIT0 <= t < DIGIT0 + 10:
            value = t - DIGIT0
            if stack:
                stack[-1].append(value)
        else:
            raise ValueError(f"unexpected ListOps token {t}")
    if stack or value is None:
        raise ValueError("unbalanced ListOps expression")
    return value


def detokenize(tokens) -> str:
    """Readable text of a token sequence."""
    return " ".join(NAMES.get(int(t), str(int(t) - DIGIT0)) for t in tokens)


@dataclass
class ListOps:
    """ListOps expressions in ``seq_len`` tokens."""

    seq_len: int = 128
    max_depth: int = 4
    max_args: int = 5
    p_branch: float = 0.25
    name: str = "listops"
    vocab_size: int = DIGIT0 + 10

    def _tree(self, rng: random.Random, depth: int) -> list[int]:
        op = rng.choice(list(OPS))
        out = [op]
        for _ in range(rng.randint(2, self.max_args)):
            if depth < self.max_depth and rng.random() < self.p_branch:
                out += self._tree(rng, depth + 1)
            else:
                out.append(DIGIT0 + rng.randrange(10))
        return out + [CLOSE]

    def generate(self, n_examples: int, *, seed: int = 0, split: str = "train") -> Batch:
        """``n_examples`` padded expressions; label (0–9) at the final ``=``."""
        check_positive(n_examples=n_examples, seq_len=self.seq_len, max_depth=self.max_depth, max_args=self.max_args)
        if self.seq_len < 2 + self.max_args + 1:
            raise ValueError(f"ListOps needs seq_len ≥ {self.max_args + 3} for one operator, got {self.seq_len}")
        rng = random.Random(int(torch.randint(0, 2**62, (1,), generator=generator(seed, split))))
        inputs = torch.full((n_examples, self.seq_len), PAD, dtype=torch.long)
        labels = torch.full((n_examples, self.seq_len), IGNORE, dtype=torch.long)
        for i in range(n_examples):
            while True:
                toks = self._tree(rng, 1)
                if len(toks) < self.seq_len:
                    break
            inputs[i, self.seq_len - len(toks) - 1:] = torch.tensor(toks + [EQ])
            labels[i, -1] = DIGIT0 + evaluate_tokens(toks)
        return Batch(inputs, labels, {"seq_len": self.seq_len})

    def evaluate(self, logits, batch: Batch) -> dict:
        """Classification accuracy at ``=`` (chance 10 %)."""
        return accuracy(logits, batch)
