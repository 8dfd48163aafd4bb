#!/bin/bash
# stop 16, call 3: the delta family beside fla and SDPA cuDNN at the narrow-tile depth (same sitting), then the
# long-sequence and no-grad GPU tests for DeltaNet and KDA at that depth
cd "$(dirname "$0")/.."
B=benchmarks/gpu_bench.sh
S=$SECONDS
LONGMIX_OUT_NAME=speed_delta bash $B speed benchmarks/results/2026-11-26-h100-s16/none 430 --backends triton --mechanisms deltanet,gated_deltanet,kda --anchors fla,sdpa_cudnn --lengths 2048,8192,32768,131072 --patterns causal_self --passes fwd,fwdbwd --max-ms 300 2>&1 | tail -30
echo "speed took $((SECONDS-S)) s"
bash $B exec $((585-SECONDS)) python3 -m pytest -q -s tests/test_cuda.py -k "(long_sequence or inference) and (deltanet or kda) and not gated" 2>&1 | tee $OUT/c3_cuda_long.log | grep -v "^$" | tail -10
echo "all took $((SECONDS-S)) s"
