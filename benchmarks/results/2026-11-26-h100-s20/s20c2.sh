#!/bin/bash
# stop 20, call 2 (H100): fwd_prep4's U and W by whole-chunk products (uw_whole) and its inverse in TF32 (inv_tf32),
# timed; GPU tests with both on (the candidate) and test_triton's prep tests
cd "$(dirname "$0")/../../.."
B=benchmarks/gpu_bench.sh
R=benchmarks/results/2026-11-26-h100-s20
S=$SECONDS
L=$OUT/logs; mkdir -p $L
bash $B exec 5 true
nvidia-smi --query-gpu=name --format=csv,noheader | tee $L/gpu.txt
KNOBS=uw_whole,inv_tf32 ROUNDS=2 PASSES=fwd,fwdbwd bash $B exec 260 python3 benchmarks/tune_kernels.py 16 2048 2>&1 | grep -v Warn | tee -a $L/c2_tune.txt | cut -c1-400
echo "tune 16x2k at $((SECONDS-S)) s"
KNOBS=uw_whole,inv_tf32 ROUNDS=2 PASSES=fwd bash $B exec 120 python3 benchmarks/tune_kernels.py 4 8192 2>&1 | grep -v Warn | tee -a $L/c2_tune.txt | cut -c1-400
echo "tune 4x8k at $((SECONDS-S)) s"
rm -f $OUT/tune.jsonl
export PYTHONPATH=$PWD/$R:$PWD/src LONGMIX_DELTA_CONFIG='{"uw_whole": true, "inv_tf32": 2}'
py() { bash $B exec $(( 570 - (SECONDS-S) )) python3 -m pytest -v -s --tb=short -p no:cacheprovider -p cfg_plugin -n 4 $2 -k "$3" > $L/c2_$1.log 2>&1; }
py cuda tests/test_cuda.py "(backend_matches or inference_forward or long_sequence or packed_documents or sizes_differ) and (deltanet or kda)" &
py triton tests/test_triton.py "prep or strong_gates or (one_pass and delta)" &
wait
echo "all at $((SECONDS-S)) s"
grep -h "PASSED\|FAILED\|ERROR\|passed\|failed" $L/c2_*.log | grep -v "^\[gw.*PASSED" | cut -c1-220
tar czf $OUT/results.tgz -C $OUT logs && rm -rf $L
ls -la $OUT
