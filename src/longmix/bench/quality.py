"""``longmix bench quality``: what each mechanism can learn, on tasks with exact metrics.

Every (task setting × model × seed) trains a fresh :class:`~longmix.models.LM` for a fixed
number of steps with the same optimiser (AdamW, linear warm-up then cosine decay), on
fresh batches from the task's train split, then evaluates on its eval split. A model is a
mechanism name (every layer uses it) or ``name@PATTERN`` for a hybrid with softmax layers,
e.g. ``gated_deltanet@LLLS``. Rows are dicts: task, setting, model, seed, metrics,
``state_floats`` (recurrent state or KV cache carried per sequence at the eval length, all
layers), parameters, training time.

Settings swept per task (``SWEEPS``): MQAR over the number of key–value pairs (the
recall–memory trade-off: accuracy against ``state_floats``); passkey trained at one length
and evaluated at 1×, 2×, 4×, 8× that length; every other task at one setting.

Example::

    >>> cfg = QualityConfig(tasks=["induction"], models=["gla"], steps=2, batch_size=4, eval_examples=8)
    >>> rows = run_quality(cfg, progress=False)
    >>> rows[0]["task"], rows[0]["model"], "accuracy" in rows[0]
    ('induction', 'gla', True)
"""
from __future__ import annotations

import math
import time
from dataclasses import dataclass, field

import torch

from .. import api
from ..models.lm import LM, LMConfig, loss_fn
from ..tasks import TASKS, TaskUnavailable
from .progress import Progress

QUICK_TASKS = ("mqar", "passkey", "selective_copy", "induction", "regression", "listops", "text")


def sweeps(quick: bool) -> dict:
    """Task name → list of (train task, eval overrides list). Quick sizes run on a CPU in minutes."""
    from ..tasks import MQAR, Induction, KJVText, ListOps, Passkey, Regression, SelectiveCopy

    if quick:
        return {
            "mqar": [(MQAR(vocab_size=32, seq_len=32, num_kv_pairs=n), [{}]) for n in (2, 4, 8)],
            "passkey": [(Passkey(seq_len=32), [{"seq_len": 32 * m} for m in (1, 2, 4, 8)])],
            "selective_copy": [(SelectiveCopy(vocab_size=16, region_len=32, num_tokens=4), [{}])],
            "induction": [(Induction(vocab_size=16, seq_len=32), [{}])],
            "regression": [(Regression(dim=4, num_points=16), [{}])],
            "listops": [(ListOps(seq_len=48, max_depth=2, max_args=4), [{}])],
            "text": [(KJVText(seq_len=64), [{}])],
        }
    return {
        "mqar": [(MQAR(vocab_size=8192, seq_len=T, num_kv_pairs=n), [{}])
                 for T, n in ((64, 4), (128, 8), (256, 16), (512, 32), (512, 64))],
        "passkey": [(Passkey(seq_len=256), [{"seq_len": 256 * m} for m in (1, 2, 4, 8)])],
        "selective_copy": [(SelectiveCopy(vocab_size=16, region_len=256, num_tokens=16), [{}])],
        "induction": [(Induction(vocab_size=32, seq_len=256), [{}])],
        "regression": [(Regression(dim=8, num_points=64), [{}])],
        "listops": [(ListOps(seq_len=512, max_depth=6, max_args=6), [{}])],
        "text": [(KJVText(seq_len=512), [{}])],
    }


@dataclass
class QualityConfig:
    """One quality run. ``models``: mechanism names or ``name@PATTERN`` hybrids (default: all registered)."""

    tasks: list = field(default_factory=lambda: list(QUICK_TASKS))
    models: list | None = None
    seeds: tuple = (0,)
    quick: bool = True
    steps: int = 150
    batch_size: int = 32
    lr: float = 3e-3
    weight_decay: float = 0.1
    d_model: int = 64
    n_layers: int = 2
    n_heads: int = 2
    eval_examples: int = 256
    device: str = "cpu"


def parse_model(spec: str) -> tuple[str, str]:
    """``"gla"`` → ("gla", "L"); ``"gated_deltanet@LLLS"`` → ("gated_deltanet", "LLLS"); validates the name."""
    if not isinstance(spec, str) or not spec:
        raise ValueError(f"a model is a mechanism name or name@PATTERN, got {spec!r}")
    name, _, pattern = spec.partition("@")
    api.describe(name)
    pattern = pattern or "L"
    LMConfig(pattern=pattern).layer_mechanisms()  # validates the letters
    return name, pattern


