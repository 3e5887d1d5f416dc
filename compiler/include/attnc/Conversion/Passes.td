//===- Passes.td - attn conversion passes ------------------*- tablegen -*-===//

#ifndef ATTNC_CONVERSION_PASSES_TD
#define ATTNC_CONVERSION_PASSES_TD

include "mlir/Pass/PassBase.td"

def AttnToCPU : Pass<"attn-to-cpu", "ModuleOp"> {
  let summary = "Lower attn.kernel to a flash-tiled func.func on scf/vector";
  let description = [{
    Rewrites every `attn.kernel` (after inlining and canonicalization) into
    two functions:

    * `@<kernel>_item(Q, K, V, O, LSE, q_offset, params..., b, h, qtile)`
      computes one work item: query rows `[qtile*tile-q, +tile-q)` of batch
      `b`, query head `h`. The future runtime threads over work items.
    * `@<kernel>(Q, K, V, O, LSE, q_offset, params...)` loops over every
      work item (the single-threaded entry point).

    Q/K are `memref<?x?x?x{head-dim}xT>`, V `memref<?x?x?x{head-dim-v}xT>`,
    O `memref<?x?x?x{head-dim-v}xf32>`, LSE `memref<?x?x?xf32>`; tensor
    parameters become memrefs of the same shape. Inside an item, an `scf.for`
    over KV tiles of `tile-k` keys carries the online-softmax state (running
    max and running sum, `vector<tile-q x f32>`) as iter_args; the output
    accumulator lives in a stack buffer. Scores are computed transposed
    (lanes = query rows), so the mask and score regions are cloned once per
    key of the tile onto `vector<tile-q x ...>` values (attn.load becomes a
    masked vector.gather). The KV range is narrowed per item for masks that
    are conjunctions/disjunctions of comparisons of `k` against `q`,
    `q - k`, or loop invariants (causal, windows, sinks); anything else
    scans all keys. Full KV tiles run without key clamps; the one partial
    tile (past Nk) clamps and masks. The mask of a tile is evaluated before
    Q.K^T, and a tile that no row keeps is skipped. exp is an inline vector
    polynomial; P.V keeps 4 rows x 4 vectors of accumulators in registers
    over the tile's keys. Defaults (32 x 8) are the fastest measured on a
    Zen 4 core for D = 128 (bench/NOTES.md).
  }];
  let dependentDialects = [
    "::mlir::arith::ArithDialect", "::mlir::func::FuncDialect",
    "::mlir::math::MathDialect", "::mlir::memref::MemRefDialect",
    "::mlir::scf::SCFDialect", "::mlir::vector::VectorDialect",
    "::mlir::x86vector::X86VectorDialect"
  ];
  let options = [
    Option<"headDim", "head-dim", "int64_t", /*default=*/"128",
           "Head dimension D of Q and K">,
    Option<"headDimV", "head-dim-v", "int64_t", /*default=*/"0",
           "Head dimension Dv of V and O (0: same as head-dim)">,
    Option<"dtype", "dtype", "std::string", /*default=*/"\"f32\"",
           "Element type of Q, K, V: f32, bf16 or f16 (math is f32)">,
    Option<"tileQ", "tile-q", "int64_t", /*default=*/"32",
           "Query rows per work item (vector lanes of the score tile)">,
    Option<"tileK", "tile-k", "int64_t", /*default=*/"8",
           "Keys per KV tile">,
    Option<"kvCache", "kv-cache", "bool", /*default=*/"false",
           "Read K and V through the kernel's cache policy: page pools, "
           "per-sequence page tables, slot positions and lengths (the "
           "runtime's KvCache); without it K and V are plain tensors">,
    Option<"bf16Dot", "bf16-dot", "bool", /*default=*/"false",
           "Decode over a bf16 cache: Q.K^T by AVX-512 BF16 dot products "
           "(x86vector.avx512.dot, vdpbf16ps: bf16 pairs into f32) instead "
           "of converting K to f32; for hosts with avx512bf16">
  ];
}

