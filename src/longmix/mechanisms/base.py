"""Glue shared by the mechanism files: turn a small description into a registry row.

A dense mechanism names its weight (softmax, sigmoid, softplus); a recurrent one
supplies ``prepare(q, k, v, opts) -> Prepared``, which maps its inputs (feature
map, constant or data-dependent gates, beta) onto the one shared recurrence in
``kernels/reference/recurrent.py``. Forms, backends, noncausal mode, initial state
and precision are handled here once for all of them.
"""
from __future__ import annotations

from dataclasses import dataclass
from functools import partial
from typing import Callable

import torch

from .. import checks, feature_maps
from ..kernels.reference import chunk as ref_chunk
from ..kernels.reference import recurrent as ref_recurrent
from ..kernels.reference.dense import dense, sigmoid_default_bias
from ..kernels.sdpa import sdpa

RECURRENT_FORMS = ("parallel", "chunk", "recurrent")
# Log-gates below this decay by exp(−1e4) = 0 in float16/32/64 alike; clamping −inf here keeps
# differences of cumulative gates finite (−inf − (−inf) would be NaN) without changing any result.
GATE_MIN = -1e4
DEFAULT_CHUNK = {"dense": 128, "recurrent": 64}


def compute_dtype(x: torch.Tensor) -> torch.dtype:
    """References compute in float32 (float64 when the inputs are float64); so do gates and states."""
    return torch.float64 if x.dtype == torch.float64 else torch.float32


gate_dtype = compute_dtype


def cast(x: torch.Tensor, dtype: torch.dtype) -> torch.Tensor:
    """``x.to(dtype)``, skipping the call when x already has it (a decoding step makes several)."""
    return x if x.dtype == dtype else x.to(dtype)


