#!/bin/bash
# stop 16, call 9: NORM without PHI takes the masked-tile path: GPU tests, then its time (same sitting as the variants)
cd "$(dirname "$0")/.."
B=benchmarks/gpu_bench.sh
bash $B exec 120 python3 -m pytest -q tests/test_triton.py -k "one_pass_forward_maps or inference_forward_in_one_pass" 2>&1 | tee $OUT/c9_triton_gpu.log | tail -3
bash $B exec 100 python3 -m pytest -q -s tests/test_cuda.py -k "inference and (linear or transnormer)" 2>&1 | tee $OUT/c9_cuda_prefill.log | grep -v "^$" | tail -3
KNOBS=prefill_phi ROUNDS=2 PASSES=fwd bash $B exec 100 python3 benchmarks/tune_kernels.py 16 2048 2>&1 | tee $OUT/c9_tune_prefill_16x2k.txt | tail -2
KNOBS=prefill_phi ROUNDS=2 PASSES=fwd bash $B exec 100 python3 benchmarks/tune_kernels.py 4 8192 2>&1 | tee $OUT/c9_tune_prefill_4x8k.txt | tail -2
