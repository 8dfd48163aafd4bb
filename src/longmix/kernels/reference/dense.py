"""Dense (softmax-family) attention in plain PyTorch: one code path, three forms.

    logits_ij = λ_i · (softcap(scale · q_i·k_j) − m_h·|p_i − j| + bias_ij),   j visible from i
    softmax:   o_i = Σ_j e^{logits_ij} v_j / (e^{sink_h} + Σ_j e^{logits_ij})
    sigmoid:   o_i = Σ_j σ(logits_ij) v_j                    (no normaliser)
    softplus:  o_i = Σ_j w_ij v_j / Σ_j w_ij,  w_ij = softplus(logits_ij)  (l1-normalised)

(λ_i, the per-row ``logit_scale``, is 1 except for softplus with length scaling.)

``p_i = i + T_k − T_q`` aligns the last query with the last key (bottom-right, as
flash-attn). Visibility: ``j ≤ p_i`` when causal; a ``window`` keeps
``p_i − window < j`` (causal) or ``|p_i − j| < window`` (noncausal); ``block_size``
keeps ``p_i // block_size == j // block_size`` (TransNormer's DiagAttention). A row
that sees no key returns zeros, never NaN.

Forms: ``parallel`` materialises [B, H, T_q, T_k]. ``chunk`` walks query blocks and,
inside each, only the key blocks the mask can reach, with an online (running-max)
softmax; each query block is recomputed in the backward pass (activation
checkpointing), so memory is O(T·C) forward and backward. ``recurrent`` is one query
row at a time against the whole key/value cache: what a decode step computes.

Example::

    >>> import torch
    >>> q, k, v = torch.randn(3, 1, 300, 2, 16).unbind(0)
    >>> a = dense(q, k, v, kind="softmax", scale=0.25, causal=True, form="parallel")
    >>> b = dense(q, k, v, kind="softmax", scale=0.25, causal=True, form="chunk", chunk_size=64)
    >>> torch.allclose(a, b, atol=1e-5)
    True
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch.utils.checkpoint import checkpoint


def visible_range(p_lo: int, p_hi: int, T_k: int, *, causal, window, block_size):
    """Half-open key range [lo, hi) that query positions p_lo..p_hi can see at all."""
    lo, hi = 0, T_k
    if causal:
        hi = min(hi, p_hi + 1)
    if window is not None:
        lo = max(lo, p_lo - window + 1)
        if not causal:
            hi = min(hi, p_hi + window)
    if block_size is not None:
        lo = max(lo, (p_lo // block_size) * block_size)
        hi = min(hi, (p_hi // block_size + 1) * block_size)
    return max(lo, 0), max(hi, lo, 0)


def _mask(qp, kp, *, causal, window, block_size):
    """Boolean visibility [len(qp), len(kp)] or None when everything is visible."""
    m = None

    def both(a, b):
        return b if a is None else a & b

    d = qp[:, None] - kp[None, :]
    if causal:
        m = both(m, d >= 0)
    if window is not None:
        m = both(m, d < window if causal else d.abs() < window)
    if block_size is not None:
        m = both(m, (qp[:, None] // block_size) == (kp[None, :] // block_size))
    return m


@dataclass(frozen=True)
class _Opts:
    """The options of one call, held together so the block functions stay small."""

    kind: str
    scale: float
    causal: bool
    window: int | None
    block_size: int | None
    alibi_slopes: torch.Tensor | None
    softcap: float | None
    sinks: torch.Tensor | None


def _logits(o: _Opts, q, k, qp, kp, bias_blk, logit_scale):
    """Logits for a query block and a key block, [B, H, Cq, Ck], and the visibility mask."""
    s = (q @ k.transpose(-1, -2)) * o.scale
    if o.softcap is not None:
        s = o.softcap * torch.tanh(s / o.softcap)
    if o.alibi_slopes is not None:
        dist = (qp[:, None] - kp[None, :]).abs().to(s.dtype)
        s = s - o.alibi_slopes.to(s.dtype)[:, None, None] * dist
    if bias_blk is not None:
        s = s + bias_blk
    if logit_scale is not None:  # softplus length scaling multiplies the whole logit
        s = s * logit_scale
    m = _mask(qp, kp, causal=o.causal, window=o.window, block_size=o.block_size)
    return s, m


def _attend_block(o: _Opts, qb, k, v, bias_rows, logit_scale, qp, kp_all, chunk_size, q_first: int, q_last: int):
    """Output rows for one query block (key positions ``q_first``…``q_last``, given as ints so that
    nothing waits for the GPU) against the key blocks it can reach."""
    B, H, Cq, _ = qb.shape
    Dv = v.shape[-1]
    lo, hi = visible_range(q_first, q_last, k.shape[2], causal=o.causal, window=o.window, block_size=o.block_size)
    acc = qb.new_zeros(B, H, Cq, Dv)
    den = qb.new_zeros(B, H, Cq, 1)
    run_max = qb.new_full((B, H, Cq, 1), float("-inf"))
    if o.kind == "softmax" and o.sinks is not None:
        run_max = run_max.clone().copy_(o.sinks.to(qb.dtype)[None, :, None, None].expand(B, H, Cq, 1))
    for ka in range(lo, hi, chunk_size):
        kb = min(ka + chunk_size, hi)
        bias_blk = bias_rows if bias_rows is None or bias_rows.dim() == 0 else bias_rows[..., ka:kb]
        s, m = _logits(o, qb, k[:, :, ka:kb], qp, kp_all[ka:kb], bias_blk, logit_scale)
        if o.kind == "softmax":
            if m is not None:
                s = s.masked_fill(~m, float("-inf"))
            new_max = torch.maximum(run_max, s.amax(-1, keepdim=True))
            safe = torch.where(torch.isinf(new_max), torch.zeros_like(new_max), new_max)
            p = (s - safe).exp()
            corr = (run_max - safe).exp()
            den = den * corr + p.sum(-1, keepdim=True)
            acc = acc * corr + p @ v[:, :, ka:kb]
            run_max = new_max
        else:
            w = torch.sigmoid(s) if o.kind == "sigmoid" else F.softplus(s)
            if m is not None:
                w = w.masked_fill(~m, 0.0)
            acc = acc + w @ v[:, :, ka:kb]
            den = den + w.sum(-1, keepdim=True)
    if o.kind == "sigmoid":
        return acc
    if o.kind == "softmax" and o.sinks is not None:
        safe = torch.where(torch.isinf(run_max), torch.zeros_like(run_max), run_max)
        den = den + (o.sinks.to(qb.dtype)[None, :, None, None] - safe).exp()
    return acc / torch.where(den > 0, den, torch.ones_like(den))


def dense(q, k, v, *, kind="softmax", scale, causal=True, window=None, block_size=None, alibi_slopes=None,
          softcap=None, bias=None, sinks=None, logit_scale=None, form="parallel", chunk_size=128):
    """Dense attention. q [B,Tq,H,D], k [B,Tk,H,D], v [B,Tk,H,Dv] (heads already expanded).

    ``bias`` is None, a number, or a tensor broadcastable to [B, H, Tq, Tk];
    ``logit_scale`` None or a tensor [Tq] multiplying each query row's logits.
    Returns o [B, Tq, H, Dv] in q's dtype.
    """
    T_q, T_k = q.shape[1], k.shape[1]
    qh, kh, vh = (x.transpose(1, 2) for x in (q, k, v))  # [B, H, T, D]
    if T_q == 0 or T_k == 0:
        return q.new_zeros(q.shape[0], T_q, q.shape[2], v.shape[-1])
    o = _Opts(kind, scale, causal, window, block_size, alibi_slopes, softcap, sinks)
    qpos = torch.arange(T_q, device=q.device) + (T_k - T_q)
    kpos = torch.arange(T_k, device=q.device)
    if bias is not None and not torch.is_tensor(bias):
        bias = q.new_full((), float(bias))  # a fill on the device, not a copy from the host (CUDA-graph safe)
    if form == "parallel":
        rows = [(0, T_q)]
        kblock = T_k
    else:
        step = 1 if form == "recurrent" else chunk_size
        rows = [(a, min(a + step, T_q)) for a in range(0, T_q, step)]
        kblock = T_k if form == "recurrent" else chunk_size
    outs = []
    for a, b in rows:
        ls = None if logit_scale is None else logit_scale[a:b].to(device=q.device, dtype=q.dtype)[:, None]
        bias_rows = None if bias is None else (bias if bias.dim() < 2 or bias.shape[-2] == 1 else bias[..., a:b, :])
        if bias_rows is not None and bias_rows.dim() >= 1 and bias_rows.shape[-1] != T_k:  # broadcast over keys
            bias_rows = bias_rows.expand(*bias_rows.shape[:-1], T_k)
        args = (o, qh[:, :, a:b], kh, vh, bias_rows, ls, qpos[a:b], kpos, kblock, a + T_k - T_q, b - 1 + T_k - T_q)
        if form != "parallel" and torch.is_grad_enabled() and any(
            t is not None and t.requires_grad for t in (qh, kh, vh, sinks, alibi_slopes, bias)
        ):
            outs.append(checkpoint(_attend_block, *args, use_reentrant=False))
        else:
            outs.append(_attend_block(*args))
    return torch.cat(outs, 2).transpose(1, 2)


def sigmoid_default_bias(T_k: int) -> float:
    """FlashSigmoid's default bias ``−log(T_k)``, so weights start near 1/T_k."""
    return -math.log(max(T_k, 1))
