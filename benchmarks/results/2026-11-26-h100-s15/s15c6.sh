#!/bin/bash
# stop 15, call 6: segments only instead of shrinking the tiles: GLA A/B at five shapes; where retention's time goes at
# B=1, T=128K against B=16, T=2K (its constant-speed ratio is 1.18)
cd "$(dirname "$0")/.."
B=benchmarks/gpu_bench.sh
S=$SECONDS
for r in 1 2; do
  for tag in seg noseg; do
    cfg='{}'; [ $tag = noseg ] && cfg='{"state_seg_programs": 0}'
    SHAPES=16x2048,4x8192,2x16384,1x32768,1x131072 MECHS=gla bash $B exec 100 python3 benchmarks/ab_src.py src $tag "$cfg" 2>&1 | grep '^{' | tee -a $OUT/c6_ab_seg.jsonl
  done
done
echo "ab took $((SECONDS-S)) s"
for shape in "16 2048" "1 131072"; do
  IMPLS=longmix bash $B exec 60 python3 benchmarks/profile_kernels.py retention,gla $shape 2>&1 | tee -a $OUT/c6_profile.txt | grep -v "^$" | head -40
done
echo "all took $((SECONDS-S)) s"
