#!/bin/bash
# stop 22, call 5 (H100): the delta rule's fp32 tests at chunks of 128 alone (call 3: out of memory beside other
# test processes; call 4: none finished in the ~290 s left), three processes, with a stack dump of any test still
# running after 200 s and every test's duration
source "$(dirname "$0")/../../call_lib.sh"
bash $B exec 520 python3 -m pytest -v -rP --tb=short -p no:cacheprovider -n 3 --durations=0 \
    -o faulthandler_timeout=200 tests/test_cuda.py -k "chunks_of_128 and fp32 and (deltanet or kda)" \
    > $L/c5_cuda_c128_fp32.log 2>&1
finish