def AttnToNVVM : Pass<"attn-to-nvvm", "ModuleOp"> {
  let summary = "Lower attn.kernel to a tensor-core flash-attention gpu.func";
  let description = [{
    Rewrites every `attn.kernel` (after inlining and canonicalization) into a
    `gpu.module @attnc_<kernel>` holding one `gpu.func @attnc_<kernel>`
    kernel: FlashAttention-2-style, `block-q / 16` warps, each owning 16
    query rows; K/V tiles of `block-k` keys stream through two shared-memory
    stages with `cp.async`; Q.K^T and P.V run on `mma.sync` m16n8k16
    (bf16/f16 inputs, f32 accumulation) with `ldmatrix` fragments; the online
    softmax runs in registers in the log2 domain (ex2.approx) with quad
    shuffles for row reductions. The mask and score regions are cloned on the
    scalar (b, h, q, k) of every accumulator element; the KV loop is bounded
    by the mask's KV range (attnc/Analysis/KvRange.h). Memory is addressed
    through LLVM pointers: the kernel's ABI takes raw device pointers and
    element strides (attnc/Pipeline/CudaPipeline.h). The launch
    configuration is recorded on the gpu.module as `attn.threads`,
    `attn.shared_bytes` and `attn.block_q`.

    With `mma=wgmma` (sm_90a) the same kernel runs its two products on
    warpgroup MMAs: each warpgroup (4 warps) owns 64 query rows; Q, K and V
    tiles sit in shared memory in the 128-byte-swizzled layout wgmma's
    descriptors address; S = Q.K^T reads both operands from shared memory
    and O += P.V takes P from registers (the accumulator fragments of the two
    forms coincide with mma.sync's, so the softmax code is shared).
  }];
  let dependentDialects = [
    "::mlir::arith::ArithDialect", "::mlir::gpu::GPUDialect",
    "::mlir::LLVM::LLVMDialect", "::mlir::NVVM::NVVMDialect",
    "::mlir::scf::SCFDialect"
  ];
  let options = [
    Option<"headDim", "head-dim", "int64_t", /*default=*/"128",
           "Head dimension D of Q and K (a multiple of 16)">,
    Option<"headDimV", "head-dim-v", "int64_t", /*default=*/"0",
           "Head dimension Dv of V and O (0: same as head-dim)">,
    Option<"dtype", "dtype", "std::string", /*default=*/"\"bf16\"",
           "Element type of Q, K, V and O: bf16 or f16">,
    Option<"blockQ", "block-q", "int64_t", /*default=*/"64",
           "Query rows per CTA (16 per warp)">,
    Option<"blockK", "block-k", "int64_t", /*default=*/"64",
           "Keys per KV tile">,
    Option<"warpMTiles", "warp-m-tiles", "int64_t", /*default=*/"1",
           "m16 tiles of query rows per warp (block-q / (16 * this) warps); "
           "above 1, Q fragments are reloaded from shared memory per KV tile">,
    Option<"stages", "stages", "int64_t", /*default=*/"2",
           "K/V shared-memory buffers: tiles in flight while one computes">,
    Option<"mma", "mma", "std::string", /*default=*/"\"sync\"",
           "Tensor-core instruction: sync (mma.sync m16n8k16, sm_80+) or wgmma "
           "(warpgroup MMAs from 128B-swizzled shared memory, sm_90a; "
           "block-q a multiple of 64, head dims multiples of 64)">,
    Option<"wgmmaQInRegs", "wgmma-q-in-registers", "bool", /*default=*/"false",
           "With mma=wgmma: Q.K^T takes Q from registers (D/4 of them per "
           "thread, loaded once) instead of shared memory">,
    Option<"classChunk", "class-chunk", "int64_t", /*default=*/"1024",
           "Data-dependent masks: KV tiles classified per pass (a byte of "
           "shared memory each)">,
    Option<"partialVote", "partial-vote", "bool", /*default=*/"false",
           "Data-dependent masks: on PARTIAL tiles, evaluate the mask before "
           "Q.K^T and skip the MMAs of a warp (warpgroup) none of whose rows "
           "keeps a key (default: the mask after Q.K^T, as for index masks; "
           "faster on the H100 for documents, prefix-LM and block masks)">,
    Option<"kvCache", "kv-cache", "bool", /*default=*/"false",
           "Read K and V through the kernel's cache policy (page pools, "
           "page tables, slot positions): the split-KV decode kernel plus "
           "its merge kernel `attnc_<K>_merge` (block-q packed query rows "
           "per CTA, block-k / 16 warps of 16 keys each; mma=sync)">,
    Option<"quantDirectV", "quant-direct-v", "bool", /*default=*/"true",
           "With kv-cache and quantized storage: P.V takes V's B fragments "
           "straight from the raw rows of the stage (key pairs interleaved "
           "in registers) instead of an f16 V tile written to shared memory "
           "each KV step (scale groups of 32 columns or more; others keep "
           "the tile). 12-17% faster at 64k on the GPU (bench/NOTES.md "
           "session 9); false keeps the tile">,
    Option<"quantBiasK", "quant-bias-k", "bool", /*default=*/"false",
           "With kv-cache and int8/int4 storage: K's B fragments keep the "
           "f16 magic-number bias (1024 + u: one PRMT or LOP3 per two "
           "values, no sub/fma), Q's f16 copy is scaled by 1/16 on the "
           "columns whose nibbles come out times 16, and the Q.K^T "
           "accumulators start from -Q.bias (the same MMAs over constant "
           "fragments, once per row tile). Off by default: 0-1.7% faster on "
           "the H100, where the decode is latency-bound (bench/NOTES.md "
           "session 10)">,
    Option<"decodeLazyRescale", "decode-lazy-rescale", "bool",
           /*default=*/"false",
           "With kv-cache: the decode kernel keeps a warp's row references "
           "until some row's maximum grows by more than 2^8 (a vote), and "
           "rescales O only then, as the prefill kernel does. Off by "
           "default: 1-3% slower on the H100 (bench/NOTES.md session 10)">,
    Option<"decodeMinCtas", "decode-min-ctas", "int64_t", /*default=*/"0",
           "With kv-cache: the decode entry (not its twins) asks ptxas for "
           "this many resident CTAs per SM (.minnctapersm: registers capped "
           "at 64K / (N x threads)) where N CTAs' shared memory fits the "
           "SM. 0: the measured default, 3 for int4 with scale groups on "
           "one m-tile, else none">,
    Option<"decodeL2Prefetch", "decode-l2-prefetch", "int64_t", /*default=*/"0",
           "With kv-cache: each K/V tile the pipeline copies also prefetches "
           "(prefetch.global.L2) the rows of the tile this many tiles after "
           "it, so that their page walks and DRAM reads start earlier (an "
           "experiment on random page orders; 0: off)">,
    Option<"decodeTma", "decode-tma", "bool", /*default=*/"false",
           "With kv-cache, pages of a constant page size whose bf16/f16 rows "
           "are whole 128-byte lines (or whose int8/fp8 rows are one line): "
           "the decode copies each page's K and V rows with bulk tensor "
           "copies (cp.async.bulk.tensor, one per page and 128-byte column "
           "block, 128-byte swizzle) completing on a per-stage mbarrier, "
           "issued by one thread, instead of 16-byte cp.asyncs by every "
           "thread; the entries take tensor maps over the pools (the "
           "metadata's decode_tma). Needs sm_90 or later; off by default "
           "(slower on an H200, bench/NOTES.md session 15)">,
    Option<"decodePdl", "decode-pdl", "bool", /*default=*/"false",
           "With kv-cache: the decode entries let dependent grids launch "
           "(griddepcontrol.launch_dependents) and the merge kernel waits on "
           "them (griddepcontrol.wait), so that the runtime can launch the "
           "merge before the decode ends (programmatic dependent launch). "
           "Needs sm_90 or later; the CUDA pipeline sets it there">,
    Option<"decodeTransposed", "decode-transposed", "bool",
           /*default=*/"true",
           "With kv-cache and block-q 8: the decode kernel's MMAs take the "
           "warp's 16 keys as M and the tile's 8 packed rows as N (S^T = "
           "K Q^T, O^T = V^T P^T, P^T moved into B fragments by movmatrix): "
           "half the MMAs and O registers of the 16-row tile (H100: int4 "
           "7-11% faster, int8/bf16 0-2%). Kernels that cannot take it "
           "(head dims not multiples of 32, int4 without quant-direct-v) "
           "get 16-row tiles; twins of 16 and 32 rows serve "
           "G x Nq above 8. Off, block-q 8 is an error">,
    Option<"cachePrefillBlockQ", "cache-prefill-block-q", "int64_t",
           /*default=*/"0",
           "With kv-cache and bf16/f16 storage: also emit the prefill-shaped "
           "entry `attnc_<K>_prefill`, the prefill kernel (grid (query "
           "tiles x key splits, Hq, B)) reading K/V rows through the page "
           "tables, with "
           "each sequence's length and first query position from the cache's "
           "tables, for launches of many queries (prompt chunks) over "
           "caches whose slots follow positions; this many query rows per "
           "CTA (0: no such entry). Its tiles: the cache-prefill-* options">,
    Option<"cachePrefillBlockK", "cache-prefill-block-k", "int64_t",
           /*default=*/"64", "The prefill-shaped entry's keys per KV tile">,
    Option<"cachePrefillWarpMTiles", "cache-prefill-warp-m-tiles", "int64_t",
           /*default=*/"1", "The prefill-shaped entry's m16 row tiles per warp">,
    Option<"cachePrefillStages", "cache-prefill-stages", "int64_t",
           /*default=*/"2", "The prefill-shaped entry's K/V shared-memory buffers">,
    Option<"cachePrefillMma", "cache-prefill-mma", "std::string",
           /*default=*/"\"sync\"",
           "The prefill-shaped entry's tensor-core instruction: sync or wgmma">
  ];
}

#endif // ATTNC_CONVERSION_PASSES_TD