def expand_heads(x: torch.Tensor, H: int) -> torch.Tensor:
    """[B, T, H_kv, D] → [B, T, H, D]: query head h uses key/value head h // (H / H_kv)."""
    return x if x.shape[2] == H else x.repeat_interleave(H // x.shape[2], dim=2)


# ----------------------------------------------------------------------------- dense


def dense_run(kind: str, logit_scale: Callable | None = None):
    """``run`` for a dense mechanism with weight ``kind`` (see kernels/reference/dense.py)."""

    def run(form, backend, q, k, v, opts, initial_state):
        scale = opts["scale"] if opts["scale"] is not None else q.shape[-1] ** -0.5
        bias = opts.get("bias")
        if backend == "sdpa":  # PyTorch's kernels, in the inputs' dtype: no float32 copies of q, k, v
            return sdpa(q, k, v, scale=scale, causal=opts["causal"], bias=bias), None
        H, cd = q.shape[2], compute_dtype(q)
        qc, kc, vc = q.to(cd), expand_heads(k, H).to(cd), expand_heads(v, H).to(cd)
        if kind == "sigmoid" and bias is None:
            bias = sigmoid_default_bias(k.shape[1])
        if torch.is_tensor(bias):
            bias = bias.to(cd)
        o = dense(
            qc, kc, vc, kind=kind, scale=scale, causal=opts["causal"], window=opts.get("window"),
            block_size=opts.get("block_size"), alibi_slopes=opts.get("alibi_slopes"), softcap=opts.get("softcap"),
            bias=bias, sinks=opts.get("sinks"),
            logit_scale=None if logit_scale is None else logit_scale(q.shape[1], k.shape[1], opts),
            form=form, chunk_size=opts["chunk_size"] or DEFAULT_CHUNK["dense"],
        )
        return o.to(q.dtype), None

    return run


def check_bias(bias, B, H, T_q, T_k):
    """``bias``: a number, or a tensor broadcastable to [B, H, T_q, T_k] (each dim full or 1)."""
    if bias is None or isinstance(bias, (int, float)) and not isinstance(bias, bool):
        return
    checks.tensor(bias, "bias", shape_doc="[B, H, T_q, T_k] (each dim may be 1), or a number")
    full = (B, H, T_q, T_k)
    if bias.dim() > 4 or any(s not in (1, f) for s, f in zip(bias.shape[::-1], full[::-1])):
        raise ValueError(f"bias must broadcast to [B, H, T_q, T_k] = {full} with each dim full or 1, got {tuple(bias.shape)}")


# ------------------------------------------------------------------------- recurrent


@dataclass
class Prepared:
    """A mechanism's inputs mapped onto the shared recurrence (compute dtype, H heads).

    ``scale`` multiplies q (the kernels fold it into their output instead of a pass over q:
    the recurrence's output is linear in q); ``post`` (output norm) is applied to the
    recurrence's output. ``normalize``: divide the output by q_t·z_t, z_t = Σ_{j≤t} k_j (linear
    attention's normaliser, no gates; any scale cancels); z is the state's extra last column,
    [B, H, K, V + 1].
    """

    q: torch.Tensor
    k: torch.Tensor
    v: torch.Tensor
    g: torch.Tensor | None = None
    beta: torch.Tensor | None = None
    post: Callable[[torch.Tensor], torch.Tensor] | None = None
    normalize: bool = False
    scale: float = 1.0


class _Denominator(torch.autograd.Function):
    """q_t·z_t with z_t = z0 + Σ_{j≤t} k_j (causal) or z0 + Σ_j k_j (noncausal), in float32 or more.

    Computed beside the recurrence instead of as an extra value column of ones: the kernels then
    run at D_v (128, not 129, which costs a third tile and unaligned rows), and only q and k are
    saved for the backward (the running sum is recomputed there)."""

    @staticmethod
    def forward(ctx, q, k, z0, causal):
        ctx.causal = causal
        ctx.save_for_backward(q, k, z0)
        return (q.to(compute_dtype(q)) * _running_keys(k, z0, causal)).sum(-1, keepdim=True)

    @staticmethod
    def backward(ctx, g):
        q, k, z0 = ctx.saved_tensors
        gq = g * q.to(g.dtype)  # [B, T, H, K]: ∂/∂k_j of Σ_t g_t q_t·z_t is Σ_{t≥j} g_t q_t
        dq = (g * _running_keys(k, z0, ctx.causal)).to(q.dtype)
        total = gq.sum(1)
        if ctx.causal:
            dk = time_cumsum(gq.flip(1)).flip(1)
        else:
            dk = total[:, None].expand_as(gq)
        return dq, dk.to(k.dtype), None if z0 is None else total.to(z0.dtype), None


def time_cumsum(x: torch.Tensor, block: int = 64) -> torch.Tensor:
    """``x.cumsum(1)`` for x [B, T, ...], as a scan within blocks of ``block`` steps plus a scan of
    the block totals (recursively). ``torch.cumsum`` along a dimension that is not the last runs one
    GPU thread per column stepping through all T: at B = 1, T = 128K that is 128K dependent memory
    round trips (~55 ms on an H100 for H·D = 2048 columns); this is log_block(T) short scans."""
    B, T = x.shape[:2]
    if T <= block:
        return x.cumsum(1)
    n = -(-T // block)
    xp = torch.nn.functional.pad(x, (0, 0) * (x.dim() - 2) + (0, n * block - T)) if n * block != T else x
    inner = xp.reshape(B, n, block, *x.shape[2:]).cumsum(2)
    carry = time_cumsum(inner[:, :, -1], block) - inner[:, :, -1]  # the sum of the blocks before each
    return (inner + carry[:, :, None]).reshape(B, n * block, *x.shape[2:])[:, :T]


def _running_keys(k, z0, causal):
    kc = k.to(compute_dtype(k))
    kz = time_cumsum(kc) if causal else kc.sum(1, keepdim=True)
    return kz if z0 is None else kz + z0[:, None].to(kz.dtype)


def _reference_normalized(o, q, k, z0, causal, total=False):
    den = _Denominator.apply(q, k, z0, causal)
    out = safe_div(o.to(den.dtype), den)
    if not total:
        return out
    zT = k.to(den.dtype).sum(1)
    return out, (zT if z0 is None else zT + z0.to(zT.dtype))


# backend → normalized(o, q, k, z0, causal, [cu_seqlens=], total=False) = o / (q_t·z_t), and with
# ``total`` also z_T = z0 + Σ_t k_t (the state's last column); kernel packages add theirs (one fused
# pass instead of PyTorch's float32 casts and scans, see longmix.kernels.triton.normalizer)
NORMALIZERS: dict[str, Callable] = {"reference": _reference_normalized}


def normalize_output(o, q, k, z0, S, causal, backend="reference", cu_seqlens=None):
    """Linear attention's normalised output o / (q·z) and, if the recurrence returned a state S
    [B, H, K, V], the state with z_T as its last column [B, H, K, V + 1]. Rows whose
    denominator is exactly 0 (they saw no key mass) return o, which is 0 there. ``backend`` picks
    the implementation (``NORMALIZERS``; the reference where it has none). ``cu_seqlens`` (an int
    tensor [N+1], B = 1; only for a backend in ``VARLEN``): packed documents, z and its state column
    per document."""
    docs = {} if cu_seqlens is None else {"cu_seqlens": cu_seqlens}  # (only backends in VARLEN get them)
    fn = NORMALIZERS[backend] if docs else NORMALIZERS.get(backend, _reference_normalized)
    if S is None:
        return fn(o, q, k, z0, causal, **docs), None
    o, zT = fn(o, q, k, z0, causal, total=True, **docs)
    return o, torch.cat([S, zT.to(S.dtype)[..., None]], -1)


def _scaled(q, scale):
    return q if scale == 1.0 else q * scale


# form → kernel(q, k, v, g, beta, initial_state, *, chunk_size, scale=1.0) for each backend, the
# recurrence with scale·q; kernel packages add their own entries (see longmix.kernels.triton).
# (backend, form) pairs whose kernels (and normaliser) take packed documents themselves, as
# ``cu_seqlens=`` a list of bounds: one launch for all documents. For the others ``attention``
# runs the documents one after another.
VARLEN: set[tuple[str, str]] = set()

KERNELS: dict[tuple[str, str], Callable] = {
    ("reference", "parallel"): lambda q, k, v, g, beta, s0, chunk_size, scale=1.0:
        ref_chunk.parallel(_scaled(q, scale), k, v, g, beta, s0),
    ("reference", "chunk"): lambda q, k, v, g, beta, s0, chunk_size, scale=1.0:
        ref_chunk.chunk(_scaled(q, scale), k, v, g, beta, s0, chunk_size=chunk_size),
    ("reference", "recurrent"): lambda q, k, v, g, beta, s0, chunk_size, scale=1.0:
        ref_recurrent.scan(_scaled(q, scale), k, v, g, beta, s0),
}


def _prepared(prepare, backend, q, k, v, opts) -> Prepared:
    """``prepare`` on H query heads' worth of k, v; the reference gets float32/float64 copies,
    kernels the inputs' own dtype."""
    H = q.shape[2]
    xd = compute_dtype(q) if backend == "reference" else q.dtype
    p = prepare(cast(q, xd), cast(expand_heads(k, H), xd), cast(expand_heads(v, H), xd), opts)
    if p.g is not None and backend == "reference":  # (the Triton kernels clamp as they load g)
        p.g = p.g.clamp_min(GATE_MIN)  # exp(g) is exactly 0 below GATE_MIN in every float format
    return p


def srms_norm(o, eps=1e-8):
    """TransNormer's parameter-free SimpleRMSNorm of each row: o / (‖o‖/√D + eps)."""
    return o / (o.norm(dim=-1, keepdim=True) * o.shape[-1] ** -0.5 + eps)


def _reference_step(q, k, v, g, beta, state, scale=1.0, phi=None, norm=False):
    if phi is not None:
        q, k = feature_maps.get(phi)(q), feature_maps.get(phi)(k)
    o, S = ref_recurrent.scan(_scaled(q, scale), k, v, g, beta, state)
    state.copy_(S)
    return srms_norm(o) if norm else o


# backend → step(q, k, v, g, beta, state, scale=1.0, phi=None, norm=False) -> o: the recurrence with
# scale·φ(q), φ(k) over a few tokens (``phi``: a name from ``feature_maps.ELEMENTWISE`` or None), its
# output through ``srms_norm`` if ``norm``, writing the new state into ``state`` (contiguous,
# float32/64) in place; no input checks (``longmix.Decoder`` validates once per input signature).
# Kernel packages add their own, which fuse φ and the norm into the one launch of a step.
STEPS: dict[str, Callable] = {"reference": _reference_step}


def recurrent_step(prepare: Callable[..., Prepared], run: Callable, feature_map: str | None = None):
    """``step`` for a recurrent mechanism: ``step(backend, q, k, v, opts, state) -> o`` advances
    ``state`` [B, H, K, V] in place by q, k, v's tokens (causal, inputs already checked).

    ``feature_map``: the mechanism's default for an ``opts["feature_map"]`` it maps q and k with in
    ``prepare``; an elementwise one (``feature_maps.ELEMENTWISE``) and an output ``srms_norm`` are
    handed to the backend's step, which applies them inside its launch (``prepare`` then runs with
    the identity map: same F, same default scale), so a step is one launch."""

    def step(backend, q, k, v, opts, state):
        if opts.get("normalize") or backend not in STEPS:  # z rides as the state's last column: the general path
            o, S = run("recurrent", backend, q, k, v, opts, state)
            state.copy_(S)
            return o
        phi = None
        if feature_map is not None:
            phi = opts.get("feature_map") or feature_map
            if isinstance(phi, str) and phi in feature_maps.ELEMENTWISE:
                opts = {**opts, "feature_map": "identity"}
            else:
                phi = None
        p = _prepared(prepare, backend, q, k, v, opts)
        norm = p.post is srms_norm  # the one output norm the steps fuse
        o = STEPS[backend](p.q, p.k, p.v, p.g, p.beta, state, p.scale, phi=phi, norm=norm)
        if p.post is not None and not norm:
            o = p.post(cast(o, compute_dtype(q)))
        return cast(o, q.dtype)

    return step


def recurrent_run(prepare: Callable[..., Prepared]):
    """``run`` for a recurrent mechanism described by ``prepare``."""

    def run(form, backend, q, k, v, opts, initial_state, cu_seqlens=None):
        """``cu_seqlens``: packed-document bounds (an int tensor [N+1], checked by the caller), only for
        ``(backend, form)`` in ``VARLEN`` with causal=True; the states are then per document, [N, H, K, V]."""
        cd = compute_dtype(q)
        p = _prepared(prepare, backend, q, k, v, opts)
        B, H, K, V = q.shape[0], q.shape[2], p.k.shape[-1], p.v.shape[-1]
        if cu_seqlens is not None:
            B = cu_seqlens.numel() - 1  # one state per document
        Vs = V + 1 if p.normalize else V  # the state's columns (z rides as the last one)
        z0 = None
        if initial_state is not None:
            checks.tensor(initial_state, "initial_state", shape_doc="[B, H, D_k, D_v]")
            if tuple(initial_state.shape) != (B, H, K, Vs):
                raise ValueError(f"initial_state must have shape [{'B' if cu_seqlens is None else 'N'}, H, D_k, D_v] = "
                                 f"{(B, H, K, Vs)} "
                                 f"(D_k after the feature map; D_v + 1 with normalize=True), got {tuple(initial_state.shape)}")
            if not initial_state.is_floating_point():
                raise TypeError(f"initial_state must be floating point (float32), got {initial_state.dtype}")
            initial_state = initial_state.to(cd)
            if p.normalize:
                initial_state, z0 = initial_state[..., :V].contiguous(), initial_state[..., V]
        kernel = partial(KERNELS[(backend, form)], chunk_size=opts["chunk_size"] or DEFAULT_CHUNK["recurrent"])
        docs = {} if cu_seqlens is None else {"cu_seqlens": cu_seqlens}
        if opts["causal"]:
            o, S = kernel(p.q, p.k, p.v, p.g, p.beta, initial_state, scale=p.scale, **docs)
        else:
            o, S = ref_recurrent.bidirectional(kernel, _scaled(p.q, p.scale), p.k, p.v, p.g, p.beta), None
        if p.normalize:
            o, S = normalize_output(o, p.q, p.k, z0, S, opts["causal"], backend, **docs)
        if p.post is not None:
            o = p.post(o.to(cd))
        return o.to(q.dtype), S

    return run


_DEFAULT_GATES: dict = {}  # (default, H, device, dtype) → the default gate already on that device


def constant_gate(opts, name, B, T, H, default: Callable[[int], torch.Tensor], like):
    """A per-head constant log-decay [H] (given or default), expanded to [B, T, H]. A default gate
    is made once per device and dtype: no copy from the host per call (a CUDA graph cannot hold one)."""
    g = opts.get(name)
    if g is None:
        key = (default, H, like.device, gate_dtype(like))
        if key not in _DEFAULT_GATES:
            _DEFAULT_GATES[key] = default(H).to(device=like.device, dtype=gate_dtype(like))
        g = _DEFAULT_GATES[key]
    if g.device != like.device or g.dtype != gate_dtype(like):
        g = g.to(device=like.device, dtype=gate_dtype(like))
    return g[None, None, :].expand(B, T, H)


def check_constant_gate(g, H, like):
    """A constant per-head log-decay: [H], float32, ≤ 0."""
    if g is not None:
        checks.gate(g, "g", (H,), "[H]", like)


def safe_div(num: torch.Tensor, den: torch.Tensor) -> torch.Tensor:
    """num / den with rows whose denominator is exactly 0 returning 0 (they saw no mass)."""
    return num / torch.where(den == 0, torch.ones_like(den), den)


def check_dense(q, k, v, opts):
    """Options shared by the dense mechanisms."""
    B, T_q, H, _ = q.shape
    if opts.get("window") is not None:
        checks.positive_int(opts["window"], "window")
    if opts.get("block_size") is not None:
        checks.positive_int(opts["block_size"], "block_size")
    if opts.get("softcap") is not None:
        checks.positive_float(opts["softcap"], "softcap")
    for name in ("sinks", "alibi_slopes"):
        if opts.get(name) is not None:
            checks.per_head(opts[name], name, H, q.device)
    check_bias(opts.get("bias"), B, H, T_q, k.shape[1])


DENSE_COMPLEXITY = {
    "parallel": "time O(T_q·T_k·D), memory O(T_q·T_k) (the whole weight matrix)",
    "chunk": "time O(T_q·T_k·D) (O(T·window·D) with a window), memory O(T·C) forward and backward (tiles recomputed)",
    "recurrent": "per query row against the KV cache: time O(T_k·D), cache memory O(T_k·D)",
}
DENSE_STATE = "none returned: a KV cache (the keys/values themselves), O(T_k·H·D)"
DENSE_NONCAUSAL = "every query sees every key (minus window/block/document limits)"


def check_data_gate(q, opts, *, per_key: bool):
    """A data-dependent log-gate: [B, T, H] (per head) or [B, T, H, D_k] (per key dim)."""
    B, T, H, K = q.shape
    shape, doc = ((B, T, H, K), "[B, T, H, D_k]") if per_key else ((B, T, H), "[B, T, H]")
    checks.gate(opts["g"], "g", shape, doc, q)


def check_beta(q, opts):
    checks.beta(opts["beta"], q.shape[:3], q)


def recurrent_complexity(*, per_key: bool = False, delta: bool = False) -> dict:
    gk = "·D_k" if per_key else ""
    solve = " + a C×C triangular solve per chunk" if delta else ""
    return {
        "parallel": f"time O(T²·D{gk}){' + a T×T triangular solve' if delta else ''}, memory O(T²{gk}) (a single chunk)",
        "chunk": f"time O(T·C·D{gk} + T·D_k·D_v){solve}, memory O(T·C{gk} + (T/C)·D_k·D_v) with autograd",
        "recurrent": "time O(T·D_k·D_v), memory O(D_k·D_v) per head (the state); one token per step",
    }


RECURRENT_STATE = "[B, H, D_k, D_v] float32 (S in S_t = A_t S_{t-1} + β_t k_t v_tᵀ; readout o_t = S_tᵀ(scale·q_t))"
RECURRENT_NONCAUSAL = (
    "o_i = fwd_i + bwd_i − β_i(scale·q_i·k_i)v_i: the causal recurrence run left→right and right→left with the same "
    "per-token gates, each token's own term counted once; a decay weighs key j from query i by the gates from i "
    "(inclusive) toward j (exclusive), γ^|i−j| for a constant decay; no state is returned"
)


def make_recurrent(*, name, family, formula, paper, inputs, required, prepare, check,
                   per_key=False, delta=False, state=RECURRENT_STATE, feature_map=None) -> "Mechanism":
    """A registry row for a mechanism that maps onto the shared recurrence (``feature_map``: the default
    of the ``feature_map`` option its ``prepare`` applies, if it has one; see ``recurrent_step``)."""
    from ..registry import Mechanism

    run = recurrent_run(prepare)
    return Mechanism(
        name=name, family=family, formula=formula, paper=paper, forms=RECURRENT_FORMS, inputs=inputs,
        required=frozenset(required), state=state, complexity=recurrent_complexity(per_key=per_key, delta=delta),
        noncausal=RECURRENT_NONCAUSAL, run=run, check=check, cross=False,
        step=recurrent_step(prepare, run, feature_map),
    )


def default_scale(opts, K: int) -> float:
    return opts["scale"] if opts["scale"] is not None else K ** -0.5


def prepare_direct(q, k, v, opts) -> Prepared:
    """q, k, v as given (with their scale); data-dependent ``g`` and ``beta`` passed straight through."""
    g, beta = opts.get("g"), opts.get("beta")
    return Prepared(q, k, v, g=None if g is None else cast(g, gate_dtype(q)),
                    beta=None if beta is None else cast(beta, q.dtype), scale=default_scale(opts, q.shape[-1]))


def check_gates(*, per_key: bool | None = None, beta: bool = False):
    """``check`` for mechanisms taking a data-dependent gate (per head or per key dim) and/or beta."""

    def check(q, k, v, opts):
        if per_key is not None:
            check_data_gate(q, opts, per_key=per_key)
        if beta:
            check_beta(q, opts)

    return check


def constant_decay(default: Callable[[int], torch.Tensor]):
    """(prepare, check) for a mechanism with a per-head constant log-decay ``g`` [H]."""

    def prepare(q, k, v, opts):
        B, T, H, K = q.shape
        return Prepared(q, k, v, g=constant_gate(opts, "g", B, T, H, default, q), scale=default_scale(opts, K))

    def check(q, k, v, opts):
        check_constant_gate(opts.get("g"), q.shape[2], q)

    return prepare, check


DENSE_INPUTS = {
    "window": "int: causal keeps keys i−window < j ≤ i; noncausal keeps |i−j| < window",
    "block_size": "int: attend only inside non-overlapping blocks of this size (DiagAttention)",
    "alibi_slopes": "[H] ALiBi slopes m_h: bias −m_h·|i−j|",
    "softcap": "float c: logits → c·tanh(logits/c)",
    "bias": "number or tensor broadcastable to [B, H, T_q, T_k], added to the logits",
}
