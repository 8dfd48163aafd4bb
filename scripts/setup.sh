#!/usr/bin/env bash
# Set up longmix in ./.venv on a fresh machine: Python venv, PyTorch (CPU build where
# there is no GPU), longmix itself (editable). `--test` adds pytest and Triton (whose
# interpreter runs the kernels on the CPU in the tests).
#
#   bash scripts/setup.sh            # for `longmix compare` / `longmix bench`
#   bash scripts/setup.sh --test     # for the test suite
#
# Environment: PYTHON (default python3), LONGMIX_TORCH_INDEX (a pip index URL for torch,
# e.g. PyTorch's CPU wheel index on a CPU-only Linux box, to avoid a multi-GB CUDA build).
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
TEST=0
[ "${1:-}" = "--test" ] && TEST=1

"$PY" -c 'import sys; sys.exit(0 if sys.version_info >= (3, 10) else "longmix needs Python >= 3.10")'
[ -x .venv/bin/python ] || "$PY" -m venv .venv
PIP=".venv/bin/python -m pip install -q --disable-pip-version-check"

if ! .venv/bin/python -c 'import torch' 2>/dev/null; then
  if [ -n "${LONGMIX_TORCH_INDEX:-}" ]; then
    $PIP "torch>=2.4" --index-url "$LONGMIX_TORCH_INDEX"
  elif command -v nvidia-smi >/dev/null 2>&1 && nvidia-smi -L >/dev/null 2>&1; then
    echo "setup: GPU found, installing a CUDA build of torch" >&2
    $PIP "torch>=2.4"
  else
    # No GPU: the CPU build (on this project's machines it lies on local disk).
    echo "setup: no GPU found, installing torch 2.13.0 (CPU build where available)" >&2
    $PIP "torch==2.13.0"
  fi
fi
$PIP -e .
if [ "$TEST" = 1 ]; then
  $PIP "pytest>=7"
  if ! .venv/bin/python -c 'import triton' 2>/dev/null; then
    # Triton's interpreter (TRITON_INTERPRET=1) checks the kernels on the CPU; optional.
    $PIP "triton==3.6.0" || echo "setup: triton unavailable here; kernel tests will be skipped" >&2
  fi
fi
echo "setup: done ($(.venv/bin/python -c 'import torch; print("torch", torch.__version__, "cuda" if torch.cuda.is_available() else "cpu")'))" >&2
