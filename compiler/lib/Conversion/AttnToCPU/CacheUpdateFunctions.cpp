//===- CacheUpdateFunctions.cpp - Functions that write a host KV cache ----===//
//
// <K>_append_<t> and <K>_move (ABI in CacheUpdateFunctions.h). A row is a
// few hundred bytes with a head dim known at compile time, so each row is
// one vector (LLVM splits it into registers): loaded, quantized lane-wise
// with one max-reduction per scale group, stored. Rows go in order, as the
// host KvCache writes and moves them.
//
//===----------------------------------------------------------------------===//

#include "CacheUpdateFunctions.h"

#include "attnc/Conversion/AttnToCPU.h"

#include "mlir/Dialect/Arith/IR/Arith.h"
#include "mlir/Dialect/Func/IR/FuncOps.h"
#include "mlir/Dialect/Math/IR/Math.h"
#include "mlir/Dialect/MemRef/IR/MemRef.h"
#include "mlir/Dialect/SCF/IR/SCF.h"
#include "mlir/Dialect/Vector/IR/VectorOps.h"

using namespace mlir;

namespace {

class CacheUpdateLowering {
public:
  CacheUpdateLowering(attn::KernelOp kernel, int64_t D, int64_t Dv, Type elemType,
                      const attn::CacheStorage &storage)
      : kernel(kernel), ctx(kernel.getContext()), D(D), Dv(Dv), elemType(elemType),
        storage(storage) {}

  void build(OpBuilder &mb) {
    // Quantized storage converts any input type (KvCacheOptions::inputDtype);
    // bf16 / f16 pages hold the kernel's dtype as given.
    if (storage.quantized) {
      for (Type input :
           {Type(Float32Type::get(ctx)), Type(BFloat16Type::get(ctx)), Type(Float16Type::get(ctx))})
        buildAppend(mb, input);
    } else {
      buildAppend(mb, elemType);
    }
    buildMove(mb);
  }

private:
  attn::KernelOp kernel;
  MLIRContext *ctx;
  int64_t D, Dv;
  Type elemType;
  const attn::CacheStorage &storage;

  Location loc() { return kernel.getLoc(); }
  Type f32() { return Float32Type::get(ctx); }
  Type i8() { return IntegerType::get(ctx, 8); }
  Type i32() { return IntegerType::get(ctx, 32); }
  Value cIdx(OpBuilder &b, int64_t v) { return arith::ConstantIndexOp::create(b, loc(), v); }
  /// A constant vector of `type` with every lane `value`.
  Value splat(OpBuilder &b, VectorType type, Attribute value) {
    return arith::ConstantOp::create(b, loc(), DenseElementsAttr::get(type, value));
  }
  Value splatF32(OpBuilder &b, int64_t n, float v) {
    return splat(b, VectorType::get({n}, f32()), b.getF32FloatAttr(v));
  }
  Value splatI32(OpBuilder &b, int64_t n, int32_t v) {
    return splat(b, VectorType::get({n}, i32()), b.getI32IntegerAttr(v));
  }

  /// Values per stored byte and scale groups of a row of `dim` values.
  int64_t storedWidth(int64_t dim) const { return storage.nibbles ? dim / 2 : dim; }
  int64_t groupsOf(int64_t dim) const { return storage.group ? dim / storage.group : 1; }
  MemRefType rowsOf(int64_t width, Type elem) {
    return MemRefType::get({ShapedType::kDynamic, width}, elem);
  }
  Type poolElement() const { return storage.quantized ? storage.pageElement : elemType; }
  Type scaleType() { return storage.scaleBytes == 2 ? Type(Float16Type::get(ctx)) : Type(f32()); }

  /// Pools (and, quantized, scales), the argument types both functions
  /// share after their own leading ones.
  SmallVector<Type> poolTypes() {
    SmallVector<Type> types = {rowsOf(storedWidth(D), poolElement()),
                               rowsOf(storedWidth(Dv), poolElement())};
    if (storage.quantized)
      types.append({rowsOf(groupsOf(D), scaleType()), rowsOf(groupsOf(Dv), scaleType())});
    return types;
  }
  SmallVector<StringRef> poolNames() {
    SmallVector<StringRef> names = {"k_pool", "v_pool"};
    if (storage.quantized)
      names.append({"k_scale", "v_scale"});
    return names;
  }

