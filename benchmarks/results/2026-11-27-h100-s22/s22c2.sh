#!/bin/bash
# stop 22, call 2 (H100): where the GPU time goes, longmix alone (profile_kernels.py, IMPLS=longmix): KDA and GLA
# with and without _gla fwd_scaled at 16x2K and 4x8K; Mamba-2, DeltaNet, KDA at 1x32K; DeltaNet at chunks of 128
# (39 ms at 1x32K in call 1); KDA's state_min_programs_delta with fwd_scaled at 4x8K; then Mamba-2, DeltaNet and
# Gated DeltaNet beside fla and SDPA cuDNN at 32K and 128K with this stop's defaults; the compile caches packed
source "$(dirname "$0")/../../call_lib.sh"
SC='{"_gla": {"fwd_scaled": true}}'
prof() {  # LOG MECHS B T [CONFIG]
    CONFIG=${5:-} IMPLS=longmix bash $B exec 150 python3 benchmarks/profile_kernels.py "$2" "$3" "$4" 2>&1 \
        | grep -v "Warn\|warn" >> "$L/$1"
    echo "profile $2 $3x$4 ${5:-} at $((SECONDS - S)) s"
}
prof c2_profile.txt kda,gla 16 2048
prof c2_profile.txt kda,gla 16 2048 "$SC"
prof c2_profile.txt kda,gla,mamba2 4 8192
prof c2_profile.txt kda 4 8192 "$SC"
prof c2_profile.txt mamba2,deltanet,kda 1 32768
bash $B exec 90 python3 -c "
import sys; sys.argv = ['p', 'deltanet', '1', '32768']; sys.path.insert(0, 'benchmarks')
from longmix.mechanisms import base; base.DEFAULT_CHUNK['recurrent'] = 128
import profile_kernels; print('chunk_size 128'); profile_kernels.main(sys.argv[1:])" 2>&1 | grep -v "Warn\|warn" >> $L/c2_profile_c128.txt
echo "profile c128 at $((SECONDS - S)) s"
CONFIG=$SC KNOBS=state_min_programs_delta ROUNDS=2 MECHS=kda tune c2_tune_4x8k_scaled.txt 80 4 8192
speed speed_long benchmarks/results/none $((520 - (SECONDS - S))) --backends triton --mechanisms mamba2,deltanet,gated_deltanet \
    --anchors fla,sdpa_cudnn --lengths 32768,131072 --patterns causal_self --passes fwd,fwdbwd --max-ms 300
bash $B pack  # the compile caches of this tree's kernels and fla's (.gpucache was cut to fla's before this call)
finish
