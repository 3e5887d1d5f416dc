//===- AttnToNVVM.cpp - attn.kernel -> tensor-core flash kernel -----------===//
//
// Lowers each attn.kernel to a `gpu.func` in a `gpu.module`: a FlashAttention-
// 2-style kernel on warp-level tensor-core MMAs (mma.sync m16n8k16, bf16/f16
// in, f32 accumulation). One CTA computes `block-q` query rows of one
// (batch, head); each warp owns 16 of them:
//
//   Qs <- Q rows (cp.async), Qa = ldmatrix(Qs)      // A fragments, registers
//   [kLo, kHi) = kvRange(mask, rows of the CTA)     // attnc/Analysis/KvRange.h
//   prefetch K/V tile 0 into stage 0 (cp.async)
//   for t in tiles:                                  // iter_args: m, l, O
//     prefetch tile t+1 into stage (t+1)%2; wait for tile t; barrier
//     S = Qa . K^T          (ldmatrix + mma.sync)
//     t = mask(b,h,q,k) ? score(scale*S, b,h,q,k) * log2(e) : -inf
//     m' = max(m, rowmax t); alpha = 2^(m-m'); P = 2^(t-m'); l = alpha l +
//     rowsum P O = alpha O + P . V   (P re-packed from the S accumulators as A
//                            fragments; V via ldmatrix.trans)
//   O /= l; LSE = ln2 * (m + log2 l)
//
// Every fragment element knows its (q, k): the C layout of m16n8k16 puts
// rows lane/4 and lane/4+8, columns 2*(lane%4)+{0,1} of each n8 block in a
// thread. The mask and score regions are cloned on those scalars; tensor
// parameters are read from global memory; math builtins become PTX approx
// instructions (ex2, lg2, tanh), since nothing links libdevice.
//
// With `mma=wgmma` (sm_90a) the two products run on warpgroup MMAs instead:
// a warpgroup (4 warps, 64 rows) issues wgmma.mma_async m64nNk16; Q, K and V
// tiles sit in shared memory in the 128-byte-swizzled layout the wgmma
// descriptors address, S = Q.K^T reads both operands from there, and
// O += P.V takes P from registers. The accumulator layouts of m64nN and of
// a warp's m16n8 tiles coincide (warp w of the group holds rows 16w..16w+15,
// n8 block j in registers 4j..4j+3), so masks, scores and the softmax below
// are the same code for both.
//
// Memory is addressed through LLVM pointers (the ABI passes raw device
// pointers, see attnc/Pipeline/CudaPipeline.h); the rest is arith/scf, left
// for convert-gpu-to-nvvm.
//
//===----------------------------------------------------------------------===//

#include "attnc/Conversion/AttnToNVVM.h"

#include "CachePrefillKernel.h"
#include "DecodeKernel.h"
#include "NvvmBuilder.h"

#include "attnc/Analysis/KvRange.h"
#include "attnc/Analysis/TileBounds.h"
#include "attnc/Dialect/Attn/IR/AttnDialect.h"
#include "attnc/Dialect/Attn/IR/AttnOps.h"

#include "mlir/Dialect/Arith/IR/Arith.h"
#include "mlir/Dialect/GPU/IR/GPUDialect.h"
#include "mlir/Dialect/LLVMIR/LLVMDialect.h"
#include "mlir/Dialect/LLVMIR/NVVMDialect.h"
#include "mlir/Dialect/Math/IR/Math.h"
#include "mlir/Dialect/SCF/IR/SCF.h"
#include "mlir/IR/IRMapping.h"
#include "llvm/ADT/TypeSwitch.h"

#include <cmath>
#include <limits>

namespace mlir {
namespace attn {
#define GEN_PASS_DEF_ATTNTONVVM
#include "attnc/Conversion/Passes.h.inc"
} // namespace attn
} // namespace mlir

using namespace mlir;

namespace {

using namespace mlir::attn::nvvm;

/// Number of kernel ABI arguments before the runtime parameters, and the
/// page-table arguments the prefill-shaped entry over a cache adds after
/// them (CachePrefillKernel.h).
constexpr unsigned kNumFixedArgs = 5 + 6 + 14 + 1, kNumPagedArgs = 5 + 3;

class KernelLowering : public attn::nvvm::NvvmBuilder {
public:
  using NvvmBuilder::NvvmBuilder;

  LogicalResult run(OpBuilder &moduleBuilder) {
    FailureOr<OpBuilder> mb = createModule(moduleBuilder);
    if (failed(mb))
      return failure();
    return buildKernel(*mb, attn::cudaEntryName(kernel.getSymName()));
  }

  /// The prefill-shaped entry over a KV cache's pages (CachePrefillKernel.h)
  /// into the cache's module at `mb`; `pageSize` 0: P at launch.
  LogicalResult runPaged(OpBuilder &mb, int64_t pageSize) {
    paged = true;
    constPageSize = pageSize;
    return buildKernel(mb, attn::cudaEntryName(kernel.getSymName()) + "_prefill");
  }

private:
  /// K/V rows through page tables (the cache prefill entry).
  bool paged = false;
  int64_t constPageSize = 0;

  // ---- the kernel -----------------------------------------------------------

  SmallVector<Type> argTypes() {
    SmallVector<Type> types(5, ptrT());
    types.append(6, i32());
    types.append(14, i64());
    types.push_back(i32());
    if (paged) {
      types.append(5, ptrT());
      types.append(3, i32());
    }
    appendParamTypes(types);
    return types;
  }

