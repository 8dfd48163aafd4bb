#!/bin/bash
# stop 15, call 3: the doubling inverse as the default: KDA's long-sequence tests, then the delta family beside fla and SDPA cuDNN
cd "$(dirname "$0")/.."
B=benchmarks/gpu_bench.sh
S=$SECONDS
bash $B exec 120 python3 -m pytest -q -s tests/test_cuda.py -k "(long_sequence or packed or inference) and kda" 2>&1 | tee $OUT/c3_cuda_kda.log | grep -v "^$" | tail -8
echo "tests took $((SECONDS-S)) s"
LONGMIX_OUT_NAME=speed_delta bash $B speed benchmarks/results/2026-11-27-h100-s15/none $((560-SECONDS)) --backends triton --mechanisms deltanet,gated_deltanet,kda,softmax --anchors fla,sdpa_cudnn --lengths 2048,8192,32768,131072 --patterns causal_self --passes fwd,fwdbwd --max-ms 300 2>&1 | tail -30
echo "all took $((SECONDS-S)) s"
