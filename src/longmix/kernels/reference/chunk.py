"""Chunkwise form of the shared recurrence (see ``recurrent.py``), in plain PyTorch.

The sequence is cut into chunks of ``C`` tokens. Inside a chunk everything is a
small dense computation; between chunks only the state ``S`` [K, V] is passed. With
``G_r`` the cumulative log-gate from the chunk start to position ``r`` (inclusive)
and ``S_0`` the state entering the chunk:

* pairwise matrix ``P_ru = Σ_d q_rd k_ud exp(G_rd − G_ud)`` for ``u ≤ r`` (GLA; a
  scalar gate reduces it to ``(q_r·k_u) exp(G_r − G_u)``, Lightning Attention-2);
* additive mechanisms (``beta=None``): ``o = (q ⊙ e^G) S_0 + P v``;
* delta rule (WY / UT transform, DeltaNet and Gated DeltaNet papers; per-key gates as
  in KDA): the effective values ``u_t = β_t (v_t − (diag(α_t) S_{t-1})ᵀ k_t)`` solve
  ``(I + A) u = β v − β (k ⊙ e^G) S_0`` with ``A_tu = β_t Σ_d k_td k_ud e^{G_td − G_ud}``
  for ``u < t``; so ``u = U − W S_0`` with ``U, W`` computed for all chunks at once
  by one triangular solve, and then ``o = (q ⊙ e^G) S_0 + P u``;
* state passing: ``S ← e^{G_C} S_0 + (k ⊙ e^{G_C − G})ᵀ (v or u)``.

Every exponent is a difference ``G_r − G_u`` with ``u ≤ r`` (masked before ``exp``) or
``G ≤ 0``, so nothing overflows however strong the gates are. Time
O(T·C·K + T·K·V) (times K for per-key gates), memory O(T·C) (O(T·C·K) for per-key
gates); no T×T tensor. ``chunk_size=T`` is the parallel form.

Example::

    >>> import torch
    >>> q, k = torch.randn(2, 1, 100, 3, 8).unbind(0); v = torch.randn(1, 100, 3, 8)
    >>> g = -torch.rand(1, 100, 3)
    >>> o, S = chunk(q, k, v, g=g, chunk_size=32)
    >>> from longmix.kernels.reference.recurrent import scan
    >>> torch.allclose(o, scan(q, k, v, g=g)[0], atol=1e-4)
    True
"""
from __future__ import annotations

import torch
import torch.nn.functional as F


def _to_chunks(x: torch.Tensor, C: int, N: int) -> torch.Tensor:
    """[B, T, H, ...] → [B, H, N, C, ...], zero-padding T up to N·C."""
    T = x.shape[1]
    if N * C != T:
        pad = [0, 0] * (x.dim() - 2) + [0, N * C - T]
        x = F.pad(x, pad)
    x = x.movedim(1, 2)  # [B, H, T, ...]
    return x.reshape(x.shape[0], x.shape[1], N, C, *x.shape[3:])


SUB = 16  # secondary chunk for per-key gates (GLA's two-level chunking)


def pairwise(a, b, G, *, strict: bool):
    """``M_ru = Σ_d a_rd b_ud exp(G_rd − G_ud)`` masked to ``u < r`` (strict) or ``u ≤ r``.

    a, b [..., C, K]; G None, [..., C] (scalar gate) or [..., C, K] (per-key gate), any
    float dtype (differences are taken in G's dtype, then cast to a's before ``exp``).
    """
    C = a.shape[-2]
    mask = torch.ones(C, C, dtype=torch.bool, device=a.device).tril(-1 if strict else 0)
    if G is None:
        M = a @ b.transpose(-1, -2)
    elif G.dim() == a.dim() - 1:  # scalar gate per position
        diff = (G[..., :, None] - G[..., None, :]).masked_fill(~mask, float("-inf"))
        M = (a @ b.transpose(-1, -2)) * diff.to(a.dtype).exp()
    elif C <= SUB:  # per-key gate: the decay differs per feature, so it sits inside the sum
        diff = (G[..., :, None, :] - G[..., None, :, :]).masked_fill(~mask[:, :, None], float("-inf"))
        M = torch.einsum("...rd,...ud,...rud->...ru", a, b, diff.to(a.dtype).exp())
    else:
        M = _pairwise_two_level(a, b, G, strict)
    return M.masked_fill(~mask, 0.0)


