"""The sequential definition of every recurrent mechanism: one token at a time.

All linear, decayed, gated and delta-rule mechanisms are one recurrence with a
transition that may decay (``g``) and may erase along the key (``beta``)::

    S_t = (I − β_t k_t k_tᵀ) · diag(α_t) · S_{t-1} + β_t k_t v_tᵀ,    α_t = exp(g_t)
    o_t = S_tᵀ q_t                               (q already multiplied by scale)

With ``beta=None`` the erase term is dropped and ``β_t = 1`` (linear / decayed / GLA);
with ``g=None`` there is no decay. A scalar gate (``g`` of shape [B, T, H]) multiplies
the whole state, so ``diag(α_t)`` and ``(I − β k kᵀ)`` commute and this is also Gated
DeltaNet's ``α_t (I − β_t k_t k_tᵀ) S_{t-1}``.

This is the ground truth the other forms are tested against, and the decode step.

Example::

    >>> import torch
    >>> q = k = torch.randn(1, 5, 2, 4); v = torch.randn(1, 5, 2, 3)
    >>> o, S = scan(q, k, v)
    >>> o.shape, S.shape
    (torch.Size([1, 5, 2, 3]), torch.Size([1, 2, 4, 3]))
"""
from __future__ import annotations

import torch


def decay_state(S: torch.Tensor, g_t: torch.Tensor) -> torch.Tensor:
    """``diag(exp(g_t)) S`` for a scalar gate [B, H] or a per-key gate [B, H, K]."""
    a = g_t.exp()
    return S * (a[..., None, None] if a.dim() == S.dim() - 2 else a[..., None])


def step(S, q_t, k_t, v_t, g_t=None, beta_t=None):
    """One recurrence step. Shapes: S [B,H,K,V]; q_t, k_t [B,H,K]; v_t [B,H,V];
    g_t [B,H] or [B,H,K]; beta_t [B,H]. Returns (o_t [B,H,V], S_t)."""
    if g_t is not None:
        S = decay_state(S, g_t)
    if beta_t is not None:
        # (I − β k kᵀ) S + β k vᵀ = S + k · (β (v − Sᵀ k))ᵀ
        v_t = beta_t[..., None] * (v_t - torch.einsum("bhk,bhkv->bhv", k_t, S))
    S = S + k_t[..., :, None] * v_t[..., None, :]
    return torch.einsum("bhk,bhkv->bhv", q_t, S), S


def scan(q, k, v, g=None, beta=None, initial_state=None):
    """Run the recurrence over time. q, k [B,T,H,K]; v [B,T,H,V]; g [B,T,H] or
    [B,T,H,K]; beta [B,T,H]; initial_state [B,H,K,V]. Returns (o [B,T,H,V], S [B,H,K,V])."""
    B, T, H, K = k.shape
    V = v.shape[-1]
    S = q.new_zeros(B, H, K, V) if initial_state is None else initial_state.to(q.dtype)
    outs = []
    for t in range(T):
        o_t, S = step(
            S, q[:, t], k[:, t], v[:, t],
            None if g is None else g[:, t],
            None if beta is None else beta[:, t],
        )
        outs.append(o_t)
    o = torch.stack(outs, 1) if outs else v.new_zeros(B, 0, H, V)
    return o, S


def bidirectional(kernel, q, k, v, g=None, beta=None):
    """Noncausal (bidirectional) version of any causal recurrence ``kernel``.

    Runs the recurrence left→right and right→left with the same per-token gates and
    counts each token's own contribution once::

        o_i = fwd_i + bwd_i − β_i (q_i·k_i) v_i

    For decayed mechanisms the weight of key j seen from query i is then the product
    of the gates from the query (inclusive) towards the key (exclusive):
    ``Π_{t∈(j,i]} α_t`` for j ≤ i and ``Π_{t∈[i,j)} α_t`` for j > i, i.e.
    ``γ^{|i−j|}`` for a constant decay γ. For the delta rule both directions run the
    full erase-and-write recurrence.
    """
    def flip(x):
        return None if x is None else x.flip(1)

    o_f, _ = kernel(q, k, v, g, beta, None)
    o_b, _ = kernel(flip(q), flip(k), flip(v), flip(g), flip(beta), None)
    self_w = (q * k).sum(-1, keepdim=True)
    if beta is not None:
        self_w = self_w * beta[..., None]
    return o_f + o_b.flip(1) - self_w * v
