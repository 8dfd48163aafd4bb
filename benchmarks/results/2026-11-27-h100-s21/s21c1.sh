#!/bin/bash
# stop 21, call 1 (H100): the per-key gate cumsum inside fwd_A (_gla fwd_cumsum) and the inverse's TF32 doubling
# with an IEEE Newton step (_delta inv_tf32 4), timed; then GPU tests of GLA / KDA at the new default and of the
# prep's inverse variants
cd "$(dirname "$0")/../../.."
B=benchmarks/gpu_bench.sh
S=$SECONDS
L=$OUT/logs; mkdir -p $L
bash $B exec 5 true
nvidia-smi --query-gpu=name --format=csv,noheader | tee $L/gpu.txt
KNOBS=fwd_cumsum,inv_tf32 ROUNDS=2 PASSES=fwd,fwdbwd bash $B exec 230 python3 benchmarks/tune_kernels.py 16 2048 2>&1 | grep -v Warn | tee -a $L/c1_tune.txt | cut -c1-400
echo "tune 16x2k at $((SECONDS-S)) s"
KNOBS=fwd_cumsum,inv_tf32 ROUNDS=2 PASSES=fwd bash $B exec 100 python3 benchmarks/tune_kernels.py 4 8192 2>&1 | grep -v Warn | tee -a $L/c1_tune.txt | cut -c1-400
echo "tune 4x8k at $((SECONDS-S)) s"
rm -f $OUT/tune.jsonl
py() { bash $B exec $(( 575 - (SECONDS-S) )) python3 -m pytest -v -rP --tb=short -p no:cacheprovider -n 4 $2 -k "$3" > $L/c1_$1.log 2>&1; }
py cuda tests/test_cuda.py "(backend_matches or wide_state or packed_documents or long_sequence or sizes_differ or inference_forward) and (gla or kda)" &
py triton tests/test_triton.py "cumsum_inside or per_key or tf32_inverse or whole_chunk" &
wait
echo "all at $((SECONDS-S)) s"
grep -h "PASSED\|FAILED\|ERROR\|passed\|failed" $L/c1_*.log | grep -v "^\[gw.*PASSED" | cut -c1-220
grep -h "^None {\|^scalar {\|^key {" $L/c1_triton.log | head -6
tar czf $OUT/results.tgz -C $OUT logs && rm -rf $L
ls -la $OUT
