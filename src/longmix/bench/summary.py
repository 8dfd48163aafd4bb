"""Write the report folder (``summary.md``, ``speed.json``, ``quality.json``, plots) and render the
one-screen terminal table. Tables are built from the same per-mechanism digest.

Example::

    >>> digest([], [])
    []
"""
from __future__ import annotations

import json
import math
import os
import statistics
from collections import defaultdict

from .quality import best_over_lr
from .report import load_results_dir, plot_quality, plot_speed, to_kernel_results
from .speed import PATTERNS, best_longmix, crossovers


def _fmt(x, unit="", digits=3):
    if x is None or (isinstance(x, float) and not math.isfinite(x)):
        return "—"
    if isinstance(x, float):
        s = f"{x:.{digits}g}"
    else:
        s = str(x)
    return s + unit


def _at_max(rows, mech, pass_, value="ms"):
    rs = [r for r in rows if r.get("mechanism") == mech and r.get("impl") == "longmix" and r["pass"] == pass_
          and r["pattern"] == "causal_self" and r.get(value) is not None]
    if not rs:
        return None, None
    T = max(r["T"] for r in rs)
    return T, min(r[value] for r in rs if r["T"] == T)


def _setting_key(r) -> str:
    return json.dumps(r.get("setting") or {}, sort_keys=True)


def _quality(qrows, model, task, metric="accuracy", eval_len_max=False, settings=None):
    """Mean ``metric`` of ``model`` on ``task`` at the main width (rows already best over lr), over
    ``settings`` (keys of ``_setting_key``) if given."""
    rs = [r for r in qrows if r.get("model") == model and r.get("task") == task and r.get(metric) is not None
          and r.get("main_width", True) and (settings is None or _setting_key(r) in settings)]
    if eval_len_max and rs:
        L = max(r["eval_len"] for r in rs)
        rs = [r for r in rs if r["eval_len"] == L]
    elif rs and "eval_len" in rs[0] and "train_len" in rs[0]:
        rs = [r for r in rs if r["eval_len"] == r["train_len"]] or rs
    return statistics.mean(r[metric] for r in rs) if rs else None


def _cross_str(c):
    """"≤128" (wins from the shortest length), "909", ">2048" (never wins in range) or None (not measured)."""
    if c is None:
        return None
    if c["crossover_T"] is None:
        return f">{c['lengths'][-1]}"
    return ("≤" if c["below_range"] else "") + str(c["crossover_T"])


def digest(srows: list[dict], qrows: list[dict]) -> list[dict]:
    """One dict per mechanism / model: speed at the longest T, crossovers, quality headline numbers."""
    cross = {(c["mechanism"], c["pass"]): c for c in crossovers(srows)}
    qrows = best_over_lr(qrows)
    names = list(dict.fromkeys([r["mechanism"] for r in srows if r.get("impl") == "longmix"] +
                               [r["model"] for r in qrows if "model" in r]))
    # MQAR's headline is the mean over the settings every model finished (a run cut short must not
    # compare one model's easy settings with another's hard ones)
    per_model = defaultdict(set)
    for r in qrows:
        if r.get("task") == "mqar" and r.get("accuracy") is not None and r.get("main_width", True):
            per_model[r["model"]].add(_setting_key(r))
    mqar_common = set.intersection(*per_model.values()) if per_model else set()
    out = []
    for n in names:
        d = {"mechanism": n}
        for p in ("fwdbwd", "decode"):
            d[f"{p}_T"], d[f"{p}_ms"] = _at_max(srows, n, p)
            d[f"{p}_cross"] = _cross_str(cross.get((n, p)))
        d["peak_mib"] = _at_max(srows, n, "fwdbwd", "peak_mib")[1]
        d["mqar"] = _quality(qrows, n, "mqar", settings=mqar_common)
        d["passkey_1x"] = _quality(qrows, n, "passkey")
        d["passkey_max"] = _quality(qrows, n, "passkey", eval_len_max=True)
        for t in ("selective_copy", "induction", "listops", "regression", "text"):
            d[t] = _quality(qrows, n, t, QUALITY_METRIC.get(t, "accuracy"))
        states = [r["state_floats"] for r in qrows if r.get("model") == n and r.get("task") == "mqar" and "state_floats" in r
                  and r.get("main_width", True)]
        d["mqar_state"] = max(states) if states else None
        out.append(d)
    return out


