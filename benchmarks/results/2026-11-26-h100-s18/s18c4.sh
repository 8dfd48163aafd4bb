#!/bin/bash
# stop 18, call 4: the gated delta walk's decay on the keys (fused_key_decay) timed against the default (Gated
# DeltaNet forward, 16x2K and 4x8K), then GPU tests: that walk, TransNormer bf16 with the conditioning mask,
# and the float32 chunk-128 tests still owed
cd "$(dirname "$0")/.."
B=benchmarks/gpu_bench.sh
S=$SECONDS
bash $B exec 5 true
nvidia-smi --query-gpu=name --format=csv,noheader
# the owed float32 tests compile for minutes on the CPU first; start them now
bash $B exec 520 python3 -m pytest -v --tb=line -p no:cacheprovider tests/test_cuda.py -k "chunks_of_128 and fp32 and ((gated_deltanet and wide) or (kda and narrow))" > $OUT/c4_c128.log 2>&1 &
for shape in "16 2048" "4 8192"; do
  KNOBS=fused_key_decay ROUNDS=3 PASSES=fwd bash $B exec 100 python3 benchmarks/tune_kernels.py $shape 2>&1 | grep -v Warn | tee -a $OUT/c4_tune_keydecay.txt | tail -5
  echo "tune $shape at $((SECONDS-S)) s"
done
py() { bash $B exec $(( 530 - (SECONDS-S) )) python3 -m pytest -v --tb=line -p no:cacheprovider tests/test_cuda.py -k "$2" > $OUT/c4_$1.log 2>&1; }
py keydecay "inference_forward and key-decay and gated_deltanet" &
py tn "transnormer and bf16" &
wait
echo "all at $((SECONDS-S)) s"
grep -h "PASSED\|FAILED\|ERROR\|passed\|failed\|^transnormer" $OUT/c4_*.log | cut -c1-200
