#!/bin/bash
# stop 17, call 5: chunks of 128 on the GPU: the delta family and GLA (narrow and full tiles), then the others
cd "$(dirname "$0")/.."
B=benchmarks/gpu_bench.sh
S=$SECONDS
bash $B exec 330 python3 -m pytest -q tests/test_cuda.py -k "chunks_of_128 and (deltanet or kda or gla)" 2>&1 | tee $OUT/c5_cuda_c128_delta.log | grep -v "^$" | tail -8
echo "delta tests at $((SECONDS-S)) s"
bash $B exec $((540-SECONDS)) python3 -m pytest -q tests/test_cuda.py -k "chunks_of_128 and wide and not (deltanet or kda or gla)" 2>&1 | tee $OUT/c5_cuda_c128_rest.log | grep -v "^$" | tail -8
echo "rest at $((SECONDS-S)) s"
bash $B pack
ls $OUT
