//===- VictimsKernel.cpp - Eviction victims of a budget cache, on the GPU -===//
//
// attnc_<K>_victims (ABI and method in VictimsKernel.h): a radix select of
// the keep-th largest (score, position) key over a head's candidate slots,
// then the candidates below it.
//
//===----------------------------------------------------------------------===//

#include "VictimsKernel.h"
#include "NvvmBuilder.h"

using namespace mlir;
using namespace mlir::attn::nvvm;

namespace {

class VictimsLowering : public NvvmBuilder {
public:
  using NvvmBuilder::NvvmBuilder;

  void build(OpBuilder &mb) {
    SmallVector<Type> types(5, ptrT());
    types.append({i32(), i32()});
    auto [fn, b] = createKernelFunc(mb, attn::cudaEntryName(kernel.getSymName()) + "_victims",
                                    types, kVictimsThreads);
    Location l = loc();
    auto arg = [&](unsigned i) { return fn.getArgument(i); };
    Value scores = toGlobal(b, arg(0)), positions = toGlobal(b, arg(1)),
          pages = toGlobal(b, arg(2)), requests = toGlobal(b, arg(3)),
          victims = toGlobal(b, arg(4)), P = arg(6);
    Value r = idx32(b, gpu::BlockIdOp::create(b, l, gpu::Dimension::x));
    Value tid = idx32(b, gpu::ThreadIdOp::create(b, l, gpu::Dimension::x));
    Value request = mul(b, ext64(b, r), ci64(b, 5));
    auto field = [&](int64_t i) { return load(b, i32(), requests, add(b, request, ci64(b, i))); };
    Value firstPage = field(0), slots = field(1), recentFrom = field(2), keep = field(3);
    Value threads = ci32(b, kVictimsThreads);

    // (candidate, key) of slot s: the key orders by score (its bits made
    // monotonic as unsigned, zero of either sign as +0), then position.
    auto keyOf = [&](OpBuilder &b, Value s) -> std::pair<Value, Value> {
      Value page = load(b, i32(), pages, ext64(b, add(b, firstPage, divu(b, s, P))));
      Value row = add(b, mul(b, ext64(b, page), ext64(b, P)), ext64(b, remu(b, s, P)));
      Value pos = load(b, i32(), positions, row);
      Value score = load(b, f32(), scores, row);
      Value cand = arith::AndIOp::create(b, l, cmpi(b, arith::CmpIPredicate::sge, pos, ci32(b, 0)),
                                         cmpi(b, arith::CmpIPredicate::slt, pos, recentFrom));
      Value bits = arith::BitcastOp::create(b, l, i32(), score);
      bits = select(b, arith::CmpFOp::create(b, l, arith::CmpFPredicate::OEQ, score, cf32(b, 0.0)),
                    ci32(b, 0), bits);
      Value negative = cmpi(b, arith::CmpIPredicate::slt, bits, ci32(b, 0));
      Value ordered = select(b, negative, arith::XOrIOp::create(b, l, bits, ci32(b, -1)),
                             arith::OrIOp::create(b, l, bits, ci32(b, int32_t(0x80000000u))));
      Value hi =
          arith::ShLIOp::create(b, l, arith::ExtUIOp::create(b, l, i64(), ordered), ci64(b, 32));
      Value key = arith::OrIOp::create(b, l, hi, arith::ExtUIOp::create(b, l, i64(), pos));
      return {cand, key};
    };
    // Each thread's slots from `first`: first, first + 128, ... below `slots`.
    auto forMySlots = [&](OpBuilder &b, Value first, ValueRange init,
                          function_ref<SmallVector<Value>(OpBuilder &, Value, ValueRange)> body) {
      auto loop = scf::ForOp::create(b, l, first, slots, threads, init,
                                     [&](OpBuilder &b, Location l, Value s, ValueRange acc) {
                                       scf::YieldOp::create(b, l, body(b, s, acc));
                                     });
      return loop.getResults();
    };
    // The keys of a thread's first kVictimsCachedSlots slots stay in
    // registers over the 64 passes (0 for a non-candidate or a slot past
    // the head's: 0 is below every trial value, so such a slot never
    // counts),
    // so a request of up to 128 * kVictimsCachedSlots slots (a decode
    // step's budget + 1) reads its page table, positions and scores once,
    // not once a pass (3 dependent loads a slot).
    SmallVector<Value> cached;
    for (int64_t j = 0; j < kVictimsCachedSlots; ++j) {
      Value s = add(b, tid, ci32(b, j * kVictimsThreads));
      cached.push_back(ifElseValues(b, cmpi(b, arith::CmpIPredicate::slt, s, slots),
                                    ValueRange{ci64(b, 0)},
                                    [&](OpBuilder &b) -> SmallVector<Value> {
                                      auto [cand, key] = keyOf(b, s);
                                      return {select(b, cand, key, ci64(b, 0))};
                                    })[0]);
    }
    Value uncachedFrom = add(b, tid, ci32(b, kVictimsCachedSlots * kVictimsThreads));
    // Bits of the largest per-thread count (ceil(slots / 128) < 2^bits):
    // the CTA sums counts bit by bit, one bar.red.popc each.
    Value perThread = divu(b, add(b, slots, ci32(b, kVictimsThreads - 1)), threads);
    Value countBits =
        sub(b, ci32(b, 32),
            LLVM::CountLeadingZerosOp::create(b, l, i32(), perThread, /*is_zero_poison=*/false));
    auto blockSum = [&](OpBuilder &b, Value c) {
      auto loop = scf::ForOp::create(
          b, l, ci32(b, 0), countBits, ci32(b, 1), ValueRange{ci32(b, 0)},
          [&](OpBuilder &b, Location l, Value bit, ValueRange sum) {
            Value mine =
                arith::AndIOp::create(b, l, arith::ShRUIOp::create(b, l, c, bit), ci32(b, 1));
            Value n = inlinePtx(b, i32(), ValueRange{mine},
                                "{\n.reg .pred p;\nsetp.ne.u32 p, $1, 0;\n"
                                "bar.red.popc.u32 $0, 0, p;\n}",
                                "=r,r")
                          .getResult(0);
            scf::YieldOp::create(b, l,
                                 ValueRange{add(b, sum[0], arith::ShLIOp::create(b, l, n, bit))});
          });
      return loop.getResult(0);
    };
    // T: the largest value with at least `keep` candidate keys >= T, bit by
    // bit from the top (keys are distinct: T is the keep-th largest; keep
    // 0 gives all ones, above every key).
    auto select64 = scf::ForOp::create(
        b, l, ci32(b, 0), ci32(b, 64), ci32(b, 1), ValueRange{ci64(b, 0)},
        [&](OpBuilder &b, Location l, Value i, ValueRange acc) {
          Value bit = ext64(b, sub(b, ci32(b, 63), i));
          Value trial =
              arith::OrIOp::create(b, l, acc[0], arith::ShLIOp::create(b, l, ci64(b, 1), bit));
          Value mine = ci32(b, 0);
          for (Value key : cached)
            mine = add(b, mine,
                       arith::ExtUIOp::create(b, l, i32(),
                                              cmpi(b, arith::CmpIPredicate::uge, key, trial)));
          mine = forMySlots(b, uncachedFrom, ValueRange{mine},
                            [&](OpBuilder &b, Value s, ValueRange n) -> SmallVector<Value> {
                              auto [cand, key] = keyOf(b, s);
                              Value at = arith::AndIOp::create(
                                  b, l, cand, cmpi(b, arith::CmpIPredicate::uge, key, trial));
                              return {add(b, n[0], arith::ExtUIOp::create(b, l, i32(), at))};
                            })[0];
          Value total = blockSum(b, mine);
          scf::YieldOp::create(b, l,
                               ValueRange{select(b, cmpi(b, arith::CmpIPredicate::sge, total, keep),
                                                 trial, acc[0])});
        });
    Value T = select64.getResult(0);
    // The candidates below T die. A warp takes its dying lanes' places at
    // the request's cursor with one atomic add (a vote, its population
    // count, each lane's rank among the dying lanes): an atomic per victim
    // on the one cursor serialized a request dropping thousands of slots
    // (a prompt chunk's eviction). Every thread runs the same rounds, so
    // the vote has all lanes.
    Value cursor = gep(b, requests, add(b, request, ci64(b, 4)), i32());
    Value lane = remu(b, tid, ci32(b, kWarp));
    auto ballot = [&](OpBuilder &b, Value bit) {
      return inlinePtx(b, i32(), ValueRange{arith::ExtUIOp::create(b, l, i32(), bit)},
                       "{\n.reg .pred p;\nsetp.ne.u32 p, $1, 0;\n"
                       "vote.sync.ballot.b32 $0, p, 0xffffffff;\n}",
                       "=r,r")
          .getResult(0);
    };
    Value lanesBelow =
        inlinePtx(b, i32(), ValueRange{}, "mov.u32 $0, %lanemask_lt;", "=r").getResult(0);
    scf::ForOp::create(
        b, l, ci32(b, 0), perThread, ci32(b, 1), ValueRange{},
        [&](OpBuilder &b, Location l, Value i, ValueRange) {
          Value s = add(b, tid, mul(b, i, threads));
          Value dies = ifElseValues(b, cmpi(b, arith::CmpIPredicate::slt, s, slots),
                                    ValueRange{arith::ConstantIntOp::create(b, l, 0, 1)},
                                    [&](OpBuilder &b) -> SmallVector<Value> {
                                      auto [cand, key] = keyOf(b, s);
                                      return {arith::AndIOp::create(
                                          b, l, cand, cmpi(b, arith::CmpIPredicate::ult, key, T))};
                                    })[0];
          Value dying = ballot(b, dies);
          Value n = LLVM::CtPopOp::create(b, l, i32(), dying);
          Value rank =
              LLVM::CtPopOp::create(b, l, i32(), arith::AndIOp::create(b, l, dying, lanesBelow));
          Value leads =
              arith::AndIOp::create(b, l, cmpi(b, arith::CmpIPredicate::eq, lane, ci32(b, 0)),
                                    cmpi(b, arith::CmpIPredicate::ne, n, ci32(b, 0)));
          Value base = ifElseValues(
              b, leads, ValueRange{ci32(b, 0)}, [&](OpBuilder &b) -> SmallVector<Value> {
                return {LLVM::AtomicRMWOp::create(b, l, LLVM::AtomicBinOp::add, cursor, n,
                                                  LLVM::AtomicOrdering::monotonic)};
              })[0];
          base =
              gpu::ShuffleOp::create(b, l, base, ci32(b, 0), ci32(b, kWarp), gpu::ShuffleMode::IDX)
                  .getShuffleResult();
          ifThen(b, dies,
                 [&](OpBuilder &b) { store(b, s, victims, ext64(b, add(b, base, rank))); });
          scf::YieldOp::create(b, l);
        });
    gpu::ReturnOp::create(b, l);
  }
};

} // namespace

void mlir::attn::nvvm::buildVictimsKernel(attn::KernelOp kernel, const attn::NvvmKernelConfig &cfg,
                                          Type elemType, OpBuilder &gpuModuleBuilder) {
  VictimsLowering(kernel, cfg, elemType).build(gpuModuleBuilder);
}
