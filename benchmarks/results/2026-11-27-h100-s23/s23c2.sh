#!/bin/bash
# stop 23, call 2 (H100): the segmented one-pass forward beside fla at B = 1, T = 32K / 128K (Mamba-2, RetNet,
# Lightning, linear); KDA's forward with the decayed keys alone from fwd_A (fwd_scaled_q False) at 4x8K and 16x2K;
# KDA beside fla at 128K; constant speed (forward+backward at 16x2K and 1x128K, every recurrent mechanism); KDA's
# float32 tests at chunks of 128 with bwd_delta at 8 warps
source "$(dirname "$0")/../../call_lib.sh"
speed speed_seg benchmarks/results/none 150 --backends triton --mechanisms mamba2,retention,lightning,linear \
    --anchors fla --lengths 32768,131072 --patterns causal_self --passes fwd --max-ms 300
KNOBS=fwd_scaled_bh ROUNDS=2 MECHS=kda PASSES=fwd tune c2_tune_4x8k.txt 60 4 8192
KNOBS=fwd_scaled_bh ROUNDS=2 MECHS=kda PASSES=fwd tune c2_tune_16x2k.txt 50 16 2048
speed constant benchmarks/results/none 130 --backends triton \
    --mechanisms linear,transnormer,retention,lightning,mamba2,gla,deltanet,gated_deltanet,kda \
    --anchors "" --lengths 2048,131072 --patterns causal_self --passes fwdbwd --max-ms 300
speed speed_kda128 benchmarks/results/none 100 --backends triton --mechanisms kda --anchors fla \
    --lengths 131072 --patterns causal_self --passes fwd,fwdbwd --max-ms 300
bash $B exec $((575 - (SECONDS - S))) python3 -m pytest -v -rP --tb=short -p no:cacheprovider -n 2 --durations=0 \
    tests/test_cuda.py -k "chunks_of_128 and fp32 and kda" > $L/c2_cuda_c128_fp32_kda.log 2>&1
finish
