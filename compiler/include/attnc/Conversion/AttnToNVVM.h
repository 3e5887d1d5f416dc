//===- AttnToNVVM.h - attn.kernel -> tensor-core flash kernel ---*- C++ -*-===//

#ifndef ATTNC_CONVERSION_ATTNTONVVM_H
#define ATTNC_CONVERSION_ATTNTONVVM_H

#include "attnc/Conversion/Passes.h"

#include <cstdint>
#include <string>

namespace mlir {
namespace attn {

/// The tile shape of the generated kernel (pass options, validated).
struct NvvmKernelConfig {
  int64_t headDim = 128, headDimV = 128;
  int64_t blockQ = 64, blockK = 64;
  int64_t warpMTiles = 1;         // m16 tiles of query rows per warp
  int64_t stages = 2;             // K/V shared-memory buffers (cp.async pipeline depth)
  bool wgmma = false;             // warpgroup MMAs (sm_90a) instead of mma.sync
  bool wgmmaQInRegs = false;      // wgmma: Q.K^T takes Q from registers
  int64_t classChunk = 1024;      // data-dependent masks: KV tiles classified per pass
  bool partialVote = false;       // data-dependent masks: per-warp(group) skip of PARTIAL tiles
  bool kvCache = false;           // K/V through a KV cache: the decode kernel (DecodeKernel.h)
  bool quantDirectV = true;       // kv-cache, quantized V: B fragments from the raw rows
  bool quantBiasK = false;        // kv-cache, int8/int4 K: biased fragments, biased accumulators
  bool decodeLazyRescale = false; // kv-cache: O *= alpha only when a maximum grew by > 2^8
  bool decodeTransposed = false;  // kv-cache: keys as the MMAs' M, 8 packed rows as N
  int64_t decodeMinCtas = 0;      // kv-cache: CTAs per SM the decode entry asks for (0: default)
  bool decodePdl = false;         // kv-cache (sm_90+): merge launched early, waits (griddepcontrol)
  int64_t decodeL2Prefetch = 0;   // kv-cache: K/V rows prefetched to L2 this many tiles further
  bool decodeTma = false;         // kv-cache (sm_90+): pages by bulk tensor copies where they fit
  /// kv-cache: the tiles of the prefill-shaped entry `attnc_<K>_prefill`
  /// (the prefill kernel reading K/V through the page tables, for launches
  /// of many queries over caches whose slots follow positions); blockQ 0:
  /// no such entry.
  struct PrefillTiles {
    int64_t blockQ = 0, blockK = 64, warpMTiles = 1, stages = 2;
    bool wgmma = false;
  } cachePrefill;
};

/// gpu.module attribute of KV-cache modules with a prefill-shaped entry
/// `<entry>_prefill`: [block-q, threads, shared bytes] (the metadata's
/// `cache_prefill` line).
inline constexpr llvm::StringLiteral kCachePrefillAttr = "attn.cache_prefill";

/// gpu.module attribute of KV-cache decode modules: their twins with more
/// packed rows per CTA, entries `<entry>_q<rows>`, as [rows, threads,
/// shared bytes] each, rows ascending (the metadata's decode_wide lines).
inline constexpr llvm::StringLiteral kDecodeTwinsAttr = "attn.decode_twins";

/// gpu.module unit attribute of KV-cache decode modules whose merge kernel
/// waits on the decode grid (griddepcontrol.wait) and whose decode entries
/// let it launch early (griddepcontrol.launch_dependents): the runtime may
/// launch the merge with programmatic stream serialization (the metadata's
/// `merge_pdl 1`).
inline constexpr llvm::StringLiteral kMergeWaitsAttr = "attn.merge_waits";

/// gpu.module attribute of KV-cache decode modules whose decode entries
/// copy K/V pages with bulk tensor copies: the rows of one copy's box (its
/// columns one 128-byte line, 64 bf16 / f16 values or 128 raw bytes,
/// swizzled by 128 bytes). The entries then end with two tensor maps
/// (CUtensorMap, 128 bytes each, passed by value) over the key and value
/// pools; the metadata's `decode_tma ROWS`.
inline constexpr llvm::StringLiteral kDecodeTmaAttr = "attn.decode_tma";

/// Function attribute (array<i32>) of the kernel arguments that are tensor
/// maps passed by value: lowerToNVVM makes them byval, 64-byte aligned
/// grid constants, whose address the bulk tensor copies take.
inline constexpr llvm::StringLiteral kTensorMapArgsAttr = "attn.tensor_map_args";

/// Name of the gpu.module and of the kernel entry `attn-to-nvvm` emits for
/// kernel `name` (also the PTX .entry).
inline std::string cudaEntryName(llvm::StringRef name) { return ("attnc_" + name).str(); }

} // namespace attn
} // namespace mlir

#endif // ATTNC_CONVERSION_ATTNTONVVM_H
