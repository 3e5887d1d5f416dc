//===- MergeKernel.cpp - The split-KV decode's merge kernel ---------------===//
//
// attnc_<K>_merge (ABI in MergeKernel.h): O and LSE of each row from its
// splits' parts, weighted by exp(LSE_s - max LSE). Grid (Nq, Hq, B), one
// thread per column of O.
//
//===----------------------------------------------------------------------===//

#include "MergeKernel.h"
#include "NvvmBuilder.h"

#include <limits>

using namespace mlir;
using namespace mlir::attn::nvvm;

namespace {

/// Splits the merge kernel loads per round trip: kMergeWide while a whole
/// chunk of them remains, then kMergeUnroll (the last chunk masked).
constexpr int64_t kMergeWide = 32, kMergeUnroll = 8;

class MergeLowering : public NvvmBuilder {
public:
  MergeLowering(attn::KernelOp kernel, const attn::NvvmKernelConfig &cfg, Type elemType)
      : NvvmBuilder(kernel, cfg, elemType) {}

  void build(OpBuilder &mb) {
    const int64_t Dv = cfg.headDimV;
    SmallVector<Type> types(4, ptrT());
    types.append(4, i32());
    types.append(5, i64());
    types.push_back(i32());
    auto [fn, b] =
        createKernelFunc(mb, attn::cudaEntryName(kernel.getSymName()) + "_merge", types, Dv);
    Location l = loc();
    auto arg = [&](unsigned i) { return fn.getArgument(i); };
    Value gOp = toGlobal(b, arg(0)), gLp = toGlobal(b, arg(1)), gO = toGlobal(b, arg(2)),
          gL = toGlobal(b, arg(3));
    Value B = arg(4), Hq = arg(5), Nq = arg(6), splits = arg(7);
    auto stride = [&](unsigned i) { return arg(8 + i); }; // o: 0-2, lse: 3-4
    Value writeLse = arg(13);
    // Launched before the decode grid ends (programmatic dependent launch):
    // nothing may read the parts until it has ended and its writes are
    // visible. Without that launch the wait returns at once.
    if (cfg.decodePdl)
      NVVM::GriddepcontrolOp::create(b, l, NVVM::GridDepActionKind::wait);
    Value i = idx32(b, gpu::BlockIdOp::create(b, l, gpu::Dimension::x));
    Value h = idx32(b, gpu::BlockIdOp::create(b, l, gpu::Dimension::y));
    Value bIdx = idx32(b, gpu::BlockIdOp::create(b, l, gpu::Dimension::z));
    Value col = idx32(b, gpu::ThreadIdOp::create(b, l, gpu::Dimension::x));
    Value rows = ext64(b, mul(b, B, mul(b, Hq, Nq)));
    Value row = ext64(b, add(b, mul(b, add(b, mul(b, bIdx, Hq), h), Nq), i));
    Value negInf = cf32(b, -std::numeric_limits<float>::infinity()), zero = cf32(b, 0.0);
    // One pass over the splits, a chunk at a time: their loads are
    // independent, so a chunk costs one memory round trip (a split per
    // round trip made the merge of 33 splits 11 us, 5% of a B=1 128k
    // decode; bench/NOTES.md). Chunks of kMergeWide while whole ones
    // remain (33 splits: 2 round trips instead of 5), then of kMergeUnroll
    // with the splits past the end masked. The running maximum M rescales
    // the sums.
    Value lastSplit = sub(b, splits, ci32(b, 1));
    auto isNegInf = [&](OpBuilder &b, Value x) {
      return arith::CmpFOp::create(b, l, arith::CmpFPredicate::OEQ, x, negInf);
    };
    auto sumLoop = [&](Value from, Value to, int64_t unroll, ValueRange init) {
      return scf::ForOp::create(
          b, l, from, to, ci32(b, unroll), init,
          [&](OpBuilder &b, Location l, Value s0, ValueRange it) {
            SmallVector<Value> lses, parts;
            Value M = it[0];
            for (int64_t u = 0; u < unroll; ++u) {
              Value s = add(b, s0, ci32(b, u));
              Value at = add(b, mul(b, ext64(b, mini(b, s, lastSplit)), rows), row);
              Value lse = load(b, f32(), gLp, at);
              lses.push_back(select(b, cmpi(b, arith::CmpIPredicate::slt, s, splits), lse, negInf));
              parts.push_back(load(b, f32(), gOp, add(b, mul(b, at, ci64(b, Dv)), ext64(b, col))));
              M = fmax(b, M, lses.back());
            }
            // Weights relative to ref (0 while every LSE is -inf); the old sums
            // scale by 2^(M_old - ref), 0 while they are empty.
            Value ref = select(b, isNegInf(b, M), zero, M);
            Value f = select(b, isNegInf(b, it[0]), zero,
                             ex2(b, fmul(b, fsub(b, it[0], ref), cf32(b, kLog2e))));
            Value lsum = fmul(b, it[1], f), acc = fmul(b, it[2], f);
            for (int64_t u = 0; u < unroll; ++u) {
              Value w = ex2(b, fmul(b, fsub(b, lses[u], ref), cf32(b, kLog2e)));
              lsum = fadd(b, lsum, w);
              acc = fadd(b, acc, fmul(b, w, parts[u]));
            }
            scf::YieldOp::create(b, l, ValueRange{M, lsum, acc});
          });
    };
    Value wideEnd = sub(b, splits, remu(b, splits, ci32(b, kMergeWide)));
    auto wide = sumLoop(ci32(b, 0), wideEnd, kMergeWide, ValueRange{negInf, zero, zero});
    auto rest = sumLoop(wideEnd, splits, kMergeUnroll, wide.getResults());
    Value M = rest.getResult(0);
    Value ref = select(b, isNegInf(b, M), zero, M);
    Value lsum = rest.getResult(1), acc = rest.getResult(2);
    Value hasKeys = arith::CmpFOp::create(b, l, arith::CmpFPredicate::OGT, lsum, zero);
    Value out = select(b, hasKeys, arith::DivFOp::create(b, l, acc, lsum), zero);
    Value lse = select(b, hasKeys, fadd(b, ref, fmul(b, lg2(b, lsum), cf32(b, kLn2))), negInf);
    Value b64 = ext64(b, bIdx), h64 = ext64(b, h), i64v = ext64(b, i);
    Value off =
        add(b, mul(b, b64, stride(0)), add(b, mul(b, h64, stride(1)), mul(b, i64v, stride(2))));
    store(b, arith::TruncFOp::create(b, l, elemType, out), gO, add(b, off, ext64(b, col)));
    Value first = cmpi(b, arith::CmpIPredicate::eq, col, ci32(b, 0));
    Value want = cmpi(b, arith::CmpIPredicate::ne, writeLse, ci32(b, 0));
    ifThen(b, arith::AndIOp::create(b, l, first, want), [&](OpBuilder &b) {
      store(b, lse, gL, add(b, mul(b, b64, stride(3)), add(b, mul(b, h64, stride(4)), i64v)));
    });
    gpu::ReturnOp::create(b, l);
  }
};

} // namespace

void mlir::attn::nvvm::buildMergeKernel(attn::KernelOp kernel, const attn::NvvmKernelConfig &cfg,
                                        Type elemType, OpBuilder &gpuModuleBuilder) {
  MergeLowering(kernel, cfg, elemType).build(gpuModuleBuilder);
}
