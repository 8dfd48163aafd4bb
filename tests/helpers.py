"""Tolerance rule and the calls shared by the tests."""
from __future__ import annotations

import torch

import longmix
import naive
from inputs import Case, f64

# The floor of the flash-attn rule, relative to max|ref|. For float32 it is 1e-5 ≈ 80 ulps
# (ε = 1.2e-7): the chunkwise/parallel forms are different algorithms from the sequential
# definition — a C×C unit-triangular solve per chunk for the delta rule, decays exp(G_r − G_u)
# from cumulative log-gates — and may legitimately round worse than it. Measured worst case over
# these tests: 1.8e-6 (deltanet chunk, T = 300), 3e-6 for gated mechanisms when the gate cumsums
# are float32. Every real bug we injected (mutation check) errs by > 1e-3. Half precisions: ~8 ulps.
FLOOR = {torch.float32: 1e-5, torch.float16: 8e-3, torch.bfloat16: 6e-2}
RTOL_F64 = 1e-9  # float64 against float64: both sides are exact to ~1e-15; 1e-9 leaves room for long sums


def assert_close(out, ref, ref_lowp=None, *, what="output", factor=2.0):
    """Check ``out`` against the float64 definition ``ref`` (flash-attn's rule).

    * ``ref_lowp`` given (``out`` computed in a low precision): the error of ``out`` against
      ``ref`` may be at most ``factor`` (2) times the error of the naive definition run in that
      same precision (``ref_lowp``) against ``ref``, plus a floor ``FLOOR[dtype] × max|ref|``
      (≈ 80 ulps for float32, justified above). A kernel may round differently from the naive
      loop, but not be much worse than the plain definition at its own precision.
    * ``ref_lowp`` None (``out`` computed in float64): relative error ≤ 1e-9 of ``max|ref|``.

    Errors are max-abs over the tensor; the scale is ``max|ref|`` (1 when ``ref`` is all zeros),
    so the rule is relative. Non-finite values must sit exactly where the reference has them.
    """
    assert out.shape == ref.shape, f"{what}: shape {tuple(out.shape)} != reference {tuple(ref.shape)}"
    o, r = out.detach().to(f64), ref.detach().to(f64)
    finite = torch.isfinite(r)
    bad = ~torch.isfinite(o) & finite
    assert not bad.any(), f"{what}: {int(bad.sum())} non-finite values where the definition is finite"
    assert torch.equal(torch.isfinite(o), finite), f"{what}: finite where the definition is not"
    o, r = o[finite], r[finite]
    scale = r.abs().max().item() if r.numel() else 0.0
    scale = scale if scale > 0 else 1.0
    err = (o - r).abs().max().item() if r.numel() else 0.0
    if ref_lowp is None:
        tol = RTOL_F64 * scale
        rule = f"1e-9 × max|ref| ({scale:.3g})"
    else:
        base = (ref_lowp.detach().to(f64)[finite] - r).abs().max().item() if r.numel() else 0.0
        floor = FLOOR[out.dtype if out.dtype in FLOOR else ref_lowp.dtype] * scale
        tol = factor * base + floor
        rule = f"{factor} × naive-{ref_lowp.dtype} error {base:.3g} + floor {floor:.3g}"
    assert err <= tol, f"{what}: max error {err:.3g} > {tol:.3g} = {rule}"


def lib(case: Case, **kw):
    """longmix.attention on a case; returns (o, state or None)."""
    out = longmix.attention(case.q, case.k, case.v, case.name, initial_state=case.initial_state, **case.opts, **kw)
    return out if isinstance(out, tuple) else (out, None)


def ref(case: Case, **kw):
    """The naive definition on a case, in the case's dtype (cast it to float64 for the reference)."""
    kw = {n: x for n, x in kw.items() if n not in ("form", "chunk_size", "backend", "output_final_state")}
    if case.initial_state is not None:
        kw["initial_state"] = case.initial_state
    return naive.NAIVE[case.name](case.q, case.k, case.v, **case.opts, **kw)


def is_recurrent(name) -> bool:
    return longmix.describe(name).family != "dense"


def check_forward(case: Case, **kw):
    """Library vs definition on outputs and (for recurrent mechanisms, causal) final states."""
    want_state = is_recurrent(case.name) and kw.get("causal", True)
    if want_state:
        kw["output_final_state"] = True
    o, S = lib(case, **kw)
    assert o.dtype == case.dtype, f"output dtype {o.dtype} != input dtype {case.dtype}"
    r, rS = ref(case.cast(f64), **kw)
    lo, loS = (None, None) if case.dtype == f64 else ref(case, **kw)
    assert_close(o, r, lo, what=f"{case.name} output")
    if want_state:
        assert S.dtype == (f64 if case.dtype == f64 else torch.float32), f"state dtype {S.dtype}"
        assert_close(S, rS, loS, what=f"{case.name} final state")
    return o, S


def check_grads(case: Case, seed=1, **kw):
    """torch.autograd.grad of (o · w).sum() (plus (S · w_S).sum() for the final state) w.r.t. every
    floating input, library vs definition. ``case`` should be float64."""
    want_state = is_recurrent(case.name) and kw.get("causal", True)
    if want_state:
        kw["output_final_state"] = True
    gen = torch.Generator().manual_seed(seed)
    results = []
    for fn in (lib, ref):
        c = case.detached()
        leaves = c.grad_leaves()
        o, S = fn(c, **kw)
        w = torch.randn(o.shape, generator=gen, dtype=o.dtype)
        loss = (o * w).sum()
        if want_state:
            loss = loss + (S * torch.randn(S.shape, generator=gen, dtype=S.dtype)).sum()
        grads = torch.autograd.grad(loss, list(leaves.values()), allow_unused=True)
        results.append(dict(zip(leaves, grads)))
        gen.manual_seed(seed)  # same weights for the definition
    got, want = results
    for name in want:
        gw, gr = got[name], want[name]
        assert gr is not None, f"the definition of {case.name} does not use {name}"
        assert gw is not None, f"{case.name}: no gradient reaches {name}"
        assert_close(gw, gr, what=f"{case.name} grad {name}")
    return got
