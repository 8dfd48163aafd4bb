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

import contextlib
import math
import time
from dataclasses import dataclass, field

import torch

from .. import api
from ..models.lm import LM, LMConfig, loss_fn
from ..tasks import TASKS, TaskUnavailable
from .progress import Progress

QUICK_TASKS = ("mqar", "passkey", "selective_copy", "induction", "regression", "listops", "text")
# Zoology's MQAR uses a vocabulary of 8192 and ~10⁵ training steps; at the step budgets of this
# benchmark (thousands) no model learns it (softmax: 0.1% after 600 steps, 1.8% after 1500), so the
# full sweep uses the vocabulary of Zoology's own small example (256).
MQAR_VOCAB = 256


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
        "mqar": [(MQAR(vocab_size=MQAR_VOCAB, seq_len=T, num_kv_pairs=n), [{}])
                 for T, n in ((64, 4), (128, 8), (256, 16), (256, 32))],  # the last: the recall sweep
        "passkey": [(Passkey(seq_len=256), [{"seq_len": 256 * m} for m in (1, 2, 4, 8)])],
        "selective_copy": [(SelectiveCopy(vocab_size=16, region_len=256, num_tokens=16), [{}])],
        "induction": [(Induction(vocab_size=32, seq_len=256), [{}])],
        "regression": [(Regression(dim=8, num_points=64), [{}])],
        "listops": [(ListOps(seq_len=512, max_depth=6, max_args=6), [{}])],
        "text": [(KJVText(seq_len=512), [{}])],
    }


