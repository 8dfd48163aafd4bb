#!/bin/bash
# stop 21, call 5 (H100): the delta rule's own state-tile target (state_min_programs_delta 128: V tiles of 64 at
# B·H = 64), timed for the three delta mechanisms at B=4, T=8K; DeltaNet and KDA beside fla and SDPA cuDNN at 8K;
# GPU tests at the wide state tiles (the kernels B·H = 64 now runs)
cd "$(dirname "$0")/../../.."
B=benchmarks/gpu_bench.sh
S=$SECONDS
L=$OUT/logs; mkdir -p $L
bash $B exec 5 true
nvidia-smi --query-gpu=name --format=csv,noheader | tee $L/gpu.txt
KNOBS=state_min_programs_delta ROUNDS=2 PASSES=fwd,fwdbwd bash $B exec 100 python3 benchmarks/tune_kernels.py 4 8192 2>&1 | grep -v Warn | tee -a $L/c5_tune.txt | cut -c1-400
echo "tune at $((SECONDS-S)) s"
rm -f $OUT/tune.jsonl
LONGMIX_OUT_NAME=speed_8k bash $B speed benchmarks/results/none 330 --backends triton --mechanisms kda,deltanet --anchors fla,sdpa_cudnn --lengths 8192 --patterns causal_self --passes fwd,fwdbwd --max-ms 300 2>&1 | tail -2
echo "speed at $((SECONDS-S)) s"
rm -f $OUT/speed_8k/*.png
mv $OUT/speed_8k $L/
bash $B exec $(( 585 - (SECONDS-S) )) python3 -m pytest -v -rP --tb=short -p no:cacheprovider -n 4 tests/test_cuda.py -k "wide_state and (deltanet or kda)" > $L/c5_cuda.log 2>&1
echo "all at $((SECONDS-S)) s"
grep -h "PASSED\|FAILED\|ERROR\|passed\|failed" $L/c5_*.log | grep -v "^\[gw.*PASSED" | cut -c1-220
tar czf $OUT/results.tgz -C $OUT logs && rm -rf $L
ls -la $OUT
