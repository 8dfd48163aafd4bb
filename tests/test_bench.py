"""The benchmark: speed rows on tiny CPU sizes, crossovers, FLOP counts, results files, the CLI's
clear errors, and that rows survive failures."""
import json
import os
import re

import pytest

from longmix.bench import speed
from longmix.bench.quality import QualityConfig, run_quality
from longmix.bench.report import load_results_file
from longmix.bench.speed import SpeedConfig, crossovers, flops, run_speed
from longmix.cli import main

TINY = dict(lengths=[16, 32], heads=1, head_dim=8, reps=1, memory=True)


def test_speed_rows_on_cpu():
    cfg = SpeedConfig(mechanisms=["retention", "softmax"], anchors=["sdpa_math", "sdpa_cudnn", "flash_attn", "flex"], **TINY)
    rows = run_speed(cfg, progress=False)
    ok = [r for r in rows if "ms" in r]
    key = {(r["label"], r["pattern"], r["T"], r["pass"]) for r in ok}
    for label in ("retention", "softmax", "sdpa_math"):
        for T in (16, 32):
            for p in ("fwd", "fwdbwd", "decode"):
                assert (label, "causal_self", T, p) in key
    assert all(r["ms"] > 0 and r["tokens_per_s"] > 0 and r["peak_mib"] >= 0 for r in ok)
    assert not any(r["pass"] == "decode" and r["pattern"] != "causal_self" for r in rows)
    # softmax (dense) has a FLOP count, retention does not
    assert all((r["tflops"] is not None) == (r["family"] == "dense") for r in ok)
    # recurrences have no cross form: reported, not run
    cross = [r for r in rows if r["label"] == "retention" and r["pattern"].endswith("cross")]
    assert cross and all("unsupported" in r for r in cross)
    assert any("ms" in r for r in rows if r["label"] == "softmax" and r["pattern"] == "causal_cross")
    # anchors that cannot run here are reported as missing
    for a in ("sdpa_cudnn", "flex"):
        assert all("missing" in r and "CUDA" in r["missing"] for r in rows if r["label"] == a)
    fa = [r for r in rows if r["label"] == "flash_attn"]
    assert fa and all("missing" in r for r in fa)


def test_new_mechanism_appears_by_registration():
    """The sweep iterates the registry: every registered mechanism gets rows."""
    import longmix

    impls = speed.validate(SpeedConfig(anchors=[], **TINY))
    assert {n for kind, n, _ in impls if kind == "longmix"} == set(longmix.mechanisms())


def test_crossover_interpolation():
    def rows(impl, label, times):
        return [dict(impl=impl, mechanism="m" if impl == "longmix" else "softmax", label=label, pattern="causal_self",
                     **{"pass": "fwdbwd"}, T=T, ms=ms) for T, ms in times.items()]

    base = rows("sdpa_flash", "sdpa_flash", {100: 1.0, 400: 1.0, 1600: 1.0}) + rows("sdpa_math", "sdpa_math", {100: 3, 400: 3, 1600: 3})
    (c,) = crossovers(base + rows("longmix", "m", {100: 4.0, 400: 2.0, 1600: 0.5}))
    assert c["crossover_T"] == 800 and not c["below_range"]  # ratio 2 → 0.5: log-midpoint of 400 and 1600
    (c,) = crossovers(base + rows("longmix", "m", {100: 0.5, 400: 0.5, 1600: 0.5}))
    assert c["crossover_T"] == 100 and c["below_range"]
    (c,) = crossovers(base + rows("longmix", "m", {100: 0.5, 400: 2.0, 1600: 2.0}))
    assert c["crossover_T"] is None


def test_flops():
    assert flops("dense", "noncausal_self", "fwd", 2, 8, 8, 3, 4) == 4 * 2 * 8 * 8 * 3 * 4
    assert flops("dense", "causal_self", "fwd", 2, 8, 8, 3, 4) == 4 * 2 * 8 * 8 * 3 * 4 / 2
    assert flops("dense", "causal_self", "fwdbwd", 2, 8, 8, 3, 4) == 3.5 * 4 * 2 * 8 * 8 * 3 * 4 / 2
    assert flops("delta", "causal_self", "fwd", 2, 8, 8, 3, 4) is None


