#!/bin/bash
# stop 19, call 5 (H100): Gated DeltaNet's decayed-key walk against the old one; GDN and DeltaNet forward beside fla and
# SDPA cuDNN at 2K / 8K; GDN's forward kernel by kernel beside fla's at 16x2K
cd "$(dirname "$0")/.."
B=benchmarks/gpu_bench.sh
S=$SECONDS
L=$OUT/logs; mkdir -p $L
bash $B exec 5 true
nvidia-smi --query-gpu=name --format=csv,noheader | tee $L/gpu.txt
LONGMIX_OUT_NAME=speed_khat bash $B speed benchmarks/results/none 300 --backends triton --mechanisms gated_deltanet,deltanet --anchors fla,sdpa_cudnn --lengths 2048,8192 --patterns causal_self --passes fwd --max-ms 300 2>&1 | tail -2
echo "speed at $((SECONDS-S)) s"
rm -f $OUT/speed_khat/*.png
for shape in "16 2048" "4 8192"; do
  KNOBS=fused_khat ROUNDS=3 PASSES=fwd bash $B exec 120 python3 benchmarks/tune_kernels.py $shape 2>&1 | grep -v Warn | tee -a $L/c5_tune_khat.txt | grep khat | tail -3
  echo "tune $shape at $((SECONDS-S)) s"
done
rm -f $OUT/tune.jsonl
bash $B exec $((540-(SECONDS-S))) python3 benchmarks/profile_kernels.py gated_deltanet 16 2048 2>&1 | grep -v Warn > $L/c5_profile_gdn_16x2k.txt
rm -f $OUT/profile.txt
echo "profile at $((SECONDS-S)) s"
head -60 $L/c5_profile_gdn_16x2k.txt
mv $OUT/speed_khat $L/
tar czf $OUT/results.tgz -C $OUT logs && rm -rf $L
ls $OUT
