"""Every Triton kernel launch of the GPU paths compiles for Hopper (sm_90), checked on the CPU.

The interpreter tests run the kernels' Python, which accepts code that Triton's compiler refuses; a GPU
sitting would find that late and at a price. ``tests/hopper_compile.py`` (in a subprocess: it needs
Triton without ``TRITON_INTERPRET``, which test_triton.py sets for this process) records the launches
of the chunkwise, decoding and normaliser paths and compiles each to a cubin. Compilation only: the
results are checked against the reference by test_triton.py (interpreter) and test_cuda.py (GPU).
"""
import importlib.util
import os
import subprocess
import sys

import pytest

# not imported here: Triton decides at import whether its kernels are interpreted, and test_triton.py sets
# TRITON_INTERPRET for this process when it is imported, which may be after this module
pytestmark = pytest.mark.skipif(importlib.util.find_spec("triton") is None, reason="needs Triton")


def test_every_kernel_launch_compiles_for_hopper():
    env = {n: v for n, v in os.environ.items() if n != "TRITON_INTERPRET"}
    script = os.path.join(os.path.dirname(__file__), "hopper_compile.py")
    run = subprocess.run([sys.executable, script], env=env, capture_output=True, text=True, timeout=1200)
    if run.returncode == 3:
        pytest.skip(run.stdout.strip())
    assert run.returncode == 0, (run.stdout + run.stderr)[-6000:]
    assert " 0 failed" in run.stdout, run.stdout[-3000:]
