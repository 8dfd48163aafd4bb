#!/bin/bash
# stop 15, call 10: the wide-tile test (B·H=256) for the delta family at the final depths (2 stages at V tiles of 64)
cd "$(dirname "$0")/.."
bash benchmarks/gpu_bench.sh exec 170 python3 -m pytest -q -s tests/test_cuda.py -k "wide_state_tiles and (deltanet or kda or gla)" 2>&1 | tee $OUT/c10_cuda_wide.log | grep -v "^$" | tail -12
