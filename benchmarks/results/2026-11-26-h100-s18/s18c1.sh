#!/bin/bash
# stop 18, call 1: TransNormer bf16 D=128 backward stage by stage (tn_dqk.py); the GPU tests left from stop 17
cd "$(dirname "$0")/.."
B=benchmarks/gpu_bench.sh
S=$SECONDS
bash $B exec 5 true
py() { bash $B exec 540 python3 -m pytest -v --tb=line -p no:cacheprovider tests/test_cuda.py -k "$2" > $OUT/c1_$1.log 2>&1; }
bash $B exec 540 python3 scratch/tn_dqk.py > $OUT/c1_tn_dqk.txt 2>&1 &
py two_stages "inference_forward and two-stages" &
py c128 "chunks_of_128 and fp32 and (deltanet or kda)" &
py long "long_sequence and fp32 and (deltanet or kda)" &
py wide "wide_state_tiles and 128 and bf16 and (transnormer or linear)" &
wait
echo "all at $((SECONDS-S)) s"
grep -v Warn $OUT/c1_tn_dqk.txt
grep -h "PASSED\|FAILED\|ERROR\|passed\|failed" $OUT/c1_*.log | cut -c1-220
bash $B pack
ls $OUT
