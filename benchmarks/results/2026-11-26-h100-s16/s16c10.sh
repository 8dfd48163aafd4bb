#!/bin/bash
# stop 16, call 10: the additive and scalar-gate state passes at 4 pipeline stages (state_stages): GPU tests
# (narrow tiles in the usual shapes, full tiles at B·H = 256), then the tree before against after, same sitting
cd "$(dirname "$0")/.."
B=benchmarks/gpu_bench.sh
S=$SECONDS
bash $B exec 230 python3 -m pytest -q -s tests/test_cuda.py -k "(forward_and_backward or wide_state_tiles) and (retention or mamba2 or lightning or linear or transnormer)" 2>&1 | tee $OUT/c10_cuda_stages.log | grep -v "^$" | tail -4
echo "tests took $((SECONDS-S)) s"
for r in 1 2; do for tag in new old; do
  src=src; [ $tag = old ] && src=scratch/old_src/src
  SHAPES=1x131072,1x32768,16x2048 MECHS=retention,mamba2 bash $B exec 80 python3 benchmarks/ab_src.py $src $tag 2>&1 | grep '^{' | tee -a $OUT/c10_ab_stages.jsonl
done; done
echo "ab took $((SECONDS-S)) s"
bash $B exec $((500-SECONDS)) python3 -m pytest -q -s tests/test_cuda.py -k "long_sequence and (retention or mamba2) and bf16" 2>&1 | tee $OUT/c10_cuda_long.log | grep -v "^$" | tail -3
echo "all took $((SECONDS-S)) s"
