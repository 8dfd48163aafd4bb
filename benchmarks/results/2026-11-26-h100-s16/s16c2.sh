#!/bin/bash
# stop 16, call 2: chunk_size 128 against 64 beside fla (same sitting), B=16 T=2K and B=1 T=32K
cd "$(dirname "$0")/.."
B=benchmarks/gpu_bench.sh
SECONDS_LEFT=540 bash $B exec 580 python3 scratch/chunk_ab.py 2>&1 | grep -v Warning | tee $OUT/c2_chunk_ab.jsonl | tail -60
