#!/bin/bash
# stop 22, call 4 (H100): call 3's tests again, which ran out of GPU memory there (eight test processes at once,
# fp32 at chunks of 128: every failure was a CUDA out-of-memory error): the delta rule at chunks of 128 in fp32 with
# two processes, then test_triton's delta-rule and chunk-of-128 tests on the GPU
source "$(dirname "$0")/../../call_lib.sh"
bash $B exec 300 python3 -m pytest -v -rP --tb=short -p no:cacheprovider -n 2 tests/test_cuda.py \
    -k "chunks_of_128 and fp32 and (deltanet or kda)" > $L/c4_cuda_c128_fp32.log 2>&1
echo "c128 fp32 at $((SECONDS - S)) s"
tests c4_triton 560 tests/test_triton.py "chunks_of_128 or delta"
finish
