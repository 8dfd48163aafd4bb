#!/bin/bash
# stop 18, call 2: TransNormer bf16 D=128 token by token (tn_tok.py) and the chunk-128 test that failed on an H100;
# the float32 chunk-128 delta tests still owed (slow compiles of IEEE float32 products), from the packed cache
cd "$(dirname "$0")/.."
B=benchmarks/gpu_bench.sh
S=$SECONDS
bash $B exec 5 true
nvidia-smi --query-gpu=name --format=csv,noheader
py() { bash $B exec $3 python3 -m pytest -v --tb=line -p no:cacheprovider tests/test_cuda.py -k "$2" > $OUT/c2_$1.log 2>&1; }
bash $B exec 300 python3 scratch/tn_tok.py > $OUT/c2_tn_tok.txt 2>&1 &
py tn "chunks_of_128 and transnormer and bf16" 300 &
py c128 "chunks_of_128 and fp32 and wide and deltanet" 330 &
wait
echo "all at $((SECONDS-S)) s"
grep -v Warn $OUT/c2_tn_tok.txt
grep -h "PASSED\|FAILED\|ERROR\|passed\|failed\|^transnormer" $OUT/c2_*.log | cut -c1-220
bash $B pack