  LogicalResult buildKernel(OpBuilder &mb, const std::string &entry) {
    const int64_t D = cfg.headDim, Dv = cfg.headDimV, BQ = cfg.blockQ, BK = cfg.blockK;
    const int64_t warps = BQ / (16 * cfg.warpMTiles), threads = warps * kWarp;
    // Shared rows are padded by 16 bytes so the 8 row addresses of an
    // ldmatrix phase fall in distinct banks. wgmma tiles are unpadded: 64-
    // column blocks of 128-byte rows, swizzled (see copyTile).
    const int64_t pad = cfg.wgmma ? 0 : 8;
    const int64_t qStride = D + pad, kStride = D + pad, vStride = Dv + pad;
    const int64_t qBytes = BQ * qStride * 2, kBytes = BK * kStride * 2, vBytes = BK * vStride * 2;
    const int64_t stages = cfg.stages;
    sharedBytes = qBytes + stages * (kBytes + vBytes);
    // Data-dependent masks: per-warp [min, max] of each id tensor the mask
    // reads (attnc/Analysis/TileBounds.h), to reduce the rows' ranges over
    // the CTA (the keys' ranges are reduced within a warp).
    SmallVector<attn::RangeLoad> rangeLoads = attn::tileRangeLoads(attention.getMaskBlock());
    const int64_t statsOff = sharedBytes;
    const int64_t statsBytes = int64_t(rangeLoads.size()) * warps * 8;
    sharedBytes += statsBytes;
    // ... and the classes of a chunk of KV tiles (a byte each), the chunk's
    // live tiles in loop order (i16 each) and their count.
    const int64_t classOff = sharedBytes;
    const int64_t kClassChunk = cfg.classChunk;
    const int64_t listOff = classOff + llvm::alignTo(kClassChunk, 4);
    const int64_t countOff = listOff + 2 * llvm::alignTo(kClassChunk, 2);
    if (attn::needsRunTimeTileClasses(attention))
      sharedBytes = countOff + 4;
    numThreads = threads;

    auto [fn, b] = createKernelFunc(mb, entry, argTypes(), threads);
    Location l = loc();
    auto arg = [&](unsigned i) { return fn.getArgument(i); };
    Value gQ = toGlobal(b, arg(0)), gK = toGlobal(b, arg(1)), gV = toGlobal(b, arg(2)),
          gO = toGlobal(b, arg(3)), gL = toGlobal(b, arg(4));
    Value Hq = arg(6), Hkv = arg(7), Nq = arg(8), Nk = arg(9), qOffset = arg(10);
    auto stride = [&](unsigned i) { return arg(11 + i); };
    Value writeLse = arg(25);

    bindParams(b, fn, kNumFixedArgs + (paged ? kNumPagedArgs : 0));

    // Work item: the q tile is reversed so that, for causal-like masks, the
    // tiles with the most keys start first (longest-first scheduling).
    auto idx2i32 = [&](Value v) { return arith::IndexCastOp::create(b, l, i32(), v); };
    Value bx = idx2i32(gpu::BlockIdOp::create(b, l, gpu::Dimension::x));
    Value gx = idx2i32(gpu::GridDimOp::create(b, l, gpu::Dimension::x));
    Value hIdx = idx2i32(gpu::BlockIdOp::create(b, l, gpu::Dimension::y));
    Value bIdx = idx2i32(gpu::BlockIdOp::create(b, l, gpu::Dimension::z));
    Value tid = idx2i32(gpu::ThreadIdOp::create(b, l, gpu::Dimension::x));
    // Over a cache the keys may be split (CachePrefillKernel.h): the
    // `splits` CTAs of a q tile are adjacent in x, so a tile's splits start
    // together and the longest tiles still start first.
    Value splits, split;
    if (paged) {
      splits = arg(kNumFixedArgs + 7);
      split = remu(b, bx, splits);
      bx = divu(b, bx, splits);
      gx = divu(b, gx, splits);
    }
    Value qTile = arith::SubIOp::create(b, l, arith::SubIOp::create(b, l, gx, ci32(b, 1)), bx);
    Value q0 = mul(b, qTile, ci32(b, BQ));
    Value warp = arith::DivUIOp::create(b, l, tid, ci32(b, kWarp));
    Value lane = arith::RemUIOp::create(b, l, tid, ci32(b, kWarp));
    Value grp = arith::DivUIOp::create(b, l, lane, ci32(b, 4)); // row in the fragment
    Value tig = arith::RemUIOp::create(b, l, lane, ci32(b, 4)); // column pair
    Value kvh =
        attention.getHeads() == attn::HeadMapping::Interleaved
            ? arith::RemUIOp::create(b, l, hIdx, Hkv).getResult()
            : arith::DivUIOp::create(b, l, hIdx, arith::DivUIOp::create(b, l, Hq, Hkv)).getResult();
    Value b64 = ext64(b, bIdx), h64 = ext64(b, hIdx), kvh64 = ext64(b, kvh);
    // Element offsets of this (b, h) in Q/O/LSE and (b, kvh) in K/V.
    Value qBase = add(b, mul(b, b64, stride(0)), mul(b, h64, stride(1)));
    Value kBase = add(b, mul(b, b64, stride(3)), mul(b, kvh64, stride(4)));
    Value vBase = add(b, mul(b, b64, stride(6)), mul(b, kvh64, stride(7)));
    // Over a cache's pages: K/V are the pools ([pages, P, D], rows found
    // through table row b * Hkv + kvh of kv_pages), and the sequence's
    // length and first query position come from kv_len and q_pos; slot j
    // holds position j, so the mask sees slots as keys.
    Value gPages, pageSize, pageRow;
    if (paged) {
      Value tableRow = add(b, mul(b, b64, ext64(b, Hkv)), kvh64);
      gPages = toGlobal(b, arg(kNumFixedArgs));
      Nk = load(b, i32(), toGlobal(b, arg(kNumFixedArgs + 1)), tableRow);
      qOffset = load(b, i32(), toGlobal(b, arg(kNumFixedArgs + 2)), b64);
      pageRow = mul(b, tableRow, ext64(b, arg(kNumFixedArgs + 5)));
      pageSize = constPageSize ? ci32(b, constPageSize) : arg(kNumFixedArgs + 6);
      kBase = vBase = ci64(b, 0);
    }
    Value oBase = add(b, mul(b, b64, stride(9)), mul(b, h64, stride(10)));
    Value lBase = add(b, mul(b, b64, stride(12)), mul(b, h64, stride(13)));

    Value smem = LLVM::AddressOfOp::create(b, l, ptrT(3), "attnc_smem");
    auto smemAt = [&](OpBuilder &b, Value byteOffset) {
      return gep(b, smem, byteOffset, b.getI8Type());
    };

    // Copies rows [row0, row0 + rows) of a [.., cols] tile into shared
    // memory (sStride elements apart, or for wgmma in 64-column blocks of
    // `rows` 128-byte rows, the 16-byte chunk c of row r at chunk c ^ (r % 8):
    // the 128B swizzle), 16 bytes per cp.async. row0 is always
    // a valid row; rows at or past `limit` are zero-filled (src-size 0) and
    // read from row0's address. A chunk's (row, column) depends only on the
    // thread, so LLVM hoists it; per tile this costs one 64-bit multiply.
    // Over a cache (`throughPages`), row r is slot row0 + r of the pages.
    auto copyTile = [&](OpBuilder &b, Value gBase, Value base, Value rowStrideG, Value row0,
                        Value limit, int64_t rows, int64_t cols, int64_t sStride, Value sByteOffset,
                        bool throughPages = false) {
      int64_t chunksPerRow = cols / 8, chunks = rows * chunksPerRow;
      Value tileBase = add(b, base, mul(b, ext64(b, row0), rowStrideG));
      Value rowsLeft = arith::SubIOp::create(b, l, limit, row0);
      for (int64_t it = 0; it * threads < chunks; ++it) {
        Value c = add(b, tid, ci32(b, it * threads));
        auto body = [&](OpBuilder &b) {
          Value r = arith::DivUIOp::create(b, l, c, ci32(b, chunksPerRow));
          Value col = mul(b, arith::RemUIOp::create(b, l, c, ci32(b, chunksPerRow)), ci32(b, 8));
          Value valid = arith::CmpIOp::create(b, l, arith::CmpIPredicate::slt, r, rowsLeft);
          Value rowOff = select(b, valid, mul(b, ext64(b, r), rowStrideG), ci64(b, 0));
          Value rowAt = add(b, tileBase, rowOff);
          if (throughPages) {
            Value slot = add(b, row0, select(b, valid, r, ci32(b, 0)));
            Value page = load(b, i32(), gPages, add(b, pageRow, ext64(b, divu(b, slot, pageSize))));
            Value poolRow = add(b, mul(b, ext64(b, page), ext64(b, pageSize)),
                                ext64(b, remu(b, slot, pageSize)));
            rowAt = mul(b, poolRow, rowStrideG);
          }
          Value src = gep(b, gBase, add(b, rowAt, ext64(b, col)), elemType);
          Value sOff;
          if (cfg.wgmma) {
            Value ch = arith::RemUIOp::create(b, l, c, ci32(b, chunksPerRow));
            Value block = arith::DivUIOp::create(b, l, ch, ci32(b, 8));
            Value swz = arith::XOrIOp::create(b, l, arith::RemUIOp::create(b, l, ch, ci32(b, 8)),
                                              arith::RemUIOp::create(b, l, r, ci32(b, 8)));
            sOff = add(b, sByteOffset,
                       add(b, mul(b, block, ci32(b, rows * 128)),
                           add(b, mul(b, r, ci32(b, 128)), mul(b, swz, ci32(b, 16)))));
          } else {
            sOff =
                add(b, sByteOffset, mul(b, add(b, mul(b, r, ci32(b, sStride)), col), ci32(b, 2)));
          }
          Value srcSize = select(b, valid, ci32(b, 16), ci32(b, 0));
          NVVM::CpAsyncOp::create(
              b, l, smemAt(b, sOff), src, b.getI32IntegerAttr(16),
              NVVM::LoadCacheModifierKindAttr::get(ctx, NVVM::LoadCacheModifierKind::CG), srcSize);
        };
        if ((it + 1) * threads <= chunks) {
          body(b);
        } else {
          Value in = arith::CmpIOp::create(b, l, arith::CmpIPredicate::slt, c, ci32(b, chunks));
          auto ifOp = scf::IfOp::create(b, l, in, /*withElseRegion=*/false);
          OpBuilder tb = ifOp.getThenBodyBuilder();
          body(tb);
        }
      }
    };

    // Q tile -> shared (group 0).
    copyTile(b, gQ, qBase, stride(2), q0, Nq, BQ, D, qStride, ci32(b, 0));
    NVVM::CpAsyncCommitGroupOp::create(b, l);

    // KV range of the CTA's rows.
    Value rows = arith::MinSIOp::create(b, l, ci32(b, BQ), arith::SubIOp::create(b, l, Nq, q0));
    Value qFirst = add(b, qOffset, q0);
    Value qLast = arith::SubIOp::create(b, l, add(b, qFirst, rows), ci32(b, 1));
    Value nk64 = ext64(b, Nk);
    attn::KvRange range =
        attn::buildKvRange(b, l, attention.getMaskBlock(), attention.getMaskValue(), outer,
                           ext64(b, qFirst), ext64(b, qLast), nk64);
    Value lo = arith::MaxSIOp::create(b, l, range.lo, ci64(b, 0));
    Value hi = arith::MinSIOp::create(b, l, range.hi, nk64);
    hi = arith::MaxSIOp::create(b, l, hi, lo);
    Value kLo = arith::TruncIOp::create(b, l, i32(), lo);
    Value kHi = arith::TruncIOp::create(b, l, i32(), hi);
    Value nTiles =
        arith::CeilDivSIOp::create(b, l, arith::SubIOp::create(b, l, kHi, kLo), ci32(b, BK));
    if (paged) {
      // This split's whole tiles of the range: [t0, t1) of nTiles. Its
      // bounds are tile-aligned, so no tile crosses into the next split and
      // the tiles' classes (full, partial) are the unsplit kernel's.
      Value per = arith::CeilDivSIOp::create(b, l, nTiles, splits);
      Value t0 = mini(b, mul(b, split, per), nTiles);
      Value t1 = mini(b, add(b, t0, per), nTiles);
      kHi = mini(b, kHi, add(b, kLo, mul(b, t1, ci32(b, BK))));
      kLo = add(b, kLo, mul(b, t0, ci32(b, BK)));
      nTiles = arith::SubIOp::create(b, l, t1, t0);
    }
    // Keys every row of the CTA keeps: tiles inside need no mask.
    attn::KvRange inner =
        attn::buildKvInnerRange(b, l, attention.getMaskBlock(), attention.getMaskValue(), outer,
                                ext64(b, qFirst), ext64(b, qLast), nk64);
    Value innerLo =
        arith::TruncIOp::create(b, l, i32(), arith::MaxSIOp::create(b, l, inner.lo, lo));
    Value innerHi =
        arith::TruncIOp::create(b, l, i32(), arith::MinSIOp::create(b, l, inner.hi, hi));

    auto stageOffsets = [&](OpBuilder &b, Value stage) {
      Value kOff = add(b, ci32(b, qBytes), mul(b, stage, ci32(b, kBytes)));
      Value vOff = add(b, ci32(b, qBytes + stages * kBytes), mul(b, stage, ci32(b, vBytes)));
      return std::make_pair(kOff, vOff);
    };
    // Tile t into the stage of loop entry `slot`.
    auto loadKV = [&](OpBuilder &b, Value slot, Value t) {
      Value stage = arith::RemUIOp::create(b, l, slot, ci32(b, stages));
      auto [kOff, vOff] = stageOffsets(b, stage);
      Value k0 = add(b, kLo, mul(b, t, ci32(b, BK)));
      copyTile(b, gK, kBase, stride(5), k0, Nk, BK, D, kStride, kOff, paged);
      copyTile(b, gV, vBase, stride(8), k0, Nk, BK, Dv, vStride, vOff, paged);
    };

    const bool maskAlwaysTrue = attn::maskIsAlwaysTrue(attention);
    // Masks reading tensor data or dividing indices: their tiles are
    // classified at run time as well (see the KV loop).
    const bool runTimeClasses = attn::needsRunTimeTileClasses(attention);

    // Prefetch tiles 0 .. stages-2 (one cp.async group each, committed even
    // when empty so that group counts stay uniform), then wait for Q. With a
    // data-dependent mask the prefetch waits until the tiles' liveness is
    // known (below).
    for (int64_t st = 0; st + 1 < stages && !runTimeClasses; ++st) {
      Value any = arith::CmpIOp::create(b, l, arith::CmpIPredicate::sgt, nTiles, ci32(b, st));
      auto ifOp = scf::IfOp::create(b, l, any, false);
      OpBuilder tb = ifOp.getThenBodyBuilder();
      loadKV(tb, ci32(tb, st), ci32(tb, st));
      NVVM::CpAsyncCommitGroupOp::create(b, l);
    }
    NVVM::CpAsyncWaitGroupOp::create(b, l, uint32_t(runTimeClasses ? 0 : stages - 1));
    if (cfg.wgmma)
      fenceProxyAsync(b);
    gpu::BarrierOp::create(b, l);

    // Each warp owns MT m16 tiles of query rows: B fragments (K, V) loaded
    // from shared memory feed MT MMAs each. One tile's Q fragments stay in
    // registers; with more (or a wide D), they are reloaded per tile from
    // shared memory (registers go to S and O).
    const int64_t MT = cfg.warpMTiles;
    // Above D = 128 the Q fragments (D/4 registers) would push O and S out
    // of registers.
    const bool qInRegs = MT == 1 && D <= 128 && !cfg.wgmma;
    Value warpRow0 = mul(b, warp, ci32(b, 16 * MT));
    Value lane16 = arith::RemUIOp::create(b, l, lane, ci32(b, 16));
    Value laneHi = arith::DivUIOp::create(b, l, lane, ci32(b, 16)); // 0/1
    Value lane8 = arith::RemUIOp::create(b, l, lane, ci32(b, 8));
    Value laneMid = arith::RemUIOp::create(b, l, arith::DivUIOp::create(b, l, lane, ci32(b, 8)),
                                           ci32(b, 2)); // 0/1
    // This lane's ldmatrix row address within a K tile (key row
    // (lane/16)*8 + lane%8, column ((lane/8)%2)*8), a V tile (key row
    // lane%16, column (lane/16)*8) and the warp's Q rows (row lane%16,
    // column (lane/16)*8), in bytes.
    Value laneK = mul(b,
                      add(b, mul(b, add(b, mul(b, laneHi, ci32(b, 8)), lane8), ci32(b, kStride)),
                          mul(b, laneMid, ci32(b, 8))),
                      ci32(b, 2));
    Value laneV =
        mul(b, add(b, mul(b, lane16, ci32(b, vStride)), mul(b, laneHi, ci32(b, 8))), ci32(b, 2));
    Value qLane = smemAt(b, mul(b,
                                add(b, mul(b, add(b, warpRow0, lane16), ci32(b, qStride)),
                                    mul(b, laneHi, ci32(b, 8))),
                                ci32(b, 2)));
    auto loadQ = [&](OpBuilder &b, int64_t mt, int64_t kk) {
      Value p = gep(b, qLane, ci32(b, (mt * 16 * qStride + kk * 16) * 2), b.getI8Type());
      return ldmatrix4(b, p, false);
    };
    // qa[mt][kk] when Q stays in registers.
    SmallVector<SmallVector<SmallVector<Value>>> qa(MT);
    if (qInRegs)
      for (int64_t mt = 0; mt < MT; ++mt)
        for (int64_t kk = 0; kk < D / 16; ++kk)
          qa[mt].push_back(loadQ(b, mt, kk));
    if (cfg.wgmma && cfg.wgmmaQInRegs) {
      // The same A fragments from the swizzled tile: row warpRow0 + lane%16,
      // 16-byte chunk 2*kk + lane/16 of the row, stored at chunk ^ (row % 8)
      // of its 64-column block.
      Value rowBase = mul(b, add(b, warpRow0, lane16), ci32(b, 128));
      Value laneXor = arith::XOrIOp::create(b, l, laneHi, lane8);
      for (int64_t kk = 0; kk < D / 16; ++kk) {
        Value chunk = arith::XOrIOp::create(b, l, laneXor, ci32(b, (kk % 4) * 2));
        Value off =
            add(b, add(b, rowBase, ci32(b, (kk / 4) * BQ * 128)), mul(b, chunk, ci32(b, 16)));
        qa[0].push_back(ldmatrix4(b, smemAt(b, off), false));
      }
    }

    // wgmma operands: the warpgroup's 64 Q rows; K (K-major, like Q) and V
    // (MN-major: keys are wgmma's K dimension, Dv its N) of a stage.
    Value group = arith::DivUIOp::create(b, l, warp, ci32(b, 4));
    Value smemAddr = LLVM::PtrToIntOp::create(b, l, i32(), smem);
    Value qDesc;
    if (cfg.wgmma)
      qDesc = wgmmaDesc(b, add(b, smemAddr, mul(b, group, ci32(b, 64 * 128))), 16, 1024);

    // This thread's fragment rows: slot rs = 2*mt + half holds row
    // warpRow0 + 16*mt + lane/4 + 8*half of the CTA's tile.
    const int64_t RS = 2 * MT;
    Value lastRow = arith::SubIOp::create(b, l, Nq, ci32(b, 1));
    SmallVector<Value> rowOf, qPos;
    for (int64_t rs = 0; rs < RS; ++rs) {
      Value row = add(b, warpRow0, add(b, grp, ci32(b, 16 * (rs / 2) + 8 * (rs % 2))));
      rowOf.push_back(row);
      // Query positions, clamped to the last row so region reads stay in
      // bounds for rows past Nq (never stored).
      qPos.push_back(add(b, qOffset, arith::MinSIOp::create(b, l, add(b, q0, row), lastRow)));
    }
    auto slotOf = [](int64_t mt, int i) { return 2 * mt + (i < 2 ? 0 : 1); };

    Value scale = attention.getScale() ? outer.lookup(attention.getScale())
                                       : cf32(b, 1.0 / std::sqrt(double(D)));
    Block &scoreBlock = attention.getScoreBlock();
    bool identityScore = attention.getScoreValue() == scoreBlock.getArgument(0);
    bool softmax = attention.getNormalizer() == attn::Normalizer::Softmax;
    Value scaleLog2 = fmul(b, scale, cf32(b, kLog2e));
    // With the plain score and a positive constant scale, scores stay raw
    // until the exponent: max commutes with the scaling, and
    // 2^(s*scale*log2e - m) is one FFMA + EX2 per element (as in FA2).
    bool foldScale = false;
    if (identityScore && softmax) {
      double sv = 1.0 / std::sqrt(double(D));
      if (attention.getScale()) {
        auto c = attention.getScale().getDefiningOp<arith::ConstantOp>();
        auto fa = c ? dyn_cast<FloatAttr>(c.getValue()) : FloatAttr();
        sv = fa ? fa.getValueAsDouble() : -1.0;
      }
      foldScale = sv > 0;
    }
    float ninf = -std::numeric_limits<float>::infinity();
    Value negInf = cf32(b, ninf), zero = cf32(b, 0.0), one = cf32(b, 1.0);

    // Loop state: m (RS rows), l (RS rows, thread-partial), O accumulators
    // (MT x Dv/8 n-blocks x 4).
    const int64_t nbO = Dv / 8;
    SmallVector<Value> init(RS, negInf);
    init.append(RS, zero);
    init.append(MT * nbO * 4, zero);
    auto oIdx = [&](int64_t mt, int64_t n, int i) { return 2 * RS + (mt * nbO + n) * 4 + i; };
    bool hadError = false;

    const int64_t nbS = BK / 8; // n8 key blocks per tile
    const int64_t nElems = MT * nbS * 4;
    auto eIdx = [&](int64_t mt, int64_t nb, int i) { return (mt * nbS + nb) * 4 + i; };
    auto tileStart = [&](OpBuilder &b, Value t) { return add(b, kLo, mul(b, t, ci32(b, BK))); };
    // Tiles inside the mask's inner range: every row keeps every key, all
    // keys < Nk. Uniform across the CTA.
    auto tileIsFull = [&](OpBuilder &b, Value k0) {
      return arith::AndIOp::create(
                 b, l, arith::CmpIOp::create(b, l, arith::CmpIPredicate::sge, k0, innerLo),
                 arith::CmpIOp::create(b, l, arith::CmpIPredicate::sle, add(b, k0, ci32(b, BK)),
                                       innerHi))
          .getResult();
    };
    // The mask on this thread's fragment elements of the tile at key k0
    // (keys past kHi are dropped); the last value is whether any is kept.
    auto tileKeeps = [&](OpBuilder &b, Value k0) -> SmallVector<Value> {
      SmallVector<Value> keeps;
      Value keyBase = add(b, k0, mul(b, tig, ci32(b, 2)));
      Value kLast = arith::SubIOp::create(b, l, kHi, ci32(b, 1));
      Value anyKeep = arith::ConstantIntOp::create(b, l, 0, 1);
      for (int64_t mt = 0; mt < MT && !hadError; ++mt)
        for (int64_t nb = 0; nb < nbS && !hadError; ++nb)
          for (int i = 0; i < 4 && !hadError; ++i) {
            Value key = add(b, keyBase, ci32(b, nb * 8 + (i & 1)));
            Value kc = arith::MinSIOp::create(b, l, key, kLast);
            Value keep = arith::CmpIOp::create(b, l, arith::CmpIPredicate::slt, key, kHi);
            auto mv =
                cloneRegion(b, attention.getMaskBlock(), {bIdx, hIdx, qPos[slotOf(mt, i)], kc});
            if (failed(mv)) {
              hadError = true;
              break;
            }
            keep = arith::AndIOp::create(b, l, keep, *mv);
            keeps.push_back(keep);
            anyKeep = arith::OrIOp::create(b, l, anyKeep, keep);
          }
      if (hadError)
        keeps.assign(nElems, anyKeep);
      keeps.push_back(anyKeep);
      return keeps;
    };
    // [min, max] of the i32 `value(i)` of elements i < count (count <= n, n a
    // constant bound) over a warp: element i in lane i % 32 (`stride` 32,
    // `first` the lane), or over the CTA's threads (`stride` threads,
    // `first` tid; the warps' results still to be combined); butterflies
    // make it uniform over the warp.
    auto warpRange = [&](OpBuilder &b, Value first, int64_t stride, int64_t n, Value count,
                         llvm::function_ref<Value(OpBuilder &, Value)> value) {
      Value lo = ci32(b, std::numeric_limits<int32_t>::max());
      Value hi = ci32(b, std::numeric_limits<int32_t>::min());
      for (int64_t it = 0; it * stride < n; ++it) {
        Value i = add(b, first, ci32(b, it * stride));
        Value in = arith::CmpIOp::create(b, l, arith::CmpIPredicate::slt, i, count);
        auto ifOp = scf::IfOp::create(b, l, TypeRange{i32(), i32()}, in, /*withElseRegion=*/true);
        OpBuilder tb = ifOp.getThenBodyBuilder();
        Value v = value(tb, i);
        scf::YieldOp::create(tb, l, ValueRange{v, v});
        OpBuilder eb = ifOp.getElseBodyBuilder();
        scf::YieldOp::create(eb, l, ValueRange{lo, hi});
        lo = arith::MinSIOp::create(b, l, lo, ifOp.getResult(0));
        hi = arith::MaxSIOp::create(b, l, hi, ifOp.getResult(1));
      }
      for (int64_t x : {1, 2, 4, 8, 16}) {
        lo = arith::MinSIOp::create(b, l, lo, shflXor(b, lo, x));
        hi = arith::MaxSIOp::create(b, l, hi, shflXor(b, hi, x));
      }
      return std::make_pair(lo, hi);
    };
    // The same over the CTA: per-warp slots at `slots` in shared memory, one
    // barrier. Uniform result (i64).
    auto ctaRange = [&](OpBuilder &b, int64_t n, Value count,
                        llvm::function_ref<Value(OpBuilder &, Value)> value,
                        int64_t slots) -> attn::IntervalValues {
      auto [lo, hi] = warpRange(b, tid, threads, n, count, value);
      Value slot = gep(b, smemAt(b, ci32(b, slots)), mul(b, warp, ci32(b, 2)), i32());
      Value first = arith::CmpIOp::create(b, l, arith::CmpIPredicate::eq, lane, ci32(b, 0));
      auto st = scf::IfOp::create(b, l, first, /*withElseRegion=*/false);
      OpBuilder sb = st.getThenBodyBuilder();
      LLVM::StoreOp::create(sb, l, lo, slot);
      LLVM::StoreOp::create(sb, l, hi, gep(sb, slot, ci32(sb, 1), i32()));
      gpu::BarrierOp::create(b, l);
      Value base = smemAt(b, ci32(b, slots));
      Value rlo = ci32(b, std::numeric_limits<int32_t>::max());
      Value rhi = ci32(b, std::numeric_limits<int32_t>::min());
      for (int64_t w = 0; w < warps; ++w) {
        rlo = arith::MinSIOp::create(
            b, l, rlo, LLVM::LoadOp::create(b, l, i32(), gep(b, base, ci32(b, 2 * w), i32())));
        rhi = arith::MaxSIOp::create(
            b, l, rhi, LLVM::LoadOp::create(b, l, i32(), gep(b, base, ci32(b, 2 * w + 1), i32())));
      }
      return {ext64(b, rlo), ext64(b, rhi)};
    };
    // One element of a range load's tensor as i32 (i1 as 0/1); i64 tensors
    // are not reduced (their range is the full i64 range).
    auto rangeElement = [&](OpBuilder &b, attn::LoadOp load, Value pos) {
      Value v = loadElement(b, load, {pos});
      return v.getType().isInteger(1) ? arith::ExtUIOp::create(b, l, i32(), v).getResult() : v;
    };
    auto fullRange = [&](OpBuilder &b) -> attn::IntervalValues {
      return {ci64(b, std::numeric_limits<int64_t>::min()),
              ci64(b, std::numeric_limits<int64_t>::max())};
    };
    // The rows' ranges: once per CTA.
    SmallVector<attn::IntervalValues> rowRanges(rangeLoads.size());
    if (runTimeClasses)
      for (auto [i, rl] : llvm::enumerate(rangeLoads)) {
        if (rl.byKey)
          continue;
        if (rl.load.getResult().getType().isInteger(64)) {
          rowRanges[i] = fullRange(b);
          continue;
        }
        rowRanges[i] = ctaRange(
            b, BQ, rows,
            [&](OpBuilder &b, Value r) { return rangeElement(b, rl.load, add(b, qFirst, r)); },
            statsOff + int64_t(i) * warps * 8);
      }
    // Data-dependent masks: the classes of KV tiles [c0, c0 + kClassChunk)
    // into shared memory (0 EMPTY, 1 PARTIAL, 2 FULL), each warp taking
    // every `warps`-th tile: the id ranges of the tile's keys (one load per
    // lane and key block, butterflies), then the mask's interval bounds
    // (attnc/Analysis/TileBounds.h) against the rows' ranges. O(keys / 32)
    // per warp, no O(Nq * Nk) anywhere; the barriers keep a chunk's classes
    // until every thread has read the previous one and publish the new one.
    auto classifyChunk = [&](OpBuilder &b, Value c0) {
      gpu::BarrierOp::create(b, l);
      Value count = arith::MinSIOp::create(b, l, ci32(b, kClassChunk),
                                           arith::SubIOp::create(b, l, nTiles, c0));
      scf::ForOp::create(
          b, l, warp, count, ci32(b, warps), ValueRange{},
          [&](OpBuilder &b, Location l, Value j, ValueRange) {
            Value k0 = tileStart(b, add(b, c0, j));
            Value kEnd = arith::MinSIOp::create(b, l, add(b, k0, ci32(b, BK)), kHi);
            SmallVector<attn::IntervalValues> ranges(rowRanges);
            for (auto [i, rl] : llvm::enumerate(rangeLoads)) {
              if (!rl.byKey)
                continue;
              if (rl.load.getResult().getType().isInteger(64)) {
                ranges[i] = fullRange(b);
                continue;
              }
              auto [lo, hi] = warpRange(
                  b, lane, kWarp, BK, arith::SubIOp::create(b, l, kEnd, k0),
                  [&](OpBuilder &b, Value e) { return rangeElement(b, rl.load, add(b, k0, e)); });
              ranges[i] = {ext64(b, lo), ext64(b, hi)};
            }
            attn::IntervalValues qIv{ext64(b, qFirst), ext64(b, qLast)};
            attn::IntervalValues kIv{ext64(b, k0),
                                     ext64(b, arith::SubIOp::create(b, l, kEnd, ci32(b, 1)))};
            attn::TileKeepBounds bounds = attn::buildTileKeepBounds(
                b, l, attention.getMaskBlock(), attention.getMaskValue(), outer, bIdx, hIdx, qIv,
                kIv, [&](unsigned i) { return ranges[i]; },
                [&](attn::LoadOp load, ArrayRef<Value> idx) { return loadElement(b, load, idx); });
            Value whole = arith::CmpIOp::create(b, l, arith::CmpIPredicate::sle,
                                                add(b, k0, ci32(b, BK)), kHi);
            Value full = arith::OrIOp::create(b, l, tileIsFull(b, k0),
                                              arith::AndIOp::create(b, l, bounds.mustKeep, whole));
            Value live = arith::OrIOp::create(b, l, full, bounds.mayKeep);
            Type i8 = b.getI8Type();
            Value cls = select(b, live,
                               select(b, full, arith::ConstantIntOp::create(b, l, 2, 8),
                                      arith::ConstantIntOp::create(b, l, 1, 8)),
                               arith::ConstantIntOp::create(b, l, 0, 8));
            Value first = arith::CmpIOp::create(b, l, arith::CmpIPredicate::eq, lane, ci32(b, 0));
            auto st = scf::IfOp::create(b, l, first, /*withElseRegion=*/false);
            OpBuilder sb = st.getThenBodyBuilder();
            LLVM::StoreOp::create(sb, l, cls, gep(sb, smemAt(sb, ci32(sb, classOff)), j, i8));
            scf::YieldOp::create(b, l);
          });
      gpu::BarrierOp::create(b, l);
    };
    // Data-dependent masks: the live tiles of a classified chunk, in order,
    // as a list in shared memory (warp 0: one ballot per 32 classes), so
    // that the KV loop runs over live tiles only and an EMPTY tile costs
    // nothing past its class byte. Returns the (uniform) number of entries.
    auto compactChunk = [&](OpBuilder &b, Value c0) -> Value {
      Value count = arith::MinSIOp::create(b, l, ci32(b, kClassChunk),
                                           arith::SubIOp::create(b, l, nTiles, c0));
      Value warp0 = arith::CmpIOp::create(b, l, arith::CmpIPredicate::eq, warp, ci32(b, 0));
      auto w0 = scf::IfOp::create(b, l, warp0, /*withElseRegion=*/false);
      {
        OpBuilder wb = w0.getThenBodyBuilder();
        Type i8 = wb.getI8Type(), i16 = wb.getI16Type();
        Value below = arith::SubIOp::create(wb, l, arith::ShLIOp::create(wb, l, ci32(wb, 1), lane),
                                            ci32(wb, 1));
        auto scan = scf::ForOp::create(
            wb, l, ci32(wb, 0), count, ci32(wb, kWarp), ValueRange{ci32(wb, 0)},
            [&](OpBuilder &b, Location l, Value base, ValueRange total) {
              Value j = add(b, base, lane);
              Value in = arith::CmpIOp::create(b, l, arith::CmpIPredicate::slt, j, count);
              Value jc =
                  arith::MinSIOp::create(b, l, j, arith::SubIOp::create(b, l, count, ci32(b, 1)));
              Value cls =
                  LLVM::LoadOp::create(b, l, i8, gep(b, smemAt(b, ci32(b, classOff)), jc, i8));
              Value live = arith::AndIOp::create(
                  b, l, in,
                  arith::CmpIOp::create(b, l, arith::CmpIPredicate::ne, cls,
                                        arith::ConstantIntOp::create(b, l, 0, 8)));
              Value ballot = NVVM::VoteSyncOp::create(b, l, i32(), ci32(b, -1), live,
                                                      NVVM::VoteSyncKind::ballot);
              Value pos = add(
                  b, total[0],
                  LLVM::CtPopOp::create(b, l, i32(), arith::AndIOp::create(b, l, ballot, below)));
              auto st = scf::IfOp::create(b, l, live, /*withElseRegion=*/false);
              OpBuilder sb = st.getThenBodyBuilder();
              LLVM::StoreOp::create(sb, l, arith::TruncIOp::create(sb, l, i16, j),
                                    gep(sb, smemAt(sb, ci32(sb, listOff)), pos, i16));
              scf::YieldOp::create(b, l,
                                   add(b, total[0], LLVM::CtPopOp::create(b, l, i32(), ballot)));
            });
        Value first = arith::CmpIOp::create(wb, l, arith::CmpIPredicate::eq, lane, ci32(wb, 0));
        auto st = scf::IfOp::create(wb, l, first, /*withElseRegion=*/false);
        OpBuilder sb = st.getThenBodyBuilder();
        LLVM::StoreOp::create(sb, l, scan.getResult(0), smemAt(sb, ci32(sb, countOff)));
      }
      gpu::BarrierOp::create(b, l);
      return LLVM::LoadOp::create(b, l, i32(), smemAt(b, ci32(b, countOff)));
    };
    // Entry i of a chunk's list: the tile's index and whether it is FULL.
    auto listedTile = [&](OpBuilder &b, Value c0, Value i) -> std::pair<Value, Value> {
      Type i8 = b.getI8Type(), i16 = b.getI16Type();
      Value j = arith::ExtUIOp::create(
          b, l, i32(),
          LLVM::LoadOp::create(b, l, i16, gep(b, smemAt(b, ci32(b, listOff)), i, i16)));
      Value cls = LLVM::LoadOp::create(b, l, i8, gep(b, smemAt(b, ci32(b, classOff)), j, i8));
      Value full = arith::CmpIOp::create(b, l, arith::CmpIPredicate::eq, cls,
                                         arith::ConstantIntOp::create(b, l, 2, 8));
      return {add(b, c0, j), full};
    };

    // One step of the pipelined KV loop: loop entry i computes tile t (FULL
    // if `listedFull`, besides the mask's inner range); `prefetch` issues the
    // loads of entry i + stages - 1 and commits their group. Returns the next
    // loop state (the same state on error, with hadError set).
    auto kvStep = [&](OpBuilder &b, Value i, Value t, Value listedFull, ValueRange iter,
                      llvm::function_ref<void(OpBuilder &, Value)> prefetch) -> SmallVector<Value> {
      // Prefetch into the stage entry i-1 used while entry i computes;
      // then wait until entry i's group is complete.
      prefetch(b, add(b, i, ci32(b, stages - 1)));
      NVVM::CpAsyncWaitGroupOp::create(b, l, uint32_t(stages - 1));
      if (cfg.wgmma)
        fenceProxyAsync(b);
      gpu::BarrierOp::create(b, l);

      Value stage = arith::RemUIOp::create(b, l, i, ci32(b, stages));
      auto [kOff, vOff] = stageOffsets(b, stage);
      Value k0 = tileStart(b, t);

      // Scores in the log2 domain, masked keys -inf. Tiles inside the
      // mask's inner range skip the mask; the branch is uniform across
      // the CTA.
      Value isFull = tileIsFull(b, k0);
      if (listedFull)
        isFull = arith::OrIOp::create(b, l, isFull, listedFull);
      SmallVector<Type> tileTypes(nElems, f32());
      if (!softmax)
        tileTypes.append(nElems, b.getI1Type());
      Value keyBase = add(b, k0, mul(b, tig, ci32(b, 2)));
      // Scores, softmax and P.V of this tile; returns the next loop
      // state (empty on error). keepsIn: see emitScores.
      auto tileBody = [&](OpBuilder &b, ValueRange iter,
                          ArrayRef<Value> keepsIn) -> SmallVector<Value> {
        // S = Q K^T: per pair of n8 key blocks and k16 chunk, one
        // ldmatrix.x4 at key row np*16 + (lane/16)*8 + lane%8, column
        // kk*16 + ((lane/8)%2)*8 gives the B fragments of both blocks.
        // Addresses are one pointer per tile (stage + lane) plus constant
        // offsets that fold into the ldmatrix's immediate. kk outer: the
        // accumulator chains advance together, so consecutive MMAs are
        // independent and their latency overlaps.
        SmallVector<SmallVector<SmallVector<Value, 4>>> s(
            MT, SmallVector<SmallVector<Value, 4>>(nbS, SmallVector<Value, 4>(4, zero)));
        Value kLane = gep(b, smemAt(b, kOff), laneK, b.getI8Type());
        if (cfg.wgmma) {
          // k16 step kk: 64-column block kk/4, 32 bytes per step inside.
          Value kDesc = wgmmaDesc(b, add(b, smemAddr, kOff), 16, 1024);
          SmallVector<Value> descQ, descK;
          for (int64_t kk = 0; kk < D / 16; ++kk) {
            int64_t inAtom = (kk % 4) * 32;
            descQ.push_back(wgmmaStep(b, qDesc, (kk / 4) * BQ * 128 + inAtom));
            descK.push_back(wgmmaStep(b, kDesc, (kk / 4) * BK * 128 + inAtom));
          }
          SmallVector<Value> acc = cfg.wgmmaQInRegs
                                       ? wgmmaChain(b, BK, {}, {}, qa[0], descK, /*transB=*/false)
                                       : wgmmaChain(b, BK, {}, descQ, {}, descK, /*transB=*/false);
          for (int64_t nb = 0; nb < nbS; ++nb)
            for (int i = 0; i < 4; ++i)
              s[0][nb][i] = acc[nb * 4 + i];
        }
        for (int64_t kk = 0; kk < D / 16 && !cfg.wgmma; ++kk) {
          SmallVector<SmallVector<Value>> qf(MT);
          for (int64_t mt = 0; mt < MT; ++mt)
            qf[mt] = qInRegs ? qa[mt][kk] : loadQ(b, mt, kk);
          for (int64_t np = 0; np < BK / 16; ++np) {
            Value p = gep(b, kLane, ci32(b, (np * 16 * kStride + kk * 16) * 2), b.getI8Type());
            SmallVector<Value> kb = ldmatrix4(b, p, false);
            for (int64_t mt = 0; mt < MT; ++mt) {
              s[mt][2 * np] = mma(b, qf[mt], {kb[0], kb[1]}, s[mt][2 * np]);
              s[mt][2 * np + 1] = mma(b, qf[mt], {kb[2], kb[3]}, s[mt][2 * np + 1]);
            }
          }
        }

        // keepsIn: keep flags computed before Q.K^T (data-dependent masks).
        auto emitScores = [&](OpBuilder &b, bool masked,
                              ArrayRef<Value> keepsIn) -> SmallVector<Value> {
          SmallVector<Value> tvals, keeps;
          Value kLast = arith::SubIOp::create(b, l, kHi, ci32(b, 1));
          for (int64_t mt = 0; mt < MT && !hadError; ++mt) {
            for (int64_t nb = 0; nb < nbS && !hadError; ++nb) {
              for (int i = 0; i < 4 && !hadError; ++i) {
                Value qp = qPos[slotOf(mt, i)];
                Value key = add(b, keyBase, ci32(b, nb * 8 + (i & 1)));
                // Region reads stay in bounds: keys past the range read
                // the last one (and are masked).
                Value kc = masked ? arith::MinSIOp::create(b, l, key, kLast).getResult() : key;
                Value keep = arith::ConstantIntOp::create(b, l, 1, 1);
                if (masked && !keepsIn.empty()) {
                  keep = keepsIn[eIdx(mt, nb, i)];
                } else if (masked) {
                  keep = arith::CmpIOp::create(b, l, arith::CmpIPredicate::slt, key, kHi);
                  if (!maskAlwaysTrue) {
                    auto mv = cloneRegion(b, attention.getMaskBlock(), {bIdx, hIdx, qp, kc});
                    if (failed(mv)) {
                      hadError = true;
                      break;
                    }
                    keep = arith::AndIOp::create(b, l, keep, *mv);
                  }
                }
                Value sv = s[mt][nb][i], tval = sv;
                if (!foldScale) {
                  auto r = log2Score(b, sv, scale, scaleLog2, {bIdx, hIdx, qp, kc});
                  if (failed(r)) {
                    hadError = true;
                    break;
                  }
                  tval = *r;
                }
                tvals.push_back(masked ? select(b, keep, tval, negInf) : tval);
                keeps.push_back(keep);
              }
            }
          }
          if (hadError) {
            tvals.assign(nElems, negInf);
            keeps.assign(nElems, arith::ConstantIntOp::create(b, l, 0, 1));
          }
          if (!softmax)
            tvals.append(keeps);
          return tvals;
        };
        SmallVector<Value> scored;
        if (!keepsIn.empty()) {
          scored = emitScores(b, /*masked=*/true, keepsIn);
        } else {
          auto scoreIf = scf::IfOp::create(b, l, tileTypes, isFull,
                                           /*withElseRegion=*/true);
          OpBuilder tb = scoreIf.getThenBodyBuilder();
          scf::YieldOp::create(tb, l, emitScores(tb, /*masked=*/false, {}));
          OpBuilder eb = scoreIf.getElseBodyBuilder();
          scf::YieldOp::create(eb, l, emitScores(eb, /*masked=*/true, {}));
          scored.assign(scoreIf.getResults().begin(), scoreIf.getResults().end());
        }
        if (hadError)
          return {};
        SmallVector<Value> tileMax(RS, negInf), tv(nElems), keepv(nElems);
        for (int64_t mt = 0; mt < MT; ++mt)
          for (int64_t nb = 0; nb < nbS; ++nb)
            for (int i = 0; i < 4; ++i) {
              int64_t e = eIdx(mt, nb, i);
              tv[e] = scored[e];
              if (!softmax)
                keepv[e] = scored[nElems + e];
              tileMax[slotOf(mt, i)] = fmax(b, tileMax[slotOf(mt, i)], tv[e]);
            }
        // Row maxima across the 4 threads of a row (a quad).
        for (int64_t x : {1, 2})
          for (int64_t rs = 0; rs < RS; ++rs)
            tileMax[rs] = fmax(b, tileMax[rs], shflXor(b, tileMax[rs], x));
        // Lazy rescaling (softmax): a warp keeps its running maxima while
        // no row's maximum grew by more than 2^8 (kLazyLog2 in the log2
        // domain), so P stays <= 256 and most tiles skip the rescale of O
        // (MT * Dv/2 multiplies on the path to P.V). The result is exact:
        // O and l share the stale reference, and O / l cancels it.
        SmallVector<Value> mNew(RS), ref(RS), negRef(RS), alpha(RS), sum(RS);
        Value grew;
        if (softmax) {
          Value anyGrow = arith::ConstantIntOp::create(b, l, 0, 1);
          for (int64_t rs = 0; rs < RS; ++rs) {
            Value tm = foldScale ? fmul(b, tileMax[rs], scaleLog2) : tileMax[rs];
            mNew[rs] = fmax(b, iter[rs], tm);
            Value g = arith::CmpFOp::create(b, l, arith::CmpFPredicate::OGT, mNew[rs],
                                            fadd(b, iter[rs], cf32(b, kLazyLog2)));
            anyGrow = arith::OrIOp::create(b, l, anyGrow, g);
          }
          grew = NVVM::VoteSyncOp::create(b, l, b.getI1Type(), ci32(b, -1), anyGrow,
                                          NVVM::VoteSyncKind::any);
        }
        for (int64_t rs = 0; rs < RS; ++rs) {
          Value tm = foldScale ? fmul(b, tileMax[rs], scaleLog2) : tileMax[rs];
          mNew[rs] =
              softmax ? select(b, grew, fmax(b, iter[rs], tm), iter[rs]) : fmax(b, iter[rs], tm);
          // A row that has seen no key keeps m = -inf; use 0 as its
          // reference so that 2^(-inf - ref) = 0 instead of NaN.
          Value isNinf = arith::CmpFOp::create(b, l, arith::CmpFPredicate::OEQ, mNew[rs], negInf);
          ref[rs] = select(b, isNinf, zero, mNew[rs]);
          negRef[rs] = arith::NegFOp::create(b, l, ref[rs]);
          alpha[rs] = ex2(b, fsub(b, iter[rs], ref[rs]));
          sum[rs] = fmul(b, alpha[rs], iter[RS + rs]);
        }
        // P (weights) packed as A fragments of P.V, 16 keys per chunk.
        SmallVector<Value> w(nElems);
        for (int64_t mt = 0; mt < MT; ++mt)
          for (int64_t nb = 0; nb < nbS; ++nb)
            for (int i = 0; i < 4; ++i) {
              int64_t e = eIdx(mt, nb, i), rs = slotOf(mt, i);
              Value p = foldScale ? ex2(b, LLVM::FMAOp::create(b, l, tv[e], scaleLog2, negRef[rs]))
                                  : ex2(b, fsub(b, tv[e], ref[rs]));
              sum[rs] = fadd(b, sum[rs], p);
              if (softmax) {
                w[e] = p;
              } else {
                // sigmoid(s') = 1 / (1 + 2^(-t)); masked keys weigh 0.
                Value ex = ex2(b, arith::NegFOp::create(b, l, tv[e]));
                Value sg = arith::DivFOp::create(b, l, one, fadd(b, one, ex));
                w[e] = select(b, keepv[e], sg, zero);
              }
            }
        SmallVector<Value> next(mNew.begin(), mNew.end());
        next.append(sum.begin(), sum.end());
        SmallVector<SmallVector<SmallVector<Value, 4>>> o(MT,
                                                          SmallVector<SmallVector<Value, 4>>(nbO));
        SmallVector<Value> oOld(iter.begin() + 2 * RS, iter.end());
        if (softmax) {
          // O *= alpha only when some row's reference moved.
          oOld = ifElseValues(b, grew, oOld, [&](OpBuilder &tb) {
            SmallVector<Value> scaled;
            for (int64_t mt = 0; mt < MT; ++mt)
              for (int64_t n = 0; n < nbO; ++n)
                for (int i = 0; i < 4; ++i)
                  scaled.push_back(fmul(tb, iter[oIdx(mt, n, i)], alpha[slotOf(mt, i)]));
            return scaled;
          });
        }
        for (int64_t mt = 0; mt < MT; ++mt)
          for (int64_t n = 0; n < nbO; ++n)
            for (int i = 0; i < 4; ++i)
              o[mt][n].push_back(oOld[(mt * nbO + n) * 4 + i]);
        // pa[mt][j]: the A fragment of keys [16j, 16j + 16).
        SmallVector<SmallVector<SmallVector<Value>>> pa(MT);
        for (int64_t mt = 0; mt < MT; ++mt)
          for (int64_t j = 0; j < BK / 16; ++j) {
            auto W = [&](int64_t nb, int i) { return w[eIdx(mt, nb, i)]; };
            pa[mt].push_back({pack(b, W(2 * j, 0), W(2 * j, 1)), pack(b, W(2 * j, 2), W(2 * j, 3)),
                              pack(b, W(2 * j + 1, 0), W(2 * j + 1, 1)),
                              pack(b, W(2 * j + 1, 2), W(2 * j + 1, 3))});
          }
        // O += P V: ldmatrix.trans x4 at V row j*16 + lane%16, column
        // np*16 + (lane/16)*8 gives the B fragments of n-blocks 2np, 2np+1.
        Value vLane = gep(b, smemAt(b, vOff), laneV, b.getI8Type());
        if (cfg.wgmma) {
          // Keys [16j, 16j + 16) are rows 16j.. of V: 2048 bytes per
          // step; 64-column blocks of V are BK * 128 bytes apart.
          Value vDesc = wgmmaDesc(b, add(b, smemAddr, vOff), BK * 128, 1024);
          SmallVector<Value> descV, acc;
          for (int64_t j = 0; j < BK / 16; ++j)
            descV.push_back(wgmmaStep(b, vDesc, j * 2048));
          for (int64_t n = 0; n < nbO; ++n)
            acc.append(o[0][n].begin(), o[0][n].end());
          acc = wgmmaChain(b, Dv, acc, {}, pa[0], descV, /*transB=*/true);
          for (int64_t n = 0; n < nbO; ++n)
            for (int i = 0; i < 4; ++i)
              o[0][n][i] = acc[n * 4 + i];
        }
        for (int64_t j = 0; j < BK / 16 && !cfg.wgmma; ++j) {
          for (int64_t np = 0; np < Dv / 16; ++np) {
            Value p = gep(b, vLane, ci32(b, (j * 16 * vStride + np * 16) * 2), b.getI8Type());
            SmallVector<Value> vb = ldmatrix4(b, p, true);
            for (int64_t mt = 0; mt < MT; ++mt) {
              o[mt][2 * np] = mma(b, pa[mt][j], {vb[0], vb[1]}, o[mt][2 * np]);
              o[mt][2 * np + 1] = mma(b, pa[mt][j], {vb[2], vb[3]}, o[mt][2 * np + 1]);
            }
          }
        }
        for (auto &tile : o)
          for (auto &blk : tile)
            next.append(blk.begin(), blk.end());
        return next;
      };
      SmallVector<Value> next;
      if (!runTimeClasses || !cfg.partialVote) {
        next = tileBody(b, iter, {});
      } else {
        // Data-dependent masks (documents, ...) have no KV range: their
        // keep flags come first, and a warp none of whose rows keeps a
        // key of the tile skips it (warp vote; the branch is uniform
        // within the warp, as mma.sync needs; with wgmma, a warpgroup
        // vote).
        OpBuilder &db = b;
        SmallVector<Type> keepTypes(nElems + 1, b.getI1Type());
        auto keepIf = scf::IfOp::create(db, l, keepTypes, isFull, /*withElseRegion=*/true);
        {
          OpBuilder tb = keepIf.getThenBodyBuilder();
          scf::YieldOp::create(
              tb, l, SmallVector<Value>(nElems + 1, arith::ConstantIntOp::create(tb, l, 1, 1)));
          OpBuilder eb = keepIf.getElseBodyBuilder();
          SmallVector<Value> keeps = tileKeeps(eb, k0);
          Value anyKeep = keeps.back();
          keeps.back() = cfg.wgmma ? warpgroupAny(eb, anyKeep, group)
                                   : NVVM::VoteSyncOp::create(eb, l, eb.getI1Type(), ci32(eb, -1),
                                                              anyKeep, NVVM::VoteSyncKind::any)
                                         .getResult();
          scf::YieldOp::create(eb, l, keeps);
        }
        SmallVector<Value> keeps(keepIf.getResults().begin(), keepIf.getResults().begin() + nElems);
        auto liveIf = scf::IfOp::create(db, l, iter.getTypes(), keepIf.getResult(nElems),
                                        /*withElseRegion=*/true);
        OpBuilder tb = liveIf.getThenBodyBuilder();
        SmallVector<Value> liveNext = tileBody(tb, iter, keeps);
        scf::YieldOp::create(tb, l, liveNext.empty() ? SmallVector<Value>(iter) : liveNext);
        OpBuilder eb = liveIf.getElseBodyBuilder();
        scf::YieldOp::create(eb, l, iter);
        next.assign(liveIf.getResults().begin(), liveIf.getResults().end());
      }
      if (hadError || next.empty()) {
        hadError = true;
        return SmallVector<Value>(iter);
      }
      // The next entry's prefetch overwrites this stage.
      gpu::BarrierOp::create(b, l);
      return next;
    };

    ValueRange results;
    if (!runTimeClasses) {
      auto loop = scf::ForOp::create(
          b, l, ci32(b, 0), nTiles, ci32(b, 1), init,
          [&](OpBuilder &b, Location l, Value t, ValueRange iter) {
            scf::YieldOp::create(b, l, kvStep(b, t, t, Value(), iter, [&](OpBuilder &b, Value tn) {
                                   Value more = arith::CmpIOp::create(
                                       b, l, arith::CmpIPredicate::slt, tn, nTiles);
                                   auto ifOp = scf::IfOp::create(b, l, more, false);
                                   OpBuilder tb = ifOp.getThenBodyBuilder();
                                   loadKV(tb, tn, tn);
                                   NVVM::CpAsyncCommitGroupOp::create(b, l);
                                 }));
          });
      results = loop.getResults();
    } else {
      // Chunks of KV tiles: classify, list the live ones, then the pipelined
      // loop over the list (its own prologue; drained at the end).
      auto chunks = scf::ForOp::create(
          b, l, ci32(b, 0), nTiles, ci32(b, kClassChunk), init,
          [&](OpBuilder &b, Location l, Value c0, ValueRange iter) {
            classifyChunk(b, c0);
            Value count = compactChunk(b, c0);
            auto prefetch = [&](OpBuilder &b, Value e) {
              Value more = arith::CmpIOp::create(b, l, arith::CmpIPredicate::slt, e, count);
              auto ifOp = scf::IfOp::create(b, l, more, false);
              OpBuilder tb = ifOp.getThenBodyBuilder();
              loadKV(tb, e, listedTile(tb, c0, e).first);
              NVVM::CpAsyncCommitGroupOp::create(b, l);
            };
            for (int64_t st = 0; st + 1 < stages; ++st)
              prefetch(b, ci32(b, st));
            auto loop = scf::ForOp::create(
                b, l, ci32(b, 0), count, ci32(b, 1), iter,
                [&](OpBuilder &b, Location l, Value i, ValueRange state) {
                  auto [t, full] = listedTile(b, c0, i);
                  scf::YieldOp::create(b, l, kvStep(b, i, t, full, state, prefetch));
                });
            NVVM::CpAsyncWaitGroupOp::create(b, l, uint32_t(0));
            scf::YieldOp::create(b, l, loop.getResults());
          });
      results = chunks.getResults();
    }
    if (hadError)
      return failure();
    NVVM::CpAsyncWaitGroupOp::create(b, l, uint32_t(0));

    // Finalize: full row sums across the quad; O = acc / l; LSE.
    ValueRange res = results;
    for (int64_t rs = 0; rs < RS; ++rs) {
      Value lsum = res[RS + rs];
      for (int64_t x : {1, 2})
        lsum = fadd(b, lsum, shflXor(b, lsum, x));
      Value hasKeys = arith::CmpFOp::create(b, l, arith::CmpFPredicate::OGT, lsum, zero);
      Value inv = softmax ? select(b, hasKeys, arith::DivFOp::create(b, l, one, lsum), zero) : one;
      Value lseVal = fmul(b, fadd(b, res[rs], lg2(b, lsum)), cf32(b, kLn2));
      Value lse = select(b, hasKeys, lseVal, negInf);

      Value row = add(b, q0, rowOf[rs]);
      Value inRange = arith::CmpIOp::create(b, l, arith::CmpIPredicate::slt, row, Nq);
      auto ifOp = scf::IfOp::create(b, l, inRange, false);
      OpBuilder rb = ifOp.getThenBodyBuilder();
      int64_t mt = rs / 2, half = rs % 2;
      auto value = [&](OpBuilder &b, int64_t n, int i) {
        return fmul(b, res[oIdx(mt, n, 2 * half + i)], inv);
      };
      Value first = arith::CmpIOp::create(rb, l, arith::CmpIPredicate::eq, tig, ci32(rb, 0));
      // O and (write_lse) the LSE of the row.
      auto storeRow = [&](OpBuilder &tb) {
        Value rowOff = add(tb, oBase, mul(tb, ext64(tb, row), stride(11)));
        for (int64_t n = 0; n < nbO; ++n) {
          Value col = add(tb, ci32(tb, n * 8), mul(tb, tig, ci32(tb, 2)));
          Value pr = gep(tb, gO, add(tb, rowOff, ext64(tb, col)), elemType);
          LLVM::StoreOp::create(tb, l, pack(tb, value(tb, n, 0), value(tb, n, 1)), pr,
                                /*alignment=*/4);
        }
        Value want = arith::CmpIOp::create(tb, l, arith::CmpIPredicate::ne, writeLse, ci32(tb, 0));
        auto lseIf = scf::IfOp::create(tb, l, arith::AndIOp::create(tb, l, first, want), false);
        OpBuilder lb = lseIf.getThenBodyBuilder();
        Value pl = gep(lb, gL, add(lb, lBase, ext64(lb, row)), f32());
        LLVM::StoreOp::create(lb, l, lse, pl, /*alignment=*/4);
      };
      if (!paged) {
        storeRow(rb);
        continue;
      }
      // Split keys: this split's part of the row (f32 O, normalized over
      // the split's keys, and its LSE: 0 and -inf without keys) at row
      // split * B * Hq * Nq + (b * Hq + h) * Nq + row of the merge
      // kernel's inputs (MergeKernel.h).
      Value parted = arith::CmpIOp::create(rb, l, arith::CmpIPredicate::sgt, splits, ci32(rb, 1));
      auto partIf = scf::IfOp::create(rb, l, parted, /*withElseRegion=*/true);
      OpBuilder pb = partIf.getThenBodyBuilder();
      Value B = arg(5);
      Value partRow = add(pb, mul(pb, ext64(pb, split), ext64(pb, mul(pb, B, mul(pb, Hq, Nq)))),
                          ext64(pb, add(pb, mul(pb, add(pb, mul(pb, bIdx, Hq), hIdx), Nq), row)));
      Value gOPart = toGlobal(pb, arg(kNumFixedArgs + 3));
      Value gLPart = toGlobal(pb, arg(kNumFixedArgs + 4));
      for (int64_t n = 0; n < nbO; ++n) {
        Value col = add(pb, ci32(pb, n * 8), mul(pb, tig, ci32(pb, 2)));
        Value at = add(pb, mul(pb, partRow, ci64(pb, Dv)), ext64(pb, col));
        store(pb, value(pb, n, 0), gOPart, at);
        store(pb, value(pb, n, 1), gOPart, add(pb, at, ci64(pb, 1)));
      }
      auto lseIf = scf::IfOp::create(pb, l, first, false);
      OpBuilder lb = lseIf.getThenBodyBuilder();
      store(lb, lse, gLPart, partRow);
      OpBuilder eb = partIf.getElseBodyBuilder();
      storeRow(eb);
    }
    gpu::ReturnOp::create(b, l);
    return success();
  }
};

} // namespace

