#!/usr/bin/env bash
# Compiles the kernels the GPU benchmark runs to PTX (+ .meta), here on the
# development machine (AOT): the GPU machine needs only the PTX and the
# runtime. With ptxas on PATH it also writes the cubin's resource report.
# Usage: bench/gpu/build-ptx.sh [build-dir] [out-dir] [arch]
#   KV_ONLY=1: only the KV-cache decode kernels (decode.py's set);
#   DECODE_ONLY=1 (with KV_ONLY): without the tile variants and the budget
#   kernels (a quick second build, e.g. ATTNC_FLAGS=--cuda-decode-transposed=false);
#   ATTNC_FLAGS="...": extra attnc flags for every kernel, e.g. a second
#   build to time beside the first (decode.py --compare-dir):
#   KV_ONLY=1 ATTNC_FLAGS=--cuda-quant-direct-v bench/gpu/build-ptx.sh build bench/gpu/ptx-dv
set -euo pipefail
cd "$(dirname "$0")/../.."
BUILD="${1:-build}"
OUT="${2:-bench/gpu/ptx}"
ARCH="${3:-sm_90a}"
ATTNC="$BUILD/bin/attnc"
mkdir -p "$OUT"
: > "$OUT/resources.txt"
emit() { # file kernel D dtype [--param X=Y]...  ($VARIANT: name suffix)
  local file=$1 kernel=$2 d=$3 dt=$4; shift 4
  local name="${kernel}_${dt}_d${d}${VARIANT:-}"
  "$ATTNC" "lib/$file" --kernel="$kernel" --target=cuda --arch="$ARCH" --emit=ptx \
    --head-dim="$d" --dtype="$dt" "$@" ${ATTNC_FLAGS:-} -o "$OUT/$name.ptx"
  if command -v ptxas >/dev/null; then
    echo "== $name" >> "$OUT/resources.txt"
    ptxas -arch="$ARCH" -v "$OUT/$name.ptx" -o /dev/null 2>&1 | grep -E "registers|spill" \
      >> "$OUT/resources.txt"
  fi
}
bench_set() { # dtype [extra attnc flags]
  local dt=$1; shift
  emit causal.attn full_attention 128 $dt "$@"
  emit causal.attn causal_attention 128 $dt "$@"
  emit sliding_window.attn sliding_window_attention 128 $dt --param W=1024 "$@"
  emit document.attn document_attention 128 $dt "$@"
  emit alibi.attn alibi_causal 128 $dt "$@"
  emit softcap.attn softcap_causal 128 $dt "$@"
  emit gqa.attn gqa_causal 128 $dt "$@"
}
if [ -z "${KV_ONLY:-}" ]; then
bench_set bf16
# Variants, compared side by side by bench.py --variants: the mma.sync
# kernel (the default before wgmma, and the one for sm_80); wgmma with one
# warpgroup per CTA (64 rows) and 64/96-key tiles, so that two CTAs fit on
# an SM; the same with Q in registers (r).
VARIANT=_sync bench_set bf16 --cuda-mma=sync
VARIANT=_q64k64 bench_set bf16 --cuda-block-q=64 --cuda-block-k=64
VARIANT=_q64k96 bench_set bf16 --cuda-block-q=64 --cuda-block-k=96
VARIANT=_q64k64r bench_set bf16 --cuda-block-q=64 --cuda-block-k=64 --cuda-wgmma-q-in-registers
VARIANT=_q64k96r bench_set bf16 --cuda-block-q=64 --cuda-block-k=96 --cuda-wgmma-q-in-registers
# Masks of the mask-analysis benchmark (bench.py --cases doc64,prefix_lm,longformer).
emit prefix_lm.attn prefix_lm_attention 128 bf16
emit global_local.attn longformer_attention 128 bf16
emit block_sparse.attn block_sparse_causal_attention 128 bf16
# The same with one warpgroup per CTA (64 rows), so that two CTAs share an
# SM: masked rows blocks have few live tiles, and one CTA per SM idles
# through its own prologue and epilogue.
# _vote: PARTIAL tiles with the per-warpgroup vote before Q.K^T (the
# default until entry 18).
for v in "_q64k64 --cuda-block-q=64 --cuda-block-k=64" "_q64k96 --cuda-block-q=64 --cuda-block-k=96" \
         "_vote --cuda-partial-vote" "_q64k64vote --cuda-block-q=64 --cuda-block-k=64 --cuda-partial-vote"; do
  set -- $v
  flags=$(echo $v | cut -d' ' -f2-)
  VARIANT=$1 emit document.attn document_attention 128 bf16 $flags
  VARIANT=$1 emit prefix_lm.attn prefix_lm_attention 128 bf16 $flags
  VARIANT=$1 emit global_local.attn longformer_attention 128 bf16 $flags
  VARIANT=$1 emit block_sparse.attn block_sparse_causal_attention 128 bf16 $flags
  for n in "8192 64 128" "32768 128 256"; do
    set -- $n
    "$ATTNC" lib/natten2d.attn --kernel=natten2d_attention --target=cuda --arch="$ARCH" \
      --emit=ptx --head-dim=128 --dtype=bf16 --param ROWS=$2 --param COLS=$3 --param KR=13 \
      --param KC=13 $flags -o "$OUT/natten2d_n$1_bf16_d128${v%% *}.ptx"
  done
