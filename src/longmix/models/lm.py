"""A small language model with pluggable mixers, for the quality benchmark.

    embedding → N × [RMSNorm → Mixer → +, RMSNorm → MLP → +] → RMSNorm → head

``pattern`` makes hybrids: each letter is one layer, ``L`` the configured ``mechanism``
and ``S`` the ``hybrid`` one (softmax by default); the pattern repeats until
``n_layers`` layers are built, so ``"LLLS"`` with 8 layers is three Gated DeltaNet
layers to one softmax layer, twice. Continuous inputs (in-context regression) use
``in_dim`` (a linear read-in instead of the embedding) and ``out_dim``.

Decoding (gpt-fast style): ``logits, caches = lm(prefix, use_cache=True)`` then
``lm(next_token, caches, use_cache=True)`` one token at a time.

Example::

    >>> import torch
    >>> lm = LM(LMConfig(vocab_size=64, d_model=32, n_layers=2, n_heads=2, mechanism="gla", pattern="LS"))
    >>> [layer.mixer.mechanism for layer in lm.layers]
    ['gla', 'softmax']
    >>> lm(torch.randint(0, 64, (2, 16))).shape
    torch.Size([2, 16, 64])
"""
from __future__ import annotations

from dataclasses import dataclass, field

import torch
import torch.nn as nn
import torch.nn.functional as F

from .. import api
from .mixer import Mixer, MixerCache


@dataclass
class LMConfig:
    """Everything that defines an :class:`LM`.

    Attributes:
        vocab_size: token vocabulary (ignored for the read-in when ``in_dim`` is set).
        d_model, n_layers, n_heads: width, depth, heads per mixer.
        mechanism: the mixer of ``L`` layers; ``hybrid``: the mixer of ``S`` layers.
        pattern: layer letters (``L``/``S``), repeated to ``n_layers``.
        causal: decoder (True) or encoder (False) mixing.
        mlp_ratio: hidden width of the MLP as a multiple of ``d_model``.
        in_dim: continuous input features (replaces the embedding), or None.
        out_dim: output features (default ``vocab_size``).
        options: extra mechanism options for the ``L`` layers (e.g. ``{"window": 64}``).
        conv_size: short-convolution width of every mixer (None: the :class:`Mixer` default, a
            width-4 conv for recurrent layers and none for dense ones; 0: none anywhere).
        backend: the ``longmix.attention`` backend of every mixer (``"auto"``, ``"reference"``, …).
    """

    vocab_size: int = 256
    d_model: int = 64
    n_layers: int = 2
    n_heads: int = 2
    mechanism: str = "softmax"
    pattern: str = "L"
    hybrid: str = "softmax"
    causal: bool = True
    mlp_ratio: int = 4
    in_dim: int | None = None
    out_dim: int | None = None
    options: dict = field(default_factory=dict)
    conv_size: int | None = None
    backend: str = "auto"

    def layer_mechanisms(self) -> list[str]:
        """The mechanism of each layer, from ``pattern``."""
        if not isinstance(self.pattern, str) or not self.pattern or set(self.pattern) - {"L", "S"}:
            raise ValueError(f"pattern must be a non-empty string of 'L' (mechanism) and 'S' (hybrid) letters, "
                             f"e.g. 'LLLS', got {self.pattern!r}")
        if self.n_layers < 1:
            raise ValueError(f"n_layers must be ≥ 1, got {self.n_layers}")
        letters = (self.pattern * self.n_layers)[: self.n_layers]
        return [self.mechanism if c == "L" else self.hybrid for c in letters]


class Block(nn.Module):
    """Pre-norm residual block: mixer then MLP."""

    def __init__(self, cfg: LMConfig, mechanism: str):
        super().__init__()
        opts = cfg.options if mechanism == cfg.mechanism else {}
        self.norm1, self.norm2 = nn.RMSNorm(cfg.d_model, eps=1e-5), nn.RMSNorm(cfg.d_model, eps=1e-5)
        self.mixer = Mixer(cfg.d_model, cfg.n_heads, mechanism, causal=cfg.causal, conv_size=cfg.conv_size,
                           backend=cfg.backend, **opts)
        hidden = cfg.mlp_ratio * cfg.d_model
        self.mlp = nn.Sequential(nn.Linear(cfg.d_model, hidden), nn.GELU(), nn.Linear(hidden, cfg.d_model))

    def forward(self, x, cache=None, use_cache=False):
        if use_cache:
            m, cache = self.mixer(self.norm1(x), cache, use_cache=True)
        else:
            m = self.mixer(self.norm1(x))
        x = x + m
        x = x + self.mlp(self.norm2(x))
        return (x, cache) if use_cache else x


class LM(nn.Module):
    """The model of :class:`LMConfig`: ``forward(inputs [B, T] or [B, T, in_dim]) → [B, T, out_dim]``."""

    def __init__(self, cfg: LMConfig):
        super().__init__()
        mechs = cfg.layer_mechanisms()
        for m in set(mechs):
            api.describe(m)  # unknown names fail here, with the list of registered ones
        self.cfg = cfg
        self.embed = nn.Linear(cfg.in_dim, cfg.d_model) if cfg.in_dim else nn.Embedding(cfg.vocab_size, cfg.d_model)
        self.layers = nn.ModuleList(Block(cfg, m) for m in mechs)
        self.norm = nn.RMSNorm(cfg.d_model, eps=1e-5)
        self.head = nn.Linear(cfg.d_model, cfg.out_dim or cfg.vocab_size, bias=False)
        self.apply(self._init)

    @staticmethod
    def _init(m):
        if isinstance(m, nn.Linear):
            nn.init.normal_(m.weight, std=0.02)
            if m.bias is not None:
                nn.init.zeros_(m.bias)
        elif isinstance(m, nn.Embedding):
            nn.init.normal_(m.weight, std=0.02)

    def forward(self, inputs: torch.Tensor, caches: list[MixerCache] | None = None, *, use_cache: bool = False):
        """Logits [B, T, out_dim]; with ``use_cache`` also the per-layer caches for the next call."""
        if self.cfg.in_dim is None and (inputs.dtype not in (torch.int32, torch.int64) or inputs.dim() != 2):
            raise ValueError(f"inputs must be token ids [B, T] (int64), got {inputs.dtype} {tuple(inputs.shape)}")
        x = self.embed(inputs)
        new = []
        for i, layer in enumerate(self.layers):
            if use_cache:
                x, c = layer(x, None if caches is None else caches[i], use_cache=True)
                new.append(c)
            else:
                x = layer(x)
        logits = self.head(self.norm(x))
        return (logits, new) if use_cache else logits

    def state_floats(self, T: int) -> int:
        """Floats of recurrent state and KV cache carried per sequence after T tokens, over all layers."""
        return sum(layer.mixer.state_floats(T) for layer in self.layers)

    def num_params(self) -> int:
        return sum(p.numel() for p in self.parameters())


def loss_fn(out: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """Cross entropy over labelled positions (label −100 ignored) for int labels; MSE over
    non-NaN labels for float labels (``out`` then has one feature)."""
    if labels.is_floating_point():
        # a masked mean rather than boolean indexing: no data-dependent shape, so no wait for the
        # GPU (and the training step can be captured in a CUDA graph)
        mask = ~torch.isnan(labels)
        err = torch.where(mask, out[..., 0].float() - labels.float().nan_to_num(), 0.0)
        return (err * err).sum() / mask.sum().clamp_min(1)
    return F.cross_entropy(out.flatten(0, -2).float(), labels.flatten(), ignore_index=-100)