@pytest.mark.parametrize("kw,match", [(dict(lengths=[0]), "lengths"), (dict(mechanisms=["nope"]), "unknown mechanism"),
                                      (dict(passes=["bwd"]), "passes"), (dict(heads=0), "heads"),
                                      (dict(dtype="fp8"), "dtype"), (dict(anchors=["xformers"]), "anchors"),
                                      (dict(backends=["trtion"]), "unknown backends")])
def test_speed_bad_config(kw, match):
    with pytest.raises(ValueError, match=match):
        speed.validate(SpeedConfig(**{**TINY, **kw}))


def test_errors_become_rows_and_later_lengths_are_skipped(monkeypatch):
    calls = []

    def boom(*a, **k):
        calls.append(1)
        raise RuntimeError("CUDA out of memory. Tried to allocate 1 GiB")

    monkeypatch.setattr(speed, "_time_pass", boom)
    rows = run_speed(SpeedConfig(mechanisms=["retention"], anchors=[], patterns=["causal_self"], passes=["fwd"], **TINY),
                     progress=False)
    assert rows[0]["error"].startswith("out of memory") and "skipped" in rows[1]
    assert len(calls) == 1


def test_cli_speed_writes_report(tmp_path, capsys):
    results = tmp_path / "results"
    results.mkdir()
    (results / "h100.json").write_text(json.dumps({
        "header": {"command": "x", "gpu": "H100", "torch": "2.8", "triton": "3.4", "commit": "abc"},
        "rows": [{"impl": "longmix", "mechanism": "gla", "variant": "chunk", "B": 8, "T": T, "H": 16, "D": 128,
                  "dtype": "bf16", "fwd_ms": T / 1000, "fwdbwd_ms": T / 300, "peak_gib": 1.0} for T in (1024, 4096)]
        + [{"impl": "sdpa_cudnn", "mechanism": "softmax", "variant": "", "B": 8, "T": T, "H": 16, "D": 128,
            "dtype": "bf16", "fwd_ms": T / 2000, "fwdbwd_ms": T / 500, "peak_gib": 0.5} for T in (1024, 4096)]}))
    out = tmp_path / "report"
    main(["bench", "speed", "--device", "cpu", "--mechanisms", "retention,softmax", "--lengths", "16,32", "--heads", "1",
          "--head-dim", "8", "--reps", "1", "--anchors", "sdpa_math", "--patterns", "causal_self",
          "--out", str(out), "--results-dir", str(results)])
    rows = json.loads((out / "speed.json").read_text())["rows"]
    # every backend of every chosen mechanism (softmax has the reference and PyTorch SDPA) and the anchors
    assert {r["label"] for r in rows} == {"retention", "softmax", "softmax[sdpa]", "sdpa_math"}
    summary = (out / "summary.md").read_text()
    assert "retention" in summary and "h100.json" in summary and "GPU kernel results" in summary
    assert os.path.exists(out / "speed.png") and os.path.exists(out / "kernels_h100.png")
    assert "which mechanism" in capsys.readouterr().out


@pytest.mark.parametrize("argv,match", [
    (["bench", "speed", "--mechanisms", "nope"], "unknown mechanism 'nope'"),
    (["bench", "speed", "--lengths", "1"], "lengths must be ints ≥ 2"),
    (["bench", "speed", "--heads", "0"], "heads must be a positive int"),
    (["bench", "quality", "--tasks", "mqar,bogus"], "unknown task"),
    (["bench", "quality", "--models", "gla@LQ"], "pattern"),
    (["bench", "quality", "--steps", "0"], "steps must be a positive int"),
])
def test_cli_bad_arguments(argv, match, tmp_path):
    with pytest.raises(SystemExit) as e:
        main(argv + ["--device", "cpu", "--out", str(tmp_path)])
    assert match in str(e.value)


