#!/bin/bash
# stop 17, call 3: the one-pass forward on by default for scalar gates and the delta rule: per-kernel profile,
# its pipeline depth / warps (fwd, 16x2K and 4x8K), then the GPU tests of the forward without gradients
cd "$(dirname "$0")/.."
B=benchmarks/gpu_bench.sh
S=$SECONDS
IMPLS=longmix bash $B exec 90 python3 benchmarks/profile_kernels.py deltanet,gated_deltanet,retention,mamba2 16 2048 > $OUT/c3_profile_16x2k.txt 2>&1
rm -f $OUT/profile.txt; echo "profile at $((SECONDS-S)) s"
for shape in "16 2048" "4 8192"; do
  KNOBS=fused_stages,fused_stages_delta ROUNDS=2 PASSES=fwd bash $B exec 80 python3 benchmarks/tune_kernels.py $shape 2>&1 | tee -a $OUT/c3_tune_stages.txt | tail -4
  echo "tune $shape at $((SECONDS-S)) s"
done
rm -f $OUT/tune.jsonl
bash $B exec $((540-SECONDS)) python3 -m pytest -q tests/test_cuda.py -k "inference_forward and default" 2>&1 | tee $OUT/c3_cuda_fused.log | grep -v "^$" | tail -4
echo "tests at $((SECONDS-S)) s"
bash $B pack
ls $OUT