attn::NvvmKernelConfig mlir::attn::nvvm::cachePrefillConfig(const attn::NvvmKernelConfig &cfg) {
  attn::NvvmKernelConfig p;
  p.headDim = cfg.headDim;
  p.headDimV = cfg.headDimV;
  p.blockQ = cfg.cachePrefill.blockQ;
  p.blockK = cfg.cachePrefill.blockK;
  p.warpMTiles = cfg.cachePrefill.warpMTiles;
  p.stages = cfg.cachePrefill.stages;
  p.wgmma = cfg.cachePrefill.wgmma;
  return p;
}

FailureOr<std::array<int64_t, 3>>
mlir::attn::nvvm::buildCachePrefillKernel(attn::KernelOp kernel, const attn::NvvmKernelConfig &cfg,
                                          Type elemType, int64_t pageSize, OpBuilder &mb) {
  KernelLowering lowering(kernel, cachePrefillConfig(cfg), elemType);
  if (failed(lowering.runPaged(mb, pageSize)))
    return failure();
  return std::array<int64_t, 3>{cfg.cachePrefill.blockQ, lowering.numThreads, lowering.sharedBytes};
}

namespace {

/// Why `cfg`'s tiles cannot be built (empty: they can).
std::string tileConfigError(const attn::NvvmKernelConfig &cfg) {
  // Measured on the H100: with two warpgroups, Q from registers gave wrong
  // results (not yet understood; bench/NOTES.md), with one it is correct.
  if (cfg.wgmmaQInRegs && (!cfg.wgmma || cfg.blockQ != 64))
    return "wgmma-q-in-registers needs mma=wgmma and block-q=64";
  if (cfg.wgmma && (cfg.warpMTiles != 1 || cfg.blockQ % 64 || cfg.headDim % 64 ||
                    cfg.headDimV % 64 || cfg.headDimV > 256 || cfg.blockK > 256))
    return "mma=wgmma needs warp-m-tiles=1, block-q a multiple of 64, head dims multiples of 64 "
           "(Dv at most 256) and block-k at most 256";
  if (cfg.headDim <= 0 || cfg.headDim % 16 || cfg.headDimV % 16)
    return "head dims must be positive multiples of 16, got " + std::to_string(cfg.headDim) +
           " and " + std::to_string(cfg.headDimV);
  if (cfg.stages < 2 || cfg.stages > 4)
    return "stages must be 2 to 4";
  if (cfg.warpMTiles < 1 || cfg.warpMTiles > 4)
    return "warp-m-tiles must be 1 to 4";
  // An 8-row tile is the transposed decode's MMA N; the 16-row step
  // cannot take it.
  if (cfg.kvCache && cfg.blockQ == 8 && !cfg.decodeTransposed)
    return "kv-cache: block-q 8 needs decode-transposed";
  bool transposedTile = cfg.kvCache && cfg.decodeTransposed;
  if (cfg.blockQ <= 0 || (!transposedTile && cfg.blockQ % (16 * cfg.warpMTiles)) ||
      cfg.blockQ / (16 * cfg.warpMTiles) > 16 || cfg.blockK <= 0 || cfg.blockK % 16)
    return "block-q must be a multiple of 16 * warp-m-tiles (at most 16 warps) and block-k a "
           "positive multiple of 16";
  return "";
}

struct AttnToNVVMPass : public attn::impl::AttnToNVVMBase<AttnToNVVMPass> {
  using AttnToNVVMBase::AttnToNVVMBase;

