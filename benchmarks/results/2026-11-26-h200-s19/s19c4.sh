#!/bin/bash
# stop 19, call 4: Gated DeltaNet's one-launch decayed-key walk (fused_khat) against the old walk, beside fla; then GPU tests
cd "$(dirname "$0")/.."
B=benchmarks/gpu_bench.sh
S=$SECONDS
L=$OUT/logs; mkdir -p $L
bash $B exec 5 true
nvidia-smi --query-gpu=name --format=csv,noheader | tee $L/gpu.txt
for shape in "16 2048" "4 8192"; do
  KNOBS=fused_khat ROUNDS=3 PASSES=fwd bash $B exec 120 python3 benchmarks/tune_kernels.py $shape 2>&1 | grep -v Warn | tee -a $L/c4_tune_khat.txt | grep khat | tail -3
  echo "tune $shape at $((SECONDS-S)) s"
done
rm -f $OUT/tune.jsonl
LONGMIX_OUT_NAME=speed_khat bash $B speed benchmarks/results/none $((260-(SECONDS-S))) --backends triton --mechanisms gated_deltanet,deltanet --anchors fla,sdpa_cudnn --lengths 2048,8192 --patterns causal_self --passes fwd --max-ms 300 2>&1 | tail -2
echo "speed at $((SECONDS-S)) s"
rm -f $OUT/speed_khat/*.png
py() { bash $B exec $(( 565 - (SECONDS-S) )) python3 -m pytest -v --tb=short -p no:cacheprovider -n 4 $2 -k "$3" > $L/c4_$1.log 2>&1; }
py fused tests/test_cuda.py "(inference_forward and (deltanet or gated_deltanet) and not key-gates) or (backend_matches and (deltanet or kda)) or (long_sequence and gated_deltanet)" &
py onepass tests/test_triton.py "one_pass or strong_gates or prep" &
wait
echo "all at $((SECONDS-S)) s"
grep -h "PASSED\|FAILED\|ERROR\|passed\|failed" $L/c4_*.log | grep -v "^\[gw.*PASSED" | cut -c1-220
mv $OUT/speed_khat $L/
tar czf $OUT/results.tgz -C $OUT logs && rm -rf $L
bash $B pack
ls $OUT
