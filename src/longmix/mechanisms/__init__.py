"""Every mechanism, one file each; importing this package registers them in order."""
from . import softmax, sigmoid, softplus  # noqa: F401  dense
from . import linear, transnormer  # noqa: F401  linear
from . import retention, lightning, mamba2, gla  # noqa: F401  decayed and gated
from . import deltanet, gated_deltanet, kda  # noqa: F401  delta rule
from ..kernels import triton as _triton_kernels  # noqa: F401  registers the triton backend (if Triton is installed)
