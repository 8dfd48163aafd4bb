"""Plain softmax attention through PyTorch's ``scaled_dot_product_attention`` (the ``sdpa`` backend).

PyTorch already ships the fastest kernels for plain softmax attention (cuDNN, flash,
memory-efficient; a flash kernel on the CPU), so longmix uses them instead of rewriting them.
This wrapper keeps longmix's conventions: layout [B, T, H, D], GQA by head grouping
(query head h uses key/value head h // (H / H_kv)), causal aligned bottom-right when
T_q ≠ T_k, and query rows that see no key return zeros (SDPA alone would return NaN).

Example::

    >>> import torch
    >>> q, k, v = torch.randn(3, 1, 16, 2, 8).unbind(0)
    >>> sdpa(q, k[:, :10], v[:, :10], scale=8 ** -0.5, causal=True)[0, :6].abs().sum().item()  # rows 0..5 see no key
    0.0
"""
from __future__ import annotations

import torch
import torch.nn.functional as F


def _expand(x, H):
    return x if x.shape[2] == H else x.repeat_interleave(H // x.shape[2], dim=2)


def sdpa(q, k, v, *, scale: float, causal: bool, bias=None) -> torch.Tensor:
    """Softmax attention. q [B, T_q, H, D], k [B, T_k, H_kv, D], v [B, T_k, H_kv, D_v];
    ``bias`` None, a number, or a tensor broadcastable to [B, H, T_q, T_k] added to the logits.
    Returns o [B, T_q, H, D_v] in q's dtype."""
    B, T_q, H, _ = q.shape
    T_k, D_v = k.shape[1], v.shape[-1]
    if T_q == 0 or T_k == 0:
        return q.new_zeros(B, T_q, H, D_v)
    # causal, bottom-right: the first T_q − T_k queries see no key at all (zeros)
    first = max(0, T_q - T_k) if causal else 0
    qh = q[:, first:].transpose(1, 2)
    kh, vh = _expand(k, H).transpose(1, 2), _expand(v, H).transpose(1, 2)
    n_q = T_q - first
    mask, is_causal = None, False
    if bias is not None:
        if not torch.is_tensor(bias):
            bias = q.new_full((), float(bias))  # a fill on the device, not a copy from the host
        mask = bias.to(q.dtype)
        if mask.dim() < 2:  # SDPA wants at least [T_q, T_k]
            mask = mask.reshape(1, -1) if mask.dim() == 1 else mask.reshape(1, 1)
        if mask.shape[-2] > 1:
            mask = mask[..., first:, :]
    if causal:
        if n_q == T_k and mask is None:
            is_causal = True  # square: top-left is bottom-right
        elif n_q == 1:
            pass  # one query (decoding) at the last position sees every key: no mask, fused kernels stay usable
        else:  # (torch's causal_lower_right would avoid the mask on CUDA; not yet checked on a GPU here)
            qpos = torch.arange(n_q, device=q.device) + (T_k - n_q)
            hidden = torch.arange(T_k, device=q.device)[None, :] > qpos[:, None]
            causal_bias = torch.zeros(n_q, T_k, dtype=q.dtype, device=q.device).masked_fill(hidden, float("-inf"))
            mask = causal_bias if mask is None else mask + causal_bias
    out = F.scaled_dot_product_attention(qh, kh, vh, attn_mask=mask, is_causal=is_causal, scale=scale).transpose(1, 2)
    return out if first == 0 else torch.cat([q.new_zeros(B, first, H, D_v), out], 1)
