#!/bin/bash
# stop 23, call 4 (H100): RetNet, Lightning and Mamba-2's forward beside fla at B = 1, T = 32K / 128K after the
# launch code's integer helpers became plain Python (triton.cdiv cost ~2.7 us a call; the segmented forward at 32K
# is ~0.42 ms on the GPU, and calls 2-3's sweeps timed 0.42-0.61 ms, host-bound) and with train_walk's defaults
source "$(dirname "$0")/../../call_lib.sh"
speed speed_final benchmarks/results/none 170 --backends triton --mechanisms retention,lightning,mamba2 \
    --anchors fla --lengths 32768,131072 --patterns causal_self --passes fwd --max-ms 300
finish