def test_results_file_reader(tmp_path):
    p = tmp_path / "r.json"
    p.write_text(json.dumps({"header": {}, "rows": [{"impl": "fla", "mechanism": "gla", "T": 1024, "fwd_ms": 1.0,
                                                    "fwdbwd_ms": None, "peak_gib": 2.0}]}))
    header, rows = load_results_file(str(p))
    assert rows == [dict(impl="fla", mechanism="gla", label="fla:gla", pattern="causal_self", **{"pass": "fwd"}, B=None,
                         T=1024, H=None, D=None, dtype=None, ms=1.0, peak_mib=2048.0, source="r.json")]
    p.write_text(json.dumps({"rows": [{"impl": "fla"}]}))
    with pytest.raises(ValueError, match="lacks"):
        load_results_file(str(p))


def test_quality_tiny_run_keeps_rows_on_error(monkeypatch):
    cfg = QualityConfig(tasks=["induction", "mqar"], models=["gla"], steps=2, batch_size=4, eval_examples=8)
    import longmix.bench.quality as q

    real = q.train_eval

    def flaky(task, *a, **k):
        if task.name == "mqar":
            raise RuntimeError("out of memory")
        return real(task, *a, **k)

    monkeypatch.setattr(q, "train_eval", flaky)
    seen = []
    rows = run_quality(cfg, progress=False, on_rows=lambda r: seen.append(len(r)))
    assert rows[0]["task"] == "induction" and 0 <= rows[0]["accuracy"] <= 1 and rows[0]["state_floats"] > 0
    assert all("error" in r for r in rows[1:]) and len(rows) == 4 and seen == [1, 2, 3, 4]


def test_plot_marks_crossover_when_labels_carry_a_backend(tmp_path):
    # on a GPU the rows are labelled "mamba2[triton]"; the crossover is per mechanism (best backend)
    pytest.importorskip("matplotlib")
    from longmix.bench.report import plot_speed
    from longmix.bench.speed import crossovers

    rows = []
    for T in (1024, 4096, 16384):
        rows.append(dict(impl="longmix", mechanism="mamba2", backend="triton", label="mamba2[triton]",
                         pattern="causal_self", **{"pass": "fwdbwd"}, T=T, ms=2.0))
        rows.append(dict(impl="sdpa_cudnn", mechanism="softmax", backend="-", label="sdpa_cudnn",
                         pattern="causal_self", **{"pass": "fwdbwd"}, T=T, ms=T / 1000))
    cross = crossovers(rows)
    assert cross and 1024 < cross[0]["crossover_T"] < 4096
    assert plot_speed(rows, cross, str(tmp_path / "speed.png")) is not None
    assert (tmp_path / "speed.png").stat().st_size > 0


def test_quality_lr_sweep_widths_budget_and_resume():
    """Every lr × width job runs (widths only at the hardest MQAR setting); the report keeps the best
    lr; a spent budget leaves 'skipped' rows that a resumed run trains, and nothing twice."""
    from longmix.bench.quality import best_over_lr, jobs

    cfg = QualityConfig(tasks=["mqar"], models=["gla"], steps=2, batch_size=4, eval_examples=8, lrs=(1e-3, 3e-3),
                        widths=(32, 64), n_heads=2)
    js = jobs(cfg, ["gla"])
    hardest = max(t.num_kv_pairs for _, t, *_ in js)
    assert {(j[1].num_kv_pairs, j[6]) for j in js if j[6] == 32} == {(hardest, 32)}
    assert len(js) == (3 + 1) * 2  # three settings at d_model 64, the hardest also at 32; two lrs each
    rows = run_quality(QualityConfig(**{**cfg.__dict__, "budget_s": 1e-9}), progress=False)
    assert len(rows) == len(js) and all("time budget" in r["skipped"] for r in rows)
    rows = run_quality(cfg, progress=False, done=[dict(rows[0], job="another run", skipped="x")])
    assert len(rows) == len(js) + 1 and sum("accuracy" in r for r in rows) == len(js)
    again = run_quality(cfg, progress=False, done=rows)
    assert again == rows  # nothing left to train
    best = best_over_lr(rows)
    assert len(best) == 4 + 1  # one lr kept per training, the odd row passed through
    for b in best:
        if "accuracy" in b:
            twin = [r for r in rows if "accuracy" in r and re.sub(r"\|lr=[^|]*", "", r["job"]) == re.sub(r"\|lr=[^|]*", "", b["job"])]
            assert len(twin) == 2
            assert b["accuracy"] == max(r["accuracy"] for r in twin)


