#!/bin/bash
# stop 17, call 4: the one-pass forward's depth at many programs (fwd); then the recurrent mechanisms it serves
# beside fla and SDPA cuDNN at 2K and 8K, forward and forward+backward, one sitting
cd "$(dirname "$0")/.."
B=benchmarks/gpu_bench.sh
S=$SECONDS
for shape in "16 2048" "4 8192"; do
  KNOBS=fused_stages_wide ROUNDS=2 PASSES=fwd bash $B exec 60 python3 benchmarks/tune_kernels.py $shape 2>&1 | tee -a $OUT/c4_tune_wide.txt | tail -4
  echo "tune $shape at $((SECONDS-S)) s"
done
rm -f $OUT/tune.jsonl
LONGMIX_OUT_NAME=speed_fused bash $B speed benchmarks/results/2026-11-26-h100-s17/none $((520-SECONDS)) --backends triton --mechanisms deltanet,gated_deltanet,retention,lightning,mamba2,linear --anchors fla,sdpa_cudnn --lengths 2048,8192 --patterns causal_self --passes fwd,fwdbwd --max-ms 300 2>&1 | tail -30
echo "speed at $((SECONDS-S)) s"
rm -f $OUT/speed_fused/*.png
bash $B pack
ls -R $OUT
