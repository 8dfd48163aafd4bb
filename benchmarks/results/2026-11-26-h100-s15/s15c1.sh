#!/bin/bash
# stop 15, call 1: gpu-pending (076a688) at its defaults, then with state passes in segments and the doubling inverse
cd "$(dirname "$0")/.."
B=benchmarks/gpu_bench.sh
S=$SECONDS
SEL="(forward_and_backward or long_sequence) and (gla or retention or deltanet or kda)"
bash $B exec 240 python3 -m pytest -q -s tests/test_cuda.py -k "$SEL" 2>&1 | tee $OUT/c1_cuda_defaults.log | grep -v "^$" | tail -30
echo "defaults took $((SECONDS-S)) s"
bash $B exec $((575-SECONDS)) python3 -c "
import sys, pytest
from longmix.kernels.triton import chunk, _delta
chunk.CONFIG['state_seg_programs'] = 1024
_delta.CONFIG['inverse'] = 'doubling'
sys.exit(pytest.main(['-q', '-s', 'tests/test_cuda.py', '-k', '$SEL']))" 2>&1 | tee $OUT/c1_cuda_knobs.log | grep -v "^$" | tail -30
echo "all took $((SECONDS-S)) s"
