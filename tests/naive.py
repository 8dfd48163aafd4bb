"""Plain sequential definitions of every mechanism, written from DESIGN.md's formulas.

Nothing here imports longmix's kernels: these are the definitions the library is tested
against, so they must be able to disagree with it. Everything is an explicit loop over
tokens (recurrences: explicit K×K transition matrices such as (I − β k kᵀ) diag(α)) or
over query rows (dense attention: an explicit list of visible keys per row). Functions
compute in the dtype of their inputs: call them on float64 copies for the reference and
on the low-precision inputs for the flash-attn error baseline (see ``helpers.assert_close``).

Shapes follow the library: q [B, T_q, H, D_k], k [B, T_k, H_kv, D_k], v [B, T_k, H_kv, D_v];
every function returns ``(o, state)`` (state None for dense mechanisms and noncausal runs).
"""
from __future__ import annotations

import math
from functools import partial

import torch

# ------------------------------------------------------------------------------ helpers


def expand_kv(x: torch.Tensor, H: int) -> torch.Tensor:
    """GQA: query head h reads key/value head h // (H / H_kv)."""
    H_kv = x.shape[2]
    return x[:, :, [h // (H // H_kv) for h in range(H)]]


def _f(x: float, like: torch.Tensor) -> torch.Tensor:
    return torch.tensor(x, dtype=like.dtype)


# -------------------------------------------------------------------------- dense family


def visible(p: int, j: int, *, causal: bool, window, block_size) -> bool:
    """May the query at (bottom-right aligned) position p see key j?"""
    if causal and j > p:
        return False
    if window is not None:
        if causal and not (p - window < j):
            return False
        if not causal and not (abs(p - j) < window):
            return False
    if block_size is not None and math.floor(p / block_size) != math.floor(j / block_size):
        return False
    return True


def dense(q, k, v, *, kind, causal=True, scale=None, window=None, block_size=None, sinks=None, alibi_slopes=None,
          softcap=None, bias=None, length_scaling=None, initial_state=None):
    """logits l_ij = softcap(scale q_i·k_j) − m_h |p_i − j| + bias_ij over the visible keys j of row i;
    softmax  o_i = Σ e^{l_ij} v_j / (e^{sink_h} + Σ e^{l_ij});
    sigmoid  o_i = Σ σ(l_ij) v_j   (bias defaults to −ln T_k);
    softplus o_i = Σ w_ij v_j / Σ w_ij, w_ij = softplus(λ_i l_ij), λ_i = ln n_i with length_scaling.
    p_i = i + T_k − T_q (bottom-right alignment). A row that sees nothing is 0."""
    assert initial_state is None
    B, Tq, H, D = q.shape
    Tk, Dv = k.shape[1], v.shape[-1]
    k, v = expand_kv(k, H), expand_kv(v, H)
    scale = D ** -0.5 if scale is None else scale
    if kind == "sigmoid" and bias is None:
        bias = -math.log(Tk) if Tk > 0 else 0.0
    if torch.is_tensor(bias):
        bias = bias.to(q.dtype).expand(B, H, Tq, Tk)
    o = q.new_zeros(B, Tq, H, Dv)
    for i in range(Tq):
        p = i + Tk - Tq
        J = [j for j in range(Tk) if visible(p, j, causal=causal, window=window, block_size=block_size)]
        if not J:
            continue
        Jt = torch.tensor(J)
        l = torch.einsum("bhd,bjhd->bhj", q[:, i], k[:, Jt]) * scale  # [B, H, n]
        if softcap is not None:
            l = softcap * torch.tanh(l / softcap)
        if alibi_slopes is not None:
            dist = torch.tensor([abs(p - j) for j in J], dtype=q.dtype)
            l = l - alibi_slopes.to(q.dtype)[None, :, None] * dist
        if bias is not None:
            l = l + (bias[:, :, i, Jt] if torch.is_tensor(bias) else bias)
        vj = v[:, Jt]  # [B, n, H, Dv]
        if kind == "softmax":
            m = l.amax(-1, keepdim=True)
            if sinks is not None:
                m = torch.maximum(m, sinks.to(q.dtype)[None, :, None])
            e = torch.exp(l - m)
            den = e.sum(-1)
            if sinks is not None:
                den = den + torch.exp(sinks.to(q.dtype)[None, :] - m[..., 0])
            o[:, i] = torch.einsum("bhj,bjhd->bhd", e, vj) / den[..., None]
        elif kind == "sigmoid":
            o[:, i] = torch.einsum("bhj,bjhd->bhd", 1 / (1 + torch.exp(-l)), vj)
        elif kind == "softplus":
            if length_scaling:
                l = l * math.log(len(J))
            w = torch.log1p(torch.exp(-l.abs())) + l.clamp(min=0)  # softplus, written out
            den = w.sum(-1)
            o[:, i] = torch.einsum("bhj,bjhd->bhd", w, vj) / torch.where(den == 0, 1, den)[..., None]
        else:
            raise ValueError(kind)
    return o, None


# ---------------------------------------------------------------------- feature maps


def fm_identity(x):
    return x


def fm_elu1(x):
    return torch.where(x > 0, x + 1, torch.exp(x))


def fm_elu(x):
    return torch.where(x > 0, x, torch.exp(x) - 1)


def fm_relu(x):
    return torch.where(x > 0, x, torch.zeros_like(x))


def fm_taylor2(x):
    """[1, x/D^¼, vec(x⊗x)/(√2·√D)] (row-major vec)."""
    D = x.shape[-1]
    outer = torch.einsum("...a,...b->...ab", x, x).reshape(*x.shape[:-1], D * D)
    return torch.cat([torch.ones_like(x[..., :1]), x / D ** 0.25, outer / math.sqrt(2 * D)], -1)


def _softmax(x):
    e = torch.exp(x - x.amax(-1, keepdim=True))
    return e / e.sum(-1, keepdim=True)


def fm_hedgehog(x):
    return torch.cat([_softmax(x), _softmax(-x)], -1)


def performer_features(D: int) -> torch.Tensor:
    """The library's fixed random matrix ω [D, D] (float64). It is data (a seeded draw), not
    computation: the tests check its documented property (orthogonal rows) separately."""
    from longmix.feature_maps import _orthogonal_features

    return _orthogonal_features(D, torch.device("cpu"), torch.float64)


def fm_performer(x):
    """FAVOR+: x̃ = x/D^¼, φ(x) = exp(ω x̃ − ‖x̃‖²/2)/√D."""
    D = x.shape[-1]
    w = performer_features(D).to(x.dtype)
    xs = x / D ** 0.25
    return torch.exp(torch.einsum("...d,fd->...f", xs, w) - 0.5 * (xs * xs).sum(-1, keepdim=True)) / math.sqrt(D)


FEATURE_MAPS = {"identity": fm_identity, "elu1": fm_elu1, "elu": fm_elu, "relu": fm_relu,
                "taylor2": fm_taylor2, "hedgehog": fm_hedgehog, "performer": fm_performer}


def feature(fm, default="identity"):
    fm = default if fm is None else fm
    return FEATURE_MAPS[fm] if isinstance(fm, str) else fm


# ------------------------------------------------------------------ recurrent family


def sequential(q, k, v, transition, write, initial_state=None):
    """S_t = A_t S_{t-1} + W_t, o_t = S_tᵀ q_t, one token at a time (q already scaled).

    ``transition(t)`` gives A_t [B, H, K, K]; ``write(t)`` gives W_t [B, H, K, V]."""
    B, T, H, K = q.shape
    V = v.shape[-1]
    S = q.new_zeros(B, H, K, V) if initial_state is None else initial_state.to(q.dtype).clone()
    o = q.new_zeros(B, T, H, V)
    for t in range(T):
        S = transition(t) @ S + write(t)
        o[:, t] = torch.einsum("bhkv,bhk->bhv", S, q[:, t])
    return o, S


def _eye(B, H, K, like):
    return torch.eye(K, dtype=like.dtype).expand(B, H, K, K)


def gated_delta_recurrence(q, k, v, *, alpha=None, beta=None, order="kda", initial_state=None):
    """The causal recurrences of DESIGN.md with explicit transition matrices.

    alpha None (no decay), [B, T, H] (scalar) or [B, T, H, K] (per key dim); beta None (plain
    write k vᵀ) or [B, T, H] (delta rule). ``order``: "kda" A = (I − β k kᵀ) diag(α),
    "gated" A = α (I − β k kᵀ) (identical for scalar α)."""
    B, T, H, K = q.shape

    def decay(t):
        if alpha is None:
            return _eye(B, H, K, q)
        a = alpha[:, t]
        if a.dim() == 2:  # scalar per head
            return a[..., None, None] * _eye(B, H, K, q)
        return torch.diag_embed(a)

    def erase(t):
        if beta is None:
            return _eye(B, H, K, q)
        kt = k[:, t]
        return _eye(B, H, K, q) - beta[:, t][..., None, None] * torch.einsum("bhi,bhj->bhij", kt, kt)

    def transition(t):
        return erase(t) @ decay(t) if order == "kda" else decay(t) @ erase(t)

    def write(t):
        w = torch.einsum("bhk,bhv->bhkv", k[:, t], v[:, t])
        return w if beta is None else beta[:, t][..., None, None] * w

    return sequential(q, k, v, transition, write, initial_state)


def decay_weights(alpha, T):
    """Noncausal weight matrix W[b, h, i, j(, d)] = product of the gates from i (inclusive)
    toward j (exclusive); W_ii = 1. alpha [B, T, H(, K)] or None (all ones)."""
    if alpha is None:
        return None
    Wt = alpha.new_ones(alpha.shape[0], alpha.shape[2], T, T, *alpha.shape[3:])
    a = alpha.movedim(1, 2)  # [B, H, T(, K)]
    for i in range(T):
        for j in range(T):
            if j < i:
                Wt[:, :, i, j] = a[:, :, j + 1:i + 1].prod(2)
            elif j > i:
                Wt[:, :, i, j] = a[:, :, i:j].prod(2)
    return Wt


def noncausal_additive(q, k, v, alpha=None):
    """o_i = Σ_j (Σ_d q_id k_jd W_ij(d)) v_j over all j (q already scaled); returns (o, A)."""
    W = decay_weights(alpha, q.shape[1])
    if W is None:
        A = torch.einsum("bihd,bjhd->bhij", q, k)
    elif W.dim() == 4:
        A = torch.einsum("bihd,bjhd->bhij", q, k) * W
    else:
        A = torch.einsum("bihd,bjhd,bhijd->bhij", q, k, W)
    return torch.einsum("bhij,bjhv->bihv", A, v), A


def noncausal_delta(q, k, v, *, alpha=None, beta, order):
    """Both directions of the delta recurrence, each token's own term once:
    o_i = fwd_i + bwd_i − β_i (q_i·k_i) v_i (q already scaled)."""
    f = lambda x: None if x is None else x.flip(1)  # noqa: E731
    fwd, _ = gated_delta_recurrence(q, k, v, alpha=alpha, beta=beta, order=order)
    bwd, _ = gated_delta_recurrence(f(q), f(k), f(v), alpha=f(alpha), beta=f(beta), order=order)
    self_term = (beta * (q * k).sum(-1))[..., None] * v
    return fwd + bwd.flip(1) - self_term, None


# --------------------------------------------------------------- mechanisms, one each


def _qkv(q, k, v):
    H = q.shape[2]
    return q, expand_kv(k, H), expand_kv(v, H)


def linear(q, k, v, *, causal=True, scale=None, feature_map=None, normalize=None, initial_state=None):
    """S_t = S_{t-1} + φ(k_t) v_tᵀ; o_t = S_tᵀ(scale φ(q_t)); normalize: o_t = S_tᵀφ(q_t) / φ(q_t)·z_t,
    z_t = z_{t-1} + φ(k_t), state = [S | z] (D_v + 1 columns). scale defaults to F^-½."""
    q, k, v = _qkv(q, k, v)
    phi = feature(feature_map)
    fq, fk = phi(q), phi(k)
    F = fq.shape[-1]
    scale = F ** -0.5 if scale is None else scale
    B, T, H, V = v.shape
    if not causal:
        num, A = noncausal_additive(fq, fk, v)
        if not normalize:
            return num * scale, None
        den = A.sum(-1).transpose(1, 2)[..., None]  # [B, T, H, 1]
        return num / torch.where(den == 0, 1, den), None
    if not normalize:
        return gated_delta_recurrence(fq * scale, fk, v, initial_state=initial_state)
    S = fq.new_zeros(B, H, F, V) if initial_state is None else initial_state[..., :V].to(q.dtype).clone()
    z = fq.new_zeros(B, H, F) if initial_state is None else initial_state[..., V].to(q.dtype).clone()
    o = v.new_zeros(B, T, H, V)
    for t in range(T):
        S = S + torch.einsum("bhf,bhv->bhfv", fk[:, t], v[:, t])
        z = z + fk[:, t]
        den = (fq[:, t] * z).sum(-1)[..., None]
        o[:, t] = torch.einsum("bhfv,bhf->bhv", S, fq[:, t]) / torch.where(den == 0, 1, den)
    return o, torch.cat([S, z[..., None]], -1)


def srms_norm(x):
    """TransNormer's SimpleRMSNorm: x / (‖x‖/√D + 1e-8)."""
    return x / (torch.sqrt((x * x).mean(-1, keepdim=True)) + 1e-8)


def transnormer(q, k, v, *, causal=True, scale=None, feature_map=None, initial_state=None):
    o, S = linear(q, k, v, causal=causal, scale=scale, feature_map=feature_map or "elu", initial_state=initial_state)
    return srms_norm(o), S


def _decayed(q, k, v, g, *, causal, scale, initial_state):
    """S_t = α_t S_{t-1} (or diag(α_t) S_{t-1}) + k_t v_tᵀ with α = exp(g)."""
    q, k, v = _qkv(q, k, v)
    scale = q.shape[-1] ** -0.5 if scale is None else scale
    alpha = torch.exp(g.to(q.dtype))
    if not causal:
        return noncausal_additive(q * scale, k, v, alpha)[0], None
    return gated_delta_recurrence(q * scale, k, v, alpha=alpha, initial_state=initial_state)


def retention_default(H):
    """RetNet's γ_h = 1 − 2^(−5−h), passed as a float32 log."""
    return torch.tensor([math.log(1 - 2.0 ** (-5 - h)) for h in range(H)], dtype=torch.float32)


def lightning_default(H):
    """TransNormerLLM layer 0: log λ_h = −8h/H, float32."""
    return torch.tensor([-8.0 * h / H for h in range(H)], dtype=torch.float32)


def _constant(default):
    def mech(q, k, v, *, causal=True, scale=None, g=None, initial_state=None):
        B, T, H, _ = q.shape
        g = default(H) if g is None else g
        return _decayed(q, k, v, g[None, None, :].expand(B, T, H), causal=causal, scale=scale,
                        initial_state=initial_state)
    return mech


def data_gated(q, k, v, *, g, causal=True, scale=None, initial_state=None):
    return _decayed(q, k, v, g, causal=causal, scale=scale, initial_state=initial_state)


def _delta(order, gated):
    def mech(q, k, v, *, beta, g=None, causal=True, scale=None, initial_state=None):
        assert gated == (g is not None)
        q, k, v = _qkv(q, k, v)
        q = q * (q.shape[-1] ** -0.5 if scale is None else scale)
        alpha = None if g is None else torch.exp(g.to(q.dtype))
        beta = beta.to(q.dtype)
        if not causal:
            return noncausal_delta(q, k, v, alpha=alpha, beta=beta, order=order)
        return gated_delta_recurrence(q, k, v, alpha=alpha, beta=beta, order=order, initial_state=initial_state)
    return mech


# name → definition. A newly registered mechanism needs an entry here (test_registry checks).
NAIVE = {
    "softmax": partial(dense, kind="softmax"),
    "sigmoid": partial(dense, kind="sigmoid"),
    "softplus": partial(dense, kind="softplus"),
    "linear": linear,
    "transnormer": transnormer,
    "retention": _constant(retention_default),
    "lightning": _constant(lightning_default),
    "mamba2": data_gated,
    "gla": data_gated,
    "deltanet": _delta("kda", gated=False),
    "gated_deltanet": _delta("gated", gated=True),   # α (I − β k kᵀ)
    "kda": _delta("kda", gated=True),                # (I − β k kᵀ) diag(α)
}
