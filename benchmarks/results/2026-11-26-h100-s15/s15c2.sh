#!/bin/bash
# stop 15, call 2: the KDA fp32 test the first call's time cut off at defaults, then gpu-pending's sweeps
cd "$(dirname "$0")/.."
B=benchmarks/gpu_bench.sh
S=$SECONDS
bash $B exec 60 python3 -m pytest -q -s tests/test_cuda.py -k "forward_and_backward and kda and fp32" 2>&1 | tail -3
KNOBS=inverse PASSES=fwd,fwdbwd ROUNDS=3 bash $B exec 150 python3 benchmarks/tune_kernels.py 16 2048 2>&1 | tee $OUT/c2_tune_inverse_16x2k.txt | tail -4
echo "inverse took $((SECONDS-S)) s"
KNOBS=state_seg_programs,state_min_programs ROUNDS=3 bash $B exec 240 python3 benchmarks/tune_kernels.py 1 32768 2>&1 | tee $OUT/c2_tune_seg_1x32k.txt | tail -8
echo "segments took $((SECONDS-S)) s"
KNOBS=out_stages,out_warps,out_bv PASSES=fwd ROUNDS=3 bash $B exec $((570-SECONDS)) python3 benchmarks/tune_kernels.py 16 2048 2>&1 | tee $OUT/c2_tune_out_16x2k.txt | tail -8
cp tune.jsonl $OUT/ 2>/dev/null; cp $OUT/../tune.jsonl $OUT/ 2>/dev/null
echo "all took $((SECONDS-S)) s"
