#!/usr/bin/env bash
# The main job: build attnc, then compile and run a lib/ attention variant
# (Gemma-2 style local window + softcap, GQA 8:2) and check it against the
# float64 reference.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
cmake -G Ninja -S . -B build -DCMAKE_BUILD_TYPE=Release >/dev/null
cmake --build build -j "${JOBS:-2}" --target attnc
KERNEL_FILE="${1:-lib/gemma2.attn}"
KERNEL="${2:-gemma2_local}"
set -x
build/bin/attnc "$KERNEL_FILE" --kernel="$KERNEL" --emit=attn | head -40
build/bin/attnc run "$KERNEL_FILE" --kernel="$KERNEL" --shape=1,8,2,100,300,128 \
  --q-offset=200 --param W=128 --target=interp --dtype=bf16 --check
# The same kernel JIT-compiled for this CPU (fused, vectorized, cached).
build/bin/attnc run "$KERNEL_FILE" --kernel="$KERNEL" --shape=1,8,2,100,300,128 \
  --q-offset=200 --param W=128 --target=cpu --dtype=bf16 --check
