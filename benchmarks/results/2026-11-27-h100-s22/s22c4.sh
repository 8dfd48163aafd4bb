#!/bin/bash
# stop 22, call 4 (H100): KDA beside fla and SDPA cuDNN at 8K and 32K with fwd_scaled_bh (fla's KDA compiles and
# autotunes for ~3 minutes: the caches are packed after it); then call 3's fp32 tests at chunks of 128 again, which
# ran out of GPU memory there (eight test processes at once; every failure was a CUDA out-of-memory error), with two
# processes
source "$(dirname "$0")/../../call_lib.sh"
speed speed_kda benchmarks/results/none 360 --backends triton --mechanisms kda --anchors fla,sdpa_cudnn \
    --lengths 8192,32768 --patterns causal_self --passes fwd,fwdbwd --max-ms 300
bash $B pack
bash $B exec $((570 - (SECONDS - S))) python3 -m pytest -v -rP --tb=short -p no:cacheprovider -n 2 tests/test_cuda.py \
    -k "chunks_of_128 and fp32 and (deltanet or kda)" > $L/c4_cuda_c128_fp32.log 2>&1
finish
