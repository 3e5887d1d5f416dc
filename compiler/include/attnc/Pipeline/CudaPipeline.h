//===- CudaPipeline.h - attn -> PTX for NVIDIA GPUs --------------*- C++
//-*-===//
//
// The CUDA target, in stages that `attnc --emit=...` can print:
//   runInlineAndSimplify (Pipeline.h)
//   -> lowerToGpu:  attn-to-nvgpu (gpu.module with one gpu.func kernel:
//                   mma.sync tensor-core flash attention, FA2-style)
//   -> lowerToNVVM: NVVM/LLVM dialect inside the gpu.module
//   -> PTX:         nvvm-attach-target + gpu-module-to-binary (format=isa)
//
// Kernel ABI (docs/cuda.md): one `.entry attnc_<K>` taking, in order,
//   u64 Q, K, V, O, LSE                    device pointers (LSE may be 0 when
//                                          write_lse is 0)
//   i32 B, Hq, Hkv, Nq, Nk, q_offset
//   i64 q_sb, q_sh, q_sn, k_sb, k_sh, k_sn, v_sb, v_sh, v_sn,
//       o_sb, o_sh, o_sn, lse_sb, lse_sh   element strides (innermost = 1)
//   i32 write_lse
//   then each runtime parameter in kernel order: a scalar as its own type
//   (i32, i64, f32, f64); a tensor as a u64 pointer followed by one i32 extent
//   per dimension (dense row-major).
// Launch: grid (ceil(Nq / block_q), Hq, B), block (threads), dynamic shared
// memory shared_bytes. Q/K/V/O have the kernel's dtype (bf16 or f16), LSE f32.
//
//===----------------------------------------------------------------------===//

#ifndef ATTNC_PIPELINE_CUDAPIPELINE_H
#define ATTNC_PIPELINE_CUDAPIPELINE_H

#include "mlir/IR/BuiltinOps.h"
#include "mlir/Support/LogicalResult.h"
#include "llvm/Support/Error.h"

#include <string>

namespace mlir {
class DialectRegistry;
} // namespace mlir

namespace attnc::pipeline {

struct CudaOptions {
  int64_t headDim = 128;
  int64_t headDimV = 0;       // 0: headDim
  std::string dtype = "bf16"; // bf16 | f16
  std::string arch = "sm_90a";
  // Tile shape; 0 picks the measured default for the head dims
  // (tileDefaults; bench/NOTES.md).
  int64_t blockQ = 0;     // query rows per CTA
  int64_t blockK = 0;     // keys per KV tile
  int64_t warpMTiles = 0; // m16 row tiles per warp (blockQ / (16 * this) warps)
  int64_t stages = 0;     // K/V shared-memory buffers
  // Tensor-core instruction: "sync" (mma.sync, any arch) or "wgmma"
  // (warpgroup MMAs, sm_90a, head dims multiples of 64); empty picks wgmma
  // on sm_90a for D, Dv in {64, 128}.
  std::string mma;
  bool wgmmaQInRegs = false; // wgmma: Q fragments in registers for Q.K^T
  int64_t classChunk = 0;    // data-dependent masks: tiles classified per pass (0: 1024)
  bool partialVote = false;  // data-dependent masks: per-warp(group) skip of PARTIAL tiles
  /// K/V through the kernel's cache policy: the split-KV decode kernel and
  /// its merge kernel (attn-to-nvvm's kv-cache option, docs/kv-cache.md).
  bool kvCache = false;
  /// kv-cache, quantized V: B fragments from the raw rows (attn-to-nvvm's
  /// quant-direct-v).
  bool quantDirectV = true;
  /// kv-cache, int8/int4 K: fragments keep the f16 bias (attn-to-nvvm's
  /// quant-bias-k).
  bool quantBiasK = false;
  /// kv-cache: lazy rescaling in the decode kernel (attn-to-nvvm's
  /// decode-lazy-rescale).
  bool decodeLazyRescale = false;
  /// kv-cache: the transposed decode on 8-row tiles (attn-to-nvvm's
  /// decode-transposed), where the kernel takes it; tileDefaults turns it
  /// off for an explicit block-q other than 8.
  bool decodeTransposed = true;
  /// kv-cache: resident CTAs per SM the decode entry asks for (attn-to-nvvm's
  /// decode-min-ctas; 0: the measured default).
  int64_t decodeMinCtas = 0;
  /// kv-cache on sm_90 or later: the merge launches before the decode ends
  /// and waits on it (attn-to-nvvm's decode-pdl; the metadata's merge_pdl).
  bool decodePdl = true;
  /// kv-cache: K/V rows prefetched to L2 this many tiles ahead of the copies
  /// (attn-to-nvvm's decode-l2-prefetch; 0: off).
  int64_t decodeL2Prefetch = 0;
  /// kv-cache on sm_90 or later: pages by bulk tensor copies where their
  /// rows fit (attn-to-nvvm's decode-tma; the metadata's decode_tma).
  bool decodeTma = false;
  /// kv-cache with bf16/f16 storage and every head retaining all: also the
  /// prefill-shaped entry `attnc_<K>_prefill` (attn-to-nvvm's
  /// cache-prefill-*), with the tiles tileDefaults gives a prefill kernel
  /// of these head dims on this arch (the metadata's cache_prefill).
  bool cachePrefill = true;
  unsigned optLevel = 3;
};

/// `options` with its zero tile fields filled in. Measured on the H100
/// (bf16, D = 128, N = 8192; bench/NOTES.md): 4 warps of 2 x 16 rows and
/// 32-key tiles (128 x 32) run 10-15% faster than 4 warps of 16 rows and
/// 64-key tiles; two row tiles per warp hold 2 x Dv/2 output registers, so
/// above Dv = 128 one row tile per warp (64 x 32, Q reloaded from shared
/// memory) keeps them in registers. On sm_90a with D, Dv <= 128 the
/// kernel runs on wgmma: two warpgroups of 64 rows and 128-key tiles.
CudaOptions tileDefaults(CudaOptions options);

/// Dialects and translations the CUDA pipeline needs in the context.
void registerCudaDialects(mlir::DialectRegistry &registry);

/// attn (inlined, canonicalized) -> gpu.module holding the kernel.
mlir::LogicalResult lowerToGpu(mlir::ModuleOp module, const CudaOptions &options);

/// gpu.module -> NVVM / LLVM dialect (target attached).
mlir::LogicalResult lowerToNVVM(mlir::ModuleOp module, const CudaOptions &options);

struct CudaArtifact {
  std::string kernel;   // kernel name
  std::string entry;    // PTX entry name (attnc_<K>)
  std::string metadata; // text, docs/cuda.md ("attnc-cuda-kernel 1" ...)
  std::string ptx;      // PTX assembly
};

/// `module` is the inlined+simplified attn module holding one kernel.
/// Lowers it (consuming `module`) to PTX plus metadata.
llvm::Expected<CudaArtifact> compileCudaArtifact(mlir::ModuleOp module, const CudaOptions &options);

} // namespace attnc::pipeline

#endif // ATTNC_PIPELINE_CUDAPIPELINE_H