  /// A function `name` of `types` (argument names `names`) with the C
  /// interface the runtime's packed wrappers call; a builder in its body.
  std::pair<func::FuncOp, OpBuilder> createFunc(OpBuilder &mb, StringRef name, ArrayRef<Type> types,
                                                ArrayRef<StringRef> names) {
    auto fn = func::FuncOp::create(mb, loc(), name, FunctionType::get(ctx, types, {}));
    for (auto [i, n] : llvm::enumerate(names))
      fn.setArgAttr(i, "attn.name", StringAttr::get(ctx, n));
    fn->setAttr("llvm.emit_c_interface", UnitAttr::get(ctx));
    OpBuilder b = OpBuilder::atBlockBegin(fn.addEntryBlock());
    return {fn, b};
  }

  /// body(from, to) for each pair (pairs[i][0], pairs[i][1]), i in order.
  void forEachPair(OpBuilder &b, Value pairs,
                   llvm::function_ref<void(OpBuilder &, Value, Value)> body) {
    Location l = loc();
    Value count = memref::DimOp::create(b, l, pairs, 0);
    scf::ForOp::create(b, l, cIdx(b, 0), count, cIdx(b, 1), ValueRange{},
                       [&](OpBuilder &b, Location l, Value i, ValueRange) {
                         auto at = [&](int64_t c) -> Value {
                           Value v = memref::LoadOp::create(b, l, pairs, ValueRange{i, cIdx(b, c)});
                           return arith::IndexCastOp::create(b, l, b.getIndexType(), v);
                         };
                         body(b, at(0), at(1));
                         scf::YieldOp::create(b, l);
                       });
  }

  /// Row `from` of `mem` (`width` elements) copied to row `to`.
  void copyRow(OpBuilder &b, Value mem, int64_t width, Value from, Value to) {
    auto type = VectorType::get({width}, cast<MemRefType>(mem.getType()).getElementType());
    Value c0 = cIdx(b, 0);
    Value row = vector::LoadOp::create(b, loc(), type, mem, ValueRange{from, c0});
    vector::StoreOp::create(b, loc(), row, mem, ValueRange{to, c0});
  }

  /// The e4m3 codes (i32 lanes, low 8 bits) of f32 lanes `y`, as
  /// floatToE4M3 (Half.h): the sign bit, then NaN 0x7f, |y| >= 448
  /// saturated to 0x7e, subnormals (|y| < 2^-6) the multiple of 2^-9
  /// nearest (even), normals the f32 bits rounded to 3 mantissa bits (to
  /// nearest even: add 0x7ffff plus the kept lowest bit, shift 20; a carry
  /// moves into the exponent) rebiased from 127 to 7.
  Value e4m3Codes(OpBuilder &b, Value y, int64_t n) {
    Location l = loc();
    Type vi32 = VectorType::get({n}, i32());
    Value bits = arith::BitcastOp::create(b, l, vi32, y);
    Value sign = arith::AndIOp::create(b, l, arith::ShRUIOp::create(b, l, bits, splatI32(b, n, 24)),
                                       splatI32(b, n, 0x80));
    Value absBits = arith::AndIOp::create(b, l, bits, splatI32(b, n, 0x7fffffff));
    Value a = arith::BitcastOp::create(b, l, y.getType(), absBits);
    Value lowestKept = arith::AndIOp::create(
        b, l, arith::ShRUIOp::create(b, l, absBits, splatI32(b, n, 20)), splatI32(b, n, 1));
    Value rounded = arith::AddIOp::create(
        b, l, absBits, arith::AddIOp::create(b, l, lowestKept, splatI32(b, n, 0x7ffff)));
    Value normal = arith::SubIOp::create(
        b, l, arith::ShRUIOp::create(b, l, rounded, splatI32(b, n, 20)), splatI32(b, n, 120 << 3));
    // Clamped below 2^-6 first, so that the lanes it does not pick stay in
    // range of the conversion (no poison).
    const float minNormal = 0x1p-6f;
    Value tiny = arith::MinNumFOp::create(b, l, a, splatF32(b, n, minNormal));
    Value subnormal = arith::FPToSIOp::create(
        b, l, vi32,
        math::RoundEvenOp::create(b, l, arith::MulFOp::create(b, l, tiny, splatF32(b, n, 512.0f))));
    auto cmp = [&](arith::CmpFPredicate p, Value x, Value c) {
      return arith::CmpFOp::create(b, l, p, x, c);
    };
    Value code = arith::SelectOp::create(
        b, l, cmp(arith::CmpFPredicate::OLT, a, splatF32(b, n, minNormal)), subnormal, normal);
    code = arith::SelectOp::create(b, l, cmp(arith::CmpFPredicate::OGE, a, splatF32(b, n, 448.0f)),
                                   splatI32(b, n, 0x7e), code);
    code = arith::SelectOp::create(b, l, cmp(arith::CmpFPredicate::UNO, y, y), splatI32(b, n, 0x7f),
                                   code);
    return arith::OrIOp::create(b, l, code, sign);
  }