done
# NATTEN 2-D, 13 x 13 neighborhoods on 64 x 128 (N = 8192) and 128 x 256
# (N = 32768) images (bench.py --cases natten2d).
"$ATTNC" lib/natten2d.attn --kernel=natten2d_attention --target=cuda --arch="$ARCH" --emit=ptx \
  --head-dim=128 --dtype=bf16 --param ROWS=64 --param COLS=128 --param KR=13 --param KC=13 \
  -o "$OUT/natten2d_n8192_bf16_d128.ptx"
"$ATTNC" lib/natten2d.attn --kernel=natten2d_attention --target=cuda --arch="$ARCH" --emit=ptx \
  --head-dim=128 --dtype=bf16 --param ROWS=128 --param COLS=256 --param KR=13 --param KC=13 \
  -o "$OUT/natten2d_n32768_bf16_d128.ptx"
emit causal.attn causal_attention 64 bf16
emit causal.attn causal_attention 128 f16
fi
# KV-cache decode kernels (bench/gpu/decode.py): split-KV over paged caches.
VARIANT=_kv emit cache_policies.attn paged_attention 128 bf16 --kv-cache
VARIANT=_kv emit cache_policies.attn paged_attention 64 bf16 --kv-cache
VARIANT=_kv emit streaming.attn streaming_llm 128 bf16 --kv-cache
VARIANT=_kv emit cache_policies.attn int8_kv_attention 128 bf16 --kv-cache
VARIANT=_kv emit cache_policies.attn int4_kv_attention 128 bf16 --kv-cache
VARIANT=_kv emit cache_policies.attn int4_f16s_kv_attention 128 bf16 --kv-cache
VARIANT=_kv emit cache_policies.attn fp8_kv_attention 128 bf16 --kv-cache
# int4 with one scale per token (decode.py times it beside int4 per group).
"$ATTNC" bench/gpu/int4_token.attn -I lib --kernel=int4_token_attention --target=cuda \
  --arch="$ARCH" --emit=ptx --head-dim=128 --dtype=bf16 --kv-cache ${ATTNC_FLAGS:-} \
  -o "$OUT/int4_token_attention_bf16_d128_kv.ptx"
if [ -z "${DECODE_ONLY:-}" ]; then
# ... with 128-slot tiles (8 warps) and with 2 stages, side by side.
VARIANT=_kv_k128 emit cache_policies.attn paged_attention 128 bf16 --kv-cache --cuda-block-k=128
VARIANT=_kv_st2 emit cache_policies.attn paged_attention 128 bf16 --kv-cache --cuda-stages=2
VARIANT=_kv_q32 emit cache_policies.attn paged_attention 128 bf16 --kv-cache --cuda-block-q=32
VARIANT=_kv_q64 emit cache_policies.attn paged_attention 128 bf16 --kv-cache --cuda-block-q=64
VARIANT=_kv_st4 emit cache_policies.attn paged_attention 128 bf16 --kv-cache --cuda-stages=4
# Budget retention (H2O, SnapKV): decode + mass kernels over small budgets
# (bench/gpu/budget.attn; attnc-cuda-decode-check evicts every step).
for k in h2o_decode snapkv_decode h2o_int8_decode mixed_decode duo_decode; do
  "$ATTNC" bench/gpu/budget.attn -I lib --kernel=$k --target=cuda --arch="$ARCH" --emit=ptx \
    --head-dim=128 --dtype=bf16 --kv-cache ${ATTNC_FLAGS:-} -o "$OUT/${k}_bf16_d128_kv.ptx"
done
fi
echo "PTX in $OUT"
