#!/bin/bash
# stop 16, call 4: the other recurrent mechanisms beside fla at 32K and 128K (the rows stop 15's call 4 lost)
cd "$(dirname "$0")/.."
B=benchmarks/gpu_bench.sh
LONGMIX_OUT_NAME=speed_rest bash $B speed benchmarks/results/2026-11-26-h100-s16/none 320 --backends triton --mechanisms retention,lightning,mamba2,linear,gla --anchors fla --lengths 32768,131072 --patterns causal_self --passes fwd,fwdbwd --max-ms 300 2>&1 | tail -14