def _pairwise_two_level(a, b, G, strict):
    """Per-key-gate pairwise matrix without a [C, C, K] tensor.

    Split the chunk into sub-blocks of SUB positions. Between a key sub-block j and any
    later query position r the decay factorises through the gate at j's last position
    (``G_ref``): ``exp(G_r − G_u) = exp(G_r − G_ref) · exp(G_ref − G_u)``, both exponents
    ≤ 0, so the block is a plain matrix product. Only the diagonal sub-blocks need the
    per-feature [SUB, SUB, K] tensor.
    """
    C, K = a.shape[-2:]
    n = -(-C // SUB)
    pad = n * SUB - C
    if pad:
        a, b = (F.pad(x, (0, 0, 0, pad)) for x in (a, b))
        G = torch.cat([G, G[..., -1:, :].expand(*G.shape[:-2], pad, K)], -2)
    Cp = n * SUB
    ab, bb, Gb = (x.reshape(*x.shape[:-2], n, SUB, K) for x in (a, b, G))
    # diagonal sub-blocks (mask applied by the caller; here u ≤ r inside the block)
    dmask = torch.ones(SUB, SUB, dtype=torch.bool, device=a.device).tril()
    diff = (Gb[..., :, None, :] - Gb[..., None, :, :]).masked_fill(~dmask[:, :, None], float("-inf"))
    Md = torch.einsum("...ird,...iud,...irud->...iru", ab, bb, diff.to(a.dtype).exp())  # [..., n, SUB, SUB]
    # off-diagonal sub-blocks through the reference point of each key sub-block
    ref = Gb[..., :, -1:, :]  # [..., n, 1, K]
    a_j = a[..., None, :, :] * (G[..., None, :, :] - ref).clamp_max(0).to(a.dtype).exp()  # [..., n, Cp, K]
    b_j = bb * (ref - Gb).to(a.dtype).exp()  # [..., n, SUB, K]
    Mo = (a_j @ b_j.transpose(-1, -2)).movedim(-3, -2).reshape(*a.shape[:-2], Cp, Cp)  # [r, (j, u)]
    blk = torch.arange(Cp, device=a.device) // SUB
    Mo = Mo.masked_fill(~(blk[:, None] > blk[None, :]), 0.0)
    eye = torch.eye(n, dtype=a.dtype, device=a.device)
    Mdiag = (Md[..., :, :, None, :] * eye[:, None, :, None]).reshape(*a.shape[:-2], Cp, Cp)
    return (Mo + Mdiag)[..., :C, :C]


def _gate_mul(x, w):
    """x [..., C, K] times a gate factor w of shape [..., C] (scalar) or [..., C, K]."""
    return x * (w[..., None] if w.dim() == x.dim() - 1 else w)


def chunk(q, k, v, g=None, beta=None, initial_state=None, *, chunk_size: int = 64):
    """Chunkwise recurrence. Same arguments and results as ``recurrent.scan``."""
    B, T, H, K = k.shape
    V = v.shape[-1]
    S = q.new_zeros(B, H, K, V) if initial_state is None else initial_state.to(q.dtype)
    if T == 0:
        return v.new_zeros(B, 0, H, V), S
    C = max(1, min(chunk_size, T))
    N = -(-T // C)
    qc, kc, vc = (_to_chunks(x, C, N) for x in (q, k, v))  # [B, H, N, C, ·]
    # gate cumsums in float64: differences of long cumsums lose digits in float32
    G = None if g is None else _to_chunks(g.double(), C, N).cumsum(3)  # [B, H, N, C(, K)]

    P = pairwise(qc, kc, G, strict=False)  # [B, H, N, C, C]
    if G is None:
        q_in, k_out, chunk_decay = qc, kc, None
    else:
        G_last = G[:, :, :, -1:]  # [B, H, N, 1(, K)]
        q_in = _gate_mul(qc, G.exp().to(qc.dtype))  # reads S_0 decayed to each position
        k_out = _gate_mul(kc, (G_last - G).exp().to(kc.dtype))  # writes decayed to the chunk end
        chunk_decay = G_last.exp().squeeze(3).to(qc.dtype)  # [B, H, N(, K)]

    if beta is not None:
        bc = _to_chunks(beta, C, N)  # [B, H, N, C]
        A = bc[..., None] * pairwise(kc, kc, G, strict=True)
        eye = torch.eye(C, dtype=A.dtype, device=A.device)
        k_in = kc if G is None else _gate_mul(kc, G.exp().to(kc.dtype))
        rhs = torch.cat([bc[..., None] * vc, bc[..., None] * k_in], -1)
        UW = torch.linalg.solve_triangular(eye + A, rhs, upper=False, unitriangular=True)
        U, W = UW.split([V, K], -1)

    outs = []
    for n in range(N):
        vn = vc[:, :, n] if beta is None else U[:, :, n] - W[:, :, n] @ S
        outs.append(q_in[:, :, n] @ S + P[:, :, n] @ vn)
        if chunk_decay is not None:
            d = chunk_decay[:, :, n]
            S = S * (d[..., None, None] if d.dim() == 2 else d[..., None])
        S = S + k_out[:, :, n].transpose(-1, -2) @ vn
    o = torch.stack(outs, 2).reshape(B, H, N * C, V)[:, :, :T].movedim(1, 2)
    return o, S


def parallel(q, k, v, g=None, beta=None, initial_state=None):
    """The parallel form: the whole T×T matrix at once (a single chunk)."""
    return chunk(q, k, v, g, beta, initial_state, chunk_size=max(1, k.shape[1]))
