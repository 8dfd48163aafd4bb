#!/bin/bash
# stop 15, call 7: the merged defaults (doubling inverse; GLA segments below 128 programs): the delta family's packed,
# no-grad and training tests, GLA's long-sequence tests
cd "$(dirname "$0")/.."
B=benchmarks/gpu_bench.sh
S=$SECONDS
bash $B exec 400 python3 -m pytest -q -s tests/test_cuda.py -k "((packed or inference or training_gradients) and deltanet) or (gla and (long_sequence or forward_and_backward)) or deferred or never_waits" 2>&1 | tee $OUT/c7_cuda.log | grep -v "^$" | tail -30
echo "all took $((SECONDS-S)) s"
