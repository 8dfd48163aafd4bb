#!/bin/bash
# stop 16, call 7: the one-pass forward at its final default (normaliser inside, feature map in PyTorch): GPU tests,
# then linear beside fla (same sitting)
cd "$(dirname "$0")/.."
B=benchmarks/gpu_bench.sh
S=$SECONDS
bash $B exec 100 python3 -m pytest -q -s tests/test_cuda.py -k "inference and (linear or transnormer)" 2>&1 | tee $OUT/c7_cuda_prefill.log | grep -v "^$" | tail -6
bash $B exec 80 python3 -m pytest -q tests/test_triton.py -k "one_pass or inference_forward" 2>&1 | tee $OUT/c7_triton_gpu.log | tail -2
echo "tests took $((SECONDS-S)) s"
LONGMIX_OUT_NAME=speed_linear bash $B speed benchmarks/results/2026-11-26-h100-s16/none $((330-SECONDS)) --backends triton --mechanisms linear --anchors fla --lengths 2048,8192 --patterns causal_self --passes fwd,fwdbwd --max-ms 300 2>&1 | tail -3
rm -f $OUT/speed_linear/*.png
echo "all took $((SECONDS-S)) s"
