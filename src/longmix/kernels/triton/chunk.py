"""Triton chunkwise kernels for the shared recurrence, with forward and backward.

    S_t = (I − β_t k_t k_tᵀ) diag(e^{g_t}) S_{t-1} + β_t k_t v_tᵀ,   o_t = S_tᵀ q_t

Same signature and results as ``longmix.kernels.reference.chunk.chunk`` (its
docstring derives the chunkwise math). Pipeline, for ``beta=None``:

1. chunk-local cumulative log-gate ``G`` (fp32, ``_cumsum``);
2. ``_state.fwd_states``: states entering each chunk ``h[n]`` and the final state
   (fp32 accumulation, sequential over chunks, parallel over B·H and K/V tiles; where few sequences
   leave the GPU idle, per-key gates walk segments of each sequence in parallel, ``_state_plan``);
3. (per-key gates) ``_gla.fwd_intra``: the intra-chunk matrix ``P`` (whole-chunk or 16-row-block products);
4. ``_output.fwd_output``: ``o = (q ⊙ e^G) h[n] + P v``.

Without gradients, a mode in ``CONFIG["fused_modes"]`` (no gate or a scalar one, with or without the delta
rule; per-key gates too where ``FUSED_MODES_KEY`` is added, after step 3) and enough batch·heads to fill the
GPU (``_fused``), steps 2 and 4 (and the delta rule's u) are one walk over the chunks with the state in
registers (``_output.fwd_fused``): nothing per chunk is stored. Where too few batch·heads would leave the GPU
idle, no gate and scalar gates walk segments of each sequence in parallel from entering states folded from the
segments' ends (``_fused_segments``). With gradients, the same walk also stores each h[n] for the backward in
place of steps 2 and 4 for the gates ``train_walk_gates`` / ``train_walk_seg_gates`` list (``_train_walk``).

Backward: ``_state.bwd_states`` (dh, reverse), ``_output.bwd_dv``, ``_output.bwd_dqk``
(and ``_gla.bwd_intra`` for per-key gates), then ∂L/∂g = reverse chunk-local cumsum
of ∂L/∂G.

Delta rule (``beta`` given; ``_delta``): before step 2, ``_delta.prep`` solves each chunk's
triangular system for ``U, W`` (per-key gates: its key-key matrix from ``_gla.fwd_intra(k, k)``);
step 2 runs with ``DELTA`` and also writes ``u = U − W h[n]``, which step 4 reads instead of v.
Backward: ``bwd_dv`` gives ``Pᵀ dO``, the reverse state pass turns it into ``du``, ``bwd_dqk``
(v → u) gives dq and part of dk, dG, and ``dW = du h[n]ᵀ``, and ``_delta.backward`` the rest plus
dv and dβ.

Inputs fp16/bf16/fp32 (fp32 products are IEEE unless ``torch.set_float32_matmul_precision``
allows TF32, see ``_prec``); states and
gate cumsums fp32; per-chunk states are stored in the input dtype for the tensor cores.

Example (GPU, or CPU with ``TRITON_INTERPRET=1``)::

    >>> o, S = chunk(q, k, v, g=g)             # doctest: +SKIP
"""
from __future__ import annotations

import os

import torch

from . import _delta, _gla, _interp, _output, _state
from ._cumsum import chunk_cumsum
from ._host import cdiv
from ._varlen import Chunks, chunks as chunk_map, documents

_interp.apply()

# every (gate, delta rule) mode the one-pass forward can serve: gate 0 (none) or 1 (scalar), with or without β
FUSED_MODES_ALL = ((0, False), (1, False), (0, True), (1, True))
# ... and per-key gates (GLA, KDA), which read their intra-chunk matrix from _gla.fwd_intra: not in the default
# fused_modes (they passed tests/test_cuda.py on a GPU but were slower than the two-kernel path; CONFIG below)
FUSED_MODES_KEY = ((2, False), (2, True))

