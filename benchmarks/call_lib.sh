# Shared lines of a device call script (benchmarks/results/<folder>/sNNcM.sh), sourced at its top:
#
#   source "$(dirname "$0")/../../call_lib.sh"   # cd to the repository root; set-up; the GPU's name → $L/gpu.txt
#   tune LOG SECS B T                 # benchmarks/tune_kernels.py B T (KNOBS, ROUNDS, PASSES, MECHS from the
#                                     # environment), appended to $L/LOG
#   speed NAME FOLDER SECS OPTIONS…   # a `longmix bench speed` sweep (resuming FOLDER/speed.json) into $L/NAME
#   tests NAME DEADLINE FILE EXPR     # pytest -n 4 FILE -k EXPR into $L/NAME.log, cut DEADLINE s after the start
#                                     # (run two with & and wait)
#   finish                            # the tests' summary lines; $L → $OUT/results.tgz
#
# Everything goes through benchmarks/gpu_bench.sh (wheels from .whl, compile caches from .gpucache: carry both).
# Time the kernels before the tests start, never while they run. The scripts under benchmarks/results/ up to
# stop 21 spell these lines out; they are kept as the records of what ran.
set -u
cd "$(dirname "${BASH_SOURCE[0]}")/.."
B=benchmarks/gpu_bench.sh
S=$SECONDS
L=${OUT:?run on the device machine, where OUT is set}/logs
mkdir -p "$L"
bash $B exec 5 true
nvidia-smi --query-gpu=name --format=csv,noheader | tee "$L/gpu.txt"

tune() {  # LOG SECS B T
    bash $B exec "$2" python3 benchmarks/tune_kernels.py "$3" "$4" 2>&1 | grep -v Warn | tee -a "$L/$1" | cut -c1-400
    rm -f "$OUT/tune.jsonl"
    echo "tune $3x$4 at $((SECONDS - S)) s"
}

speed() {  # NAME FOLDER SECS OPTIONS…
    local name=$1 folder=$2 secs=$3
    shift 3
    LONGMIX_OUT_NAME=$name bash $B speed "$folder" "$secs" "$@" 2>&1 | tail -2
    rm -f "$OUT/$name"/*.png
    mv "$OUT/$name" "$L/"
    echo "speed at $((SECONDS - S)) s"
}

tests() {  # NAME DEADLINE FILE EXPR
    bash $B exec $(( $2 - (SECONDS - S) )) python3 -m pytest -v -rP --tb=short -p no:cacheprovider -n 4 "$3" -k "$4" \
        > "$L/$1.log" 2>&1
}

finish() {
    echo "all at $((SECONDS - S)) s"
    grep -h "PASSED\|FAILED\|ERROR\|passed\|failed" "$L"/*.log 2>/dev/null | grep -v "^\[gw.*PASSED" | cut -c1-220
    tar czf "$OUT/results.tgz" -C "$OUT" logs && rm -rf "$L"
    ls -la "$OUT"
}
