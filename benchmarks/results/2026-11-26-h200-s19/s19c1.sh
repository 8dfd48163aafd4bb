#!/bin/bash
# stop 19, call 1: the per-key one-pass walk (GLA, KDA) on the GPU: its tests, its timing against the two-kernel
# forward; the owed KDA float32 chunk-128 test; the one-pass interpreter tests on the GPU; the walk ablation
cd "$(dirname "$0")/.."
B=benchmarks/gpu_bench.sh
S=$SECONDS
bash $B exec 5 true
nvidia-smi --query-gpu=name --format=csv,noheader
bash $B exec 545 python3 -m pytest -v --tb=short -p no:cacheprovider tests/test_cuda.py -k "chunks_of_128 and fp32 and kda and narrow" > $OUT/c1_c128.log 2>&1 &
( bash $B exec 400 python3 -m pytest -v --tb=short -p no:cacheprovider -n 4 tests/test_cuda.py -k "inference_forward and key-gates" > $OUT/c1_keygates.log 2>&1
  bash $B exec $(( 540 - (SECONDS-S) )) python3 -m pytest -v --tb=short -p no:cacheprovider -n 4 tests/test_triton.py -k "one_pass" > $OUT/c1_onepass.log 2>&1 ) &
for shape in "16 2048" "4 8192"; do
  KNOBS=fused_stages_key ROUNDS=3 PASSES=fwd bash $B exec 150 python3 benchmarks/tune_kernels.py $shape 2>&1 | grep -v Warn | tee -a $OUT/c1_tune_key.txt | tail -8
  echo "tune $shape at $((SECONDS-S)) s"
done
MECHS=gated_deltanet,retention,deltanet bash $B exec $(( 520 - (SECONDS-S) )) python3 benchmarks/ablate_walk.py 16 2048 2>&1 | grep -v Warn > $OUT/c1_ablate.txt
echo "ablate at $((SECONDS-S)) s"
wait
echo "all at $((SECONDS-S)) s"
tail -30 $OUT/c1_ablate.txt
grep -h "PASSED\|FAILED\|ERROR\|passed\|failed" $OUT/c1_*.log | cut -c1-220
bash $B pack
ls $OUT
