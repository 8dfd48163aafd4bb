#!/bin/bash
# stop 16, call 11: chunk_size 128 on the GPU (forward and backward against the reference, every mechanism), and the
# one-pass forward's refusal of chunks of 128
cd "$(dirname "$0")/.."
B=benchmarks/gpu_bench.sh
bash $B exec 60 python3 -m pytest -q tests/test_triton.py -k "chunks_of_128 or inference_forward_in_one_pass" 2>&1 | tee $OUT/c11_triton_gpu.log | tail -2
bash $B exec 330 python3 -m pytest -q -s tests/test_cuda.py -k "chunks_of_128" 2>&1 | tee $OUT/c11_cuda_c128.log | grep -v "^$" | tail -22
