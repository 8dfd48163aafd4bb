"""The `longmix` command line: list, describe, compare (tiny sizes), and its error messages."""
import json

import pytest

import longmix
from longmix.cli import main


def test_list_names_every_mechanism(capsys):
    main(["list"])
    out = capsys.readouterr().out
    for name in longmix.mechanisms():
        assert name in out


def test_describe_prints_formula_and_inputs(capsys):
    main(["describe", "kda"])
    out = capsys.readouterr().out
    assert longmix.describe("kda").formula in out and "beta (required)" in out


def test_compare_rows_and_errors_against_parallel(tmp_path):
    path = tmp_path / "rows.json"
    main(["compare", "--lengths", "17,40", "--mechanisms", "softmax,gated_deltanet,gla", "--reps", "1",
          "--heads", "2", "--head-dim", "8", "--json", str(path)])
    rows = json.loads(path.read_text())["rows"]
    forms = {(r["mechanism"], r["T"], r["form"]) for r in rows}
    assert ("gated_deltanet", 40, "recurrent") in forms and ("softmax", 17, "chunk") in forms
    for r in rows:
        assert "error" not in r, r
        assert r["fwd_ms"] > 0 and r["fwdbwd_ms"] > 0 and r["peak_mib"] > 0
        # every form agrees with the parallel form to float32 precision
        assert r["max_err"] is not None and r["max_err"] < 1e-4, r


def test_compare_unknown_mechanism_is_a_message_not_a_traceback():
    with pytest.raises(SystemExit, match="unknown mechanism 'nope'"):
        main(["compare", "--mechanisms", "nope", "--lengths", "8"])


def test_compare_bad_lengths():
    with pytest.raises(SystemExit):
        main(["compare", "--lengths", "a,b"])
    with pytest.raises(SystemExit, match="lengths must be"):
        main(["compare", "--lengths", "0"])


def test_bench_quality_heads_option(tmp_path):
    out = tmp_path / "r"
    rc = main(["bench", "quality", "--device", "cpu", "--tasks", "induction", "--models", "gla", "--steps", "1",
               "--batch-size", "2", "--d-model", "32", "--heads", "4", "--out", str(out), "--results-dir", "/nonexistent"])
    assert rc in (0, None)
    rows = json.loads((out / "quality.json").read_text())["rows"]
    assert rows[0]["state_floats"] == 2 * 4 * 8 * 8  # 2 layers × 4 heads × (head dim 8)² floats
    with pytest.raises(SystemExit):
        main(["bench", "quality", "--heads", "3", "--d-model", "32", "--device", "cpu", "--out", str(out)])