  void runOnOperation() override {
    ModuleOp module = getOperation();
    MLIRContext *ctx = &getContext();
    Type elem = llvm::StringSwitch<Type>(dtype)
                    .Case("bf16", BFloat16Type::get(ctx))
                    .Case("f16", Float16Type::get(ctx))
                    .Default(Type());
    if (!elem) {
      module.emitError("attn-to-nvvm: dtype must be bf16 or f16, got '") << dtype << "'";
      return signalPassFailure();
    }
    attn::NvvmKernelConfig cfg;
    cfg.headDim = headDim;
    cfg.headDimV = headDimV > 0 ? headDimV : headDim;
    cfg.blockQ = blockQ;
    cfg.blockK = blockK;
    cfg.warpMTiles = warpMTiles;
    cfg.stages = stages;
    if (mma != "sync" && mma != "wgmma") {
      module.emitError("attn-to-nvvm: mma must be sync or wgmma, got '") << mma << "'";
      return signalPassFailure();
    }
    cfg.wgmma = mma == "wgmma";
    cfg.wgmmaQInRegs = wgmmaQInRegs;
    cfg.kvCache = kvCache;
    // Decode over a KV cache: row tiles of 16 packed rows each on mma.sync,
    // block-k / 16 warps of 16 keys.
    if (cfg.kvCache && (cfg.wgmma || cfg.warpMTiles != 1 || cfg.blockQ > 64 || cfg.blockK > 128 ||
                        cfg.headDimV > 256)) {
      module.emitError("attn-to-nvvm: kv-cache needs mma=sync, warp-m-tiles=1, block-q at most "
                       "64, block-k at most 128 and head-dim-v at most 256");
      return signalPassFailure();
    }
    cfg.classChunk = classChunk;
    cfg.partialVote = partialVote;
    cfg.quantDirectV = quantDirectV;
    cfg.quantBiasK = quantBiasK;
    cfg.decodeLazyRescale = decodeLazyRescale;
    cfg.decodeMinCtas = decodeMinCtas;
    cfg.decodeL2Prefetch = decodeL2Prefetch;
    cfg.decodePdl = decodePdl && cfg.kvCache;
    cfg.decodeTma = decodeTma && cfg.kvCache;
    if (cfg.decodeMinCtas < 0 || cfg.decodeMinCtas > 32) {
      module.emitError("attn-to-nvvm: decode-min-ctas must be 0 to 32");
      return signalPassFailure();
    }
    if (cfg.decodeL2Prefetch < 0 || cfg.decodeL2Prefetch > 64) {
      module.emitError("attn-to-nvvm: decode-l2-prefetch must be 0 to 64");
      return signalPassFailure();
    }
    // The transposed step is the decode of 8-row tiles; other tiles ignore
    // the option (on by default).
    cfg.decodeTransposed = decodeTransposed && cfg.kvCache && cfg.blockQ == 8;
    if (cachePrefillBlockQ) {
      attn::NvvmKernelConfig::PrefillTiles &pt = cfg.cachePrefill;
      pt.blockQ = cachePrefillBlockQ;
      pt.blockK = cachePrefillBlockK;
      pt.warpMTiles = cachePrefillWarpMTiles;
      pt.stages = cachePrefillStages;
      pt.wgmma = cachePrefillMma == "wgmma";
      if (!cfg.kvCache || (cachePrefillMma != "sync" && cachePrefillMma != "wgmma")) {
        module.emitError("attn-to-nvvm: cache-prefill-block-q needs kv-cache, and "
                         "cache-prefill-mma must be sync or wgmma");
        return signalPassFailure();
      }
      // The prefill kernel's own limits, checked on its configuration.
      attn::NvvmKernelConfig prefill = attn::nvvm::cachePrefillConfig(cfg);
      if (std::string why = tileConfigError(prefill); !why.empty()) {
        module.emitError("attn-to-nvvm: cache-prefill: ") << why;
        return signalPassFailure();
      }
    }
    if (cfg.classChunk < 1 || cfg.classChunk > 16384) {
      module.emitError("attn-to-nvvm: class-chunk must be 1 to 16384");
      return signalPassFailure();
    }
    if (std::string why = tileConfigError(cfg); !why.empty()) {
      module.emitError("attn-to-nvvm: ") << why;
      return signalPassFailure();
    }
    module->setAttr(gpu::GPUDialect::getContainerModuleAttrName(), UnitAttr::get(ctx));
    SmallVector<attn::KernelOp> kernels(module.getOps<attn::KernelOp>());
    for (attn::KernelOp kernel : kernels) {
      OpBuilder mb(kernel);
      int64_t threads = 0, shared = 0, blockQ = cfg.blockQ;
      if (cfg.kvCache) {
        auto launch = attn::nvvm::lowerDecodeKernel(kernel, cfg, elem, mb);
        if (failed(launch))
          return signalPassFailure();
        threads = launch->threads;
        shared = launch->sharedBytes;
        blockQ = launch->blockQ;
      } else {
        KernelLowering lowering(kernel, cfg, elem);
        if (failed(lowering.run(mb)))
          return signalPassFailure();
        threads = lowering.numThreads;
        shared = lowering.sharedBytes;
      }
      // The launch configuration travels on the gpu.module for the runtime
      // metadata (CudaArtifact).
      auto gm = module.lookupSymbol<gpu::GPUModuleOp>(attn::cudaEntryName(kernel.getSymName()));
      gm->setAttr("attn.threads", IntegerAttr::get(IntegerType::get(ctx, 64), threads));
      gm->setAttr("attn.shared_bytes", IntegerAttr::get(IntegerType::get(ctx, 64), shared));
      gm->setAttr("attn.block_q", IntegerAttr::get(IntegerType::get(ctx, 64), blockQ));
      gm->setAttr("attn.block_k", IntegerAttr::get(IntegerType::get(ctx, 64), cfg.blockK));
      kernel.erase();
    }
    for (Operation &op : llvm::make_early_inc_range(module.getBody()->getOperations()))
      if (isa<attn::MaskOp, attn::ScoreOp>(op))
        op.erase();
  }
};

} // namespace
