#!/usr/bin/env bash
# The prefill-shaped entry's key splits (session 20; not yet run on a GPU,
# so the runtime takes them only with ATTNC_CUDA_PREFILL_SPLITS=1): checked
# against float64 and timed beside the decode kernel and SDPA / Flex. Run
# on the GPU machine from the repository root with bench/gpu/ptx and
# bench/gpu/ptx-noprefill carried (build-ptx.sh; bench/NOTES.md, session
# 20). Writes $OUT/log (or /tmp/log).
set -o pipefail
export PYTHONUNBUFFERED=1
OUT=${OUT:-/tmp}
L=$OUT/log; : > $L
t0=$(date +%s); el() { echo "== $(( $(date +%s) - t0 )) s: $*" | tee -a $L; }
el build
cmake -S bench/gpu -B build-gpu -G Ninja >/dev/null && ninja -C build-gpu AttncRuntime attnc-cuda-decode-check >/dev/null || { echo BUILD FAILED | tee -a $L; exit 1; }
export ATTNC_RUNTIME_LIB=$PWD/build-gpu/lib/libAttncRuntime.so
export ATTNC_CUDA_PREFILL_SPLITS=1
el check
timeout 200 python3 bench/gpu/decode.py --check --chunks-only 2>&1 | grep -v "Warning\|warn(" | tee -a $L
el store
timeout 60 build-gpu/bin/attnc-cuda-decode-check bench/gpu/ptx/paged_attention_bf16_d{128,64}_kv.ptx 2>&1 | tail -3 | tee -a $L
el chunks
timeout $(( 570 - ($(date +%s) - t0) )) python3 bench/gpu/decode.py --bench --chunks 1:8192:64,1:8192:128,2:8192:128,1:8192:256,1:32768:256,1:8192:384,1:8192:512 --compare-dir bench/gpu/ptx-noprefill 2>&1 | grep -v "Warning\|warn(\|return F.scaled\|sdpa default\|sdpa_eff" | tee -a $L
el done
