#!/bin/bash
# stop 16, call 5: linear attention's feature map and normaliser inside the one-pass forward (chunk.prefill):
# GPU tests, the one-pass kernel's tiles, old tree against new (same sitting), then linear beside fla
cd "$(dirname "$0")/.."
B=benchmarks/gpu_bench.sh
S=$SECONDS
bash $B exec 150 python3 -m pytest -q -s tests/test_cuda.py -k "inference and (linear or transnormer)" 2>&1 | tee $OUT/c5_cuda_prefill.log | grep -v "^$" | tail -8
bash $B exec 90 python3 -m pytest -q tests/test_triton.py -k "one_pass or inference_forward" 2>&1 | tee $OUT/c5_triton_gpu.log | tail -3
echo "tests took $((SECONDS-S)) s"
for tag in new old; do
  src=src; [ $tag = old ] && src=scratch/old_src/src
  SHAPES=16x2048,4x8192,1x32768 MECHS=linear,transnormer PYTHONPATH= bash $B exec 100 python3 benchmarks/ab_src.py $src $tag 2>&1 | grep '^{' | tee -a $OUT/c5_ab_prefill.jsonl
done
echo "ab took $((SECONDS-S)) s"
KNOBS=fused_bv,fused_warps ROUNDS=2 PASSES=fwd bash $B exec 120 python3 benchmarks/tune_kernels.py 16 2048 2>&1 | tee $OUT/c5_tune_fused_16x2k.txt | tail -6
KNOBS=fused_bv,fused_warps ROUNDS=2 PASSES=fwd bash $B exec 90 python3 benchmarks/tune_kernels.py 4 8192 2>&1 | tee $OUT/c5_tune_fused_4x8k.txt | tail -6
echo "tune took $((SECONDS-S)) s"
LONGMIX_OUT_NAME=speed_linear bash $B speed benchmarks/results/2026-11-26-h100-s16/none $((585-SECONDS)) --backends triton --mechanisms linear --anchors fla --lengths 2048,8192 --patterns causal_self --passes fwd,fwdbwd --max-ms 300 2>&1 | tail -4
echo "all took $((SECONDS-S)) s"
