#!/bin/bash
# stop 17, call 2: the one-pass forward for scalar gates and the delta rule (fwd), the delta rule's reverse
# state pass at narrower V tiles (fwd+bwd): A/B at 16x2K and 4x8K; then GPU tests of the one-pass forward
cd "$(dirname "$0")/.."
B=benchmarks/gpu_bench.sh
S=$SECONDS
for shape in "16 2048" "4 8192"; do
  KNOBS=fused_modes ROUNDS=2 PASSES=fwd bash $B exec 120 python3 benchmarks/tune_kernels.py $shape 2>&1 | tee -a $OUT/c2_tune_fused.txt | tail -4
  echo "tune fused $shape at $((SECONDS-S)) s"
done
for shape in "16 2048" "4 8192"; do
  KNOBS=state_bv_delta_bwd ROUNDS=2 PASSES=fwdbwd bash $B exec 100 python3 benchmarks/tune_kernels.py $shape 2>&1 | tee -a $OUT/c2_tune_bvbwd.txt | tail -4
  echo "tune bv_bwd $shape at $((SECONDS-S)) s"
done
rm -f $OUT/tune.jsonl
bash $B exec $((530-SECONDS)) python3 -m pytest -q tests/test_cuda.py -k "inference_forward and every" 2>&1 | tee $OUT/c2_cuda_fused.log | grep -v "^$" | tail -4
echo "tests at $((SECONDS-S)) s"
bash $B pack
ls $OUT