def test_speed_resume_measures_only_what_is_missing():
    cfg = SpeedConfig(mechanisms=["retention"], anchors=[], patterns=["causal_self"], passes=["fwd"], **{**TINY, "lengths": [16]})
    first = run_speed(cfg, progress=False)
    cfg2 = SpeedConfig(mechanisms=["retention"], anchors=[], patterns=["causal_self"], passes=["fwd"], **{**TINY, "lengths": [16, 32]})
    both = run_speed(cfg2, progress=False, done=first)
    assert both[: len(first)] == first and sorted(r["T"] for r in both) == [16, 32]
    # a length an earlier sitting found too slow stays skipped
    slow = [dict(first[0], ms=1e9)]
    rows = run_speed(cfg2, progress=False, done=slow)
    assert "skipped" in rows[-1] and "max_ms" in rows[-1]["skipped"]


def test_quality_backend_is_checked_against_every_layer():
    with pytest.raises(ValueError, match="does not run softmax"):
        run_quality(QualityConfig(tasks=["induction"], models=["gla@LS"], backend="triton"), progress=False)
    rows = run_quality(QualityConfig(tasks=["induction"], models=["gla@LS"], backend="reference", steps=1, batch_size=2,
                                     eval_examples=4), progress=False)
    assert "accuracy" in rows[0]


def test_speed_resume_measures_an_anchor_that_was_missing_before():
    cfg = SpeedConfig(mechanisms=["softmax"], anchors=["sdpa_math"], patterns=["causal_self"], passes=["fwd"],
                      **{**TINY, "lengths": [16]})
    rows = run_speed(cfg, progress=False)
    was_missing = [{k: v for k, v in r.items() if k != "ms"} | {"missing": "not installed"}
                   if r["label"] == "sdpa_math" else r for r in rows]
    again = run_speed(cfg, progress=False, done=was_missing)
    math_rows = [r for r in again if r["label"] == "sdpa_math"]
    assert len(math_rows) == 1 and "ms" in math_rows[0]


def _srow(impl, label, mech, T, p, ms=None, **kw):
    r = dict(impl=impl, label=label, mechanism=mech, family="decay", pattern="causal_self", T=T, B=1, H=2, D=16,
             dtype="float32", backend="triton" if impl == "longmix" else "-", **{"pass": p}, **kw)
    if ms is not None:
        r["ms"] = ms
    return r


def test_report_compares_longmix_with_the_same_mechanism_elsewhere():
    from longmix.bench.summary import _same_mechanism_table

    rows = [_srow("longmix", "gla[triton]", "gla", 2048, "fwd", 2.0), _srow("fla", "fla:gla", "gla", 2048, "fwd", 4.0),
            _srow("longmix", "gla[triton]", "gla", 2048, "fwdbwd", 6.0),
            _srow("fla", "fla:gla", "gla", 2048, "fwdbwd", error="RuntimeError: refused on Hopper"),
            _srow("fla", "fla:gla", "gla", 4096, "fwd", 1.0),  # no longmix row at 4096: not compared
            _srow("longmix", "gla[triton]", "gla", 2048, "decode", 0.2),
            _srow("fla", "fla:gla", "gla", 2048, "decode", missing="fla is not installed")]  # listed under Anchors
    table = _same_mechanism_table(rows)
    lines = [ln for ln in table.splitlines() if ln.startswith("| gla")]
    assert len(lines) == 2
    assert "| 0.50 |" in lines[0]  # 2 ms ÷ 4 ms
    assert "refused on Hopper" in lines[1]


