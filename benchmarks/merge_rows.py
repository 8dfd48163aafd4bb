"""Merge the rows of a second sweep or quality run into a first (two GPUs of one machine at once,
see benchmarks/gpu_sitting.sh):

    python3 benchmarks/merge_rows.py INTO/speed.json FROM/speed.json [note]
    python3 benchmarks/merge_rows.py INTO/quality.json FROM/quality.json [note]

Rows that INTO lacks are added (FROM's rows measured in its own sittings, tagged with new sitting
numbers after INTO's); a row both have keeps the one measured last. INTO's header gains FROM's
sittings, each with ``note`` (e.g. "cuda:1, at the same time as sitting 2").
"""
import json
import sys

from longmix.bench.speed import _row_key


def row_key(r: dict):
    """A row's identity: a quality row's training (``job``) and eval setting, else a speed row's key."""
    if "job" in r:
        return r["job"], json.dumps(r.get("setting"), sort_keys=True)
    return _row_key(r)


def merge(into: dict, other: dict, note: str = "") -> dict:
    """``into`` with ``other``'s rows and sittings (both {"meta", "rows"} files of one kind)."""
    mine = into["meta"].get("sittings") or [dict(command=into["meta"].get("command"), date=into["meta"].get("date"))]
    theirs = other["meta"].get("sittings") or [dict(command=other["meta"].get("command"), date=other["meta"].get("date"))]
    known = {json.dumps(s, sort_keys=True) for s in mine}
    new = [s for s in theirs if json.dumps(s, sort_keys=True) not in known]  # sittings both files share stay one
    renumber = {theirs.index(s) + 1: len(mine) + i + 1 for i, s in enumerate(new)}
    rows = {row_key(r): r for r in into["rows"]}
    for r in other["rows"]:
        n = r.get("sitting", 1)
        if n in renumber:  # measured in a sitting of its own: it wins
            rows[row_key(r)] = {**r, "sitting": renumber[n]}
        else:
            rows.setdefault(row_key(r), r)
    meta = dict(into["meta"], sittings=mine + [dict(s, note=note) if note else s for s in new])
    return {"meta": meta, "rows": list(rows.values())}


if __name__ == "__main__":
    a, b = (json.load(open(p)) for p in sys.argv[1:3])
    out = merge(a, b, sys.argv[3] if len(sys.argv) > 3 else "")
    with open(sys.argv[1], "w") as fh:
        json.dump(out, fh, indent=1)
    print(f"{sys.argv[1]}: {len(out['rows'])} rows, {len(out['meta']['sittings'])} sittings")