  /// Row `src` of `rowsIn` (dim values of the input type) into row `dst` of
  /// `pool` (and `scales`), as KvCache::storeRow stores it.
  void writeRow(OpBuilder &b, Value rowsIn, Value src, Value pool, Value scales, Value dst,
                int64_t dim) {
    Location l = loc();
    Value c0 = cIdx(b, 0);
    Type input = cast<MemRefType>(rowsIn.getType()).getElementType();
    Value in =
        vector::LoadOp::create(b, l, VectorType::get({dim}, input), rowsIn, ValueRange{src, c0});
    if (!storage.quantized) {
      vector::StoreOp::create(b, l, in, pool, ValueRange{dst, c0});
      return;
    }
    auto vf32 = VectorType::get({dim}, f32());
    Value x = input.isF32() ? in : arith::ExtFOp::create(b, l, vf32, in).getResult();
    const float qmax = storage.nibbles ? 7.0f : storage.fp8 ? 448.0f : 127.0f;
    // Per group: scale = max|x| / qmax (a max-reduction is exact in any
    // order; starting at 0 it also ignores NaN lanes, as std::max(amax, |x|)
    // does), stored, and spread over the group's lanes.
    const int64_t groups = groupsOf(dim), size = dim / groups;
    Value absX = math::AbsFOp::create(b, l, x);
    Value laneScales = splatF32(b, dim, 0.0f);
    for (int64_t g = 0; g < groups; ++g) {
      Value part =
          groups == 1
              ? absX
              : vector::ExtractStridedSliceOp::create(b, l, absX, ArrayRef<int64_t>{g * size},
                                                      ArrayRef<int64_t>{size}, ArrayRef<int64_t>{1})
                    .getResult();
      Value amax =
          vector::ReductionOp::create(b, l, vector::CombiningKind::MAXNUMF, part,
                                      arith::ConstantOp::create(b, l, b.getF32FloatAttr(0.0f)));
      Value scale = arith::DivFOp::create(b, l, amax,
                                          arith::ConstantOp::create(b, l, b.getF32FloatAttr(qmax)));
      if (storage.scaleBytes == 2) {
        // f16 scales: the stored (rounded) scale quantizes, so that codes
        // times it are the values read back; clamped to the largest f16
        // so that it never becomes infinite.
        scale = arith::MinNumFOp::create(
            b, l, scale, arith::ConstantOp::create(b, l, b.getF32FloatAttr(65504.0f)));
        Value half = arith::TruncFOp::create(b, l, Float16Type::get(ctx), scale);
        memref::StoreOp::create(b, l, half, scales, ValueRange{dst, cIdx(b, g)});
        scale = arith::ExtFOp::create(b, l, f32(), half);
      } else {
        memref::StoreOp::create(b, l, scale, scales, ValueRange{dst, cIdx(b, g)});
      }
      Value spread = vector::BroadcastOp::create(b, l, VectorType::get({size}, f32()), scale);
      laneScales = groups == 1 ? spread
                               : vector::InsertStridedSliceOp::create(b, l, spread, laneScales,
                                                                      ArrayRef<int64_t>{g * size},
                                                                      ArrayRef<int64_t>{1})
                                     .getResult();
    }
    Value positive =
        arith::CmpFOp::create(b, l, arith::CmpFPredicate::OGT, laneScales, splatF32(b, dim, 0.0f));
    Value y = arith::DivFOp::create(b, l, x, laneScales);
    auto vi8 = VectorType::get({dim}, i8());
    Value codes;
    if (storage.fp8) {
      Value e4m3 = e4m3Codes(b, y, dim);
      e4m3 = arith::SelectOp::create(b, l, positive, e4m3, splatI32(b, dim, 0));
      codes = arith::TruncIOp::create(b, l, vi8, e4m3);
    } else {
      // round(y) half away from zero, clamped; a NaN (only from infinite
      // input) stores 0, as int(std::lround(NaN)) is on x86-64.
      Value q = math::RoundOp::create(b, l, y);
      q = arith::MinNumFOp::create(b, l, arith::MaxNumFOp::create(b, l, q, splatF32(b, dim, -qmax)),
                                   splatF32(b, dim, qmax));
      Value nan = arith::CmpFOp::create(b, l, arith::CmpFPredicate::UNO, y, y);
      Value keep = arith::AndIOp::create(
          b, l, positive,
          arith::XOrIOp::create(
              b, l, nan, splat(b, VectorType::get({dim}, b.getI1Type()), b.getBoolAttr(true))));
      q = arith::SelectOp::create(b, l, keep, q, splatF32(b, dim, 0.0f));
      codes = arith::FPToSIOp::create(b, l, vi8, q);
    }
    if (storage.nibbles) {
      // Element 2i in the low nibble of byte i, 2i + 1 in the high one.
      auto halves = vector::DeinterleaveOp::create(b, l, codes);
      auto vHalf = VectorType::get({dim / 2}, i8());
      Value low =
          arith::AndIOp::create(b, l, halves.getRes1(), splat(b, vHalf, b.getI8IntegerAttr(0x0f)));
      Value high =
          arith::ShLIOp::create(b, l, halves.getRes2(), splat(b, vHalf, b.getI8IntegerAttr(4)));
      codes = arith::OrIOp::create(b, l, low, high);
    }
    vector::StoreOp::create(b, l, codes, pool, ValueRange{dst, c0});
  }

