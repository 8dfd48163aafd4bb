"""Sweep the Triton kernels' tile / warp / variant tables (the ``CONFIG`` dicts) on one GPU.

    PYTHONPATH=src python benchmarks/tune_kernels.py [B T]      # default B=16 T=2048; writes $OUT/tune.jsonl

Each candidate setting is applied to its module's ``CONFIG`` and the mechanisms it affects are
timed through ``longmix.attention`` (forward and forward+backward, the speed sweep's calls, bf16,
H = 16, D = 128) with ``triton.testing.do_bench``; the default setting is timed in the same run,
the values in turn, ``ROUNDS`` times (each keeps its best), so a drifting clock favours none.
``KNOBS`` (environment): a comma list of the knobs to sweep, by key or as module.key (``_gla.bwd_warps``;
three modules have a ``bwd_warps``), default all; ``PASSES``: which of fwd, fwdbwd to time (default both);
``MECHS``: a comma list of the mechanisms to time (default each knob's own); ``CONFIG``: JSON settings applied
before the sweep (``longmix.kernels.triton.configure``, e.g. ``{"_gla": {"fwd_scaled_bh": 64}}``), the baseline
the knobs' values then change.
The table printed at the end gives, per knob, each value's time relative to the default.
"""
from __future__ import annotations

import json
import os
import sys

import torch
from triton.testing import do_bench

from longmix.bench.speed import _longmix_fns, _time_pass, make_inputs
from longmix.kernels.triton import _delta, _gla, chunk, configure

