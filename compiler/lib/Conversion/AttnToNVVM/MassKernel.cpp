//===- MassKernel.cpp - The budget decode's attention-mass kernel ---------===//
//
// attnc_<K>_mass (ABI in MassKernel.h): each retained slot's attention mass
// from the scores the decode stored and the merged LSE.
//
//===----------------------------------------------------------------------===//

#include "MassKernel.h"
#include "NvvmBuilder.h"

#include <limits>

using namespace mlir;
using namespace mlir::attn::nvvm;

namespace {

class MassLowering : public NvvmBuilder {
public:
  MassLowering(attn::KernelOp kernel, const attn::NvvmKernelConfig &cfg, Type elemType)
      : NvvmBuilder(kernel, cfg, elemType) {}

  void build(OpBuilder &mb, int64_t threads) {
    SmallVector<Type> types = decodeAbiTypes();
    types.append({ptrT(), i32(), ptrT()}); // kv_mass, mass_rows, slot_scores
    appendParamTypes(types);
    auto [fn, b] =
        createKernelFunc(mb, attn::cudaEntryName(kernel.getSymName()) + "_mass", types, threads);
    Location l = loc();
    auto arg = [&](unsigned i) { return fn.getArgument(i); };
    // The decode ABI's arguments it reads (DecodeKernel.h).
    Value gL = toGlobal(b, arg(4)), gLp = toGlobal(b, arg(6));
    Value B = arg(7), Hq = arg(8), Hkv = arg(9), Nq = arg(10), splits = arg(14),
          splitSlots = arg(15);
    Value lseSb = arg(22), lseSh = arg(23);
    Value gLen = toGlobal(b, arg(26));
    Value maxSlots = arg(13);
    Value gMass = toGlobal(b, arg(kNumDecodeArgs)), massRows = arg(kNumDecodeArgs + 1);
    Value slotScores = arg(kNumDecodeArgs + 2);
    Value P = arg(11), maxPages = arg(12), gPages = toGlobal(b, arg(24));

    Value block = idx32(b, gpu::BlockIdOp::create(b, l, gpu::Dimension::x));
    Value hk = idx32(b, gpu::BlockIdOp::create(b, l, gpu::Dimension::y));
    Value bIdx = idx32(b, gpu::BlockIdOp::create(b, l, gpu::Dimension::z));
    Value tid = idx32(b, gpu::ThreadIdOp::create(b, l, gpu::Dimension::x));
    Value G = divu(b, Hq, Hkv), R = mul(b, G, Nq);
    Value tableRow = add(b, mul(b, bIdx, Hkv), hk);
    Value slot = add(b, mul(b, block, ci32(b, int32_t(threads))), tid);
    Value numSlots = mini(b, load(b, i32(), gLen, tableRow), mul(b, splits, splitSlots));
    ifThen(b, cmpi(b, arith::CmpIPredicate::slt, slot, numSlots), [&](OpBuilder &b) {
      Value gScores = gep(b, gLp, ext64(b, mul(b, splits, mul(b, B, mul(b, Hq, Nq)))), f32());
      Value scoreStride = ext64(b, mul(b, splits, splitSlots));
      Value firstRow = mul(b, ext64(b, tableRow), ext64(b, R));
      Value firstCounted = sub(b, Nq, massRows);
      Value negInf = cf32(b, -std::numeric_limits<float>::infinity()), zero = cf32(b, 0.0);
      Value b64 = ext64(b, bIdx), slot64 = ext64(b, slot);
      auto rows = scf::ForOp::create(
          b, l, ci32(b, 0), R, ci32(b, 1), ValueRange{zero},
          [&](OpBuilder &b, Location l, Value pr, ValueRange sum) {
            Value h = queryHead(b, hk, divu(b, pr, Nq), Hkv, G), i = remu(b, pr, Nq);
            Value lse =
                load(b, f32(), gL,
                     add(b, mul(b, b64, lseSb), add(b, mul(b, ext64(b, h), lseSh), ext64(b, i))));
            Value counts = arith::AndIOp::create(
                b, l, cmpi(b, arith::CmpIPredicate::sge, i, firstCounted),
                arith::CmpFOp::create(b, l, arith::CmpFPredicate::OGT, lse, negInf));
            Value t = load(b, f32(), gScores,
                           add(b, mul(b, add(b, firstRow, ext64(b, pr)), scoreStride), slot64));
            // Uncounted rows may hold -inf - -inf: select, not multiply.
            Value p = ex2(b, fsub(b, t, fmul(b, lse, cf32(b, kLog2e))));
            scf::YieldOp::create(b, l, ValueRange{fadd(b, sum[0], select(b, counts, p, zero))});
          });
      // Into the pool row's score when the scores live on the GPU (H2O:
      // accumulated, moved with the rows), else into the mass table.
      Value none = LLVM::ZeroOp::create(b, l, ptrT());
      Value toPool = LLVM::ICmpOp::create(b, l, LLVM::ICmpPredicate::ne, slotScores, none);
      auto branch = scf::IfOp::create(b, l, toPool, /*withElseRegion=*/true);
      {
        OpBuilder tb = branch.getThenBodyBuilder();
        Value page = load(tb, i32(), gPages,
                          add(tb, mul(tb, ext64(tb, tableRow), ext64(tb, maxPages)),
                              ext64(tb, divu(tb, slot, P))));
        Value at = add(tb, mul(tb, ext64(tb, page), ext64(tb, P)), ext64(tb, remu(tb, slot, P)));
        Value gScores = toGlobal(tb, slotScores);
        store(tb, fadd(tb, load(tb, f32(), gScores, at), rows.getResult(0)), gScores, at);
      }
      {
        OpBuilder eb = branch.getElseBodyBuilder();
        Value at = add(eb, mul(eb, ext64(eb, tableRow), ext64(eb, maxSlots)), slot64);
        store(eb, fadd(eb, load(eb, f32(), gMass, at), rows.getResult(0)), gMass, at);
      }
    });
    gpu::ReturnOp::create(b, l);
  }
};

} // namespace

void mlir::attn::nvvm::buildMassKernel(attn::KernelOp kernel, const attn::NvvmKernelConfig &cfg,
                                       Type elemType, int64_t threads,
                                       OpBuilder &gpuModuleBuilder) {
  MassLowering(kernel, cfg, elemType).build(gpuModuleBuilder, threads);
}