# Tile sizes and warps; benchmarks may edit this table.
# state_bv_delta 64 (from 32): DeltaNet and KDA forward+backward 0.93–0.94× on an H200 (B=16, T=2K;
# benchmarks/results/2026-11-25-h200-kernel-tune.jsonl).
# state_min_programs: the sequential state kernels shrink their K/V tiles (down to state_min_tile) until
# B·H·tiles reaches this many programs, so long single sequences still fill the GPU.
# state_seg_programs: where B·H·tiles of a state pass with a gate in state_seg_gates (never the delta rule or
# packed documents) stay below this many programs, the pass splits each sequence into segments of at least
# state_seg_min_chunks chunks, walked in parallel (``_state``: one launch for the segments' ends, one for the
# states); 0: never. Segments run only where the tiles, shrunk to no fewer than state_seg_tile_programs programs
# (64: 64x64 tiles at B·H = 16), give fewer than state_seg_below programs. H100, bf16, H = 16, D = 128, B = 1
# (64 programs): GLA (per-key gates) forward 0.91x / 0.89x and forward+backward 0.96x / 0.95x the unsegmented
# time at T = 32K / 128K; the scalar gates and no gate 1.00-1.03x (they walk a chunk faster, and the ends launch
# reads k and v again), so only per-key gates segment. With more programs segments lost: GLA's forward took
# 1.10x at B = 2, T = 16K (128 programs, 8 segments) and 1.22x at B = 4, T = 8K (256, 4 segments), hence
# state_seg_below (benchmarks/results/2026-11-26-h100-s15/c2_tune_seg_1x32k.txt, c4_tune_seg_1x128k.txt,
# c6_ab_seg.jsonl).
# out_stages: the output kernel's pipeline depth (None: Triton's default). state_stages: the additive and
# scalar-gate state passes' (forward and reverse): 4 took RetNet's and Mamba-2's forward to 0.93x the time of
# Triton's default (3) at B=1, T=128K (K and V tiles of 32) and 0.94x at 32K, forward+backward 0.98-0.99x; 1.00x
# at B=16, T=2K (H100, benchmarks/results/2026-11-26-h100-s16/c10_ab_stages.jsonl, s15/c8_tune_*.txt).
# state_stages_key: the per-key-gate (GLA) passes' (4 took 1.02x / 1.01x at 128K: Triton's default kept).
CONFIG = {"state_bk": 64, "state_bv": 64, "state_warps": 4, "state_min_programs": 256, "state_min_tile": 32,
          # state_bv_delta_bwd: the delta rule's reverse pass alone; 32 took Gated DeltaNet's forward+backward to
          # 0.96x at B=16, T=2K but 1.00x at B=4, T=8K, DeltaNet's to 1.06x / 1.00x (H100,
          # benchmarks/results/2026-11-26-h100-s17/c2_tune_bvbwd.txt)
          "state_bv_delta": 64, "state_bv_delta_bwd": 64, "out_stages": None, "state_seg_programs": 1024,
          # the delta rule's state_min_programs by gate (none, scalar, per key): at 128, B·H = 64 (B=4, T=8K) keeps
          # V tiles of 64, where 256 halves them. 128 against 256: forward+backward DeltaNet 0.94x, KDA 0.97x,
          # Gated DeltaNet 1.04x (forward 1.00-1.02x; H100, benchmarks/results/2026-11-27-h100-s21/c4_tune.txt,
          # c5_tune.txt)
          "state_min_programs_delta": (128, 256, 128),
          "state_seg_min_chunks": 8,
          "state_seg_gates": (2,), "state_seg_tile_programs": 64, "state_seg_below": 128,
          "state_stages": 4, "state_stages_key": None,
          # pipeline depth of the delta-rule state kernels (all of K in one tile), DeltaNet and Gated DeltaNet.
          # 1 stage timed 0.97x on an H200 but gave DeltaNet's dk, dv and dβ 95% relative error in bf16 there
          # (Triton 3.6 miscompiles that ungated kernel; tests/test_cuda.py catches it).
          "state_stages_delta": 2,
          # ... and with V tiles of 16 (long single sequences), both passes: 3 stages against 2 took DeltaNet's
          # forward to 0.78x and its forward+backward to 0.87x at B=1, T=32K and at 128K, Gated DeltaNet's to
          # 0.83x / 0.93x at 32K; with V tiles of 32 (B=4, T=8K) Gated DeltaNet's
          # forward+backward took 1.08x, with 64 (B=16, T=2K) DeltaNet's 1.00x (H100,
          # benchmarks/results/2026-11-26-h100-s15/c8_tune_*.txt, c9_ab_stages.jsonl)
          "state_stages_delta_narrow": 3,
          # per-key gates (KDA), forward and reverse pass: 2 stages took 0.79x the forward's time of 1 stage at
          # B=1, T=32K and 0.95x at B=16, T=2K; the reverse in 2 stages then 0.81x the forward+backward's time at
          # B=1, T=32K and 1.01x at B=16, T=2K (H100, benchmarks/results/2026-11-26-h100-s14/; KDA's GPU tests
          # pass at both reverse settings there)
          "state_stages_delta_key": 2, "state_stages_delta_key_bwd": 2,
          # ... and its forward pass with V tiles of 16 (long single sequences): 3 stages took 0.90x the forward's
          # time of 2 at B=1, T=128K, but 1.04x with the tiles of 64 at B=16, T=2K (H100,
          # benchmarks/results/2026-11-26-h100-s15/c8_tune_*.txt); the reverse pass overflows shared memory at 3
          "state_stages_delta_key_narrow": 3,
          "out_bk": 64, "out_bv": 64, "out_warps": 4,
          "bwd_bk": 64, "bwd_bv": 64, "bwd_warps": 4,
          # bwd_dqk of the delta rule (it also writes du h[n]ᵀ: one more accumulator). All of K in one tile
          # with 8 warps: DeltaNet forward+backward 0.92x the time of (64, 4); KDA (per-key gates) 1.01x, so
          # it keeps (64, 4) (H200, B=16, T=2K, benchmarks/results/2026-11-26-h200-delta-backward/tune.jsonl)
          "dqk_bk_delta": 128, "dqk_warps_delta": 8, "dqk_bk_delta_key": 64, "dqk_warps_delta_key": 4,
          # the one-pass inference forward (no gate): its V tile and warps, and the fewest (batch·head, V tile)
          # programs it runs with (below that, the two-kernel forward). H200, bf16, H=16, D=128, linear attention
          # (elu+1, normalised) forward: 0.80x the two-kernel time at B·H = 256 (T = 2K) and 0.81x at 64 (T = 8K,
          # 128 programs); 1.22x at B·H = 16 (T = 32K); 8 warps or a V tile of 32 or 128 were slower
          # (benchmarks/results/2026-11-26-h200-decoder-and-forward/)
          "fused_bv": 64, "fused_warps": 4, "fused_min_programs": 128,
          # ... and below fused_min_programs, for the gates in fused_seg_gates (0 none, 1 scalar; never the delta
          # rule), the walk splits each sequence into segments of at least fused_seg_min_chunks chunks, walked in
          # parallel, until it has fused_seg_programs programs (the segments' ends first, from _state.fwd_states'
          # ENDS launch); with too few chunks for two segments, the two-kernel forward
          "fused_seg_gates": (0, 1), "fused_seg_programs": 256, "fused_seg_min_chunks": 8,
          # the training forward by the same walk, which then also stores each chunk's entering state for the
          # backward (in place of the state pass and the output kernel reading it back): for the gates in
          # train_walk_gates where the walk runs in one pass (many sequences·heads), and for those in
          # train_walk_seg_gates where it runs in segments (0 none, 1 scalar; never the delta rule). Against the
          # two kernels, forward+backward (H100, bf16, H = 16, D = 128): in one pass, linear 0.93-0.94x, RetNet,
          # Lightning and Mamba-2 0.96-0.97x at 16x2K and 0.91-0.92x at 4x8K; in segments (B = 1), linear 0.96-0.97x
          # at 32K / 128K, the scalar gates 1.01-1.04x (benchmarks/results/2026-11-27-h100-s23/c3_tune_*.txt)
          "train_walk_gates": (0, 1), "train_walk_seg_gates": (0,),
          # which (gate, delta rule) modes the one-pass forward serves (gate 0 none, 1 scalar; per-key gates, 2,
          # only where FUSED_MODES_KEY is added),
          # and its V tile, warps and pipeline depth for the delta rule (whose walk also forms u = U − W S), with
          # a scalar gate ("_gated") or without
          # Against the two-kernel forward (H100, bf16, H = 16, D = 128; B = 16, T = 2K / B = 4, T = 8K): RetNet
          # 0.73x / 0.70x, Mamba-2 0.74x / 0.72x, DeltaNet 0.65x / 0.62x (8 warps: 0.80x / 0.77x), Gated DeltaNet
          # 0.97x / 0.91x at 4 warps, 0.92x / 0.87x at 8 (benchmarks/results/2026-11-26-h100-s17/c2_tune_fused.txt)
          # fused_stages_wide: the pipeline depth without the delta rule where the walk has at least
          # fused_wide_programs programs (two of them fit an SM at 2 stages, one at Triton's default 3): 2 took
          # RetNet's, Lightning's and Mamba-2's forward to 0.71x-0.74x the time of the default at B = 16, T = 2K
          # (512 programs); 1.13x-1.15x at B = 4, T = 8K (128 programs), and 1.16x for the delta rule at 2K
          # (c3_tune_stages.txt, c4_tune_wide.txt, same folder). It passed test_cuda.py's
          # "inference_forward and two-stages" (every mechanism, bf16 / fp32, D 64 / 128) on an H200 (same sm_90
          # build as the H100's; benchmarks/results/2026-11-26-h100-s18/c1_two_stages.log)
          "fused_modes": FUSED_MODES_ALL, "fused_stages": None, "fused_bv_delta": 64,
          "fused_warps_delta": 4, "fused_warps_delta_gated": 8, "fused_stages_delta": None,
          "fused_stages_wide": 2, "fused_wide_programs": 256,
          # per-key gates' walk (FUSED_MODES_KEY): warps and pipeline depth (their fp32 gate tiles and the intra
          # matrix take shared memory beside q, k, v and W: at Triton's default 3 stages GLA's walk needs 265 KiB
          # and KDA's 313 at D = 128, over an H100's 227; 2 fit, tests/hopper_compile.py). It passed
          # test_cuda.py's "key-gates" on an H200 but took 1.13-1.14x the two-kernel forward's time for GLA and
          # 0.97-1.12x for KDA (16x2K, 4x8K; benchmarks/results/2026-11-26-h200-s19/c1_tune_key.txt): off
          "fused_warps_key": 4, "fused_stages_key": 2,
          # scalar gates with the delta rule (Gated DeltaNet): the walk reads the keys decayed to their chunk's end
          # (_delta.fwd_prep4 writes them), so it scales no u and no [C, C] intra matrix per element (KHAT_SPAN
          # below). Forward 0.84x / 0.84x the per-element walk's time at 16x2K / 4x8K on an H100 and 0.81x / 0.81x
          # on an H200, at 4 warps (8: 1.16-1.19x, 2 stages 1.13-1.17x of 4 warps; benchmarks/results/
          # 2026-11-26-h200-s19/c4_tune_khat.txt, c5_tune_khat.txt)
          "fused_khat": True, "fused_warps_delta_gated_khat": 4,
          # ... the walk decaying the keys itself (True) instead of reading them from the prep (False): 1.02x / 1.00x
          # the forward's time at 16x2K / 4x8K (H100, benchmarks/results/2026-11-26-h100-s20/c1_tune.txt)
          "khat_walk": False,
          # ... and the kernel that forms the intra matrix of its chunks past KHAT_SPAN (most programs return; 1, 2
          # and 4 warps took the same time, H100, c6_tune.txt in the folder above; groups of 4-32 chunks a program
          # took 1.00-1.09x the forward's time, c7_tune.txt: the strong chunks' work, not the returns, costs)
          "strong_warps": 4}


