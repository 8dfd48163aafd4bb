"""Outside implementations timed beside longmix: PyTorch SDPA (each backend), FlexAttention,
flash-attn and flash-linear-attention (fla).

Each anchor is an :class:`Anchor` with ``missing(device)`` (None, or why it cannot run here:
not installed, needs CUDA) and ``fn(x, causal)`` / ``decode_fn(x)`` on the benchmark's
inputs (layout [B, T, H, D], as longmix). A missing anchor becomes a row that says so;
nothing is ever substituted for it.

Example::

    >>> a = ANCHORS["sdpa_math"]
    >>> a.missing("cpu") is None, ANCHORS["sdpa_cudnn"].missing("cpu")
    (True, 'the cuDNN SDPA backend needs a CUDA GPU')
"""
from __future__ import annotations

import importlib.util
from dataclasses import dataclass
from functools import lru_cache
from typing import Callable

import torch
import torch.nn.functional as F


@dataclass(frozen=True)
class Anchor:
    """An outside implementation of ``mechanism``: forward ``fn(x, causal)``, decoding ``decode_fn(x)``."""

    name: str
    mechanism: str
    fn: Callable
    decode_fn: Callable | None
    missing: Callable[[str], str | None]
    cross: bool = True  # may T_q ≠ T_k


def _needs_cuda(what):
    return lambda device: None if torch.device(device).type == "cuda" else f"{what} needs a CUDA GPU"


def _needs(module, what, cuda=True):
    def missing(device):
        if importlib.util.find_spec(module) is None:
            return f"{what} is not installed"
        if cuda and torch.device(device).type != "cuda":
            return f"{what} needs a CUDA GPU"
        return None
    return missing


# ------------------------------------------------------------------------------- SDPA


@lru_cache(maxsize=64)
def _lower_right(Tq, Tk):
    """SDPA's bottom-right causal bias (made once per shape: it cannot be created under a dispatch mode)."""
    from torch.nn.attention.bias import causal_lower_right

    return causal_lower_right(Tq, Tk)


def _sdpa(backend_name):
    def run(x, causal, q=None):
        from torch.nn.attention import SDPBackend, sdpa_kernel

        q = (x["q"] if q is None else q).transpose(1, 2)
        k, v = x["k"].transpose(1, 2), x["v"].transpose(1, 2)
        Tq, Tk = q.shape[2], k.shape[2]
        kw = {}
        if causal and Tq == Tk:
            kw["is_causal"] = True
        elif causal and Tq != Tk:  # bottom-right aligned, as longmix and flash-attn
            kw["attn_mask"] = _lower_right(Tq, Tk)
        with sdpa_kernel(getattr(SDPBackend, backend_name)):
            return F.scaled_dot_product_attention(q, k, v, **kw).transpose(1, 2)

    def decode(x):
        return run(x, False, q=x["q1"])  # one query sees the whole cache

    return run, decode


def _sdpa_missing(backend_name, cuda_only):
    def missing(device):
        if cuda_only and torch.device(device).type != "cuda":
            return f"the {backend_name_words[backend_name]} SDPA backend needs a CUDA GPU"
        return None
    return missing


backend_name_words = {"MATH": "math", "FLASH_ATTENTION": "flash", "EFFICIENT_ATTENTION": "memory-efficient",
                      "CUDNN_ATTENTION": "cuDNN"}

# ------------------------------------------------------------------------------- flex


@lru_cache(maxsize=None)
def _compiled_flex():
    import torch._dynamo

    from torch.nn.attention.flex_attention import flex_attention

    # one static compilation per (shape, grad mode): a sweep needs dozens, and past Dynamo's
    # recompile limit (8) flex_attention silently falls back to an unfused eager implementation that
    # materialises the T×T scores (out of memory from T = 8K), which is not FlexAttention's speed
    for name in ("recompile_limit", "cache_size_limit", "accumulated_recompile_limit", "accumulated_cache_size_limit"):
        if hasattr(torch._dynamo.config, name):
            setattr(torch._dynamo.config, name, max(getattr(torch._dynamo.config, name), 1024))
    return torch.compile(flex_attention, dynamic=False)


@lru_cache(maxsize=64)
def _block_mask(causal, Tq, Tk, device):
    from torch.nn.attention.flex_attention import create_block_mask

    if not causal:
        return None
    off = Tk - Tq
    # _compile: build the block mask without materialising the Tq×Tk mask (128 GiB at T = 128K)
    return create_block_mask(lambda b, h, qi, ki: qi + off >= ki, None, None, Tq, Tk, device=device, _compile=True)


