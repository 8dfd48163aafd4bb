"""In-context linear regression (Garg et al. 2022, "What Can Transformers Learn In-Context?",
arXiv 2208.01066).

Each sequence draws w ~ N(0, I_d) and points x_i ~ N(0, I_d), y_i = w·x_i. Tokens are
(d + 1)-dim vectors alternating ``[x_i, 0]`` and ``[0, …, 0, y_i]``; at each x-token the
model predicts y_i from the pairs before it. Metric: mean squared error over the x-tokens
divided by d (predicting 0 scores about 1; the least-squares optimum reaches 0 once
i > d). Labels are NaN where unscored.

Example::

    >>> b = Regression(dim=4, num_points=8).generate(2, seed=0)
    >>> b.inputs.shape, int((~b.labels.isnan()).sum())
    (torch.Size([2, 16, 5]), 16)
"""
from __future__ import annotations

from dataclasses import dataclass

import torch

from .base import Batch, check_positive, generator, mse


@dataclass
class Regression:
    """Linear regression in context: ``num_points`` (x, y) pairs of dimension ``dim``."""

    dim: int = 8
    num_points: int = 32
    name: str = "regression"

    @property
    def in_dim(self) -> int:
        return self.dim + 1

    out_dim = 1

    @property
    def seq_len(self) -> int:
        return 2 * self.num_points

    def generate(self, n_examples: int, *, seed: int = 0, split: str = "train") -> Batch:
        """``n_examples`` sequences of ``2·num_points`` tokens."""
        check_positive(n_examples=n_examples, dim=self.dim, num_points=self.num_points)
        gen = generator(seed, split)
        N, n, d = n_examples, self.num_points, self.dim
        w = torch.randn(N, d, 1, generator=gen)
        x = torch.randn(N, n, d, generator=gen)
        y = (x @ w)[..., 0]
        inputs = torch.zeros(N, 2 * n, d + 1)
        inputs[:, 0::2, :d] = x
        inputs[:, 1::2, d] = y
        labels = torch.full((N, 2 * n), float("nan"))
        labels[:, 0::2] = y
        return Batch(inputs, labels, {"seq_len": 2 * n})

    def evaluate(self, out, batch: Batch) -> dict:
        """MSE / dim over the x-tokens."""
        return {"mse": mse(out, batch)["mse"] / self.dim}
