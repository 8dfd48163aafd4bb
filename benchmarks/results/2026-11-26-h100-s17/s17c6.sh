#!/bin/bash
# stop 17, call 6: chunks of 128 on the GPU, in five pytest processes at once (the compiles are most of it)
cd "$(dirname "$0")/.."
B=benchmarks/gpu_bench.sh
S=$SECONDS
bash $B exec 5 true
run() { bash $B exec 500 python3 -m pytest -v --tb=short -p no:cacheprovider tests/test_cuda.py -k "chunks_of_128 and ($2)" > $OUT/c6_$1.log 2>&1; }
run kda "kda" &
run gdn "gated_deltanet" &
run gla_dn "gla or (deltanet and not gated)" &
run rest1 "wide and (linear or transnormer or retention)" &
run rest2 "wide and (lightning or mamba2)" &
wait
echo "all at $((SECONDS-S)) s"
grep -h "PASSED\|FAILED\|ERROR\|passed\|failed" $OUT/c6_*.log | grep -v "^E " | cut -c1-160