_tile = _delta._tile


def _state_tiles(BH: int, K: int, V: int, delta: bool = False, min_programs: int | None = None,
                 reverse: bool = False, C: int = 64, gate: int = 0) -> tuple[int, int]:
    """K and V tiles of the sequential state kernels (the delta rule needs all of K in one tile, and its
    reverse pass may take narrower V tiles: ``reverse``), shrunk until B·H·tiles reaches ``min_programs``
    (default ``state_min_programs``, the delta rule's ``state_min_programs_delta`` for its ``gate``); ``C``: the
    chunk size."""
    if min_programs is None:
        min_programs = CONFIG["state_min_programs_delta"][gate] if delta else CONFIG["state_min_programs"]
    if delta:
        # 64 value columns beside all of K (up to 128) in one tile; at K = 256 that overflows shared memory
        bk = _delta._bk(K)
        bv = _tile(V, CONFIG["state_bv_delta_bwd" if reverse else "state_bv_delta"] if bk <= 128 else 32)
        if reverse and C > 64:  # chunks of 128: the reverse pass's q, dO, k, W and du tiles at V tiles of 64 need
            bv = min(bv, 32)    # 248 KiB of shared memory (hopper_compile), more than an H100 gives a block
        while BH * cdiv(V, bv) < min_programs and bv > 16:
            bv //= 2
        return bk, bv
    bk, bv = _tile(K, CONFIG["state_bk"]), _tile(V, CONFIG["state_bv"])
    while BH * cdiv(K, bk) * cdiv(V, bv) < min_programs and max(bk, bv) > CONFIG["state_min_tile"]:
        if bv >= bk:
            bv //= 2
        else:
            bk //= 2
    return bk, bv