def render_table(srows, qrows):
    """The one-screen rich table: speed at the longest T, crossovers, memory, headline quality."""
    from rich import box
    from rich.table import Table

    d = digest(srows, qrows)
    T = max([x["fwdbwd_T"] for x in d if x["fwdbwd_T"]] or [None], key=lambda v: v or 0)
    t = Table(title=f"longmix bench — which mechanism for my length?  (times at T={_fmt(T)}; "
                    "'wins >T': faster than the best SDPA backend above that length)", title_style="bold",
              caption="ms: median time; MiB: peak fwd+bwd memory; MQAR: mean accuracy over the settings every model finished; passkey: accuracy at the "
                      "training length → longest; state: floats carried per sequence", box=box.SIMPLE_HEAD, pad_edge=False)
    for c in ("mechanism", "fwd+bwd", "wins>T", "decode", "wins>T ", "MiB", "MQAR", "passkey", "state"):
        t.add_column(c, justify="left" if c == "mechanism" else "right", no_wrap=True)

    def win(s):
        return "—" if s is None else (f"[dim]{s}" if s.startswith(">") else f"[green]{s}")

    for x in d:
        t.add_row(x["mechanism"], _fmt(x["fwdbwd_ms"]), win(x["fwdbwd_cross"]), _fmt(x["decode_ms"]),
                  win(x["decode_cross"]), _fmt(x["peak_mib"]), _fmt(x["mqar"], digits=2),
                  f"{_fmt(x['passkey_1x'], digits=2)}→{_fmt(x['passkey_max'], digits=2)}", _fmt(x["mqar_state"]))
    return t


def _md_table(header, rows):
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
    lines += ["| " + " | ".join(str(c) for c in r) + " |" for r in rows]
    return "\n".join(lines)


def _pattern_table(srows):
    cells = defaultdict(dict)
    Ts = {}
    for r in srows:
        if r["pattern"] == "causal_self" or r["pass"] == "decode":
            continue
        key = r["label"]
        Ts[r["pattern"]] = r["T"]
        c = cells[key].setdefault(r["pattern"], {})
        if "unsupported" in r:
            c["x"] = "unsupported"
        elif "missing" in r:
            c["x"] = "missing"
        elif "ms" in r:
            c[r["pass"]] = r["ms"]
    if not cells:
        return ""
    pats = [p for p in PATTERNS if p != "causal_self" and p in Ts]
    rows = []
    for label, c in cells.items():
        row = [label]
        for p in pats:
            v = c.get(p, {})
            row.append(v["x"] if "x" in v else f"{_fmt(v.get('fwd'))} / {_fmt(v.get('fwdbwd'))}")
        rows.append(row)
    head = ["implementation"] + [f"{p} (T={Ts[p]}) fwd / fwd+bwd ms" for p in pats]
    return _md_table(head, rows)


QUALITY_METRIC = {"regression": "mse", "text": "bits_per_byte"}


def _quality_tables(qrows) -> list[str]:
    """One Markdown table per task: model × setting (× eval length), best over learning rates, mean over seeds."""
    rows = best_over_lr(qrows)
    md = []
    for task in dict.fromkeys(r["task"] for r in rows if "task" in r):
        metric = QUALITY_METRIC.get(task, "accuracy")
        rs = [r for r in rows if r.get("task") == task and r.get(metric) is not None]
        if not rs:
            continue

        def col(r):
            st = dict(r.get("setting") or {})
            short = ", ".join(f"{k}={v}" for k, v in st.items() if k not in ("vocab_size", "power_a", "seq_len"))
            head = f"T={r.get('eval_len')}" + (f" (trained {r['train_len']})" if r.get("train_len") not in (None, r.get("eval_len")) else "")
            return head + (f", {short}" if short else "") + ("" if r.get("main_width", True) else f", d={r.get('d_model')}")
        cols = list(dict.fromkeys(col(r) for r in sorted(rs, key=lambda r: (not r.get("main_width", True), r.get("eval_len") or 0))))
        cells = defaultdict(lambda: defaultdict(list))
        for r in rs:
            cells[r["model"]][col(r)].append(r[metric])
        table = [[m] + [_fmt(statistics.mean(cells[m][c]), digits=3) if cells[m][c] else "—" for c in cols] for m in cells]
        md += [f"**{task}** ({metric})", "", _md_table(["model"] + cols, table), ""]
    return md


