#!/bin/bash
# stop 15, call 9: the delta rule's state passes at 3 stages (DeltaNet, Gated DeltaNet) and KDA's forward at 3 with
# narrow V tiles: GPU tests (wide tiles at B·H=256 first, then the usual selection), then an A/B against the old depths
cd "$(dirname "$0")/.."
B=benchmarks/gpu_bench.sh
S=$SECONDS
bash $B exec 200 python3 -m pytest -q -s tests/test_cuda.py -k "wide_state_tiles or (forward_and_backward and deltanet)" 2>&1 | tee $OUT/c9_cuda_wide.log | grep -v "^$" | tail -30
echo "wide took $((SECONDS-S)) s"
bash $B exec $((480-SECONDS)) python3 -m pytest -q -s tests/test_cuda.py -k "(long_sequence or packed or inference) and (deltanet or kda) or (forward_and_backward and kda)" 2>&1 | tee $OUT/c9_cuda_delta.log | grep -v "^$" | tail -20
echo "tests took $((SECONDS-S)) s"
for tag in new old; do
  cfg='{}'; [ $tag = old ] && cfg='{"state_stages_delta": 2, "state_stages_delta_key_narrow": 2}'
  SHAPES=4x8192,1x32768 MECHS=deltanet,gated_deltanet,kda bash $B exec $((580-SECONDS)) python3 benchmarks/ab_src.py src $tag "$cfg" 2>&1 | grep '^{' | tee -a $OUT/c9_ab_stages.jsonl
done
echo "all took $((SECONDS-S)) s"