def _flex(x, causal, q=None):
    q = (x["q"] if q is None else q).transpose(1, 2)
    k, v = x["k"].transpose(1, 2), x["v"].transpose(1, 2)
    mask = _block_mask(causal, q.shape[2], k.shape[2], str(q.device))
    return _compiled_flex()(q, k, v, block_mask=mask).transpose(1, 2)


def _flex_missing(device):
    if torch.device(device).type != "cuda":
        return "FlexAttention is timed compiled, on CUDA only (its CPU path is not a kernel)"
    return None


# -------------------------------------------------------------------------- flash-attn


def _flash_attn(x, causal, q=None):
    from flash_attn import flash_attn_func

    return flash_attn_func(x["q"] if q is None else q, x["k"], x["v"], causal=causal)


# -------------------------------------------------------------------------------- fla

# longmix mechanism → (fla module, chunk function, decode function, option names it takes)
FLA_OPS = {
    "gla": ("fla.ops.gla", "chunk_gla", "fused_recurrent_gla", ("g",)),
    "mamba2": ("fla.ops.simple_gla", "chunk_simple_gla", "fused_recurrent_simple_gla", ("g",)),
    "retention": ("fla.ops.retention", "chunk_retention", "fused_recurrent_retention", ()),
    "deltanet": ("fla.ops.delta_rule", "chunk_delta_rule", "fused_recurrent_delta_rule", ("beta",)),
    "gated_deltanet": ("fla.ops.gated_delta_rule", "chunk_gated_delta_rule", "fused_recurrent_gated_delta_rule",
                       ("g", "beta")),
    "kda": ("fla.ops.kda", "chunk_kda", "fused_recurrent_kda", ("g", "beta")),
    "linear": ("fla.ops.linear_attn", "chunk_linear_attn", "fused_recurrent_linear_attn", ()),
    "lightning": ("fla.ops.lightning_attn", "chunk_lightning_attn", "fused_recurrent_lightning_attn", ()),
}


def _fla_inputs(mechanism, q, k, v, state=None):
    """fla's arguments for longmix's benchmark inputs, as fla's layers call its ops (the same work):
    linear attention maps q and k in PyTorch (elu + 1, the benchmark's feature map) and normalises in
    the op; lightning's per-head decay comes from (layer_idx, num_layers)."""
    kw = {}
    if mechanism == "linear":
        q, k = F.elu(q) + 1, F.elu(k) + 1
        kw["normalize"] = True
        if state is not None:  # longmix keeps [S | z] as one [B, H, K, V + 1] state; fla a (S, z) pair
            kw["initial_state"] = (state[..., :-1].contiguous(), state[..., -1].unsqueeze(1).contiguous())
            state = None
    elif mechanism == "lightning":
        kw.update(layer_idx=0, num_layers=1)
    if state is not None:
        kw["initial_state"] = state
    return dict(q=q, k=k, v=v, **kw)


def _fla(mechanism):
    module, chunk, recurrent, opts = FLA_OPS[mechanism]

    def run(x, causal):
        if not causal:
            raise ValueError("fla's chunk kernels are causal only")
        fn = getattr(importlib.import_module(module), chunk)
        return fn(**_fla_inputs(mechanism, x["q"], x["k"], x["v"]), **{n: x[n] for n in opts})[0]

    def decode(x):
        fn = getattr(importlib.import_module(module), recurrent)
        kw = {n: x[n + "1"] for n in opts}
        return fn(**_fla_inputs(mechanism, x["q1"], x["k1"], x["v1"], x["state"]), output_final_state=True, **kw)[0]

    return run, decode


def _build() -> dict[str, Anchor]:
    out = {}
    for name, backend, cuda_only in [("sdpa_math", "MATH", False), ("sdpa_flash", "FLASH_ATTENTION", False),
                                     ("sdpa_efficient", "EFFICIENT_ATTENTION", True), ("sdpa_cudnn", "CUDNN_ATTENTION", True)]:
        run, dec = _sdpa(backend)
        out[name] = Anchor(name, "softmax", run, dec, _sdpa_missing(backend, cuda_only))
    out["flex"] = Anchor("flex", "softmax", _flex, lambda x: _flex(x, False, q=x["q1"]), _flex_missing)
    out["flash_attn"] = Anchor("flash_attn", "softmax", _flash_attn, lambda x: _flash_attn(x, False, q=x["q1"]),
                               _needs("flash_attn", "flash-attn"))
    for mech in FLA_OPS:
        run, dec = _fla(mech)
        out[f"fla:{mech}"] = Anchor("fla", mech, run, dec, _needs("fla", "flash-linear-attention (fla)"), cross=False)
    return out


ANCHORS = _build()
SDPA = tuple(n for n in ANCHORS if n.startswith("sdpa_"))