def _same_mechanism_table(srows):
    """longmix against outside implementations of the same recurrent mechanism (fla): time ratios
    longmix ÷ anchor per T and pass, below 1 where longmix is faster; errors (refusals) say so."""
    ours = {(m, T, p): ms for p in PASS_ORDER for m, times in best_longmix(srows, p).items() for T, ms in times.items()}
    rows = []
    for r in srows:
        if r.get("impl") in ("longmix", None) or r["family"] == "dense" or r["pattern"] != "causal_self":
            continue
        k = (r["mechanism"], r["T"], r["pass"])
        if k not in ours or "missing" in r:  # a missing anchor is listed once, under Anchors
            continue
        if "ms" in r:
            cell = [_fmt(ours[k]), _fmt(r["ms"]), f"{ours[k] / r['ms']:.2f}"]
        else:
            why = r.get("error") or r.get("missing") or r.get("skipped") or "—"
            cell = [_fmt(ours[k]), why[:90], "—"]
        rows.append([r["mechanism"], r["label"], r["T"], r["pass"]] + cell + [r.get("sitting", "")])
    if not rows:
        return ""
    rows.sort(key=lambda x: (x[0], x[2], PASS_ORDER.get(x[3], 9)))
    return _md_table(["mechanism", "anchor", "T", "pass", "longmix ms", "anchor ms", "longmix ÷ anchor", "sitting"], rows)


PASS_ORDER = {"fwd": 0, "fwdbwd": 1, "decode": 2}


