#!/bin/bash
# stop 16, call 1: the wide-tile GPU test for the rest (KDA, Lightning, Mamba-2, RetNet fp32); the delta rule's
# forward state pass in segments (branch delta-segments) forced on: GPU tests, then timed against one walk at B=1
cd "$(dirname "$0")/.."
B=benchmarks/gpu_bench.sh
S=$SECONDS
bash $B exec 190 python3 -m pytest -q -s tests/test_cuda.py -k "wide_state_tiles and (kda or lightning or mamba2 or (retention and fp32))" 2>&1 | tee $OUT/c1_cuda_wide.log | grep -v "^$" | tail -12
echo "wide took $((SECONDS-S)) s"
bash $B exec $((360-SECONDS)) python3 -c '
import sys, pytest
from longmix.kernels.triton import chunk
chunk.CONFIG.update(state_seg_delta=True, state_seg_min_chunks=2, state_seg_below=1 << 20)
sys.exit(pytest.main(["-q", "-s", "tests/test_cuda.py", "-k",
    "((forward_and_backward or inference or packed) and (deltanet or kda)) or (long_sequence and deltanet and bf16)"]))
' 2>&1 | tee $OUT/c1_cuda_segdelta.log | grep -v "^$" | tail -30
echo "seg tests took $((SECONDS-S)) s"
KNOBS=state_seg_delta ROUNDS=2 PASSES=fwd bash $B exec $((470-SECONDS)) python3 benchmarks/tune_kernels.py 1 131072 2>&1 | tee $OUT/c1_tune_segdelta_1x128k.txt | tail -10
echo "tune 128K took $((SECONDS-S)) s"
KNOBS=state_seg_delta ROUNDS=2 PASSES=fwd bash $B exec $((580-SECONDS)) python3 benchmarks/tune_kernels.py 1 32768 2>&1 | tee $OUT/c1_tune_segdelta_1x32k.txt | tail -10
echo "all took $((SECONDS-S)) s"
