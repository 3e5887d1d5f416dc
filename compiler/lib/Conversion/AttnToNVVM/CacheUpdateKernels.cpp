//===- CacheUpdateKernels.cpp - Kernels that write a device KV cache ------===//
//
// attnc_<K>_append and attnc_<K>_move (ABI in CacheUpdateKernels.h). Both
// give each row to one warp: rows are a few hundred bytes, and a warp's
// lanes cover a row in one or a few strided passes, with the group maxima
// of quantized rows reduced by shuffles.
//
//===----------------------------------------------------------------------===//

#include "CacheUpdateKernels.h"
#include "NvvmBuilder.h"

using namespace mlir;
using namespace mlir::attn::nvvm;

namespace {

constexpr int64_t kRowsPerBlock = 4; // warps per CTA, a row each

class CacheUpdateLowering : public NvvmBuilder {
public:
  CacheUpdateLowering(attn::KernelOp kernel, const attn::NvvmKernelConfig &cfg, Type elemType,
                      const attn::CacheStorage &storage)
      : NvvmBuilder(kernel, cfg, elemType), storage(storage) {}

  void build(OpBuilder &mb) {
    buildAppend(mb);
    buildMove(mb);
  }

private:
  const attn::CacheStorage &storage;

  Value lt(OpBuilder &b, Value x, Value y) {
    return arith::CmpIOp::create(b, loc(), arith::CmpIPredicate::slt, x, y);
  }
  Value fabs(OpBuilder &b, Value x) { return fmax(b, x, arith::NegFOp::create(b, loc(), x)); }
  /// roundf: the nearest integer, halves away from zero (as std::lround on
  /// the host, so both quantize to the same bytes): t = trunc(x), plus
  /// sign(x) when |x - t| >= 0.5 (x - t is exact).
  Value roundHalfAway(OpBuilder &b, Value x) {
    Location l = loc();
    Value t = ptxUnary(b, "cvt.rzi.f32.f32", x);
    Value up = arith::CmpFOp::create(b, l, arith::CmpFPredicate::OGE, fabs(b, fsub(b, x, t)),
                                     cf32(b, 0.5));
    Value sign = select(b, arith::CmpFOp::create(b, l, arith::CmpFPredicate::OLT, x, cf32(b, 0.0)),
                        cf32(b, -1.0), cf32(b, 1.0));
    return select(b, up, fadd(b, t, sign), t);
  }
  /// body(e) for e = lane, lane + 32, ... below `count` (compile time).
  void forLanes(OpBuilder &b, Value lane, int64_t count,
                llvm::function_ref<void(OpBuilder &, Value)> body) {
    forStrided(b, lane, kWarp, count, body);
  }

  /// The warp's row index (block x * 4 + warp) and lane; `body` runs for
  /// rows below `count`.
  void forWarpRow(OpBuilder &b, Value count,
                  llvm::function_ref<void(OpBuilder &, Value row, Value lane)> body) {
    Location l = loc();
    Value bx =
        arith::IndexCastOp::create(b, l, i32(), gpu::BlockIdOp::create(b, l, gpu::Dimension::x));
    Value tid =
        arith::IndexCastOp::create(b, l, i32(), gpu::ThreadIdOp::create(b, l, gpu::Dimension::x));
    Value warp = arith::DivUIOp::create(b, l, tid, ci32(b, kWarp));
    Value lane = arith::RemUIOp::create(b, l, tid, ci32(b, kWarp));
    Value row = add(b, mul(b, bx, ci32(b, kRowsPerBlock)), warp);
    ifThen(b, lt(b, row, count), [&](OpBuilder &b) { body(b, row, lane); });
  }

