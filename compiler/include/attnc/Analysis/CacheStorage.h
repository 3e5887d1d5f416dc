//===- CacheStorage.h - How a kernel's KV cache stores K and V --*- C++ -*-===//
//
// A kernel compiled over a KV cache (`attn.cache` on the attn.kernel) reads
// its K/V pages in the storage its policy declares. Both backends need the
// same facts (element type in the pages, quantization, scale groups) and
// refuse the same unsupported policies, so the lookup lives here.
//
//===----------------------------------------------------------------------===//

#ifndef ATTNC_ANALYSIS_CACHESTORAGE_H
#define ATTNC_ANALYSIS_CACHESTORAGE_H

#include "attnc/Dialect/Attn/IR/AttnOps.h"

#include "mlir/Support/LogicalResult.h"

namespace mlir::attn {

struct CacheStorage {
  /// The policies KV heads may follow: one, or a per_head policy's choices.
  SmallVector<CachePolicyOp> policies;
  /// int8 / int4 / fp8 pages with f32 (or f16) scales, dequantized in the kernel.
  bool quantized = false;
  /// int4: two values per byte, low nibble first (pages of D / 2 bytes).
  bool nibbles = false;
  /// fp8 e4m3 bytes (scale = max|x| / 448) instead of int8 integers.
  bool fp8 = false;
  /// Elements of the head dim per scale (0: one scale per token).
  int64_t group = 0;
  /// Bytes of a stored scale: 4 (f32), or 2 (f16 scales, per group).
  int64_t scaleBytes = 4;
  /// Element type of a page entry (i8 for int8, int4 and fp8 bytes).
  Type pageElement;
  /// Slots per page when every policy is paged(P) with the same P (a power
  /// of two); 0 when the page size is only known at launch (contiguous).
  int64_t pageSize = 0;
  /// Some policy has budget retention (H2O / SnapKV): the kernel also
  /// returns, per slot, the attention mass its queries put on it (the
  /// cache's eviction score).
  bool slotMass = false;
  /// Some budget policy scores by SnapKV (the window's mass max-pooled over
  /// neighbouring retained positions): on the GPU a pooling kernel turns
  /// the mass into the slots' scores.
  bool pooledScores = false;
};

/// The storage of `kernel`'s cache policy, for Q/K/V of `elemType` and head
/// dims D / Dv. Emits an error on the kernel, prefixed `passName: kv-cache: `,
/// when there is no policy or it is not supported yet (other storage types, per-head policies storing differently,
/// scale groups not dividing the head dims, odd head dims for int4, unquantized storage other than
/// `elemType`).
FailureOr<CacheStorage> analyzeCacheStorage(KernelOp kernel, StringRef passName, Type elemType,
                                            int64_t D, int64_t Dv);

} // namespace mlir::attn

#endif // ATTNC_ANALYSIS_CACHESTORAGE_H
