#!/bin/bash
# stop 19, call 2: Gated DeltaNet's walk from decayed keys (fused_khat) timed against the old walk, then beside fla
# (forward, 2K / 8K); GPU tests: the one-pass forward (both walks), K != V, the interpreter tests on the GPU
cd "$(dirname "$0")/.."
B=benchmarks/gpu_bench.sh
S=$SECONDS
L=$OUT/logs; mkdir -p $L
bash $B exec 5 true
nvidia-smi --query-gpu=name --format=csv,noheader | tee $L/gpu.txt
py() { nice -n 19 bash $B exec $(( 560 - (SECONDS-S) )) python3 -m pytest -v --tb=short -p no:cacheprovider -n 3 $2 -k "$3" > $L/c2_$1.log 2>&1; }
( py fused tests/test_cuda.py "inference_forward and (deltanet or gated_deltanet) and not key-gates"
  py kv tests/test_cuda.py "key_and_value_sizes_differ" ) &
( py onepass tests/test_triton.py "one_pass or strong_gates or prep or chunks_of_128" ) &
for shape in "16 2048" "4 8192"; do
  KNOBS=fused_khat ROUNDS=3 PASSES=fwd bash $B exec 120 python3 benchmarks/tune_kernels.py $shape 2>&1 | grep -v Warn | tee -a $L/c2_tune_khat.txt | tail -3
  echo "tune $shape at $((SECONDS-S)) s"
done
rm -f $OUT/tune.jsonl
LONGMIX_OUT_NAME=speed_khat bash $B speed benchmarks/results/none $((400-(SECONDS-S))) --backends triton --mechanisms gated_deltanet,deltanet --anchors fla,sdpa_cudnn --lengths 2048,8192 --patterns causal_self --passes fwd --max-ms 300 2>&1 | tail -12
echo "speed at $((SECONDS-S)) s"
rm -f $OUT/speed_khat/*.png
wait
echo "all at $((SECONDS-S)) s"
grep -h "PASSED\|FAILED\|ERROR\|passed\|failed" $L/c2_*.log | grep -v "^\[gw.*PASSED" | cut -c1-220
mv $OUT/speed_khat $L/
tar czf $OUT/results.tgz -C $OUT logs && rm -rf $L
bash $B pack
ls $OUT
