#!/bin/bash
# stop 15, call 4: the other recurrent mechanisms beside fla at 2K, 8K and 128K (constant speed: B=1 T=128K against B=16 T=2K);
# then GLA's state passes in segments at B=1, T=128K
cd "$(dirname "$0")/.."
B=benchmarks/gpu_bench.sh
S=$SECONDS
LONGMIX_OUT_NAME=speed_rest bash $B speed benchmarks/results/2026-11-27-h100-s15/none 400 --backends triton --mechanisms linear,retention,lightning,mamba2,gla,transnormer --anchors fla --lengths 2048,8192,131072 --patterns causal_self --passes fwd,fwdbwd --max-ms 300 2>&1 | tail -4
echo "speed took $((SECONDS-S)) s"
KNOBS=state_seg_programs ROUNDS=2 bash $B exec 100 python3 benchmarks/tune_kernels.py 1 131072 2>&1 | tee $OUT/c4_tune_seg_1x128k.txt | tail -5
echo "all took $((SECONDS-S)) s"
bash $B exec $((575-SECONDS)) python3 -m pytest -q -s tests/test_cuda.py -k "(long_sequence and kda and fp32) or (inference and kda) or (long_sequence and gated_deltanet and fp32)" 2>&1 | tee $OUT/c4_cuda_kda.log | grep -v "^$" | tail -6
echo "tests took $((SECONDS-S)) s"