  /// One new row `src` (dim elements of elemType) into pool row `dst` of
  /// `pool` (and `scales`), quantized like KvCache::storeRow.
  void writeRow(OpBuilder &b, Value lane, Value src, Value pool, Value scales, Value dst,
                int64_t dim) {
    Location l = loc();
    Value dst64 = ext64(b, dst);
    auto srcAt = [&](OpBuilder &b, Value e) {
      return arith::ExtFOp::create(b, l, f32(), load(b, elemType, src, ext64(b, e)));
    };
    if (!storage.quantized) {
      Value base = mul(b, dst64, ci64(b, dim));
      forLanes(b, lane, dim, [&](OpBuilder &b, Value e) {
        store(b, load(b, elemType, src, ext64(b, e)), pool, add(b, base, ext64(b, e)));
      });
      return;
    }
    const bool nibbles = storage.nibbles;
    const int64_t groups = storage.group ? dim / storage.group : 1, size = dim / groups;
    const double qmax = nibbles ? 7.0 : storage.fp8 ? 448.0 : 127.0;
    Value zero = cf32(b, 0.0);
    Type i8 = b.getI8Type();
    Value rowBytes = mul(b, dst64, ci64(b, nibbles ? dim / 2 : dim));
    for (int64_t g = 0; g < groups; ++g) {
      // max |x| over the group: each lane its elements, then the warp.
      Value amax = zero;
      for (int64_t it = 0; it * kWarp < size; ++it) {
        Value e = add(b, lane, ci32(b, it * kWarp));
        Value in = lt(b, e, ci32(b, size));
        Value ec = arith::MinSIOp::create(b, l, e, ci32(b, size - 1));
        Value x = fabs(b, srcAt(b, add(b, ec, ci32(b, g * size))));
        amax = select(b, in, fmax(b, amax, x), amax);
      }
      for (int64_t x : {16, 8, 4, 2, 1})
        amax = fmax(b, amax, shflXor(b, amax, x));
      Value scale = arith::DivFOp::create(b, l, amax, cf32(b, qmax));
      Value stored = scale;
      if (storage.scaleBytes == 2) {
        // f16 scales: the stored (rounded) scale quantizes, so that codes
        // times it are the values read back; at most the largest f16.
        stored = arith::TruncFOp::create(b, l, Float16Type::get(ctx),
                                         arith::MinimumFOp::create(b, l, scale, cf32(b, 65504.0)));
        scale = arith::ExtFOp::create(b, l, f32(), stored);
      }
      ifThen(b, arith::CmpIOp::create(b, l, arith::CmpIPredicate::eq, lane, ci32(b, 0)),
             [&](OpBuilder &b) {
               store(b, stored, scales, add(b, mul(b, dst64, ci64(b, groups)), ci64(b, g)));
             });
      Value positive = arith::CmpFOp::create(b, l, arith::CmpFPredicate::OGT, scale, zero);
      // round(x / scale) half away from zero, clamped; 0 when the group is 0.
      // fp8: e4m3 of x / scale, nearest even (cvt.rn.satfinite, sm_89+).
      auto quantize = [&](OpBuilder &b, Value e) -> Value {
        if (storage.fp8) {
          Value y = arith::DivFOp::create(b, l, srcAt(b, e), scale);
          Value bits =
              LLVM::InlineAsmOp::create(
                  b, l, i32(), ValueRange{y, zero},
                  "{\n.reg .b16 t;\ncvt.rn.satfinite.e4m3x2.f32 t, $2, $1;\n"
                  "cvt.u32.u16 $0, t;\n}",
                  "=r,f,f", /*has_side_effects=*/false, /*is_align_stack=*/false,
                  LLVM::tailcallkind::TailCallKind::None, LLVM::AsmDialectAttr(), ArrayAttr())
                  .getResult(0);
          Value byte = arith::TruncIOp::create(b, l, i8, bits);
          return select(b, positive, byte, arith::ConstantIntOp::create(b, l, 0, 8));
        }
        Value q = roundHalfAway(b, arith::DivFOp::create(b, l, srcAt(b, e), scale));
        q = arith::MinimumFOp::create(b, l, fmax(b, q, cf32(b, -qmax)), cf32(b, qmax));
        q = select(b, positive, q, zero);
        return arith::FPToSIOp::create(b, l, i8, q).getResult();
      };
      if (!nibbles) {
        forLanes(b, lane, size, [&](OpBuilder &b, Value e) {
          Value at = add(b, e, ci32(b, g * size));
          store(b, quantize(b, at), pool, add(b, rowBytes, ext64(b, at)));
        });
        continue;
      }
      // int4: lane pairs (2i, 2i + 1) -> byte i, the even element low.
      forLanes(b, lane, size / 2, [&](OpBuilder &b, Value p) {
        Value even = add(b, mul(b, p, ci32(b, 2)), ci32(b, g * size));
        Value lo = arith::AndIOp::create(b, l, quantize(b, even),
                                         arith::ConstantIntOp::create(b, l, 0x0F, 8));
        Value hi = arith::ShLIOp::create(b, l, quantize(b, add(b, even, ci32(b, 1))),
                                         arith::ConstantIntOp::create(b, l, 4, 8));
        Value byte = arith::OrIOp::create(b, l, lo, hi);
        Value at = add(b, p, ci32(b, g * size / 2));
        store(b, byte, pool, add(b, rowBytes, ext64(b, at)));
      });
    }
  }

