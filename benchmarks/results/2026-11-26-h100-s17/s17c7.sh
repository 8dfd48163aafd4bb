#!/bin/bash
# stop 17, call 7: TransNormer bf16 at chunks of 128 against float64 (kernel or bf16?); the float32 chunk-of-128
# tests that failed or were cut off in call 6 (KDA and Gated DeltaNet, narrow and full tiles)
cd "$(dirname "$0")/.."
B=benchmarks/gpu_bench.sh
S=$SECONDS
bash $B exec 5 true
bash $B exec 420 python3 -m pytest -v --tb=short -p no:cacheprovider tests/test_cuda.py -k "chunks_of_128 and fp32 and (kda or gated_deltanet)" > $OUT/c7_cuda_c128_fp32.log 2>&1 &
bash $B exec 300 python3 scratch/tn_diag.py > $OUT/c7_transnormer_diag.txt 2>&1
cat $OUT/c7_transnormer_diag.txt | grep -v Warn
wait
echo "all at $((SECONDS-S)) s"
grep -h "PASSED\|FAILED\|passed\|failed\|^E " $OUT/c7_cuda_c128_fp32.log | cut -c1-200