def validate(cfg: QualityConfig) -> list[str]:
    """Check a config before anything trains; returns the model specs. Raises ValueError naming the bad field."""
    unknown = [t for t in cfg.tasks if t not in TASKS]
    if unknown:
        raise ValueError(f"unknown task(s) {', '.join(unknown)}; tasks are: {', '.join(TASKS)}")
    models = list(cfg.models) if cfg.models else api.mechanisms()
    for m in models:
        parse_model(m)
    for name in ("steps", "batch_size", "d_model", "n_layers", "n_heads", "eval_examples"):
        v = getattr(cfg, name)
        if not isinstance(v, int) or v < 1:
            raise ValueError(f"{name} must be a positive int, got {v!r}")
    if cfg.d_model % cfg.n_heads or (cfg.d_model // cfg.n_heads) % 2:
        raise ValueError(f"d_model ({cfg.d_model}) must be n_heads ({cfg.n_heads}) × an even head dim")
    return models


def _lr(step, total, base):
    warm = max(1, total // 10)
    if step < warm:
        return base * (step + 1) / warm
    return base * 0.5 * (1 + math.cos(math.pi * (step - warm) / max(1, total - warm)))


def train_eval(task, evals: list[dict], model: str, seed: int, cfg: QualityConfig) -> list[dict]:
    """Train one model on ``task`` and return one row per eval override."""
    name, pattern = parse_model(model)
    torch.manual_seed(seed)
    in_dim = getattr(task, "in_dim", None)
    lm_cfg = LMConfig(vocab_size=getattr(task, "vocab_size", 1), d_model=cfg.d_model, n_layers=cfg.n_layers,
                      n_heads=cfg.n_heads, mechanism=name, pattern=pattern, in_dim=in_dim,
                      out_dim=getattr(task, "out_dim", None))
    lm = LM(lm_cfg).to(cfg.device)
    opt = torch.optim.AdamW(lm.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay, betas=(0.9, 0.98))
    data = task.generate(cfg.steps * cfg.batch_size, seed=seed, split="train")
    t0 = time.perf_counter()
    lm.train()
    losses = []
    for step in range(cfg.steps):
        b = data.slice(step * cfg.batch_size, (step + 1) * cfg.batch_size).to(cfg.device)
        for group in opt.param_groups:
            group["lr"] = _lr(step, cfg.steps, cfg.lr)
        loss = loss_fn(lm(b.inputs), b.labels)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(lm.parameters(), 1.0)
        opt.step()
        losses.append(loss.item())
    train_s = time.perf_counter() - t0
    lm.eval()
    rows = []
    for over in evals:
        ev = task.generate(cfg.eval_examples, seed=seed, split="eval", **over)
        outs = []
        with torch.no_grad():
            for s in range(0, len(ev), 64):
                outs.append(lm(ev.slice(s, s + 64).inputs.to(cfg.device)).float().cpu())
        metrics = task.evaluate(torch.cat(outs), ev)
        T = ev.inputs.shape[1]
        rows.append(dict(task=task.name, setting={**_setting(task), **over}, model=model, mechanism=name,
                         pattern=pattern, seed=seed, steps=cfg.steps, eval_len=T, train_len=data.inputs.shape[1],
                         state_floats=lm.state_floats(T), params=lm.num_params(), train_s=round(train_s, 2),
                         first_loss=round(sum(losses[:5]) / len(losses[:5]), 4),
                         final_loss=round(sum(losses[-5:]) / len(losses[-5:]), 4), **metrics))
    return rows


def _setting(task) -> dict:
    from dataclasses import fields

    return {f.name: getattr(task, f.name) for f in fields(task) if f.name != "name"}


def run_quality(cfg: QualityConfig, *, progress: bool = True, on_rows=None) -> list[dict]:
    """Run every task × setting × model × seed of ``cfg``; ``on_rows(rows)`` is called after each
    training (to save rows as they come). Errors become rows with an ``error`` field."""
    models = validate(cfg)
    table = sweeps(cfg.quick)
    jobs = [(t, task, evals, m, s) for t in cfg.tasks for task, evals in table[t] for m in models for s in cfg.seeds]
    rows: list[dict] = []
    with Progress(len(jobs), enabled=progress, title="quality") as bar:
        for tname, task, evals, model, seed in jobs:
            bar.step(f"{tname} {_short(task)} {model} seed {seed}")
            try:
                rows += train_eval(task, evals, model, seed, cfg)
            except TaskUnavailable as e:
                rows.append(dict(task=tname, model=model, seed=seed, skipped=str(e)))
            except (RuntimeError, ValueError) as e:  # out of memory and the like: keep going, keep the rows
                if "out of memory" in str(e).lower() and torch.cuda.is_available():
                    torch.cuda.empty_cache()
                rows.append(dict(task=tname, setting=_setting(task), model=model, seed=seed,
                                 error=f"{type(e).__name__}: {str(e).splitlines()[0][:160]}"))
            if on_rows is not None:
                on_rows(rows)
    return rows


def _short(task) -> str:
    s = _setting(task)
    keys = [k for k in ("num_kv_pairs", "seq_len") if k in s]
    return " ".join(f"{k}={s[k]}" for k in keys)


def quick_models() -> list[str]:
    """Every registered mechanism plus one hybrid (the benchmark's default model list)."""
    return api.mechanisms() + ["gated_deltanet@LS"]


__all__ = ["QualityConfig", "run_quality", "train_eval", "sweeps", "parse_model", "quick_models"]
