#!/bin/bash
# stop 15, call 8: the state passes' pipeline depth and program target at B=1, T=128K and B=16, T=2K (constant speed)
cd "$(dirname "$0")/.."
B=benchmarks/gpu_bench.sh
S=$SECONDS
KNOBS=state_stages,state_min_programs,state_stages_delta,state_stages_delta_key,state_stages_delta_key_bwd ROUNDS=2 PASSES=fwd,fwdbwd bash $B exec 330 python3 benchmarks/tune_kernels.py 1 131072 2>&1 | tee $OUT/c8_tune_1x128k.txt | tail -12
echo "128K took $((SECONDS-S)) s"
KNOBS=state_stages,state_stages_delta,state_stages_delta_key,state_stages_delta_key_bwd ROUNDS=2 PASSES=fwd,fwdbwd bash $B exec $((570-SECONDS)) python3 benchmarks/tune_kernels.py 16 2048 2>&1 | tee $OUT/c8_tune_16x2k.txt | tail -12
echo "all took $((SECONDS-S)) s"