  void buildAppend(OpBuilder &mb, Type input) {
    SmallVector<Type> types = {rowsOf(D, input), rowsOf(Dv, input)};
    types.append(poolTypes());
    types.push_back(rowsOf(2, i32()));
    SmallVector<StringRef> names = {"k_new", "v_new"};
    names.append(poolNames());
    names.push_back("rows");
    std::string typeName;
    llvm::raw_string_ostream(typeName) << input;
    auto [fn, b] = createFunc(mb, attn::cpuAppendName(kernel.getSymName(), typeName), types, names);
    auto arg = [&](unsigned i) { return fn.getArgument(i); };
    Value kScales = storage.quantized ? arg(4) : Value(),
          vScales = storage.quantized ? arg(5) : Value();
    forEachPair(b, arg(fn.getNumArguments() - 1), [&](OpBuilder &b, Value src, Value dst) {
      writeRow(b, arg(0), src, arg(2), kScales, dst, D);
      writeRow(b, arg(1), src, arg(3), vScales, dst, Dv);
    });
    func::ReturnOp::create(b, loc());
  }

  void buildMove(OpBuilder &mb) {
    SmallVector<Type> types = poolTypes();
    types.push_back(rowsOf(2, i32()));
    SmallVector<StringRef> names = poolNames();
    names.push_back("moves");
    auto [fn, b] = createFunc(mb, attn::cpuMoveName(kernel.getSymName()), types, names);
    auto arg = [&](unsigned i) { return fn.getArgument(i); };
    forEachPair(b, arg(fn.getNumArguments() - 1), [&](OpBuilder &b, Value from, Value to) {
      copyRow(b, arg(0), storedWidth(D), from, to);
      copyRow(b, arg(1), storedWidth(Dv), from, to);
      if (storage.quantized) {
        copyRow(b, arg(2), groupsOf(D), from, to);
        copyRow(b, arg(3), groupsOf(Dv), from, to);
      }
    });
    func::ReturnOp::create(b, loc());
  }
};

} // namespace

void mlir::attn::cpu::buildCacheUpdateFunctions(KernelOp kernel, int64_t D, int64_t Dv,
                                                Type elemType, const CacheStorage &storage,
                                                OpBuilder &moduleBuilder) {
  CacheUpdateLowering(kernel, D, Dv, elemType, storage).build(moduleBuilder);
}
