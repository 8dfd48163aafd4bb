#!/bin/bash
# stop 22, call 3 (H100): _gla fwd_scaled_bh (q e^G and k e^{G_last - G} stored by fwd_A) at few sequences x heads:
# GLA and KDA at 1x32K, 2x16K and 1x128K; DeltaNet at chunks of 128 after fwd_prep's rewrite (block by block, 4
# warps); GPU tests of the delta rule at chunks of 128 and other chunk sizes
source "$(dirname "$0")/../../call_lib.sh"
KNOBS=fwd_scaled_bh ROUNDS=2 MECHS=gla,kda tune c3_tune_1x32k.txt 100 1 32768
KNOBS=fwd_scaled_bh ROUNDS=2 MECHS=gla,kda tune c3_tune_2x16k.txt 80 2 16384
KNOBS=fwd_scaled_bh ROUNDS=2 MECHS=kda tune c3_tune_1x128k.txt 80 1 131072
bash $B exec 90 python3 -c "
import sys; sys.argv = ['p', 'deltanet,kda', '1', '32768']; sys.path.insert(0, 'benchmarks')
from longmix.mechanisms import base; base.DEFAULT_CHUNK['recurrent'] = 128
import profile_kernels; print('chunk_size 128'); profile_kernels.main(sys.argv[1:])" 2>&1 | grep -v "Warn\|warn" >> $L/c3_profile_c128.txt
echo "profile c128 at $((SECONDS - S)) s"
tests c3_cuda_c128 580 tests/test_cuda.py "(chunks_of_128 or key_and_value_sizes) and (deltanet or kda)" &
tests c3_triton 580 tests/test_triton.py "chunks_of_128 or delta" &
wait
finish