def test_report_mqar_headline_uses_the_settings_every_model_finished():
    from longmix.bench.summary import _quality_tables, digest

    def q(model, pairs, acc):
        return dict(task="mqar", model=model, setting={"seq_len": 64, "num_kv_pairs": pairs}, accuracy=acc, lr=1e-3,
                    seed=0, eval_len=64, train_len=64, main_width=True, steps=10)
    rows = [q("a", 4, 1.0), q("a", 8, 0.0), q("b", 4, 0.5),
            dict(task="mqar", model="b", setting={"seq_len": 64, "num_kv_pairs": 8}, skipped="not started")]
    d = {x["mechanism"]: x["mqar"] for x in digest([], rows)}
    assert d == {"a": 1.0, "b": 0.5}  # b never finished 8 pairs, so a's 8-pair score is left out too
    md = "\n".join(_quality_tables(rows))
    assert "| a | 1 | 0 |" in md and "| b | 0.5 | — |" in md


def test_quality_budget_starts_only_trainings_expected_to_end_in_time(monkeypatch):
    """A training cut off by a time limit is lost whole, so once a model's training is seen to take
    100 s, a 50 s budget starts no more of that model's (nor, lacking its own, of another model's)."""
    import longmix.bench.quality as q

    calls = []

    def fake(job, cfg):
        calls.append(job[3])
        return [dict(job=q.job_key(job), task=job[0], model=job[3], train_s=100.0, accuracy=1.0)]

    monkeypatch.setattr(q, "_train_job", fake)
    cfg = QualityConfig(tasks=["mqar"], models=["gla", "retention"], steps=2, batch_size=4, budget_s=50.0)
    rows = run_quality(cfg, progress=False)
    assert calls == ["gla"]  # no estimate yet: it starts; after it, 0 + 100 s > 50 s for every job
    assert sum("skipped" in r and "would not end" in r["skipped"] for r in rows) == len(rows) - 1


def test_kernel_results_format_round_trips(tmp_path):
    """A GPU sweep's rows also go out in the kernel issue's format, which the report reads back."""
    from longmix.bench.report import load_results_file, to_kernel_results

    rows = [dict(_srow("longmix", "gla[triton]", "gla", 2048, p, ms), B=16, peak_mib=1024.0) for p, ms in (("fwd", 1.0), ("fwdbwd", 3.0))]
    rows += [dict(_srow("fla", "fla:gla", "gla", 2048, "fwd", 0.5), B=16), _srow("fla", "fla:gla", "gla", 2048, "decode", 0.1)]
    data = to_kernel_results(rows, dict(command="c", device_name="H100", torch="t", triton="3.6", commit="abc"))
    assert data["header"] == dict(command="c", gpu="H100", torch="t", triton="3.6", commit="abc")
    ours, fla = data["rows"]
    assert (ours["impl"], ours["variant"], ours["fwd_ms"], ours["fwdbwd_ms"], ours["peak_gib"]) == ("longmix", "triton", 1.0, 3.0, 1.0)
    assert (fla["impl"], fla["mechanism"], fla["fwd_ms"], fla["fwdbwd_ms"]) == ("fla", "gla", 0.5, None)
    p = tmp_path / "k.json"
    p.write_text(json.dumps(data))
    _, back = load_results_file(str(p))
    assert sorted((r["label"], r["pass"], r["ms"]) for r in back) == [("fla:gla", "fwd", 0.5), ("gla (triton)", "fwd", 1.0),
                                                                     ("gla (triton)", "fwdbwd", 3.0)]


