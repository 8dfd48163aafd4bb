"""The benchmark report: ``report/summary.md``, JSON rows and PNG plots, and a one-screen table.

Inputs are the row lists of ``bench.speed`` and ``bench.quality`` plus any kernel results
files in ``benchmarks/results/*.json`` (written by GPU scripts), of the form::

    {"header": {"command", "gpu", "torch", "triton", "commit"},
     "rows": [{"impl", "mechanism", "variant", "B", "T", "H", "D", "dtype", "fwd_ms", "fwdbwd_ms", "peak_gib"}]}

Plots (matplotlib, written only when it is installed): ``speed.png`` (time against T, log–log,
one panel per pass, crossover with the best SDPA backend marked), ``memory.png``,
``quality_mqar.png`` (accuracy against kv pairs and against state size),
``quality_passkey.png`` (accuracy against length), ``kernels_<file>.png``.

Example::

    >>> import json, tempfile
    >>> path = tempfile.mktemp(suffix=".json")
    >>> row = {"impl": "sdpa_cudnn", "mechanism": "softmax", "T": 4096, "fwd_ms": 1.5, "fwdbwd_ms": 5.0, "peak_gib": 0.5}
    >>> json.dump({"header": {"gpu": "H100"}, "rows": [row]}, open(path, "w"))
    >>> header, rows = load_results_file(path)
    >>> [(r["label"], r["pass"], r["ms"], r["peak_mib"]) for r in rows]
    [('sdpa_cudnn', 'fwd', 1.5, 512.0), ('sdpa_cudnn', 'fwdbwd', 5.0, 512.0)]
"""
from __future__ import annotations

import json
import math
import os
import statistics
from collections import defaultdict

from .quality import best_over_lr
from .speed import best_longmix

PASS_TITLES = {"fwd": "forward", "fwdbwd": "forward + backward", "decode": "decode step (cache / state of T)"}


def load_results_file(path: str) -> tuple[dict, list[dict]]:
    """Rows of a kernel results file, in the speed rows' schema (one row per pass). ValueError if malformed."""
    with open(path) as fh:
        data = json.load(fh)
    if not isinstance(data, dict) or "rows" not in data or not isinstance(data["rows"], list):
        raise ValueError(f"{path}: a results file is {{'header': {{...}}, 'rows': [...]}}")
    header, out = data.get("header", {}), []
    for r in data["rows"]:
        missing = [k for k in ("impl", "mechanism", "T") if k not in r]
        if missing:
            raise ValueError(f"{path}: a row lacks {', '.join(missing)}: {r}")
        for p, key in (("fwd", "fwd_ms"), ("fwdbwd", "fwdbwd_ms")):
            if r.get(key) is None:
                continue
            label = r["impl"] if r["impl"] != "longmix" else r["mechanism"]
            if r["impl"] == "fla":
                label = f"fla:{r['mechanism']}"
            out.append(dict(impl=r["impl"], mechanism=r["mechanism"], label=label + (f" ({r['variant']})" if r.get("variant") else ""),
                            pattern="causal_self", **{"pass": p}, B=r.get("B"), T=r["T"], H=r.get("H"), D=r.get("D"),
                            dtype=r.get("dtype"), ms=r[key],
                            peak_mib=None if r.get("peak_gib") is None else r["peak_gib"] * 1024, source=os.path.basename(path)))
    return header, out


def to_kernel_results(srows: list[dict], meta: dict) -> dict:
    """The kernel issue's results format from speed rows (causal self-attention, fwd and fwd+bwd):
    ``{"header": {command, gpu, torch, triton, commit}, "rows": [{impl, mechanism, variant, B, T, H, D,
    dtype, fwd_ms, fwdbwd_ms, peak_gib}]}``; ``impl`` is "longmix", "fla" or the anchor's name, the
    variant longmix's backend. ``load_results_file`` reads it back."""
    rows: dict[tuple, dict] = {}
    for r in srows:
        if r.get("pattern") != "causal_self" or r.get("pass") not in ("fwd", "fwdbwd") or "ms" not in r:
            continue
        variant = r.get("backend") if r["impl"] == "longmix" else None
        key = (r["impl"], r["mechanism"], variant, r.get("label"), r["B"], r["T"], r["H"], r["D"], r["dtype"])
        row = rows.setdefault(key, dict(impl=r["impl"], mechanism=r["mechanism"], variant=variant, B=r["B"], T=r["T"],
                                        H=r["H"], D=r["D"], dtype=r["dtype"], fwd_ms=None, fwdbwd_ms=None, peak_gib=None))
        row[f"{r['pass']}_ms"] = r["ms"]
        if r["pass"] == "fwdbwd" and r.get("peak_mib") is not None:
            row["peak_gib"] = r["peak_mib"] / 1024
    header = dict(command=meta.get("command"), gpu=meta.get("device_name"), torch=meta.get("torch"),
                  triton=meta.get("triton"), commit=meta.get("commit"))
    return {"header": header, "rows": list(rows.values())}