  void buildAppend(OpBuilder &mb) {
    SmallVector<Type> types(9, ptrT());
    types.push_back(i32());
    auto [fn, b] = createKernelFunc(mb, attn::cudaEntryName(kernel.getSymName()) + "_append", types,
                                    kRowsPerBlock * kWarp);
    auto arg = [&](unsigned i) { return fn.getArgument(i); };
    Value kNew = toGlobal(b, arg(0)), vNew = toGlobal(b, arg(1)), kPool = toGlobal(b, arg(2)),
          vPool = toGlobal(b, arg(3)), kScale = toGlobal(b, arg(4)), vScale = toGlobal(b, arg(5)),
          rows = toGlobal(b, arg(6));
    const int64_t D = cfg.headDim, Dv = cfg.headDimV;
    forWarpRow(b, arg(9), [&](OpBuilder &b, Value row, Value lane) {
      Value triple = mul(b, ext64(b, row), ci64(b, 3));
      Value r64 = ext64(b, load(b, i32(), rows, triple));
      Value to = load(b, i32(), rows, add(b, triple, ci64(b, 1)));
      writeRow(b, lane, gep(b, kNew, mul(b, r64, ci64(b, D)), elemType), kPool, kScale, to, D);
      writeRow(b, lane, gep(b, vNew, mul(b, r64, ci64(b, Dv)), elemType), vPool, vScale, to, Dv);
      // A new row's score starts at 0 and its position is the token's.
      Value position = load(b, i32(), rows, add(b, triple, ci64(b, 2)));
      forSlotMetadata(b, lane, arg(7), arg(8), [&](OpBuilder &b, Value scores, Value positions) {
        store(b, cf32(b, 0.0), scores, ext64(b, to));
        store(b, position, positions, ext64(b, to));
      });
    });
    gpu::ReturnOp::create(b, loc());
  }

  /// body(scores, positions) in lane 0 when the slot-metadata pools (f32
  /// scores and i32 positions per pool row: budget heads scored on the GPU)
  /// are given (not null).
  void forSlotMetadata(OpBuilder &b, Value lane, Value scores, Value positions,
                       llvm::function_ref<void(OpBuilder &, Value, Value)> body) {
    Location l = loc();
    Value none = LLVM::ZeroOp::create(b, l, ptrT());
    Value given = arith::AndIOp::create(
        b, l, LLVM::ICmpOp::create(b, l, LLVM::ICmpPredicate::ne, scores, none),
        LLVM::ICmpOp::create(b, l, LLVM::ICmpPredicate::ne, positions, none));
    Value first = arith::CmpIOp::create(b, l, arith::CmpIPredicate::eq, lane, ci32(b, 0));
    ifThen(b, arith::AndIOp::create(b, l, given, first),
           [&](OpBuilder &b) { body(b, toGlobal(b, scores), toGlobal(b, positions)); });
  }

  void buildMove(OpBuilder &mb) {
    SmallVector<Type> types(7, ptrT());
    types.push_back(i32());
    auto [fn, b] = createKernelFunc(mb, attn::cudaEntryName(kernel.getSymName()) + "_move", types,
                                    kRowsPerBlock * kWarp);
    auto arg = [&](unsigned i) { return fn.getArgument(i); };
    Value kPool = toGlobal(b, arg(0)), vPool = toGlobal(b, arg(1)), kScale = toGlobal(b, arg(2)),
          vScale = toGlobal(b, arg(3)), moves = toGlobal(b, arg(6));
    const int64_t D = cfg.headDim, Dv = cfg.headDimV;
    const int64_t elemBytes = storage.quantized ? 1 : elemType.getIntOrFloatBitWidth() / 8;
    const int64_t per = storage.nibbles ? 2 : 1;
    forWarpRow(b, arg(7), [&](OpBuilder &b, Value row, Value lane) {
      Value from = ext64(b, load(b, i32(), moves, mul(b, ext64(b, row), ci64(b, 2))));
      Value to =
          ext64(b, load(b, i32(), moves, add(b, mul(b, ext64(b, row), ci64(b, 2)), ci64(b, 1))));
      // Rows as 32-bit words (head dims are multiples of 16), then scales.
      auto copy = [&](Value base, int64_t words) {
        forLanes(b, lane, words, [&](OpBuilder &b, Value w) {
          Value x = load(b, i32(), base, add(b, mul(b, from, ci64(b, words)), ext64(b, w)));
          store(b, x, base, add(b, mul(b, to, ci64(b, words)), ext64(b, w)));
        });
      };
      copy(kPool, D * elemBytes / per / 4);
      copy(vPool, Dv * elemBytes / per / 4);
      if (storage.quantized) { // f16 scales: an even number per row
        copy(kScale, (storage.group ? D / storage.group : 1) * storage.scaleBytes / 4);
        copy(vScale, (storage.group ? Dv / storage.group : 1) * storage.scaleBytes / 4);
      }
      forSlotMetadata(b, lane, arg(4), arg(5), [&](OpBuilder &b, Value scores, Value positions) {
        store(b, load(b, f32(), scores, from), scores, to);
        store(b, load(b, i32(), positions, from), positions, to);
      });
    });
    gpu::ReturnOp::create(b, loc());
  }
};

} // namespace

void mlir::attn::nvvm::buildCacheUpdateKernels(attn::KernelOp kernel,
                                               const attn::NvvmKernelConfig &cfg, Type elemType,
                                               const attn::CacheStorage &storage,
                                               OpBuilder &gpuModuleBuilder) {
  CacheUpdateLowering(kernel, cfg, elemType, storage).build(gpuModuleBuilder);
}
