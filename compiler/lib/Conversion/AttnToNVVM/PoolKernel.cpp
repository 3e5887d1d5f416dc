//===- PoolKernel.cpp - SnapKV's pooled scores, on the GPU -----------------===//
//
// attnc_<K>_pool (ABI in PoolKernel.h): each retained slot's score, the
// largest window mass among its neighbours in position order.
//
//===----------------------------------------------------------------------===//

#include "PoolKernel.h"
#include "NvvmBuilder.h"

using namespace mlir;
using namespace mlir::attn::nvvm;

namespace {

class PoolLowering : public NvvmBuilder {
public:
  using NvvmBuilder::NvvmBuilder;

  void build(OpBuilder &mb) {
    SmallVector<Type> types(4, ptrT());
    types.append(4, i32());
    auto [fn, b] = createKernelFunc(mb, attn::cudaEntryName(kernel.getSymName()) + "_pool", types,
                                    kPoolThreads);
    Location l = loc();
    auto arg = [&](unsigned i) { return fn.getArgument(i); };
    Value mass = toGlobal(b, arg(0)), order = toGlobal(b, arg(1)), pages = toGlobal(b, arg(2)),
          scores = toGlobal(b, arg(3));
    Value pitch = arg(4), pagesPitch = arg(5), P = arg(6), half = arg(7);
    Value row = idx32(b, gpu::BlockIdOp::create(b, l, gpu::Dimension::y));
    Value rank = add(
        b, mul(b, idx32(b, gpu::BlockIdOp::create(b, l, gpu::Dimension::x)), ci32(b, kPoolThreads)),
        idx32(b, gpu::ThreadIdOp::create(b, l, gpu::Dimension::x)));
    Value rowAt = mul(b, ext64(b, row), ext64(b, pitch));
    auto slotAt = [&](OpBuilder &b, Value r) {
      return load(b, i32(), order, add(b, rowAt, ext64(b, r)));
    };
    ifThen(b, cmpi(b, arith::CmpIPredicate::slt, rank, pitch), [&](OpBuilder &b) {
      Value slot = slotAt(b, rank);
      ifThen(b, cmpi(b, arith::CmpIPredicate::sge, slot, ci32(b, 0)), [&](OpBuilder &b) {
        Value lo = arith::MaxSIOp::create(b, l, sub(b, rank, half), ci32(b, 0));
        Value hi = arith::MinSIOp::create(b, l, add(b, add(b, rank, half), ci32(b, 1)), pitch);
        // best = max(best, mass) in rank order, as std::max(best, x): x
        // only where best < x. Ranks past the row's count hold -1.
        auto loop = scf::ForOp::create(
            b, l, lo, hi, ci32(b, 1), ValueRange{cf32(b, 0.0)},
            [&](OpBuilder &b, Location l, Value j, ValueRange best) {
              Value other = slotAt(b, j);
              Value next = ifElseValues(b, cmpi(b, arith::CmpIPredicate::sge, other, ci32(b, 0)),
                                        best, [&](OpBuilder &b) -> SmallVector<Value> {
                                          Value x =
                                              load(b, f32(), mass, add(b, rowAt, ext64(b, other)));
                                          Value higher = arith::CmpFOp::create(
                                              b, l, arith::CmpFPredicate::OLT, best[0], x);
                                          return {select(b, higher, x, best[0])};
                                        })[0];
              scf::YieldOp::create(b, l, ValueRange{next});
            });
        Value page =
            load(b, i32(), pages,
                 add(b, mul(b, ext64(b, row), ext64(b, pagesPitch)), ext64(b, divu(b, slot, P))));
        Value poolRow = add(b, mul(b, ext64(b, page), ext64(b, P)), ext64(b, remu(b, slot, P)));
        store(b, loop.getResult(0), scores, poolRow);
      });
    });
    gpu::ReturnOp::create(b, l);
  }
};

} // namespace

void mlir::attn::nvvm::buildPoolKernel(attn::KernelOp kernel, const attn::NvvmKernelConfig &cfg,
                                       Type elemType, OpBuilder &gpuModuleBuilder) {
  PoolLowering(kernel, cfg, elemType).build(gpuModuleBuilder);
}
