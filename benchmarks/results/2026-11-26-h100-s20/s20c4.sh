#!/bin/bash
# stop 20, call 4 (H100): fwd_prep4's inverse in one TF32 product (2) or three (3, tf32x3, now the default) or IEEE
# (0), timed; GPU tests of the delta kernels with the default
cd "$(dirname "$0")/../../.."
B=benchmarks/gpu_bench.sh
S=$SECONDS
L=$OUT/logs; mkdir -p $L
bash $B exec 5 true
nvidia-smi --query-gpu=name --format=csv,noheader | tee $L/gpu.txt
KNOBS=inv_tf32 ROUNDS=2 PASSES=fwd,fwdbwd bash $B exec 150 python3 benchmarks/tune_kernels.py 16 2048 2>&1 | grep -v Warn | tee -a $L/c4_tune.txt | cut -c1-400
echo "tune 16x2k at $((SECONDS-S)) s"
KNOBS=inv_tf32 ROUNDS=2 PASSES=fwd bash $B exec 80 python3 benchmarks/tune_kernels.py 4 8192 2>&1 | grep -v Warn | tee -a $L/c4_tune.txt | cut -c1-400
echo "tune 4x8k at $((SECONDS-S)) s"
rm -f $OUT/tune.jsonl
py() { bash $B exec $(( 560 - (SECONDS-S) )) python3 -m pytest -v -rP --tb=short -p no:cacheprovider -n 4 $2 -k "$3" > $L/c4_$1.log 2>&1; }
py cuda tests/test_cuda.py "(backend_matches and (deltanet or kda)) or (packed_documents and (deltanet or kda) and bf16) or (inference_forward and deltanet and bf16 and 128 and (default or khat)) or (long_sequence and gated_deltanet and bf16)" &
py triton tests/test_triton.py "tf32_inverse or 16_bit or whole_chunk or four_block or strong_gates" &
wait
echo "all at $((SECONDS-S)) s"
grep -h "PASSED\|FAILED\|ERROR\|passed\|failed" $L/c4_*.log | grep -v "^\[gw.*PASSED" | cut -c1-220
grep -h "^None {\|^scalar {\|^key {" $L/c4_triton.log | head -6
tar czf $OUT/results.tgz -C $OUT logs && rm -rf $L
ls -la $OUT