def _segments(programs: int, NT: int, target: int | None = None, min_chunks: int | None = None) -> tuple[int, int]:
    """(segments, chunks per segment) of a walk of ``programs`` (sequence·head, tile) programs over ``NT`` chunks,
    for a walk that may segment: enough segments of at least ``min_chunks`` chunks to reach ``target`` programs,
    none empty (defaults: the state passes' ``state_seg_programs`` and ``state_seg_min_chunks``)."""
    target = CONFIG["state_seg_programs"] if target is None else target
    min_chunks = CONFIG["state_seg_min_chunks"] if min_chunks is None else min_chunks
    if programs >= target:
        return 1, NT
    segs = min(cdiv(target, programs), NT // min_chunks)
    if segs <= 1:
        return 1, NT
    seglen = cdiv(NT, segs)
    return cdiv(NT, seglen), seglen


def _state_plan(NS: int, K: int, V: int, NT: int, gate: int, delta: bool, varlen: bool,
                reverse: bool = False, C: int = 64) -> tuple[int, int, int, int]:
    """(K tile, V tile, segments, chunks per segment) of a state pass over ``NS`` sequence·heads: segments
    need a diagonal transition and one sequence per program (not the delta rule, not packed documents), and
    run only for the gates in ``state_seg_gates``; where they run, the tiles stay larger."""
    if not (delta or varlen) and gate in CONFIG["state_seg_gates"]:
        bk, bv = _state_tiles(NS, K, V, min_programs=CONFIG["state_seg_tile_programs"])
        programs = NS * cdiv(K, bk) * cdiv(V, bv)
        # only where the full tiles leave the GPU nearly idle: from state_seg_below programs on, segments (whose
        # ends launch walks every chunk a second time) cost more than smaller tiles
        segs, seglen = _segments(programs, NT) if programs < CONFIG["state_seg_below"] else (1, NT)
        if segs > 1:
            return bk, bv, segs, seglen
    return (*_state_tiles(NS, K, V, delta, reverse=reverse, C=C, gate=gate), 1, NT)


def _state_pass(kernel, plan, NS, args, consts, K, V, device):
    """Launch a state kernel (``_state.fwd_states`` / ``bwd_states``) on grid (K tiles, V tiles, NS) as
    ``plan`` (``_state_plan``) says: in one walk, or in segments, the segments' ends first, then the states."""
    bk, bv, segs, seglen = plan
    grid = (cdiv(K, bk), cdiv(V, bv), NS)
    consts = dict(consts, BK=bk, BV=bv)
    if segs == 1:
        kernel[grid](*args, **consts)
        return
    seg = _segment_ends(NS * segs, segs, seglen, K, V, device)
    kernel[(grid[0], grid[1], NS * segs)](*args, **consts, **seg, ENDS=True)
    kernel[(grid[0], grid[1], NS * segs)](*args, **consts, **seg)


def _segment_ends(NP: int, segs: int, seglen: int, K: int, V: int, device) -> dict:
    """The segment arguments of a walk in segments over ``NP`` = sequence·heads × ``segs`` programs: buffers for
    each segment's end state ``E`` and log-decay ``GAM`` (fp32; the ENDS launch writes them), and the layout."""
    return {"E": torch.empty(NP, K, V, device=device, dtype=torch.float32),
            "GAM": torch.empty(NP, K, device=device, dtype=torch.float32), "SEGLEN": seglen, "SEGS": segs}


def _stages(gate: int, delta: bool, bv: int, reverse: bool = False, C: int = 64, wide32: bool = False) -> dict:
    """Launch options of the sequential state kernels: warps, and the pipeline depth (per-key gates apart;
    the delta rule's by gate, pass (``reverse``: the backward's) and V tile ``bv``; ``C`` the chunk size;
    ``wide32``: float32 inputs with K > 64 or chunks of 128, whose tiles take twice the shared memory)."""
    if not delta:
        key = "state_stages_key" if gate == 2 else "state_stages"
    elif gate == 2:
        key = "state_stages_delta_key_bwd" if reverse else \
            "state_stages_delta_key_narrow" if bv <= 16 else "state_stages_delta_key"
    else:
        key = "state_stages_delta_narrow" if bv <= 16 else "state_stages_delta"
    opts = {"num_warps": CONFIG["state_warps"]}
    if CONFIG[key] is not None:  # None: Triton's default depth
        opts["num_stages"] = CONFIG[key]
    if delta and C > 64:  # chunks of 128 with K = 128: the narrow V tiles' 3 stages take 244-306 KiB (an H200
        opts["num_stages"] = min(opts.get("num_stages", 3), 2)  # refused them; hopper_compile)
    if delta and reverse and gate == 2 and C > 64:  # chunks of 128: per-key gates' [K, 128] fp32 gate tiles take
        opts["num_stages"] = 1                      # 284 KiB of shared memory at 2 stages (hopper_compile)
    if delta and wide32:  # 237-320 KiB at the depths above (hopper_compile --all): over an H100's 227
        opts["num_stages"] = 1 if C > 64 else min(opts.get("num_stages", 3), 2)
    return opts


def _gate_mode(g) -> int:
    """0: no gate, 1: a scalar gate per head ([B, T, H]), 2: per key ([B, T, H, K])."""
    return 0 if g is None else (1 if g.dim() == 3 else 2)


def _wide32(x: torch.Tensor, C: int = 64) -> bool:
    """Float32 inputs with K > 64 or chunks of 128: the delta rule's kernels, which hold all of K in one tile,
    take shallower pipelines and smaller tiles there to fit an H100's shared memory."""
    return x.element_size() == 4 and (x.shape[-1] > 64 or C > 64)


def _prec(x: torch.Tensor) -> str:
    """Precision of the kernels' products: 16-bit inputs use tensor cores; float32 inputs get full
    float32 products ("ieee") unless PyTorch's float32 matmul precision allows TF32
    (``torch.set_float32_matmul_precision("high")``), the same switch PyTorch's own matmuls follow."""
    if x.dtype != torch.float32:
        return "tf32"
    return "ieee" if torch.get_float32_matmul_precision() == "highest" else "tf32"


def _prologue(q, k, v, G, gate, beta, C, prec, chunks, keep_inverse=True, khat=False, scaled=False, scaled_q=True):
    """What the state walk needs first, on the two-kernel and the one-pass forward alike: per-key gates'
    intra-chunk matrix A (in one pass with the delta rule's key-key matrix Kp), and the delta rule's WY/UT
    transform (Tinv, None unless ``keep_inverse``; U; W). Returns (A, Kp, Tinv, U, W, Kh, Qg): U is v without
    the delta rule, A None without per-key gates; Kh the keys decayed to their chunk's end (scalar gates: from
    ``_delta.prep`` where ``khat`` asks and it forms them; per-key gates: from ``_gla.fwd_A`` where ``scaled``),
    Qg = q ⊙ e^G (per-key gates, ``scaled`` and ``scaled_q``); None where they do not apply."""
    A = Kp = Tinv = W = Kh = Qg = None
    U = v
    if gate == 2:
        # P in the inputs' dtype: its readers (the output kernel and the walk, bwd_dv) round it to that dtype for
        # their products, so storing it rounded changes no result and halves its traffic for 16-bit inputs
        A = _gla.fwd_intra(q, k, G, C, prec, with_keys=beta is not None, chunks=chunks,
                           dtype=q.dtype if _gla.CONFIG["p_lowp"] else torch.float32, scaled=scaled,
                           scaled_q=scaled_q)
        if scaled:
            A, Qg, Kh = A
        if beta is not None:
            A, Kp = A
    if beta is not None:
        Tinv, U, W, Kd = _delta.prep(k, v, beta, G, Kp, gate, C, prec, chunks, keep_inverse=keep_inverse,
                                     khat=khat)
        Kh = Kd if Kd is not None else Kh
    return A, Kp, Tinv, U, W, Kh, Qg


def _forward(q, k, v, G, gate, s0, C, want_state, beta=None, scale=1.0, chunks: Chunks | None = None):
    """o, final state, and what the backward needs (entering states h, intra matrices, delta-rule parts)."""
    B, T, H, K = k.shape
    V = v.shape[-1]
    chunks = chunks or Chunks(cdiv(T, C), B, False)
    NT, NS, vl = chunks.NT, chunks.N * H, chunks.varlen  # NS: sequences × heads, one state each
    CH, CO, CU = chunks.args(q)
    prec = _prec(q)
    h = q.new_empty(B, H, NT, K, V)
    walk = _train_walk(NS, K, V, C, gate, beta is not None, chunks)
    if walk is not None:  # one walk stores h and writes o
        o, sT = _walk_forward(q, k, v, G, gate, None, s0, C, scale, chunks, walk, h=h)
        return o, sT, h, None, {}
    sT = q.new_empty(chunks.N, H, K, V, dtype=torch.float32) if want_state else None
    Gp = G if G is not None else q
    # the output and state pass read Qg and Kh, not G's tiles
    scaled = gate == 2 and NS <= _gla.CONFIG["fwd_scaled_bh"]
    A, Kp, Tinv, U, W, Kh, Qg = _prologue(q, k, v, G, gate, beta, C, prec, chunks, scaled=scaled,
                                          scaled_q=_gla.CONFIG["fwd_scaled_q"])
    # the delta rule: the state pass writes u = U − W S, which the output reads
    delta = {} if beta is None else {"Kp": Kp, "Tinv": Tinv, "W": W, "u": torch.empty_like(v)}
    W, u = delta.get("W", q), delta.get("u", q)
    plan = _state_plan(NS, K, V, NT, gate, beta is not None, vl)
    _state_pass(
        _state.fwd_states, plan, NS,
        (Kh if scaled else k, U, Gp, h, s0 if s0 is not None else q, sT if sT is not None else q, W, u, CU, CO, T,
         H, K, V, NT),
        dict(GATE=gate, HAS_S0=s0 is not None, STORE_ST=want_state, DELTA=beta is not None, BT=C,
             PREC=prec, VARLEN=vl, KH=scaled,
             **_stages(gate, beta is not None, plan[1], C=C, wide32=_wide32(q, C))), K, V, q.device)
    vo = delta["u"] if beta is not None else v  # the values the output reads
    o = torch.empty_like(v)
    bk, bv = _tile(K, CONFIG["out_bk"]), _tile(V, CONFIG["out_bv"])
    _output.fwd_output[(cdiv(V, bv), NT, B * H)](
        Qg if Qg is not None else q, k, vo, Gp, h, A if A is not None else q, o, CH, T, H, K, V, NT, scale,
        GATE=gate, BT=C, BK=bk, BV=bv, PREC=prec, VARLEN=vl, QG=Qg is not None, num_warps=CONFIG["out_warps"],
        **({} if CONFIG["out_stages"] is None else {"num_stages": CONFIG["out_stages"]}))
    return o, sT, h, A, delta


def _backward(q, k, v, G, gate, h, A, do, dsT, has_s0, C, beta=None, delta=None, chunks: Chunks | None = None,
              scale: float = 1.0):
    """dq, dk, dv, dg, d(initial state) and (delta rule) dβ, for the output ``scale · o`` (folded into
    the kernels that read dO)."""
    B, T, H, K = k.shape
    V = v.shape[-1]
    chunks = chunks or Chunks(cdiv(T, C), B, False)
    NT, NS, vl = chunks.NT, chunks.N * H, chunks.varlen
    CH, CO, CU = chunks.args(q)
    prec = _prec(q)
    Gp = G if G is not None else q
    dh = q.new_empty(B, H, NT, K, V)
    ds0 = q.new_empty(chunks.N, H, K, V, dtype=torch.float32) if has_s0 else None
    bk, bv = _tile(K, CONFIG["bwd_bk"]), _tile(V, CONFIG["bwd_bv"])
    is_delta = beta is not None
    dqk = "_key" if gate == 2 else ""
    qbk = _tile(K, CONFIG["dqk_bk_delta" + dqk]) if is_delta else bk  # bwd_dqk's K tile (the delta rule: + dW)
    if is_delta and C > 64:  # chunks of 128: all of K in one tile needs 240 KiB of shared memory (hopper_compile),
        qbk = min(qbk, 32 if _wide32(q, C) else 64)  # and float32 tiles of 64 up to 256 KiB
    NK = cdiv(K, qbk)
    if is_delta:  # du starts as Pᵀ dO; the reverse state pass adds (k ⊙ e^{G_last − G}) dS (in v's dtype, as U)
        du = torch.empty_like(v)
        _output.bwd_dv[(cdiv(V, bv), NT, B * H)](
            q, k, Gp, A if A is not None else q, do, dh, du, CH, T, H, K, V, NT, scale,
            GATE=gate, BT=C, BK=bk, BV=bv, PREC=prec, VARLEN=vl, HAS_DH=False, num_warps=CONFIG["bwd_warps"])
        v_out = delta["u"]
    else:
        du = q
        v_out = v
    plan = _state_plan(NS, K, V, NT, gate, is_delta, vl, reverse=True, C=C)
    _state_pass(
        _state.bwd_states, plan, NS,
        (q, do, Gp, dh, dsT if dsT is not None else q, ds0 if ds0 is not None else q,
         k, delta["W"] if is_delta else q, du, CU, CO, T, H, K, V, NT, scale),
        dict(GATE=gate, HAS_DST=dsT is not None, STORE_DS0=has_s0, DELTA=is_delta, BT=C, PREC=prec,
             VARLEN=vl, **_stages(gate, is_delta, plan[1], reverse=True, C=C, wide32=_wide32(q, C))), K, V, q.device)
    if not is_delta:
        dv = torch.empty_like(v)
        _output.bwd_dv[(cdiv(V, bv), NT, B * H)](
            q, k, Gp, A if A is not None else q, do, dh, dv, CH, T, H, K, V, NT, scale,
            GATE=gate, BT=C, BK=bk, BV=bv, PREC=prec, VARLEN=vl, num_warps=CONFIG["bwd_warps"])
    dq = torch.empty_like(q)
    # per-key gates with the delta rule: dk stays fp32 through the two intra-chunk passes it still takes;
    # otherwise the delta rule adds its parts to dk in place, in k's dtype
    dk = torch.empty_like(k, dtype=torch.float32) if is_delta and gate == 2 else torch.empty_like(k)
    if gate == 2:
        dG = torch.empty(B, T, H, K, device=q.device, dtype=torch.float32)
        dA = torch.empty(B, T, H, C, device=q.device, dtype=torch.float32)
        dq32, dk32 = torch.empty_like(q, dtype=torch.float32), torch.empty_like(k, dtype=torch.float32)
    else:
        dG = torch.empty(NK, B, T, H, device=q.device, dtype=torch.float32) if gate == 1 else q
        dA, dq32, dk32 = q, dq, dk
    dW = torch.empty_like(k) if is_delta else q  # du h[n]ᵀ, for _delta.backward
    _output.bwd_dqk[(NK, NT, B * H)](
        q, k, v_out, Gp, h, do, dh, dq32, dk32, dG, dA, du, dW, CH, T, H, K, V, NT, scale,
        GATE=gate, BT=C, BK=qbk, BV=bv, PREC=prec, VARLEN=vl, DELTA=is_delta,
        num_warps=CONFIG["dqk_warps_delta" + dqk if is_delta else "bwd_warps"])
    del dh  # read by nothing after this: its memory goes back before the delta rule's buffers
    if gate == 2:
        _gla.bwd_intra(q, k, G, dA, dq32, dk32, dG, dq, dk, C, prec, chunks=chunks)
    elif gate == 1:
        dG = dG.sum(0)
    dbeta = None
    if is_delta:
        dv, dbeta, dKp = _delta.backward(k, v, beta, G, dW, du, delta["Tinv"], delta["Kp"], dk,
                                         dG if gate else None, gate, C, prec, chunks)
        if gate == 2:
            dk_out = torch.empty_like(k)
            _gla.bwd_intra(k, k, G, dKp, dk, dk, dG, dk_out, dk_out, C, prec, self_pair=True, chunks=chunks)
            dk = dk_out
    dg = chunk_cumsum(dG, C, reverse=True, chunks=chunks) if gate else None
    return dq, dk, dv, dg, ds0, dbeta


class _ChunkFn(torch.autograd.Function):
    @staticmethod
    def forward(ctx, q, k, v, g, beta, s0, C, scale, chunks):
        gate = _gate_mode(g)
        G = chunk_cumsum(g, C, clamp=True, chunks=chunks) if g is not None else None
        o, sT, h, A, delta = _forward(q, k, v, G, gate, s0, C, True, beta, scale, chunks)
        ctx.save_for_backward(q, k, v, G, h, A, beta, *(delta.get(n) for n in _DELTA_SAVED))
        ctx.gate, ctx.C, ctx.has_s0, ctx.scale, ctx.chunks = gate, C, s0 is not None, scale, chunks
        ctx.g_dtype = None if g is None else g.dtype
        return o, sT

    @staticmethod
    def backward(ctx, do, dsT):
        q, k, v, G, h, A, beta, *saved = ctx.saved_tensors
        delta = dict(zip(_DELTA_SAVED, saved)) if beta is not None else None
        # o = scale · (the recurrence with q): every input's gradient is the recurrence's for scale·dO,
        # which the kernels reading dO form as they go (no pass over dO, no copy of it)
        dq, dk, dv, dg, ds0, dbeta = _backward(q, k, v, G, ctx.gate, h, A, do.contiguous(),
                                               None if dsT is None else dsT.contiguous(), ctx.has_s0, ctx.C,
                                               beta, delta, ctx.chunks, ctx.scale)
        if dg is not None:
            dg = dg.to(ctx.g_dtype)
        if dbeta is not None:
            dbeta = dbeta.to(beta.dtype)
        return dq, dk, dv, dg, dbeta, ds0, None, None, None


_DELTA_SAVED = ("Kp", "Tinv", "W", "u")


def _check(q, k, v, g, beta, initial_state, chunk_size, n_seq=None):
    for name, x in (("q", q), ("k", k), ("v", v)):
        if not torch.is_tensor(x) or x.dim() != 4:
            raise ValueError(f"{name} must be a 4-D tensor [B, T, H, D], got {getattr(x, 'shape', type(x))}")
    B, T, H, K = k.shape
    if tuple(q.shape) != (B, T, H, K) or tuple(v.shape[:3]) != (B, T, H):
        raise ValueError(f"q [B, T, H, K] and v [B, T, H, V] must match k {tuple(k.shape)}; got q {tuple(q.shape)}, "
                         f"v {tuple(v.shape)}")
    if q.dtype not in (torch.float16, torch.bfloat16, torch.float32) or not q.dtype == k.dtype == v.dtype:
        raise TypeError(f"the triton backend takes q, k, v of one dtype among float16, bfloat16, float32; got "
                        f"{q.dtype}, {k.dtype}, {v.dtype} (use backend='reference' for float64)")
    if not q.is_cuda and os.environ.get("TRITON_INTERPRET") != "1":
        raise ValueError(f"the triton backend needs CUDA tensors (or TRITON_INTERPRET=1 on CPU), got {q.device}")
    if g is not None:
        if g.dim() == 3 and tuple(g.shape) != (B, T, H) or g.dim() == 4 and tuple(g.shape) != (B, T, H, K) \
                or g.dim() not in (3, 4):
            raise ValueError(f"g must be [B, T, H] or [B, T, H, K] = {(B, T, H)} / {(B, T, H, K)}, got {tuple(g.shape)}")
        if g.dtype != torch.float32:
            raise TypeError(f"g (log-space gate) must be float32 for the triton backend, got {g.dtype}")
    N = B if n_seq is None else n_seq
    if initial_state is not None and tuple(initial_state.shape) != (N, H, K, v.shape[-1]):
        what = "[B, H, K, V]" if n_seq is None else "[N, H, K, V] (N documents)"
        raise ValueError(f"initial_state must be {what} = {(N, H, K, v.shape[-1])}, got {tuple(initial_state.shape)}")
    if not isinstance(chunk_size, int) or chunk_size not in (16, 32, 64, 128):
        raise ValueError(f"the triton backend needs chunk_size in (16, 32, 64, 128), got {chunk_size!r}")
    if beta is not None:
        if tuple(beta.shape) != (B, T, H):
            raise ValueError(f"beta must be [B, T, H] = {(B, T, H)}, got {tuple(beta.shape)}")
        if not beta.is_floating_point():
            raise TypeError(f"beta must be floating point, got {beta.dtype}")
        if K > _delta.MAX_K:
            raise ValueError(f"the triton delta-rule kernels need D_k ≤ {_delta.MAX_K}, got {K}")


def chunk(q, k, v, g=None, beta=None, initial_state=None, *, chunk_size: int = 64, scale: float = 1.0,
          cu_seqlens=None):
    """Chunkwise recurrence on the GPU (Triton), differentiable in q, k, v, g, beta, initial_state.

    Args: as ``longmix.kernels.reference.chunk.chunk`` for the recurrence with ``scale·q``, the
    scale applied to the output as it is stored (no pass over q): q, k [B, T, H, K],
    v [B, T, H, V], g None | [B, T, H] | [B, T, H, K] (fp32 log-gates ≤ 0), beta None | [B, T, H],
    initial_state None | [B, H, K, V]; chunk_size 16, 32, 64 or 128. ``cu_seqlens`` (int tensor [N+1]
    on the inputs' device, or a list; B = 1): packed documents, each its own recurrence from its own
    initial state (initial_state [N, H, K, V]), in one launch per kernel and without a host
    synchronisation (``_varlen.py``).

    Returns: o [B, T, H, V] in v's dtype and the final state [B, H, K, V] (or [N, H, K, V]) float32.
    Raises ValueError/TypeError/NotImplementedError for a configuration it does not support.
    """
    _check(q, k, v, g, beta, initial_state, chunk_size, None if cu_seqlens is None else len(cu_seqlens) - 1)
    B, T, H, K = k.shape
    V = v.shape[-1]
    chunks = chunk_map(B, T, chunk_size, documents(cu_seqlens, T, B, q.device))
    if T == 0:
        S = torch.zeros(chunks.N, H, K, V, device=q.device) if initial_state is None else initial_state.float()
        return v.new_zeros(B, T, H, V), S
    s0 = None if initial_state is None else initial_state.float().contiguous()
    g = None if g is None else g.contiguous()
    beta = None if beta is None else beta.contiguous()
    q, k, v = q.contiguous(), k.contiguous(), v.contiguous()
    plan = _fused(q, k, v, g, beta, s0, chunks, chunk_size)
    if plan is not None:
        return _fused_forward(q, k, v, g, beta, s0, chunk_size, float(scale), chunks, plan)
    return _ChunkFn.apply(q, k, v, g, beta, s0, chunk_size, float(scale), chunks)


# Gated DeltaNet's one-pass walk (fused_khat) forms a chunk's intra matrix from keys decayed to the chunk's end
# where its scalar log-gates sum to at least −KHAT_SPAN: the rows' factor e^{G − G_last} then stays below e^80
# (float32 overflows at e^88.7), and a key element the decay takes below the normal range adds at most
# e^80 · 2^-133 ≈ 5e-6 of Σ|q| to q kᵀ in bf16; the chunks past it take _output.fwd_strong_intra's matrix
KHAT_SPAN = 80.0


def _fused(q, k, v, g, beta, s0, chunks: Chunks, C: int) -> tuple[int, int] | None:
    """The one-pass inference forward's (segments, chunks per segment) where it serves this call, else None.
    It serves: no gradient needed, a mode in
    ``fused_modes`` (by default no gate or a scalar one, with or without the delta rule; per-key gates where
    FUSED_MODES_KEY is added; never the delta rule with float32 inputs and K > 64), no documents, K ≤ 128,
    chunks of at most 64 (at 128 with K = 128 its tiles need 256 KiB of shared memory, more than an H100
    has), and enough (batch·head, V tile) programs to fill the GPU, or, for no gate and scalar gates, enough
    chunks to walk in segments (``_fused_segments``; its walk over the chunks is sequential, so a long single
    sequence of the delta rule or per-key gates keeps the two-kernel path)."""
    if (_gate_mode(g), beta is not None) not in CONFIG["fused_modes"] or chunks.varlen or k.shape[-1] > 128 \
            or C > 64:
        return None
    if beta is not None and _wide32(q, C):  # float32 tiles of q, k, W and U overflow shared memory at K = 128
        return None  # (256 KiB with per-key gates; without the delta rule their walk takes 208, hopper_compile)
    if torch.is_grad_enabled() and any(x is not None and x.requires_grad for x in (q, k, v, g, beta, s0)):
        return None
    return _fused_segments(k.shape[0] * k.shape[2], v.shape[-1], chunks.NT, _gate_mode(g), beta is not None)


def _fused_segments(NS: int, V: int, NT: int, gate: int, delta: bool) -> tuple[int, int] | None:
    """(segments, chunks per segment) of the one-pass forward over ``NS`` sequence·heads of ``NT`` chunks, or
    None where it should not run: one segment where the (sequence·head, V tile) programs reach
    ``fused_min_programs``; below that, for the gates in ``fused_seg_gates`` (a diagonal transition: never the
    delta rule), enough segments of at least ``fused_seg_min_chunks`` chunks to reach ``fused_seg_programs``
    programs; None where there are too few chunks for two."""
    programs = NS * cdiv(V, CONFIG["fused_bv_delta" if delta else "fused_bv"])
    if programs >= CONFIG["fused_min_programs"]:
        return 1, NT
    if delta or gate not in CONFIG["fused_seg_gates"]:
        return None
    plan = _segments(programs, NT, CONFIG["fused_seg_programs"], CONFIG["fused_seg_min_chunks"])
    return plan if plan[0] > 1 else None


def _fused_forward(q, k, v, g, beta, s0, C, scale, chunks, plan):
    G = chunk_cumsum(g, C, clamp=True, chunks=chunks) if g is not None else None
    return _walk_forward(q, k, v, G, _gate_mode(g), beta, s0, C, scale, chunks, plan)


def _train_walk(NS: int, K: int, V: int, C: int, gate: int, delta: bool, chunks: Chunks) -> tuple[int, int] | None:
    """The walk's (segments, chunks per segment) where the training forward (no gate or a scalar one, without the
    delta rule) takes the one-pass walk that also stores each chunk's entering state (``_walk_forward`` with h)
    instead of the state pass and the output kernel, else None: for the gates in ``train_walk_gates`` where the
    walk runs in one pass, in ``train_walk_seg_gates`` where it runs in segments; never with documents, K > 128
    or chunks over 64 (as ``_fused``)."""
    if delta or gate == 2 or chunks.varlen or K > 128 or C > 64 or (gate, False) not in CONFIG["fused_modes"]:
        return None
    plan = _fused_segments(NS, V, chunks.NT, gate, False)
    if plan is None or gate not in CONFIG["train_walk_seg_gates" if plan[0] > 1 else "train_walk_gates"]:
        return None
    return plan


def _walk_forward(q, k, v, G, gate, beta, s0, C, scale, chunks, plan, h=None):
    """The one-pass forward (``_output.fwd_fused``) from the chunk-local cumulative log-gates G, in ``plan``'s
    (segments, chunks per segment): o and the final state; ``h`` (the training forward): also each chunk's
    entering state, stored there."""
    B, T, H, K = k.shape
    V = v.shape[-1]
    prec = _prec(q)
    # as on the two-kernel path, in parallel before the walk (the delta rule's inverse is not kept)
    khat = beta is not None and CONFIG["fused_khat"] and _delta.khat_ok(k, gate, C)
    A, _, _, v, W, Kh, _ = _prologue(q, k, v, G, gate, beta, C, prec, chunks, keep_inverse=False,
                                     khat=khat and not CONFIG["khat_walk"])
    o = torch.empty_like(v)
    sT = q.new_empty(B, H, K, V, dtype=torch.float32)
    delta = "_delta" if beta is not None else ""
    bv = _tile(V, CONFIG["fused_bv" + delta])
    segs, seglen = plan
    grid = (cdiv(V, bv), B * H * segs)
    seg = {}
    if segs > 1:  # each segment's end from a zero state first (the state pass's ENDS launch), in parallel
        NP = B * H * segs
        seg = _segment_ends(NP, segs, seglen, K, V, q.device)
        ebk, ebv = _state_tiles(NP, K, V)
        _state.fwd_states[(cdiv(K, ebk), cdiv(V, ebv), NP)](
            k, v, G if G is not None else q, q, q, q, q, q, q, q, T, H, K, V, chunks.NT,
            GATE=gate, HAS_S0=False, STORE_ST=False, DELTA=False, BT=C, PREC=prec, VARLEN=False, BK=ebk, BV=ebv,
            **seg, ENDS=True, **_stages(gate, False, ebv))
    if gate == 2:
        opts, stages = {"num_warps": CONFIG["fused_warps_key"]}, CONFIG["fused_stages_key"]
    else:
        opts = {"num_warps": CONFIG["fused_warps" + delta + ("_gated" if delta and gate else "")]}
        stages = CONFIG["fused_stages" + delta]
        if not delta and grid[0] * grid[1] >= CONFIG["fused_wide_programs"] and CONFIG["fused_stages_wide"] is not None:
            stages = CONFIG["fused_stages_wide"]
    if stages is not None:
        opts["num_stages"] = stages
    if khat:  # the walk with keys decayed to their chunk's end; chunks past KHAT_SPAN read A
        opts["num_warps"] = CONFIG["fused_warps_delta_gated_khat"]
        A = torch.empty(B, T, H, C, device=q.device, dtype=q.dtype)
        _output.fwd_strong_intra[(cdiv(T, C), B * H)](q, k, G, A, T, H, K, BT=C, BK=_tile(K, 64), PREC=prec,
                                                               SPAN=KHAT_SPAN, num_warps=CONFIG["strong_warps"])
    _output.fwd_fused[grid](
        q, Kh if Kh is not None else k, v, G if G is not None else q, W if W is not None else q,
        A if A is not None else q, s0 if s0 is not None else q, o, sT, T, H, K, V, scale, HAS_S0=s0 is not None,
        GATE=gate, DELTA=beta is not None, BT=C, BK=_tile(K, 128), BV=bv, PREC=prec, KHAT=khat,
        SPAN=KHAT_SPAN, KSCALE=khat and Kh is None, **seg, **opts,
        **({} if h is None else {"h": h, "NT": chunks.NT, "STORE_H": True}))
    return o, sT
