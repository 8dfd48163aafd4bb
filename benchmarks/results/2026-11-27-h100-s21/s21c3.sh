#!/bin/bash
# stop 21, call 3 (H100): the per-key intra matrix P stored in the inputs' dtype (_gla p_lowp), timed; GLA and KDA
# beside fla and SDPA cuDNN at 2K / 8K; GPU tests of GLA and KDA at the new default
cd "$(dirname "$0")/../../.."
B=benchmarks/gpu_bench.sh
S=$SECONDS
L=$OUT/logs; mkdir -p $L
bash $B exec 5 true
nvidia-smi --query-gpu=name --format=csv,noheader | tee $L/gpu.txt
KNOBS=p_lowp ROUNDS=2 PASSES=fwd,fwdbwd bash $B exec 90 python3 benchmarks/tune_kernels.py 16 2048 2>&1 | grep -v Warn | tee -a $L/c3_tune.txt | cut -c1-400
KNOBS=p_lowp ROUNDS=2 PASSES=fwd bash $B exec 60 python3 benchmarks/tune_kernels.py 4 8192 2>&1 | grep -v Warn | tee -a $L/c3_tune.txt | cut -c1-400
echo "tune at $((SECONDS-S)) s"
rm -f $OUT/tune.jsonl
LONGMIX_OUT_NAME=speed_key bash $B speed benchmarks/results/none 230 --backends triton --mechanisms kda,gla --anchors fla,sdpa_cudnn --lengths 2048,8192 --patterns causal_self --passes fwd,fwdbwd --max-ms 300 2>&1 | tail -2
echo "speed at $((SECONDS-S)) s"
rm -f $OUT/speed_key/*.png
mv $OUT/speed_key $L/
py() { bash $B exec $(( 585 - (SECONDS-S) )) python3 -m pytest -v -rP --tb=short -p no:cacheprovider -n 4 $2 -k "$3" > $L/c3_$1.log 2>&1; }
py cuda tests/test_cuda.py "(backend_matches or packed_documents or long_sequence or inference_forward) and (gla or kda) and not fp32" &
py triton tests/test_triton.py "stored_in_the_input or (per_key and variants and default)" &
wait
echo "all at $((SECONDS-S)) s"
grep -h "PASSED\|FAILED\|ERROR\|passed\|failed" $L/c3_*.log | grep -v "^\[gw.*PASSED" | cut -c1-220
tar czf $OUT/results.tgz -C $OUT logs && rm -rf $L
ls -la $OUT