FUSED_ALL = chunk.FUSED_MODES_ALL
# (module CONFIG, key, values, mechanisms it affects); a value may be a dict of several keys set together
KNOBS = [
    (_delta.CONFIG, "uw_lowp", [False, True], ["deltanet", "kda"]),
    (chunk.CONFIG, "dqk_warps_delta", [4, 8, {"dqk_bk_delta": 128, "dqk_warps_delta": 4},
                                       {"dqk_bk_delta": 128, "dqk_warps_delta": 8}], ["deltanet", "gated_deltanet"]),
    # per-key gates (KDA) read their own pair of keys
    (chunk.CONFIG, "dqk_warps_delta_key", [4, 8, {"dqk_bk_delta_key": 128, "dqk_warps_delta_key": 4},
                                           {"dqk_bk_delta_key": 128, "dqk_warps_delta_key": 8}], ["kda"]),
    (_delta.CONFIG, "bwd_warps", [2, 4, 8], ["deltanet", "kda"]),
    # not 1: one stage miscompiles DeltaNet's bf16 reverse pass under Triton 3.6 on Hopper (see chunk.CONFIG)
    (chunk.CONFIG, "state_stages_delta", [2, 3], ["deltanet", "gated_deltanet"]),
    (chunk.CONFIG, "state_stages_delta_narrow", [2, 3, 4], ["deltanet", "gated_deltanet"]),  # V tiles of 16 (B = 1)
    # per-key gates (KDA): the forward state pass and the reverse one (2 stages each since stop 14)
    (chunk.CONFIG, "state_stages_delta_key", [1, 2, 3], ["kda"]),
    (chunk.CONFIG, "state_stages_delta_key_bwd", [1, 2, 3], ["kda"]),
    (chunk.CONFIG, "state_stages_delta_key_narrow", [2, 3], ["kda"]),  # V tiles of 16 (B = 1): time at B=1 T=128K
    # the additive / gated state passes' pipeline depth (None: Triton's default); at B = 1, T = 128K RetNet's
    # forward state pass took 1.37 ms against 4 x 0.21 at B = 16, T = 2K (2026-11-26-h100-s15/c6_profile.txt)
    (chunk.CONFIG, "state_stages", [None, 2, 3, 4, 5], ["retention", "mamba2", "linear"]),
    (chunk.CONFIG, "state_stages_key", [None, 2, 3, 4], ["gla"]),
    (chunk.CONFIG, "state_bv_delta", [32, 64], ["deltanet"]),
    # the delta rule's state tiles where B·H is 64 (B=4, T=8K): V tiles of 64 (128 programs) or 32 (256)
    (chunk.CONFIG, "state_min_programs_delta", [(128, 128, 128), (128, 256, 128), (256, 256, 256)],
     ["deltanet", "gated_deltanet", "kda"]),
    # the delta rule's reverse state pass alone (fla's dhu kernel took 0.67x the time of ours at B=16, T=2K on an
    # H100, benchmarks/results/2026-11-26-h100-s17/c1_profile_16x2k.txt)
    (chunk.CONFIG, "state_bv_delta_bwd", [16, 32, 64, {"state_bv_delta_bwd": 32, "state_stages_delta": 3},
                                          {"state_bv_delta_bwd": 32, "state_stages_delta": 4}],
     ["deltanet", "gated_deltanet"]),
    (chunk.CONFIG, "state_warps", [2, 4, 8], ["retention", "deltanet"]),
    # long single sequences (B = 1): the state passes had B·H·tiles = 256 programs of 32x32 tiles; GLA's forward
    # state pass took 0.75 ms at B=1, T=32K against ~0.35 at B=16, T=2K on an H100 (2026-11-26-h100-s14/c4_*)
    (chunk.CONFIG, "state_min_programs", [64, 128, 256, 512, 1024, {"state_min_programs": 512, "state_min_tile": 16},
                                          {"state_min_programs": 1024, "state_min_tile": 16}],
     ["linear", "retention", "gla"]),
    # ... or the state passes in segments walked in parallel (reading k and v twice), per-key gates only by default
    # (state_seg_gates); the tiles then shrink only to state_seg_tile_programs programs
    (chunk.CONFIG, "state_seg_programs", [0, 512, 1024, 2048, {"state_seg_programs": 1024, "state_seg_gates": (0, 1, 2)}],
     ["linear", "retention", "mamba2", "gla"]),
    (chunk.CONFIG, "state_seg_tile_programs", [32, 64, 128, 256], ["gla"]),
    (_gla.CONFIG, "diag_loop", [False, True, {"diag_loop": True, "fwd_bk": 32}, {"diag_loop": True, "fwd_bk": 64},
                                {"diag_loop": True, "fwd_warps": 4}], ["gla"]),
    (_gla.CONFIG, "diag_loop_keys", [False, True, {"diag_loop_keys": True, "fwd_bk": 32}], ["kda"]),
    (_delta.CONFIG, "prep_warps", [1, 2, 4, 8], ["deltanet", "gated_deltanet", "kda"]),
    # the prep's (and bwd_delta's) K / V tiles: at 2 warps fwd_prep4 holds 255 registers and spills 344-368 bytes
    # per thread for no gate / a scalar one, 292-340 at K tiles of 32, 208-292 with V tiles of 32 too (aligned
    # sm_90 compile, stop 18)
    (_delta.CONFIG, "bk", [32, 64, {"bk": 32, "bv": 32}, {"bk": 32, "prep_warps": 4}],
     ["deltanet", "gated_deltanet", "kda"]),
    (_delta.CONFIG, "prep4", [True, False], ["deltanet", "kda"]),
    # the triangular inverse's diagonal blocks: row substitution or doubling block products (fwd_prep4 was 0.45 ms
    # of DeltaNet's 0.90 ms forward on an H200 and 0.62 of KDA's 1.9 on an H100, at B=16 T=2K; its loads and
    # stores alone would take ~0.13 and ~0.28 ms at full bandwidth)
    (_delta.CONFIG, "inverse", ["substitution", "doubling", {"inverse": "doubling", "prep_warps": 1},
                                {"inverse": "doubling", "prep_warps": 4}], ["deltanet", "gated_deltanet", "kda"]),
    # the triangular inverse, then U and W in a second kernel with whole-chunk products (fla's split: its
    # kkt_solve and recompute_w_u kernels), against fwd_prep4's fused 16-row block products
    (_delta.CONFIG, "prep_split", [False, True, {"prep_split": True, "prep_warps": 1},
                                   {"prep_split": True, "prep_warps": 4}, {"prep_split": True, "uw_warps": 8},
                                   {"prep_split": True, "uw_bk": 128, "uw_bv": 128, "uw_warps": 8}],
     ["deltanet", "gated_deltanet", "kda"]),
    # the per-key-gate intra kernels (whole-chunk / 16-row-block products, see _gla): key tile and warps, forward
    # and backward; span_max -1 times the exact 3-D diagonal everywhere, as gates past span_max take it
    (_gla.CONFIG, "fwd_bk", [16, 32, 64, {"fwd_bk": 32, "fwd_warps": 4}, {"fwd_bk": 64, "fwd_warps": 4},
                             {"fwd_bk": 64, "fwd_warps": 8}], ["gla", "kda"]),
    (_gla.CONFIG, "fwd_warps", [1, 2, 4, 8], ["gla", "kda"]),
    (_gla.CONFIG, "bwd_bk", [16, 32, 64, {"bwd_bk": 32, "bwd_warps": 2}, {"bwd_bk": 32, "bwd_warps": 4},
                             {"bwd_bk": 64, "bwd_warps": 4}], ["gla", "kda"]),
    (_gla.CONFIG, "bwd_warps", [1, 2, 4], ["gla", "kda"]),
    (_gla.CONFIG, "span_max", [40.0, -1.0], ["gla", "kda"]),
    # the forward's intra matrix P stored in fp32 (False) or in the inputs' dtype (True: half its bytes)
    (_gla.CONFIG, "p_lowp", [False, True], ["gla", "kda"]),
    # q ⊙ e^G and k ⊙ e^{G_last − G} stored by fwd_A for the output kernel and the forward state pass, where sequences
    # x heads are at most fwd_scaled_bh (0: never; 1 << 20: at every shape); and Kh alone (fwd_scaled_q False: fwd_A
    # stores one tensor more, not two, and the output kernel forms q ⊙ e^G itself). sm_90 compile, B=2 T=150: KDA's
    # state pass 143 -> 80 registers and 158 -> 108 KiB of shared memory, fwd_A 148 -> 210 registers
    (_gla.CONFIG, "fwd_scaled_bh", [0, 1 << 20, {"fwd_scaled_bh": 1 << 20, "fwd_scaled_q": False}], ["gla", "kda"]),
    (chunk.CONFIG, "out_warps", [4, 8], ["retention", "gla", "kda"]),
    # the per-key output kernel (GLA, KDA) was never swept with KDA: 0.37 ms of its 1.9 ms forward at B=16, T=2K
    (chunk.CONFIG, "out_stages", [None, 2, 3, 4], ["gla", "kda"]),
    (chunk.CONFIG, "out_bv", [64, 128], ["retention", "kda"]),
    # all of K in one tile for the output kernel: its K loop of two 64-wide tiles is where RetNet's forward
    # is 1.15x fla's (benchmarks/results/2026-11-26-h200-decoder-and-forward/profile_scalar_gate.txt)
    (chunk.CONFIG, "out_bk", [64, 128, {"out_bk": 128, "out_warps": 8}], ["retention", "mamba2"]),
    (chunk.CONFIG, "bwd_warps", [4, 8], ["retention", "gla"]),
    # the one-pass inference forward: off (1 << 30 programs never reached) or on whatever the program count
    (chunk.CONFIG, "fused_min_programs", [1 << 30, 0], ["linear"]),
    # the one-pass forward for scalar gates and the delta rule too (state and output in one walk, u not stored)
    (chunk.CONFIG, "fused_modes", [{"fused_modes": FUSED_ALL},
                                   {"fused_modes": FUSED_ALL, "fused_warps_delta": 8, "fused_warps_delta_gated": 8},
                                   {"fused_modes": FUSED_ALL, "fused_bv_delta": 32},
                                   {"fused_modes": FUSED_ALL, "fused_bv_delta": 128, "fused_warps_delta": 8,
                                    "fused_warps_delta_gated": 8}],
     ["retention", "mamba2", "deltanet", "gated_deltanet"]),
    # ... and its pipeline depth (Triton's default 3 holds three sets of q, k, v (and W) tiles in shared memory:
    # one program per SM at D = 128) and warps
    (chunk.CONFIG, "fused_stages", [None, 1, 2, {"fused_stages": 2, "fused_warps": 8}], ["retention", "mamba2"]),
    (chunk.CONFIG, "fused_stages_wide", [None, 2], ["linear", "retention", "lightning", "mamba2"]),
    (chunk.CONFIG, "fused_stages_delta", [None, 1, 2, {"fused_stages_delta": 2, "fused_warps_delta_gated": 8},
                                          {"fused_stages_delta": 1, "fused_warps_delta_gated": 8},
                                          {"fused_warps_delta_gated": 8}], ["deltanet", "gated_deltanet"]),
    # ... for per-key gates too (GLA, KDA: the intra matrix from _gla.fwd_intra, then one walk), at 2 or 1 stages
    (chunk.CONFIG, "fused_stages_key", [{"fused_modes": FUSED_ALL}, {"fused_modes": FUSED_ALL + chunk.FUSED_MODES_KEY},
                                        {"fused_modes": FUSED_ALL + chunk.FUSED_MODES_KEY, "fused_stages_key": 1},
                                        {"fused_modes": FUSED_ALL + chunk.FUSED_MODES_KEY, "fused_warps_key": 8}],
     ["gla", "kda"]),
    # Gated DeltaNet's walk from the keys decayed to their chunk's end (no per-element [C, C] decay), or not
    (chunk.CONFIG, "fused_khat", [True, False, {"fused_khat": True, "fused_warps_delta_gated_khat": 8},
                                  {"fused_khat": True, "fused_stages_delta": 2}], ["gated_deltanet"]),
    (chunk.CONFIG, "strong_warps", [4, 2, 1], ["gated_deltanet"]),
    # ... its decayed keys formed by the walk itself, not stored by fwd_prep4 (0.044 of its 0.573 ms at 16x2K)
    (chunk.CONFIG, "khat_walk", [False, True], ["gated_deltanet"]),
    (_delta.CONFIG, "prep_stages", [None, 1, 2, {"prep_stages": 1, "bk": 32, "bv": 32}],
     ["deltanet", "gated_deltanet", "kda"]),
    # fwd_prep4's U and W by whole-chunk products (no spills at 2 warps, against 356-460 bytes per thread), and
    # its inverse's products in TF32 for 16-bit inputs (its IEEE float32 products were 40% of its time on an H100,
    # ncu: benchmarks/results/2026-11-26-h100-s20/)
    (_delta.CONFIG, "uw_whole", [(), (0, 1), (0, 1, 2), {"uw_whole": (0, 1, 2), "prep_warps": 4}],
     ["deltanet", "gated_deltanet", "kda"]),
    (_delta.CONFIG, "inv_tf32", [0, 2, 4], ["deltanet", "gated_deltanet", "kda"]),
    # ... below fused_min_programs (a long single sequence), the walk in segments for no gate and scalar gates:
    # never (fused_seg_gates empty: the two-kernel forward), or to that many programs, segments of at least
    # fused_seg_min_chunks chunks
    (chunk.CONFIG, "fused_seg_programs", [{"fused_seg_gates": ()}, 128, 256, 512, 1024,
                                          {"fused_seg_programs": 512, "fused_stages_wide": None},
                                          {"fused_seg_programs": 256, "fused_seg_min_chunks": 32}],
     ["linear", "retention", "lightning", "mamba2"]),
    # the training forward by the same walk, storing each chunk's entering state: never, in one pass (no segments),
    # in one pass and in segments (stop 23's call 3 timed it as train_walk 0 / 1 / 2: never, segments only, both)
    (chunk.CONFIG, "train_walk_gates", [{"train_walk_gates": (), "train_walk_seg_gates": ()},
                                        {"train_walk_gates": (0, 1), "train_walk_seg_gates": ()},
                                        {"train_walk_gates": (0, 1), "train_walk_seg_gates": (0, 1)}],
     ["linear", "retention", "lightning", "mamba2"]),
    (chunk.CONFIG, "fused_bv", [32, 64, 128], ["linear"]),
    (chunk.CONFIG, "fused_warps", [4, 8], ["linear"]),
]
ROUNDS = int(os.environ.get("ROUNDS", "3"))  # the values are timed in turn, ROUNDS times; each keeps its best
PASSES = os.environ.get("PASSES", "fwd,fwdbwd").split(",")  # which passes to time


