#!/bin/bash
# stop 20, call 5 (H100): the final defaults (inv_tf32 0: IEEE inverse as before; uw_whole (0, 1)): DeltaNet and Gated
# DeltaNet beside fla and SDPA cuDNN at 2K / 8K; GPU tests of the whole-chunk U and W
cd "$(dirname "$0")/../../.."
B=benchmarks/gpu_bench.sh
S=$SECONDS
L=$OUT/logs; mkdir -p $L
bash $B exec 5 true
nvidia-smi --query-gpu=name --format=csv,noheader | tee $L/gpu.txt
LONGMIX_OUT_NAME=speed_delta bash $B speed benchmarks/results/none 150 --backends triton --mechanisms deltanet,gated_deltanet --anchors fla,sdpa_cudnn --lengths 2048,8192 --patterns causal_self --passes fwd,fwdbwd --max-ms 300 2>&1 | tail -2
echo "speed at $((SECONDS-S)) s"
rm -f $OUT/speed_delta/*.png
py() { bash $B exec $(( 315 - (SECONDS-S) )) python3 -m pytest -v -rP --tb=short -p no:cacheprovider -n 3 $2 -k "$3" > $L/c5_$1.log 2>&1; }
py cuda tests/test_cuda.py "(backend_matches and deltanet and (bf16 or fp32)) or (inference_forward and deltanet and bf16 and 128 and default)" &
py triton tests/test_triton.py "whole_chunk or (four_block_prep_at and scalar)" &
wait
echo "all at $((SECONDS-S)) s"
grep -h "PASSED\|FAILED\|ERROR\|passed\|failed" $L/c5_*.log | grep -v "^\[gw.*PASSED" | cut -c1-220
mv $OUT/speed_delta $L/
tar czf $OUT/results.tgz -C $OUT logs && rm -rf $L
ls -la $OUT
