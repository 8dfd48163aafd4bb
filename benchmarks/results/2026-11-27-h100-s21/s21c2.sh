#!/bin/bash
# stop 21, call 2 (H100): inv_tf32 4 (the default now for DeltaNet and Gated DeltaNet): both beside fla and SDPA
# cuDNN at 2K / 8K, then GPU tests of the delta rule's kernels at the new default
cd "$(dirname "$0")/../../.."
B=benchmarks/gpu_bench.sh
S=$SECONDS
L=$OUT/logs; mkdir -p $L
bash $B exec 5 true
nvidia-smi --query-gpu=name --format=csv,noheader | tee $L/gpu.txt
LONGMIX_OUT_NAME=speed_delta bash $B speed benchmarks/results/none 330 --backends triton --mechanisms deltanet,gated_deltanet --anchors fla,sdpa_cudnn --lengths 2048,8192 --patterns causal_self --passes fwd,fwdbwd --max-ms 300 2>&1 | tail -2
echo "speed at $((SECONDS-S)) s"
rm -f $OUT/speed_delta/*.png
mv $OUT/speed_delta $L/
py() { bash $B exec $(( 580 - (SECONDS-S) )) python3 -m pytest -v -rP --tb=short -p no:cacheprovider -n 4 $2 -k "$3" > $L/c2_$1.log 2>&1; }
py cuda tests/test_cuda.py "(backend_matches or packed_documents or long_sequence or sizes_differ or inference_forward) and deltanet and not fp32" &
py triton tests/test_triton.py "tf32_inverse or whole_chunk or (four_block and 16_bit)" &
wait
echo "all at $((SECONDS-S)) s"
grep -h "PASSED\|FAILED\|ERROR\|passed\|failed" $L/c2_*.log | grep -v "^\[gw.*PASSED" | cut -c1-220
tar czf $OUT/results.tgz -C $OUT logs && rm -rf $L
ls -la $OUT
