"""longmix: every efficient attention mechanism for long sequences under one roof.

    >>> import torch, longmix
    >>> q, k, v = torch.randn(3, 1, 256, 4, 32).unbind(0)
    >>> longmix.attention(q, k, v, "retention").shape
    torch.Size([1, 256, 4, 32])
    >>> print(longmix.describe("retention").formula)
    S_t = γ_h S_{t-1} + k_t v_tᵀ;  o_t = S_tᵀ(scale·q_t)
"""
from . import mechanisms as _registered  # noqa: F401  (import the package before the function shadows its name)
from .api import attention, describe, mechanisms
from .checks import trusted_values
from .decode import Decoder
from .models.mixer import Mixer

__all__ = ["attention", "describe", "mechanisms", "Decoder", "Mixer", "trusted_values"]
__version__ = "0.1.0"
