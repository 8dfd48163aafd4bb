"""Models built from registered mechanisms: the :class:`Mixer` layer and a small :class:`LM`."""
from .lm import LM, LMConfig, loss_fn
from .mixer import Mixer, MixerCache

__all__ = ["LM", "LMConfig", "Mixer", "MixerCache", "loss_fn"]