def test_merge_two_sweeps_of_one_sitting():
    """Two GPUs' sweeps from the same earlier file: the second's own sitting gets a new number, shared rows stay one."""
    import importlib.util
    import pathlib

    spec = importlib.util.spec_from_file_location("merge_rows", pathlib.Path(__file__).parent.parent / "benchmarks" / "merge_rows.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    s1, s2a, s2b = (dict(command=c, date="d") for c in ("first", "gpu0", "gpu1"))
    old = dict(_srow("longmix", "gla[triton]", "gla", 2048, "fwd", 1.0), sitting=1)
    a = {"meta": {"sittings": [s1, s2a]}, "rows": [old, dict(_srow("longmix", "gla[triton]", "gla", 4096, "fwd", 2.0), sitting=2)]}
    b = {"meta": {"sittings": [s1, s2b]}, "rows": [old, dict(_srow("fla", "fla:gla", "gla", 2048, "fwd", 0.5), sitting=2)]}
    out = mod.merge(a, b, "cuda:1")
    assert [s["command"] for s in out["meta"]["sittings"]] == ["first", "gpu0", "gpu1"]
    assert out["meta"]["sittings"][2]["note"] == "cuda:1"
    assert sorted((r["label"], r["T"], r["sitting"]) for r in out["rows"]) == [("fla:gla", 2048, 3), ("gla[triton]", 2048, 1),
                                                                              ("gla[triton]", 4096, 2)]


def test_merge_two_quality_runs_of_one_sitting():
    """Two GPUs' quality runs resumed from one file, each with its own tasks: one row per training and eval."""
    import importlib.util
    import pathlib

    spec = importlib.util.spec_from_file_location("merge_rows", pathlib.Path(__file__).parent.parent / "benchmarks" / "merge_rows.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    s1, s2a, s2b = (dict(command=c, date="d") for c in ("first", "gpu0", "gpu1"))
    old = dict(job="mqar|a|gla", setting={"n": 4}, task="mqar", accuracy=0.9, sitting=1)
    pk = [dict(job="passkey|b|gla", setting={"seq_len": n}, task="passkey", accuracy=1.0, sitting=2) for n in (256, 512)]
    a = {"meta": {"sittings": [s1, s2a]}, "rows": [old, dict(old, job="mqar|c|gla", sitting=2)]}
    b = {"meta": {"sittings": [s1, s2b]}, "rows": [old, *pk]}
    out = mod.merge(a, b, "cuda:1")
    assert sorted((r["job"], r["setting"].get("seq_len"), r["sitting"]) for r in out["rows"]) == [
        ("mqar|a|gla", None, 1), ("mqar|c|gla", None, 2), ("passkey|b|gla", 256, 3), ("passkey|b|gla", 512, 3)]


def test_a_resumed_run_records_each_sittings_commit_and_gpu(tmp_path, monkeypatch):
    import argparse

    from longmix.bench.cli import _resume

    (tmp_path / "speed.json").write_text(json.dumps({"meta": {"command": "first", "date": "d0"}, "rows": [{"T": 1}]}))
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "1")
    meta, rows = _resume(argparse.Namespace(resume=True, out=str(tmp_path)), "speed.json",
                         dict(command="second", date="d1", commit="abc1234", device_name="H100"))
    assert meta["sittings"] == [dict(command="first", date="d0"),
                                dict(command="second", date="d1", commit="abc1234", gpu="H100 (CUDA_VISIBLE_DEVICES=1)")]
    assert rows == [{"T": 1, "sitting": 1}]


def test_speed_resume_keeps_one_row_per_measurement():
    """A row an earlier sitting skipped is measured again (or skipped again) and replaced, not repeated."""
    from longmix.bench.speed import _row_key

    cfg = SpeedConfig(mechanisms=["retention"], anchors=[], patterns=["causal_self"], passes=["fwd"], **{**TINY, "lengths": [16, 32]})
    first = run_speed(cfg, progress=False)
    earlier = [first[0], dict(first[1], skipped="too slow before", ms=None)]
    earlier[1].pop("ms")
    rows = run_speed(cfg, progress=False, done=earlier)
    assert len(rows) == 2 and len({_row_key(r) for r in rows}) == 2 and "ms" in rows[1]


def test_quality_workers_take_the_gpus_in_turn(monkeypatch):
    """With several GPUs visible, worker i trains on GPU i mod n (each worker process runs the
    initializer once)."""
    import multiprocessing as mp

    import torch

    from longmix.bench import quality

    chosen = []
    monkeypatch.setattr(torch.cuda, "set_device", chosen.append)
    counter = mp.get_context("spawn").Value("i", 0)
    for _ in range(5):
        quality._worker_init(counter, 2)
    assert chosen == [0, 1, 0, 1, 0]
    quality._worker_init(counter, 1)  # one GPU (or the CPU): nothing to choose
    assert len(chosen) == 5
