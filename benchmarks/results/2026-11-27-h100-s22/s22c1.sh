#!/bin/bash
# stop 22, call 1 (H100): chunks of 128 by default for few sequences x heads (chunk.CONFIG long_chunk_bh), timed
# for every recurrent mechanism at B=1, T=32K and B=4, T=8K; _gla fwd_scaled (fwd_A stores q e^G and
# k e^{G_last - G}) for GLA and KDA at 16x2K and 4x8K; GPU tests of fwd_scaled (LONGMIX_TEST_CONFIG) and of
# chunks of 128 for GLA / KDA in bf16 (P stored in bf16 at BT = 128) with the defaults
source "$(dirname "$0")/../../call_lib.sh"
ALL=linear,retention,mamba2,gla,deltanet,gated_deltanet,kda
KNOBS=long_chunk_bh ROUNDS=2 MECHS=$ALL tune c1_tune_1x32k.txt 200 1 32768
KNOBS=long_chunk_bh,fwd_scaled ROUNDS=2 MECHS=$ALL tune c1_tune_4x8k.txt 150 4 8192
KNOBS=fwd_scaled ROUNDS=2 MECHS=gla,kda tune c1_tune_16x2k.txt 60 16 2048
LONGMIX_TEST_CONFIG='{"_gla": {"fwd_scaled": true}}' tests c1_cuda_scaled 580 tests/test_cuda.py \
    "(backend_matches or packed_documents or long_sequence or chunks_of_128) and (gla or kda) and not fp32" &
tests c1_cuda_c128 580 tests/test_cuda.py "chunks_of_128 and (gla or kda) and bf16" &
tests c1_triton 580 tests/test_triton.py "scaled_operands or stored_in_the_input" &
wait
finish