def load_results_dir(folder: str) -> dict[str, tuple[dict, list[dict]]]:
    """Every ``*.json`` results file in ``folder`` (missing folder: none); unreadable files are reported, not fatal."""
    out = {}
    if not os.path.isdir(folder):
        return out
    for name in sorted(os.listdir(folder)):
        if name.endswith(".json"):
            try:
                out[name] = load_results_file(os.path.join(folder, name))
            except (ValueError, OSError, json.JSONDecodeError) as e:
                out[name] = ({"error": str(e)}, [])
    return out


# ------------------------------------------------------------------------------ plots


def _plt():
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt

        return plt
    except ImportError:
        return None


ANCHOR_STYLES = {"sdpa_flash": "--", "sdpa_math": ":", "sdpa_cudnn": "-.", "sdpa_efficient": (0, (3, 1, 1, 1)),
                 "flex": (0, (5, 2)), "flash_attn": (0, (1, 1))}
MARKERS = "os^Dv<>ph*"


def _style(label: str, i: int):
    """Anchors black and dashed; mechanisms in tab10 then the light shades of tab20, a new marker every ten."""
    import matplotlib

    if label.startswith(("sdpa", "flex", "flash", "fla")):
        return dict(color="black" if not label.startswith("fla") else "dimgray",
                    linestyle=ANCHOR_STYLES.get(label, (0, (2, 2))), linewidth=1.6, marker=None)
    color = matplotlib.colormaps["tab10"](i % 10) if i % 20 < 10 else matplotlib.colormaps["tab20"](2 * (i % 10) + 1)
    return dict(color=color, linestyle="-", marker=MARKERS[(i // 10) % len(MARKERS)],
                markersize=4, linewidth=1.4)


def _series(rows, pass_, value="ms"):
    s = defaultdict(dict)
    for r in rows:
        if r.get(value) is not None and r["pass"] == pass_ and r.get("pattern", "causal_self") == "causal_self":
            s[r["label"]][r["T"]] = r[value]
    return {k: sorted(v.items()) for k, v in s.items() if v}


def plot_speed(rows, cross, path, passes=("fwd", "fwdbwd", "decode"), value="ms", ylabel="median time (ms)", title=""):
    """Time (or memory) against T, log–log, one panel per pass, crossover points marked."""
    plt = _plt()
    passes = [p for p in passes if _series(rows, p, value)]
    if plt is None or not passes:
        return None
    fig, axes = plt.subplots(1, len(passes), figsize=(6.2 * len(passes), 5.2), squeeze=False)
    labels = list(dict.fromkeys(r["label"] for r in rows if not str(r.get("impl", "")).startswith(("sdpa", "flex", "flash", "fla"))))
    for ax, p in zip(axes[0], passes):
        series = _series(rows, p, value)
        for label in [x for x in labels if x in series] + sorted(x for x in series if x not in labels):
            ax.plot(*zip(*series[label]), label=label, **_style(label, labels.index(label) if label in labels else 0))
        for c in cross:
            if c["pass"] == p and c["crossover_T"] and not c["below_range"] and value == "ms":
                pts = best_longmix(rows, p).get(c["mechanism"], {})  # labels may carry a backend: "gla[triton]"
                if not pts:
                    continue
                Ts = sorted(pts)
                lo = max([T for T in Ts if T <= c["crossover_T"]], default=Ts[0])
                hi = min([T for T in Ts if T >= c["crossover_T"]], default=Ts[-1])
                y = math.exp((math.log(pts[lo]) + math.log(pts[hi])) / 2)
                ax.plot([c["crossover_T"]], [y], marker="*", color="crimson", markersize=11, zorder=5)
        ax.set_xscale("log", base=2)
        ax.set_yscale("log")
        ax.set_xlabel("sequence length T")
        ax.set_ylabel(ylabel)
        ax.set_title(PASS_TITLES.get(p, p))
        ax.grid(True, which="both", alpha=0.25)
    h, l = axes[0][0].get_legend_handles_labels()
    if value == "ms":
        from matplotlib.lines import Line2D

        h.append(Line2D([], [], marker="*", color="crimson", linestyle="none", markersize=11))
        l.append("crossover vs best SDPA")
    fig.legend(h, l, loc="center left", bbox_to_anchor=(1.0, 0.5), fontsize=8, frameon=False)
    if title:
        fig.suptitle(title)
    fig.tight_layout()
    fig.savefig(path, dpi=110, bbox_inches="tight")
    plt.close(fig)
    return path


def _mean_by(rows, key_fn, metric):
    acc = defaultdict(list)
    for r in rows:
        if r.get(metric) is not None:
            acc[key_fn(r)].append(r[metric])
    return {k: statistics.mean(v) for k, v in acc.items()}


def plot_quality(rows, folder) -> list[str]:
    """MQAR accuracy against kv pairs and against state size; passkey accuracy against length."""
    plt = _plt()
    if plt is None:
        return []
    out = []
    rows = best_over_lr(rows)
    mq = [r for r in rows if r.get("task") == "mqar" and "accuracy" in r]
    if mq:
        fig, (a, b) = plt.subplots(1, 2, figsize=(12, 4.8))
        models = sorted({r["model"] for r in mq})
        # the recall–memory sweep: one MQAR setting at several widths, if the run made one
        sweep = [r for r in mq if not r.get("main_width", True)]
        at = {(r["setting"]["seq_len"], r["setting"]["num_kv_pairs"]) for r in sweep}
        curve = [r for r in mq if (r["setting"]["seq_len"], r["setting"]["num_kv_pairs"]) in at] if sweep else mq
        for i, m in enumerate(models):
            rs = [r for r in mq if r["model"] == m and r.get("main_width", True)]
            kv = sorted(_mean_by(rs, lambda r: r["setting"]["num_kv_pairs"], "accuracy").items())
            st = sorted(_mean_by([r for r in curve if r["model"] == m], lambda r: r["state_floats"], "accuracy").items())
            style = _style(m, i)
            if kv:
                a.plot(*zip(*kv), label=m, **style)
            if st:
                b.plot(*zip(*st), label=m, **{**style, "marker": "o", "markersize": 5,
                                              **({} if sweep else {"linestyle": "none"})})
                b.annotate(m, st[-1], textcoords="offset points", xytext=(4, 4), fontsize=7, color=style["color"])
        a.set_xscale("log", base=2)
        a.set(xlabel="key–value pairs", ylabel="MQAR accuracy", title="recall against number of pairs", ylim=(-0.02, 1.02))
        b.set_xscale("log")
        where = ", ".join(f"T={T}, {n} pairs" for T, n in sorted(at))
        b.set(xlabel="state / KV-cache floats per sequence (all layers)", ylabel="MQAR accuracy",
              title=f"recall against memory ({where}; widths swept)" if sweep else "recall against memory",
              ylim=(-0.02, 1.02))
        for ax in (a, b):
            ax.grid(True, which="both", alpha=0.25)
        fig.legend(*a.get_legend_handles_labels(), loc="center left", bbox_to_anchor=(1.0, 0.5), fontsize=8, frameon=False)
        fig.tight_layout()
        out.append(os.path.join(folder, "quality_mqar.png"))
        fig.savefig(out[-1], dpi=110, bbox_inches="tight")
        plt.close(fig)
    pk = [r for r in rows if r.get("task") == "passkey" and "accuracy" in r]
    if pk:
        fig, ax = plt.subplots(figsize=(7, 4.8))
        for i, m in enumerate(sorted({r["model"] for r in pk})):
            pts = sorted(_mean_by([r for r in pk if r["model"] == m], lambda r: r["eval_len"], "accuracy").items())
            ax.plot(*zip(*pts), label=m, **_style(m, i))
        train_len = pk[0]["train_len"]
        ax.axvline(train_len, color="gray", linestyle=":", linewidth=1)
        ax.set_xscale("log", base=2)
        ax.set(xlabel=f"eval length (trained at {train_len})", ylabel="passkey digit accuracy",
               title="length extrapolation: passkey retrieval", ylim=(-0.02, 1.02))
        ax.grid(True, which="both", alpha=0.25)
        ax.legend(fontsize=8, loc="center left", bbox_to_anchor=(1.0, 0.5), frameon=False)
        fig.tight_layout()
        out.append(os.path.join(folder, "quality_passkey.png"))
        fig.savefig(out[-1], dpi=110, bbox_inches="tight")
        plt.close(fig)
    return out