@dataclass
class QualityConfig:
    """One quality run. ``models``: mechanism names or ``name@PATTERN`` hybrids (default: all registered).

    ``conv_size``: width of the short convolution in every mixer, softmax included (default 4: every
    model of Zoology's MQAR set-up has a short-conv layer, and without one softmax needs ~3× the
    steps to form its induction circuit); None: recurrent layers only (the Mixer default); 0: none.
    ``lrs``: learning rates to sweep (default ``(lr,)``); reports keep each model's best, as Zoology.
    ``widths``: extra ``d_model`` values for the MQAR recall–memory sweep (Based, Zoology), run at the
    hardest MQAR setting (most pairs); the other settings run at ``d_model`` only. A width keeps the
    head dim ``d_model / n_heads`` and changes the number of heads (so the same kernels serve all).
    ``backend``: the attention backend of every layer (``"reference"`` on a GPU: no kernel compilation).
    ``workers``: training processes run at once (on a GPU several small models share it).
    ``budget_s``: start only trainings expected to end within this many seconds (judged by the
    longest finished training of the same model); the jobs left become ``skipped`` rows.
    ``cuda_graph``: on CUDA, replay each training step as one CUDA graph (see ``_train``).
    ``tf32``: on CUDA, float32 products at TF32 (``torch.set_float32_matmul_precision("high")``
    while a model trains and evaluates), as LM training usually runs; off: full float32 products.
    """

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
    conv_size: int | None = 4
    backend: str = "auto"
    lrs: tuple | None = None
    widths: tuple | None = None
    workers: int = 1
    budget_s: float | None = None
    device: str = "cpu"
    cuda_graph: bool = True
    tf32: bool = True


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
        name, pattern = parse_model(m)
        for mech in {name, *(["softmax"] if "S" in pattern else [])}:
            if cfg.backend != "auto" and cfg.backend not in api.describe(mech).backends:
                raise ValueError(f"backend {cfg.backend!r} does not run {mech} (model {m}); its backends: "
                                 f"{', '.join(api.describe(mech).backends)}")
    for name in ("steps", "batch_size", "d_model", "n_layers", "n_heads", "eval_examples", "workers"):
        v = getattr(cfg, name)
        if not isinstance(v, int) or v < 1:
            raise ValueError(f"{name} must be a positive int, got {v!r}")
    if cfg.d_model % cfg.n_heads or (cfg.d_model // cfg.n_heads) % 2:
        raise ValueError(f"d_model ({cfg.d_model}) must be n_heads ({cfg.n_heads}) × an even head dim")
    hd = cfg.d_model // cfg.n_heads
    for w in cfg.widths or ():
        if not isinstance(w, int) or w < hd or w % hd:
            raise ValueError(f"widths must be multiples of the head dim d_model/n_heads = {hd} (the sweep keeps the "
                             f"head dim and changes the number of heads), got {w!r}")
    for lr in cfg.lrs or (cfg.lr,):
        if not isinstance(lr, (int, float)) or not 0 < lr < 1:
            raise ValueError(f"learning rates must be in (0, 1), got {lr!r}")
    if cfg.budget_s is not None and not cfg.budget_s > 0:
        raise ValueError(f"budget_s must be > 0 seconds, got {cfg.budget_s!r}")
    return models


def _lr(step, total, base):
    warm = max(1, total // 10)
    if step < warm:
        return base * (step + 1) / warm
    return base * 0.5 * (1 + math.cos(math.pi * (step - warm) / max(1, total - warm)))


def train_eval(task, evals: list[dict], model: str, seed: int, cfg: QualityConfig, *, lr: float | None = None,
               d_model: int | None = None) -> list[dict]:
    """Train one model on ``task`` (at learning rate ``lr`` and width ``d_model``, default the
    config's) and return one row per eval override."""
    name, pattern = parse_model(model)
    lr, d_model = lr or cfg.lr, d_model or cfg.d_model
    torch.manual_seed(seed)
    in_dim = getattr(task, "in_dim", None)
    lm_cfg = LMConfig(vocab_size=getattr(task, "vocab_size", 1), d_model=d_model, n_layers=cfg.n_layers,
                      n_heads=d_model // (cfg.d_model // cfg.n_heads), mechanism=name, pattern=pattern, in_dim=in_dim,
                      out_dim=getattr(task, "out_dim", None), conv_size=cfg.conv_size,
                      backend=cfg.backend)
    lm = LM(lm_cfg).to(cfg.device)
    data = task.generate(cfg.steps * cfg.batch_size, seed=seed, split="train")
    train_len = data.inputs.shape[1]
    data = data.to(cfg.device)  # once: no host-to-device copy (and wait) per step
    tf32 = cfg.tf32 and str(cfg.device).startswith("cuda")
    before = torch.get_float32_matmul_precision()
    try:
        if tf32:  # float32 products on tensor cores (PyTorch's and longmix's kernels alike)
            torch.set_float32_matmul_precision("high")
        t0 = time.perf_counter()
        losses, step_ms, graphed = _train(lm, data, cfg, lr)
        train_s = time.perf_counter() - t0
        lm.eval()
        evals_out = []
        for over in evals:
            ev = task.generate(cfg.eval_examples, seed=seed, split="eval", **over)
            outs = []
            with torch.no_grad():
                for s in range(0, len(ev), 64):
                    outs.append(lm(ev.slice(s, s + 64).inputs.to(cfg.device)).float().cpu())
            evals_out.append((over, ev, torch.cat(outs)))
    finally:
        torch.set_float32_matmul_precision(before)
    rows = []
    for over, ev, out in evals_out:
        metrics = task.evaluate(out, ev)
        T = ev.inputs.shape[1]
        rows.append(dict(task=task.name, setting={**_setting(task), **over}, model=model, mechanism=name,
                         pattern=pattern, seed=seed, steps=cfg.steps, lr=lr, d_model=d_model, main_width=d_model == cfg.d_model,
                         eval_len=T, train_len=train_len,
                         state_floats=lm.state_floats(T), params=lm.num_params(), train_s=round(train_s, 2),
                         step_ms=round(step_ms, 2), cuda_graph=graphed, tf32=tf32,
                         first_loss=round(sum(losses[:5]) / len(losses[:5]), 4),
                         final_loss=round(sum(losses[-5:]) / len(losses[-5:]), 4), **metrics))
    return rows


def _train(lm: LM, data, cfg: QualityConfig, lr: float) -> tuple[list[float], float, bool | str | None]:
    """``cfg.steps`` AdamW steps on consecutive batches of ``data``; returns the losses, the time of
    a step after the first few (ms) and how the steps ran on CUDA: True (replayed as one CUDA
    graph), False (``cfg.cuda_graph`` off) or the reason capture failed (the steps then ran
    eagerly, with the same numerics); None on the CPU.

    A small model's step is a few hundred kernel launches of microseconds each, so eagerly it is
    bound by the CPU issuing them; one graph replay issues them all at once. The first steps run
    eagerly (they compile and autotune kernels), then the step is captured once and replayed with
    each batch copied into the captured input buffers and the learning rate into a device tensor."""
    cuda = str(cfg.device).startswith("cuda")
    use_graph = cuda and cfg.cuda_graph
    bs, steps = cfg.batch_size, cfg.steps
    sched = [_lr(s, steps, lr) for s in range(steps)]
    params = list(lm.parameters())
    # capturable: the step count and bias corrections stay on the device; lr a tensor so that a
    # replay reads the value copied in before it
    opt = torch.optim.AdamW(params, lr=torch.tensor(lr, device=cfg.device) if use_graph else lr,
                            weight_decay=cfg.weight_decay, betas=(0.9, 0.98), capturable=use_graph,
                            **({"foreach": True} if use_graph else {}))

    def set_lr(value):
        for group in opt.param_groups:
            if isinstance(group["lr"], torch.Tensor):
                group["lr"].fill_(value)
            else:
                group["lr"] = value

    def step(inputs, labels):
        loss = loss_fn(lm(inputs), labels)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(params, 1.0)
        opt.step()
        return loss

    def batch(i):
        return data.slice(i * bs, (i + 1) * bs)

    losses = torch.zeros(steps, device=cfg.device)  # filled on the device: no wait for the GPU per step
    lm.train()
    n_warm = min(3, steps - 1)  # the first steps compile kernels; the rest are timed on their own
    side = torch.cuda.Stream() if use_graph else None
    if side is not None:  # warm-up off the default stream, as CUDA-graph capture wants
        side.wait_stream(torch.cuda.current_stream())
    with torch.cuda.stream(side) if side is not None else contextlib.nullcontext():
        for i in range(n_warm):
            set_lr(sched[i])
            opt.zero_grad(set_to_none=True)
            b = batch(i)
            losses[i] = step(b.inputs, b.labels).detach()
    if side is not None:
        torch.cuda.current_stream().wait_stream(side)
    graph, graphed = None, (False if cuda else None)
    if use_graph and n_warm < steps:
        first = batch(n_warm)
        static_in, static_labels = first.inputs.clone(), first.labels.clone()
        opt.zero_grad(set_to_none=True)  # the captured backward writes the gradients afresh each replay
        try:
            graph = torch.cuda.CUDAGraph()
            with torch.cuda.graph(graph):
                static_loss = step(static_in, static_labels)
            graphed = True
        except Exception as e:  # something in the step cannot be captured: run it eagerly instead
            graph, graphed = None, f"capture failed, ran eagerly: {type(e).__name__}: {str(e).splitlines()[0][:120]}"
            torch.cuda.synchronize()
            opt.zero_grad(set_to_none=True)
    if cuda:
        torch.cuda.synchronize()
    t_warm = time.perf_counter()
    for i in range(n_warm, steps):
        set_lr(sched[i])
        b = batch(i)
        if graph is not None:
            static_in.copy_(b.inputs)
            static_labels.copy_(b.labels)
            graph.replay()
            losses[i] = static_loss.detach()
        else:
            opt.zero_grad(set_to_none=True)
            losses[i] = step(b.inputs, b.labels).detach()
    out = losses.float().cpu().tolist()  # waits for the last step
    step_ms = (time.perf_counter() - t_warm) * 1e3 / max(1, steps - n_warm)
    del graph
    return out, step_ms, graphed


def _setting(task) -> dict:
    from dataclasses import fields

    return {f.name: getattr(task, f.name) for f in fields(task) if f.name != "name"}


def jobs(cfg: QualityConfig, models: list[str]) -> list[tuple]:
    """Every training of ``cfg``: (task name, task, evals, model, seed, lr, d_model), widest sweep last."""
    table = sweeps(cfg.quick)
    out = []
    for t in cfg.tasks:
        for task, evals in table[t]:
            widths = [cfg.d_model]
            if t == "mqar" and task is table[t][-1][0]:  # the recall–memory sweep: the hardest setting
                widths += [w for w in cfg.widths or () if w != cfg.d_model]
            for w in widths:
                for m in models:
                    for s in cfg.seeds:
                        for lr in cfg.lrs or (cfg.lr,):
                            out.append((t, task, evals, m, s, lr, w))
    return out


def _train_job(job, cfg: QualityConfig) -> list[dict]:
    """Run one job; failures become rows (the run goes on and keeps what it measured)."""
    tname, task, evals, model, seed, lr, width = job
    try:
        return [{"job": job_key(job), **r} for r in train_eval(task, evals, model, seed, cfg, lr=lr, d_model=width)]
    except TaskUnavailable as e:
        return [_job_row(job, skipped=str(e))]
    except (RuntimeError, ValueError) as e:  # out of memory and the like
        if "out of memory" in str(e).lower() and torch.cuda.is_available():
            torch.cuda.empty_cache()
        return [_job_row(job, error=f"{type(e).__name__}: {str(e).splitlines()[0][:160]}")]


def _job_row(job, **why) -> dict:
    """The row of a training that measured nothing (``skipped=`` or ``error=`` says why)."""
    tname, task, _, model, seed, lr, width = job
    return dict(job=job_key(job), task=tname, setting=_setting(task), model=model, seed=seed, lr=lr, d_model=width, **why)


def _worker_init(counter, gpus: int):
    """Give each worker process its own GPU in turn (worker i → GPU i mod ``gpus``)."""
    with counter.get_lock():
        i = counter.value
        counter.value += 1
    if gpus > 1:
        torch.cuda.set_device(i % gpus)


def _worker_job(job, cfg):  # in a worker process: one thread per process (several share the machine)
    torch.set_num_threads(1)
    return _train_job(job, cfg)


def job_key(job) -> str:
    """A training's identity, stored in its rows (``job``) so a resumed run can skip it."""
    tname, task, _, model, seed, lr, width = job
    return f"{tname}|{_short(task)}|{model}|seed={seed}|lr={lr:g}|d={width}"


def run_quality(cfg: QualityConfig, *, progress: bool = True, on_rows=None, done: list[dict] | None = None) -> list[dict]:
    """Run every task × setting × model × seed × lr (× width for the recall sweep) of ``cfg``;
    ``on_rows(rows)`` is called after each training (to save rows as they come). Errors become
    rows with an ``error`` field; a job is started only if, judged by the longest finished training
    of its model, it should end within ``cfg.budget_s``: the others become ``skipped`` rows.
    With ``cfg.workers > 1`` trainings run in that many processes at once; rows keep job order.
    ``done``: rows of an earlier run (``bench quality --resume``); its finished trainings are kept
    and not run again (those skipped for time are)."""
    models = validate(cfg)
    earlier = [r for r in done or [] if "skipped" not in r or "time budget" not in r["skipped"]]
    finished = {r.get("job") for r in earlier}
    todo = [j for j in jobs(cfg, models) if job_key(j) not in finished]
    results: dict[int, list[dict]] = {-1: earlier}  # job index → its rows (−1: the earlier run's)
    t0 = time.perf_counter()

    def emit():
        if on_rows is not None:
            on_rows([r for i in sorted(results) for r in results[i]])

    def expected_s(job):
        """How long ``job`` should take: the longest finished training of the same model and task,
        else of the same model, else of any (a training cut off by a time limit is lost whole)."""
        tname, model = job[0], job[3]
        seen = [r for i in sorted(results) for r in results[i] if r.get("train_s")]
        for pick in (lambda r: r["model"] == model and r["task"] == tname, lambda r: r["model"] == model, lambda r: True):
            times = [r["train_s"] for r in seen if pick(r)]
            if times:
                return max(times)
        return 0.0

    def over_budget(job):
        """Start ``job`` only if it is expected to end within ``budget_s``."""
        return cfg.budget_s is not None and time.perf_counter() - t0 + expected_s(job) > cfg.budget_s

    def skipped(job):
        return [_job_row(job, skipped=f"not started: it would not end within the time budget ({cfg.budget_s:g} s)")]

    with Progress(len(todo), enabled=progress, title="quality") as bar:
        if cfg.workers == 1:
            for i, job in enumerate(todo):
                bar.step(_describe(job))
                results[i] = skipped(job) if over_budget(job) else _train_job(job, cfg)
                emit()
        else:
            import concurrent.futures as cf
            import multiprocessing as mp

            # no serial pre-compilation: on an H100 it took ~11 s per (model, width) and used whole
            # sittings; workers compile what they need into Triton's shared on-disk cache (which
            # benchmarks/gpu_bench.sh carries from one sitting to the next)
            ctx = mp.get_context("spawn")
            gpus = torch.cuda.device_count() if cfg.device == "cuda" else 0  # "cuda": spread over every visible GPU
            with cf.ProcessPoolExecutor(cfg.workers, mp_context=ctx, initializer=_worker_init,
                                        initargs=(ctx.Value("i", 0), gpus)) as pool:
                pending, nxt = {}, 0
                while nxt < len(todo) or pending:
                    while nxt < len(todo) and len(pending) < cfg.workers:
                        if over_budget(todo[nxt]):
                            results[nxt] = skipped(todo[nxt])
                        else:
                            pending[pool.submit(_worker_job, todo[nxt], cfg)] = nxt
                        nxt += 1
                    if not pending:
                        continue
                    finished, _ = cf.wait(pending, return_when=cf.FIRST_COMPLETED)
                    for f in finished:
                        i = pending.pop(f)
                        try:
                            results[i] = f.result()
                        except Exception as e:  # a worker died (killed, out of host memory): keep going
                            results[i] = [_job_row(todo[i], error=f"worker failed: {type(e).__name__}: {e}"[:200])]
                        bar.step(_describe(todo[i]))
                        emit()
    return [r for i in sorted(results) for r in results[i]]


def _describe(job) -> str:
    tname, task, _, model, seed, lr, width = job
    return f"{tname} {_short(task)} {model} d={width} lr={lr:g} s{seed}"


SCORES = (("accuracy", 1), ("mse", -1), ("bits_per_byte", -1))  # a task's metric and its sign (higher is better)


def _score(r: dict) -> float | None:
    """The row's metric, signed so that higher is better; None for a row that measured nothing."""
    return next((sign * r[m] for m, sign in SCORES if r.get(m) is not None), None)


def best_over_lr(rows: list[dict]) -> list[dict]:
    """Keep, for each task setting × eval × model × seed × width, the row of the learning rate that
    scored best on the first eval of that training (Zoology reports the best of its lr sweep)."""
    trainings: dict = {}
    for r in rows:
        if "lr" not in r or _score(r) is None:
            continue
        key = (r["task"], repr(sorted((k, v) for k, v in r["setting"].items() if k != "seq_len" or r["task"] != "passkey")),
               r["model"], r["seed"], r.get("d_model"))
        trainings.setdefault(key, {}).setdefault(r["lr"], []).append(r)
    keep = set()
    for by_lr in trainings.values():
        lr = max(by_lr, key=lambda x: _score(by_lr[x][0]))
        keep.update(id(r) for r in by_lr[lr])
    return [r for r in rows if id(r) in keep or "lr" not in r or _score(r) is None]


def _short(task) -> str:
    s = _setting(task)
    keys = [k for k in ("num_kv_pairs", "seq_len") if k in s]
    return " ".join(f"{k}={s[k]}" for k in keys)


def quick_models() -> list[str]:
    """Every registered mechanism plus one hybrid (the benchmark's default model list)."""
    return api.mechanisms() + ["gated_deltanet@LS"]


def full_models() -> list[str]:
    """Every registered mechanism plus the 3:1 Gated DeltaNet/softmax hybrid (the GPU default; 4 layers)."""
    return api.mechanisms() + ["gated_deltanet@LLLS"]


__all__ = ["QualityConfig", "run_quality", "train_eval", "sweeps", "parse_model", "quick_models", "full_models",
           "best_over_lr"]

