#!/bin/bash
# stop 21, call 4 (H100): KDA beside fla and SDPA cuDNN at 2K / 8K (resuming call 3's rows, whose time ran out in
# fla's first KDA calls); then DeltaNet's forward+backward at B=4, T=8K under its backward's tiles and warps
cd "$(dirname "$0")/../../.."
B=benchmarks/gpu_bench.sh
R=benchmarks/results/2026-11-27-h100-s21
S=$SECONDS
L=$OUT/logs; mkdir -p $L
bash $B exec 5 true
nvidia-smi --query-gpu=name --format=csv,noheader | tee $L/gpu.txt
LONGMIX_OUT_NAME=speed_key bash $B speed $R/c3_partial 400 --backends triton --mechanisms kda --anchors fla,sdpa_cudnn --lengths 2048,8192 --patterns causal_self --passes fwd,fwdbwd --max-ms 300 2>&1 | tail -2
echo "speed at $((SECONDS-S)) s"
rm -f $OUT/speed_key/*.png
mv $OUT/speed_key $L/
MECHS=deltanet KNOBS=state_min_programs,_delta.bwd_warps,dqk_warps_delta,state_stages_delta ROUNDS=2 PASSES=fwdbwd bash $B exec $(( 585 - (SECONDS-S) )) python3 benchmarks/tune_kernels.py 4 8192 2>&1 | grep -v Warn | tee -a $L/c4_tune.txt | cut -c1-400
echo "all at $((SECONDS-S)) s"
rm -f $OUT/tune.jsonl
tar czf $OUT/results.tgz -C $OUT logs && rm -rf $L
ls -la $OUT
