#!/bin/bash
# One sitting of the GPU benchmark on a two-GPU machine: the speed sweep alone on GPU 0 (nothing
# else runs there, so its timings are clean) and the quality suite on GPU 1, at once, each within
# SECONDS; then the compile caches are packed into $OUT for the next sitting (see gpu_bench.sh).
#
#   bash benchmarks/gpu_sitting.sh SECONDS SPEED_FOLDER QUALITY_FOLDER
#
# SPEED_OPTS and QUALITY_OPTS (environment) add `longmix bench` options; SPEED_OPTS2, if set, is a
# second speed stage run with the time the first leaves (into the same rows). With SPEED1_OPTS set,
# GPU 1 runs a second speed sweep with those options (into $OUT/speed1, then merged into
# $OUT/speed/speed.json by benchmarks/merge_rows.py) instead of the quality suite. GPU1_PRE, if set,
# is a shell command run on GPU 1 first (within GPU1_PRE_S seconds, default 150; log $OUT/gpu1_pre.log),
# while GPU 0 already sweeps. The quality workers share
# GPU 1 through CUDA MPS where the machine has it (small models' kernels then overlap instead of
# time-slicing); if MPS cannot start or a client cannot reach it, they share it without.
set -u
secs=$1 speed_dir=$2 quality_dir=$3
out=${OUT:-/tmp/longmix-out}
mkdir -p "$out"
nvidia-smi --query-gpu=index,name,memory.total --format=csv,noheader
(
    export CUDA_VISIBLE_DEVICES=0
    start=$SECONDS
    bash benchmarks/gpu_bench.sh speed "$speed_dir" "$secs" ${SPEED_OPTS:-}
    left=$((secs - (SECONDS - start)))
    if [ -n "${SPEED_OPTS2:-}" ] && [ $left -gt 30 ]; then  # a second stage (e.g. fla at a few lengths), same rows
        echo "second stage: $SPEED_OPTS2 ($left s)"
        bash benchmarks/gpu_bench.sh speed "$out/speed" "$left" $SPEED_OPTS2
    fi
) >"$out/speed.log" 2>&1 &
secs1=$secs
if [ -n "${GPU1_PRE:-}" ]; then  # a command (e.g. the CUDA tests) on GPU 1 before its stage, within GPU1_PRE_S
    pre_start=$SECONDS
    CUDA_VISIBLE_DEVICES=1 bash benchmarks/gpu_bench.sh exec "${GPU1_PRE_S:-150}" bash -c "$GPU1_PRE" >"$out/gpu1_pre.log" 2>&1
    echo "GPU 1 pre-command: rc=$? after $((SECONDS - pre_start)) s" >>"$out/gpu1_pre.log"
    secs1=$((secs - (SECONDS - pre_start)))
fi
if [ -n "${SPEED1_OPTS:-}" ]; then  # GPU 1 runs a second sweep instead (e.g. the fla anchors), into $OUT/speed1
    CUDA_VISIBLE_DEVICES=1 LONGMIX_OUT_NAME=speed1 bash benchmarks/gpu_bench.sh speed "$speed_dir" "$secs1" $SPEED1_OPTS \
        >"$out/speed1.log" 2>&1 &
else (
    export CUDA_VISIBLE_DEVICES=1
    ok="import torch; assert torch.cuda.device_count() == 1, torch.cuda.device_count(); torch.ones(1, device='cuda').sum().item()"
    if command -v nvidia-cuda-mps-control >/dev/null; then
        export CUDA_MPS_PIPE_DIRECTORY=/tmp/longmix-mps CUDA_MPS_LOG_DIRECTORY=/tmp/longmix-mps-log
        mkdir -p $CUDA_MPS_PIPE_DIRECTORY $CUDA_MPS_LOG_DIRECTORY
        # the daemon sees GPU 1 only; its clients see what it sees (GPU 1 as device 0), so they
        # must not name GPU 1 themselves
        if nvidia-cuda-mps-control -d && unset CUDA_VISIBLE_DEVICES && timeout 60 python3 -c "$ok"; then
            echo "quality workers share GPU 1 through CUDA MPS"
        else
            echo quit | nvidia-cuda-mps-control 2>/dev/null
            unset CUDA_MPS_PIPE_DIRECTORY CUDA_MPS_LOG_DIRECTORY
            export CUDA_VISIBLE_DEVICES=1
            echo "CUDA MPS did not start: quality workers share GPU 1 without it"
        fi
    else
        echo "no CUDA MPS on this machine: quality workers share GPU 1 without it"
    fi
    bash benchmarks/gpu_bench.sh quality "$quality_dir" "$secs1" ${QUALITY_OPTS:-}
    [ -n "${CUDA_MPS_PIPE_DIRECTORY:-}" ] && echo quit | nvidia-cuda-mps-control
) >"$out/quality.log" 2>&1 &
fi
wait
if [ -f "$out/speed1/speed.json" ] && [ -f "$out/speed/speed.json" ]; then  # one rows file for the report
    PYTHONPATH=$PWD/src python3 benchmarks/merge_rows.py "$out/speed/speed.json" "$out/speed1/speed.json" \
        "cuda:1 of the same machine, at the same time as the sitting before it"
fi
tail -8 "$out/speed.log"
tail -24 "$out"/gpu1_pre.log "$out"/quality.log "$out"/speed1.log 2>/dev/null
bash benchmarks/gpu_bench.sh pack
