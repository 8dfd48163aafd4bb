"""What every task shares: the :class:`Batch` it generates, seeded splits and exact metrics.

A task is a small dataclass with ``name``, ``vocab_size`` (or ``in_dim``/``out_dim`` for
continuous tasks), ``generate(n, *, seed, split, **overrides) -> Batch`` and
``evaluate(outputs, batch) -> dict``. Labels mark the scored positions: int labels use
−100 for "not scored" (cross entropy's ``ignore_index``), float labels use NaN.
Train and eval splits come from disjoint generator streams of the same seed.

Example::

    >>> b = Batch(torch.zeros(1, 3, dtype=torch.long), torch.tensor([[-100, 2, -100]]))
    >>> accuracy(torch.nn.functional.one_hot(torch.tensor([[0, 2, 0]]), 4).float(), b)
    {'accuracy': 1.0, 'sequence_accuracy': 1.0}
"""
from __future__ import annotations

from dataclasses import dataclass, field

import torch

IGNORE = -100
SPLITS = ("train", "eval")


@dataclass
class Batch:
    """Inputs [N, T] (token ids) or [N, T, F] (features), labels [N, T] and task metadata."""

    inputs: torch.Tensor
    labels: torch.Tensor
    meta: dict = field(default_factory=dict)

    def to(self, device) -> "Batch":
        return Batch(self.inputs.to(device), self.labels.to(device), self.meta)

    def __len__(self) -> int:
        return self.inputs.shape[0]

    def slice(self, s: int, e: int) -> "Batch":
        return Batch(self.inputs[s:e], self.labels[s:e], self.meta)


def generator(seed: int, split: str) -> torch.Generator:
    """A CPU generator for (seed, split); train and eval never share a stream."""
    if split not in SPLITS:
        raise ValueError(f"split must be one of {SPLITS}, got {split!r}")
    if not isinstance(seed, int) or seed < 0:
        raise ValueError(f"seed must be a non-negative int, got {seed!r}")
    return torch.Generator().manual_seed(2 * seed + SPLITS.index(split))


def check_positive(**values):
    """ValueError naming the first argument that is not a positive int."""
    for name, v in values.items():
        if not isinstance(v, int) or isinstance(v, bool) or v < 1:
            raise ValueError(f"{name} must be a positive int, got {v!r}")


def accuracy(logits: torch.Tensor, batch: Batch) -> dict:
    """Token accuracy over scored positions and the fraction of sequences with all of them right."""
    labels = batch.labels.to(logits.device)
    mask = labels != IGNORE
    right = (logits.argmax(-1) == labels) & mask
    seq = (right.sum(1) == mask.sum(1)).float().mean().item()
    return {"accuracy": (right.sum() / mask.sum().clamp_min(1)).item(), "sequence_accuracy": seq}


def mse(out: torch.Tensor, batch: Batch) -> dict:
    """Mean squared error over the non-NaN labels (``out`` [N, T, 1])."""
    labels = batch.labels.to(out.device)
    mask = ~torch.isnan(labels)
    return {"mse": ((out[..., 0] - labels)[mask] ** 2).mean().item()}
