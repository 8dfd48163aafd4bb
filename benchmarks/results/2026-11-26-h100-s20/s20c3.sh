#!/bin/bash
# stop 20, call 3 (H100): the delta family beside fla at 2K / 8K with inv_tf32 = 2 and uw_whole = (0, 1) the
# defaults; then GPU tests of the delta kernels (test_cuda) and test_triton's prep tests
cd "$(dirname "$0")/../../.."
B=benchmarks/gpu_bench.sh
S=$SECONDS
L=$OUT/logs; mkdir -p $L
bash $B exec 5 true
nvidia-smi --query-gpu=name --format=csv,noheader | tee $L/gpu.txt
LONGMIX_OUT_NAME=speed_delta bash $B speed benchmarks/results/none 240 --backends triton --mechanisms deltanet,gated_deltanet,kda --anchors fla,sdpa_cudnn --lengths 2048,8192 --patterns causal_self --passes fwd,fwdbwd --max-ms 300 2>&1 | tail -2
echo "speed at $((SECONDS-S)) s"
rm -f $OUT/speed_delta/*.png
py() { bash $B exec $(( 575 - (SECONDS-S) )) python3 -m pytest -v -rP --tb=short -p no:cacheprovider -n 4 $2 -k "$3" > $L/c3_$1.log 2>&1; }
py cuda tests/test_cuda.py "(backend_matches or inference_forward or packed_documents or sizes_differ or chunks_of_128) and (deltanet or kda)" &
py triton tests/test_triton.py "prep or strong_gates or (one_pass and delta)" &
wait
echo "all at $((SECONDS-S)) s"
grep -h "PASSED\|FAILED\|ERROR\|passed\|failed" $L/c3_*.log | grep -v "^\[gw.*PASSED" | cut -c1-220
grep -h "^None {\|^scalar {\|^key {" $L/c3_triton.log | head -6
mv $OUT/speed_delta $L/
tar czf $OUT/results.tgz -C $OUT logs && rm -rf $L
ls -la $OUT
