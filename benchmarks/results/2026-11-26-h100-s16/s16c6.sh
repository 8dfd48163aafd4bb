#!/bin/bash
# stop 16, call 6: the one-pass forward with the feature map and / or the normaliser inside or outside the kernel
# (chunk.CONFIG prefill_*), at B=16 T=2K and B=4 T=8K; linear beside fla at the default in the same sitting
cd "$(dirname "$0")/.."
B=benchmarks/gpu_bench.sh
S=$SECONDS
KNOBS=prefill_phi ROUNDS=2 PASSES=fwd bash $B exec 200 python3 benchmarks/tune_kernels.py 16 2048 2>&1 | tee $OUT/c6_tune_prefill_16x2k.txt | tail -3
KNOBS=prefill_phi ROUNDS=2 PASSES=fwd bash $B exec 150 python3 benchmarks/tune_kernels.py 4 8192 2>&1 | tee $OUT/c6_tune_prefill_4x8k.txt | tail -3
echo "tune took $((SECONDS-S)) s"
SHAPES=16x2048,4x8192 MECHS=linear IMPLS=fla,64 SECONDS_LEFT=$((560-SECONDS)) bash $B exec $((580-SECONDS)) python3 scratch/chunk_ab.py 2>&1 | grep '^{' | tee $OUT/c6_linear_fla.jsonl
echo "all took $((SECONDS-S)) s"
