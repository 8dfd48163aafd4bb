#!/bin/bash
# stop 15, call 5: GLA's state passes in segments by default (per-key gates only): GLA's GPU tests, an A/B against no
# segments, and every mechanism's time per token at B=1, T=128K against B=16, T=2K
cd "$(dirname "$0")/.."
B=benchmarks/gpu_bench.sh
S=$SECONDS
bash $B exec 200 python3 -m pytest -q -s tests/test_cuda.py -k "gla and (forward_and_backward or long_sequence or packed or inference or training)" 2>&1 | tee $OUT/c5_cuda_gla.log | grep -v "^$" | tail -14
echo "tests took $((SECONDS-S)) s"
for r in 1 2; do
  for tag in seg noseg; do
    cfg='{}'; [ $tag = noseg ] && cfg='{"state_seg_programs": 0}'
    SHAPES=16x2048,4x8192,1x32768,1x131072 MECHS=gla bash $B exec 100 python3 benchmarks/ab_src.py src $tag "$cfg" 2>&1 | grep '^{' | tee -a $OUT/c5_ab_seg.jsonl
  done
done
echo "ab took $((SECONDS-S)) s"
SHAPES=16x2048,1x131072 MECHS=linear,retention,lightning,mamba2,transnormer,deltanet,gated_deltanet,kda bash $B exec $((570-SECONDS)) python3 benchmarks/ab_src.py src const 2>&1 | grep '^{' | tee -a $OUT/c5_constant.jsonl
echo "all took $((SECONDS-S)) s"
