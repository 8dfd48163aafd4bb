#!/bin/bash
# stop 23, call 1 (H100): the one-pass inference forward in segments (fused_seg_*) for no gate and scalar gates at
# B = 1, T = 32K / 128K, against the two-kernel forward; its GPU tests; the delta rule's float32 tests at chunks of
# 128 with bwd_delta at 8 warps (bwd_warps_ieee128)
source "$(dirname "$0")/../../call_lib.sh"
KNOBS=fused_seg_programs ROUNDS=2 PASSES=fwd tune c1_tune_1x32k.txt 110 1 32768
KNOBS=fused_seg_programs ROUNDS=2 PASSES=fwd tune c1_tune_1x128k.txt 110 1 131072
tests c1_cuda_segments 330 tests/test_cuda.py "inference_forward and segments"
echo "segments tests at $((SECONDS - S)) s"
bash $B exec $((560 - (SECONDS - S))) python3 -m pytest -v -rP --tb=short -p no:cacheprovider -n 2 --durations=0 \
    tests/test_cuda.py -k "chunks_of_128 and fp32 and (deltanet or kda)" > $L/c1_cuda_c128_fp32.log 2>&1
finish