def _label(val):
    """A knob value as a key of the timings (JSON text for a dict or a tuple)."""
    return json.dumps(val) if isinstance(val, (dict, tuple, list)) else val


def main(argv):
    B, T = (int(argv[0]), int(argv[1])) if len(argv) > 1 else (16, 2048)
    only = os.environ.get("KNOBS")  # comma list of knob names to sweep (default all)
    module = {id(chunk.CONFIG): "chunk", id(_gla.CONFIG): "_gla", id(_delta.CONFIG): "_delta"}
    out = open(os.path.join(os.environ.get("OUT", "."), "tune.jsonl"), "a")
    inputs = {}
    configure(json.loads(os.environ.get("CONFIG") or "{}"))
    print(f"{torch.cuda.get_device_name()} · B={B} T={T} H=16 D=128 bf16"
          + (f" · CONFIG={os.environ['CONFIG']}" if os.environ.get("CONFIG") else ""), flush=True)
    for cfg, key, values, mechs in KNOBS:
        knob = f"{module[id(cfg)]}.{key}"  # two modules may name a knob alike (bwd_warps)
        if only and not {key, knob} & set(only.split(",")):
            continue
        default = cfg[key]
        if default not in values:  # the ratios are to the default: time it too
            values = [default] + values
        for name in mechs:
            if os.environ.get("MECHS") and name not in os.environ["MECHS"].split(","):
                continue
            if name not in inputs:
                inputs[name] = make_inputs(name, B=B, Tq=T, Tk=T, H=16, D=128, device="cuda", dtype=torch.bfloat16)
            x = inputs[name]
            fwd = _longmix_fns(name, "triton")[0]
            times = {}
            for _ in range(ROUNDS):  # in turn, so a drifting clock does not favour one value
                for val in values:
                    setting = val if isinstance(val, dict) else {key: val}
                    saved = {n: cfg[n] for n in setting}
                    label = _label(val)
                    cfg.update(setting)
                    try:
                        t = {p: do_bench(_time_pass(fwd, None, x, p, True, "cuda", 1), warmup=25, rep=100)
                             for p in PASSES}
                        old = times.get(label, t)
                        times[label] = t if "error" in old else {p: min(t[p], old[p]) for p in t}
                    except Exception as e:  # a setting that does not compile or fit (shared memory)
                        times[label] = {"error": f"{type(e).__name__}: {str(e)[:100]}"}
                    finally:
                        cfg.update(saved)
            row = dict(knob=knob, default=default, mechanism=name, B=B, T=T, times=times)
            out.write(json.dumps(row) + "\n")
            out.flush()
            base = times.get(_label(default), {})
            cells = []
            for val, t in times.items():
                if "error" in t:
                    cells.append(f"{val}: {t['error'][:40]}")
                else:
                    cells.append(f"{val}: " + " ".join(f"{p} {t[p]:.3f} ({t[p] / base.get(p, t[p]):.2f})" for p in t))
            print(f"{knob:>26} {name:>15} | " + " | ".join(cells), flush=True)


if __name__ == "__main__":
    main(sys.argv[1:])
