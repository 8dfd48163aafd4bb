#!/bin/bash
# stop 19, call 8 (H100): Gated DeltaNet's forward beside fla with the walk's masked read of A (khat_mask_a);
# masked against unmasked timed; GPU tests of the strong-chunk path
cd "$(dirname "$0")/.."
B=benchmarks/gpu_bench.sh
S=$SECONDS
L=$OUT/logs; mkdir -p $L
bash $B exec 5 true
nvidia-smi --query-gpu=name --format=csv,noheader | tee $L/gpu.txt
LONGMIX_OUT_NAME=speed_gdn bash $B speed benchmarks/results/none 300 --backends triton --mechanisms gated_deltanet --anchors fla,sdpa_cudnn --lengths 2048,8192 --patterns causal_self --passes fwd --max-ms 300 2>&1 | tail -2
echo "speed at $((SECONDS-S)) s"
rm -f $OUT/speed_gdn/*.png
for shape in "16 2048" "4 8192"; do
  KNOBS=khat_mask_a ROUNDS=3 PASSES=fwd bash $B exec 150 python3 benchmarks/tune_kernels.py $shape 2>&1 | grep -v Warn | tee -a $L/c8_tune.txt | grep "gated_deltanet" | tail -3
  echo "tune $shape at $((SECONDS-S)) s"
done
rm -f $OUT/tune.jsonl
py() { bash $B exec $(( 560 - (SECONDS-S) )) python3 -m pytest -v --tb=short -p no:cacheprovider -n 4 $2 -k "$3" > $L/c8_$1.log 2>&1; }
py fused tests/test_cuda.py "inference_forward and gated_deltanet and not key-gates" &
py onepass tests/test_triton.py "strong_gates or (one_pass and scalar-gate-delta)" &
wait
echo "all at $((SECONDS-S)) s"
grep -h "PASSED\|FAILED\|ERROR\|passed\|failed" $L/c8_*.log | grep -v "^\[gw.*PASSED" | cut -c1-220
mv $OUT/speed_gdn $L/
tar czf $OUT/results.tgz -C $OUT logs && rm -rf $L
ls $OUT