def write_report(folder: str, srows: list[dict], qrows: list[dict], *, meta: dict, results_dir: str | None = None) -> str:
    """Write ``folder``/summary.md, speed.json, quality.json and plots; returns the summary path."""
    os.makedirs(folder, exist_ok=True)
    cross = crossovers(srows)
    for name, rows in (("speed.json", srows), ("quality.json", qrows)):
        if not rows:  # nothing measured of that kind: leave no empty file
            continue
        with open(os.path.join(folder, name), "w") as fh:
            json.dump({"meta": meta, "rows": rows, **({"crossovers": cross} if name == "speed.json" else {})}, fh, indent=1)
    if any(str(r.get("device", "")).startswith("cuda") for r in srows):  # the kernel issue's format, for benchmarks/results/
        with open(os.path.join(folder, "kernels.json"), "w") as fh:
            json.dump(to_kernel_results(srows, meta), fh, indent=1)
    md = ["# longmix benchmark", "",
          f"_{meta.get('date', '')} · `{meta.get('command', '')}` · torch {meta.get('torch', '')} · device: "
          f"{meta.get('device_name', meta.get('device', ''))}_", ""]
    d = digest(srows, qrows)
    if d:
        md += ["## At a glance", "",
               "Crossover = the sequence length above which the mechanism's best longmix backend is faster than the best "
               "PyTorch SDPA backend (causal self-attention; log–log interpolation between measured lengths).", "",
               _md_table(["mechanism", "fwd+bwd ms (T)", "fwd+bwd beats SDPA above T", "decode ms (T)",
                          "decode beats SDPA above T", "peak MiB fwd+bwd", "MQAR acc (settings all finished)", "passkey 1× / longest",
                          "sel. copy", "induction", "ListOps", "regression MSE", "text bits/byte"],
                         [[x["mechanism"], f"{_fmt(x['fwdbwd_ms'])} ({_fmt(x['fwdbwd_T'])})", _fmt(x["fwdbwd_cross"]),
                           f"{_fmt(x['decode_ms'])} ({_fmt(x['decode_T'])})", _fmt(x["decode_cross"]), _fmt(x["peak_mib"]),
                           _fmt(x["mqar"], digits=2), f"{_fmt(x['passkey_1x'], digits=2)} / {_fmt(x['passkey_max'], digits=2)}",
                           _fmt(x["selective_copy"], digits=2), _fmt(x["induction"], digits=2), _fmt(x["listops"], digits=2),
                           _fmt(x["regression"], digits=2), _fmt(x["text"], digits=3)] for x in d]), ""]
    if srows:
        s0 = next((r for r in srows if "B" in r), {})
        md += ["## Speed and memory", "",
               f"dtype {s0.get('dtype')}, H={s0.get('H')}, D={s0.get('D')}, B={'B·T fixed' if meta.get('tokens') else s0.get('B')}; "
               "median of repeated synchronised calls; memory = peak allocated beyond the inputs.", ""]
        for png, title in (("speed.png", "time"), ("memory.png", "memory")):
            if plot_speed(srows, cross, os.path.join(folder, png), value="ms" if title == "time" else "peak_mib",
                          ylabel="median time (ms)" if title == "time" else "peak memory (MiB)"):
                md += [f"![{title} against sequence length]({png})", ""]
        pt = _pattern_table(srows)
        if pt:
            md += ["### Attention patterns (CAB: causal/noncausal × self/cross)", "",
                   "Cross attention uses T/2 queries against T keys. Recurrences over one sequence have no cross form.", "", pt, ""]
        same = _same_mechanism_table(srows)
        if same:
            md += ["### Against other implementations of the same mechanism", "",
                   "longmix's best backend ÷ the anchor, same shape (below 1: longmix is faster). `sitting`: which "
                   "sitting measured the anchor row (see the header), where the run had several.", "", same, ""]
        status = {}
        for r in srows:
            if r.get("impl") != "longmix":
                status.setdefault(r["label"], r.get("missing") or "measured")
        md += ["### Anchors", "", _md_table(["anchor", "status"], sorted(status.items())), ""]
        first: dict = {}
        for r in srows:
            if r.get("first_call_s") is not None:
                first[r["label"]] = first.get(r["label"], 0.0) + r["first_call_s"]
        if first:
            md += ["### Start-up cost", "",
                   "Seconds spent in first calls (compilation, autotuning) summed over the sweep's shapes — what a "
                   "user pays once per shape and process, not included in the times above.", "",
                   _md_table(["implementation", "first calls (s)"],
                             [[k, f"{v:.1f}"] for k, v in sorted(first.items(), key=lambda kv: -kv[1])]), ""]
        tf = [r for r in srows if r.get("tflops") and r["pattern"] == "causal_self"]
        if tf:
            best = max(tf, key=lambda r: r["tflops"])
            md += [f"Highest dense-attention throughput: {best['label']} {best['pass']} at T={best['T']}: "
                   f"{best['tflops']:.3g} TFLOP/s (4·B·T²·H·D, halved when causal, ×3.5 for forward+backward).", ""]
    if qrows:
        md += ["## Long-range quality", "",
               f"Each task × model trained from scratch with the same optimiser for "
               f"{', '.join(str(x) for x in sorted({r['steps'] for r in qrows if 'steps' in r})) or '?'} steps "
               f"(AdamW, warm-up + cosine; learning rates {', '.join(f'{x:g}' for x in sorted({r['lr'] for r in qrows if 'lr' in r}))}, "
               "the best kept per model), evaluated on a held-out split; mean over seeds.", ""]
        for p in plot_quality(qrows, folder):
            md += [f"![{os.path.basename(p)}]({os.path.basename(p)})", ""]
        md += _quality_tables(qrows)
        not_run = defaultdict(list)
        for r in qrows:
            if "skipped" in r:
                not_run[r["task"]].append(r["skipped"])
        for t, whys in not_run.items():
            md += [f"- `{t}`: {len(whys)} training(s) not run: {'; '.join(sorted(set(whys)))}"]
        if not_run:
            md += [""]
    results = load_results_dir(results_dir) if results_dir else {}
    if results:
        md += ["## GPU kernel results (`benchmarks/results/`)", ""]
        for name, (header, rows) in results.items():
            md += [f"### {name}", "", "`" + json.dumps(header) + "`", ""]
            if rows:
                png = f"kernels_{os.path.splitext(name)[0]}.png"
                if plot_speed(rows, [], os.path.join(folder, png), passes=("fwd", "fwdbwd"), title=name):
                    md += [f"![{name}]({png})", ""]
    # quality trainings not run are counted above; speed rows skipped (too slow, out of memory) are listed
    problems = [r for r in srows + qrows if "error" in r or ("skipped" in r and r in srows)]
    if problems:
        md += ["## Errors and skipped measurements", ""]
        md += [f"- {r.get('label', r.get('model'))} {r.get('pattern', r.get('task'))} T={r.get('T', '')} {r.get('pass', '')}: "
               f"{r.get('error') or r.get('skipped')}" for r in problems[:60]]
        if len(problems) > 60:
            md.append(f"- … {len(problems) - 60} more in the JSON rows")
    path = os.path.join(folder, "summary.md")
    with open(path, "w") as fh:
        fh.write("\n".join(md) + "\n")
    return path
