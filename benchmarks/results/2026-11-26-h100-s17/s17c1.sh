#!/bin/bash
# stop 17, call 1: prep_split A/B (16x2K, 4x8K), then per-kernel profile beside fla at 16x2K, then pack caches
cd "$(dirname "$0")/.."
B=benchmarks/gpu_bench.sh
S=$SECONDS
nvidia-smi --query-gpu=name,clocks.max.sm --format=csv,noheader
KNOBS=prep_split ROUNDS=2 bash $B exec 260 python3 benchmarks/tune_kernels.py 16 2048 2>&1 | tee $OUT/c1_tune_split_16x2k.txt | tail -4
echo "tune 16x2k took $((SECONDS-S)) s"
KNOBS=prep_split ROUNDS=2 bash $B exec 100 python3 benchmarks/tune_kernels.py 4 8192 2>&1 | tee $OUT/c1_tune_split_4x8k.txt | tail -4
echo "tune 4x8k took $((SECONDS-S)) s"
IMPLS=longmix,fla bash $B exec $((470-SECONDS)) python3 benchmarks/profile_kernels.py deltanet,gated_deltanet,kda 16 2048 > $OUT/c1_profile_16x2k.txt 2>&1
rm -f $OUT/profile.txt; echo "profile took $((SECONDS-S)) s"
bash $B pack
ls $OUT
