#!/bin/bash
# stop 20, call 1 (H100): Gated DeltaNet's forward beside fla (baseline); the walk decaying its keys itself
# (khat_walk), fwd_prep4's pipeline depth and tiles; ncu on fwd_prep4 and fla's prep kernels; GPU tests of khat_walk
cd "$(dirname "$0")/../../.."
B=benchmarks/gpu_bench.sh
R=benchmarks/results/2026-11-26-h100-s20
S=$SECONDS
L=$OUT/logs; mkdir -p $L
bash $B exec 5 true
nvidia-smi --query-gpu=name --format=csv,noheader | tee $L/gpu.txt
LONGMIX_OUT_NAME=speed_gdn bash $B speed benchmarks/results/none 200 --backends triton --mechanisms gated_deltanet --anchors fla,sdpa_cudnn --lengths 2048,8192 --patterns causal_self --passes fwd --max-ms 300 2>&1 | tail -2
echo "speed at $((SECONDS-S)) s"
rm -f $OUT/speed_gdn/*.png
for shape in "16 2048" "4 8192"; do
  KNOBS=khat_walk,prep_stages ROUNDS=3 PASSES=fwd bash $B exec 150 python3 benchmarks/tune_kernels.py $shape 2>&1 | grep -v Warn | tee -a $L/c1_tune.txt | grep "khat\|prep_stages" | cut -c1-300
  echo "tune $shape at $((SECONDS-S)) s"
done
rm -f $OUT/tune.jsonl
NCU=$(command -v ncu || ls /opt/nvidia/nsight-compute/*/ncu 2>/dev/null | head -1)
echo "ncu: $NCU"
IMPLS=longmix bash $B exec 120 $NCU --clock-control none -k regex:fwd_prep4 -c 1 --set full -o $L/prep4 python3 $R/ncu_prep.py > $L/ncu_run.txt 2>&1
IMPLS=fla bash $B exec 120 $NCU --clock-control none -k regex:"kkt|solve|recompute|wy" -c 3 --set full -o $L/fla_prep python3 $R/ncu_prep.py >> $L/ncu_run.txt 2>&1
tail -3 $L/ncu_run.txt
for f in prep4 fla_prep; do
  $NCU -i $L/$f.ncu-rep --page details > $L/${f}_details.txt 2>&1
  $NCU -i $L/$f.ncu-rep --page source --csv --print-source sass > $L/${f}_sass.csv 2>&1 || true
done
grep -E "^  [a-z_]|Duration|Registers|Achieved Occupancy|Theoretical Occupancy|Memory Throughput|Compute \(SM\) Throughput|Warp Cycles Per Issued|Issued Warp Per|No Eligible" $L/prep4_details.txt $L/fla_prep_details.txt | cut -c1-160
echo "ncu at $((SECONDS-S)) s"
py() { bash $B exec $(( 560 - (SECONDS-S) )) python3 -m pytest -v --tb=short -p no:cacheprovider -n 4 $2 -k "$3" > $L/c1_$1.log 2>&1; }
py fused tests/test_cuda.py "inference_forward and gated_deltanet and (khat-walk or default)" &
py onepass tests/test_triton.py "strong_gates or (one_pass and scalar-gate-delta)" &
wait
echo "all at $((SECONDS-S)) s"
grep -h "PASSED\|FAILED\|ERROR\|passed\|failed" $L/c1_*.log | grep -v "^\[gw.*PASSED" | cut -c1-220
mv $OUT/speed_gdn $L/
tar czf $OUT/results.tgz -C $OUT logs && rm -rf $L
ls -la $OUT
