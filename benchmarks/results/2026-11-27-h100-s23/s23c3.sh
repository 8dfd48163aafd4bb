#!/bin/bash
# stop 23, call 3 (H100): the training forward by the one-pass walk that also stores each chunk's entering state
# (chunk.CONFIG train_walk: 0 never, 1 where it segments, 2 always) at 1x32K, 1x128K, 16x2K, 4x8K; RetNet and
# Lightning's forward beside fla at 32K again (call 2's 0.555 / 0.513 ms against the tune's 0.421 / 0.425); GPU tests
# of the training walk (train_walk 2: one walk at many sequences x heads, segments at few)
source "$(dirname "$0")/../../call_lib.sh"
KNOBS=train_walk ROUNDS=2 tune c3_tune_1x32k.txt 70 1 32768
KNOBS=train_walk ROUNDS=2 PASSES=fwdbwd tune c3_tune_1x128k.txt 70 1 131072
KNOBS=train_walk ROUNDS=2 PASSES=fwdbwd tune c3_tune_16x2k.txt 50 16 2048
KNOBS=train_walk ROUNDS=2 PASSES=fwdbwd tune c3_tune_4x8k.txt 50 4 8192
speed speed_scalar32k benchmarks/results/none 70 --backends triton --mechanisms retention,lightning,mamba2 \
    --anchors fla --lengths 32768 --patterns causal_self --passes fwd --max-ms 300
LONGMIX_TEST_CONFIG='{"chunk": {"train_walk": 2}}' tests c3_cuda_train_walk 555 tests/test_cuda.py \
    "(backend_matches or wide_state or long_sequence or training_gradients) and (linear or transnormer or retention or lightning or mamba2) and not gla"
finish
