//===- AttnToCPU.cpp - attn.kernel -> flash-tiled scf/vector --------------===//
//
// Lowers each attn.kernel to a work-item function in the flash form:
//
//   item(b, h, qt):                       // rows r0 = qt*Tq .. r0+Tq
//     Qt[d][i] = scale * Q[b,h,r0+i,d]    // transposed once per item
//     [kLo, kHi) = kvRange(mask, qmin, qmax)
//     m = -inf, l = 0, acc = 0            // m, l: vector<Tq>; acc: Tq x Dv
//     for kt in [kLo, kHi) step Tk:       // iter_args(m, l)
//       s_j = sum_d K[kt+j][d] * Qt[d]    // j < Tk; lanes = query rows
//       t_j = mask_j ? score(s_j) : -inf  // regions cloned on vectors
//       m' = max(m, max_j t_j); alpha = exp(m - m'); p_j = exp(t_j - m')
//       l = alpha*l + sum_j p_j; acc[i] = alpha[i]*acc[i] + sum_j p_j[i]*V[kt+j]
//     O[r0+i] = acc[i] / l[i]; LSE = m + log(l)
//
// Scores are kept transposed (one vector<Tq> per key) so that Q·K^T needs no
// transpose of K: each K element is broadcast against a column of Qt, which
// x86 folds into an FMA with a broadcast memory operand, and the softmax
// reductions over keys become elementwise max/add across the Tk vectors.
//
//===----------------------------------------------------------------------===//

#include "attnc/Conversion/AttnToCPU.h"

#include "CacheUpdateFunctions.h"

#include "attnc/Analysis/CacheStorage.h"
#include "attnc/Analysis/KvRange.h"
#include "attnc/Analysis/TileBounds.h"

#include "attnc/Dialect/Attn/IR/AttnDialect.h"
#include "attnc/Dialect/Attn/IR/AttnOps.h"

#include "mlir/Dialect/Arith/IR/Arith.h"
#include "mlir/Dialect/Func/IR/FuncOps.h"
#include "mlir/Dialect/Math/IR/Math.h"
#include "mlir/Dialect/MemRef/IR/MemRef.h"
#include "mlir/Dialect/SCF/IR/SCF.h"
#include "mlir/Dialect/Vector/IR/VectorOps.h"
#include "mlir/Dialect/X86Vector/X86VectorDialect.h"
#include "mlir/IR/IRMapping.h"
#include "mlir/IR/OpDefinition.h"

#include <cmath>
#include <limits>
#include <numeric>

namespace mlir {
namespace attn {
#define GEN_PASS_DEF_ATTNTOCPU
#include "attnc/Conversion/Passes.h.inc"
} // namespace attn
} // namespace mlir

using namespace mlir;

namespace {

//===----------------------------------------------------------------------===//
// Kernel lowering
//===----------------------------------------------------------------------===//

class KernelLowering {
public:
  KernelLowering(attn::KernelOp kernel, int64_t D, int64_t Dv, Type elemType, int64_t Tq,
                 int64_t Tk, bool kvCache, bool bf16Dot)
      : kernel(kernel), attention(kernel.getAttention()), ctx(kernel.getContext()), D(D), Dv(Dv),
        elemType(elemType), Tq(Tq), Tk(Tk), kvCache(kvCache), bf16Dot(bf16Dot),
        itemName(attn::cpuItemName(kernel.getSymName())) {}

  LogicalResult run(OpBuilder &moduleBuilder) {
    if (!attention)
      return kernel.emitError("attn-to-cpu: kernel has no attn.attention");
    if (kvCache) {
      auto cs = attn::analyzeCacheStorage(kernel, "attn-to-cpu", elemType, D, Dv);
      if (failed(cs))
        return failure();
      quantized = cs->quantized;
      nibbles = cs->nibbles;
      fp8 = cs->fp8;
      quantGroup = cs->group;
      if (quantized)
        kvElem = cs->pageElement;
      slotMass = cs->slotMass;
      cacheKernel = true;
      storage = *cs;
    }
    for (Operation &op : kernel.getBody().front())
      if (!isa<attn::AttentionOp>(op) && !isPure(&op))
        return op.emitError("attn-to-cpu: kernel body op has side effects");
    func::FuncOp item = buildItem(moduleBuilder);
    if (!item)
      return failure();
    if (itemOnly)
      return success();
    buildEntry(moduleBuilder, item);
    // The cache's own writes (append, move) on the same target.
    if (cacheKernel)
      attn::cpu::buildCacheUpdateFunctions(kernel, D, Dv, elemType, storage, moduleBuilder);
    // The decode twins (AttnToCPU.h): the same item on smaller tiles.
    for (const attn::CpuDecodeTwin &t : attn::kCpuDecodeTwins) {
      if (!cacheKernel || Tq <= t.tileQ)
        continue;
      KernelLowering twin(kernel, D, Dv, elemType, t.tileQ, t.tileK, kvCache, bf16Dot);
      twin.itemName = attn::cpuDecodeItemName(kernel.getSymName(), t.tileQ);
      twin.itemOnly = true;
      if (failed(twin.run(moduleBuilder)))
        return failure();
    }
    return success();
  }

private:
  Type f32() { return Float32Type::get(ctx); }
  VectorType vecOf(Type elem) { return VectorType::get({Tq}, elem); }
  MemRefType ioType(int64_t lastDim, Type elem) {
    return MemRefType::get(
        {ShapedType::kDynamic, ShapedType::kDynamic, ShapedType::kDynamic, lastDim}, elem);
  }

  /// Q, K, V, O, LSE, q_offset, then the kernel's parameters; a kernel over
  /// a KV cache (`attn.cache`) takes K and V as page pools [pages, Hkv, P,
  /// D] and then, per sequence b: its page table kv_pages[b, :], the
  /// logical position of each slot kv_pos[b, :] (-1: not retained), its
  /// slot count kv_len[b] and the position of its first query row q_pos[b];
  /// quantized pages their scales; budget retention (slotMass) the mass
  /// table kv_mass[b, slot] (f32, added to) and mass_rows (i32: the last
  /// mass_rows queries of each head count, SnapKV's observation window).
  SmallVector<Type> commonArgTypes() {
    Type kv = kvElementType();
    SmallVector<Type> types = {
        ioType(D, elemType),
        ioType(nibbles ? D / 2 : D, kv),
        ioType(nibbles ? Dv / 2 : Dv, kv),
        ioType(Dv, f32()),
        MemRefType::get({ShapedType::kDynamic, ShapedType::kDynamic, ShapedType::kDynamic}, f32()),
        IntegerType::get(ctx, 32)};
    for (Type t : kernel.getArgumentTypes()) {
      if (auto tt = dyn_cast<RankedTensorType>(t))
        types.push_back(MemRefType::get(tt.getShape(), tt.getElementType()));
      else
        types.push_back(t);
    }
    if (cacheKernel) {
      Type i32 = IntegerType::get(ctx, 32);
      auto m2 = MemRefType::get({ShapedType::kDynamic, ShapedType::kDynamic}, i32);
      auto m1 = MemRefType::get({ShapedType::kDynamic}, i32);
      types.append({m2, m2, m1, m1});
      if (quantized) // K and V scales [pages, Hkv, P, groups], f32 or f16
        types.append(
            2, MemRefType::get(SmallVector<int64_t>(4, ShapedType::kDynamic),
                               storage.scaleBytes == 2 ? Type(Float16Type::get(ctx)) : f32()));
      if (slotMass)
        types.append({MemRefType::get({ShapedType::kDynamic, ShapedType::kDynamic}, f32()), i32});
    }
    return types;
  }

  void setArgNames(func::FuncOp fn) {
    static const char *names[] = {"Q", "K", "V", "O", "LSE", "q_offset"};
    for (unsigned i = 0; i < 6; ++i)
      fn.setArgAttr(i, "attn.name", StringAttr::get(ctx, names[i]));
    for (unsigned i = 0, e = kernel.getNumArguments(); i < e; ++i)
      fn.setArgAttr(6 + i, "attn.name", StringAttr::get(ctx, kernel.getParamName(i)));
    if (cacheKernel) {
      SmallVector<const char *> cacheNames = {"kv_pages", "kv_pos", "kv_len", "q_pos"};
      if (quantized)
        cacheNames.append({"k_scale", "v_scale"});
      if (slotMass)
        cacheNames.append({"kv_mass", "mass_rows"});
      for (auto [i, name] : llvm::enumerate(cacheNames))
        fn.setArgAttr(6 + kernel.getNumArguments() + i, "attn.name", StringAttr::get(ctx, name));
    }
  }

  Value cIdx(OpBuilder &b, int64_t v) { return arith::ConstantIndexOp::create(b, loc(), v); }
  Value cF32(OpBuilder &b, float v) {
    return arith::ConstantFloatOp::create(b, loc(), cast<FloatType>(f32()), APFloat(v));
  }
  Value splatF32(OpBuilder &b, float v) {
    return arith::ConstantOp::create(b, loc(), DenseElementsAttr::get(vecOf(f32()), v));
  }
  Value bcast(OpBuilder &b, Value scalar) {
    return vector::BroadcastOp::create(b, loc(), vecOf(scalar.getType()), scalar);
  }
  Value toF32(OpBuilder &b, Value v) {
    Type t = v.getType();
    Type elem = getElementTypeOrSelf(t);
    if (elem.isF32())
      return v;
    Type to =
        isa<VectorType>(t) ? Type(VectorType::get(cast<VectorType>(t).getShape(), f32())) : f32();
    if (isa<IntegerType>(elem)) // quantized KV (int8)
      return arith::SIToFPOp::create(b, loc(), to, v);
    return arith::ExtFOp::create(b, loc(), to, v);
  }
  Location loc() { return kernel.getLoc(); }

  /// A K/V element (or vector) as f32: fp8 e4m3 bytes decoded through f16
  /// (LLVM has no fp8 type). The byte's exponent and mantissa bits shifted
  /// into f16's (sign bit 7 -> 15, bits 0-6 -> 7-13) are the f16
  /// 2^(e - 15) (1 + m / 8), or m 2^-17 for e = 0 (an f16 subnormal, which
  /// the f16 -> f32 conversion keeps exact), so times 2^8 they are the
  /// e4m3 value, with no branch for subnormals: 9 ops (two bitcasts)
  /// against 18 for the f32 bits built by hand (bench/NOTES.md, CPU session 12). Other
  /// types as toF32 (int8 / int4 integers, bf16, f16).
  Value kvToF32(OpBuilder &b, Value v) {
    if (!fp8)
      return toF32(b, v);
    Location l = loc();
    auto shaped = dyn_cast<VectorType>(v.getType());
    auto like = [&](Type elem) -> Type {
      return shaped ? Type(VectorType::get(shaped.getShape(), elem)) : elem;
    };
    Type i16T = like(b.getI16Type()), f16T = like(b.getF16Type()), f32T = like(f32());
    auto c = [&](int16_t x) -> Value {
      if (shaped)
        return arith::ConstantOp::create(
            b, l, DenseElementsAttr::get(cast<ShapedType>(i16T), b.getI16IntegerAttr(x)));
      return arith::ConstantIntOp::create(b, l, x, 16);
    };
    Value x = arith::ExtUIOp::create(b, l, i16T, v);
    Value sign = arith::ShLIOp::create(b, l, arith::AndIOp::create(b, l, x, c(0x80)), c(8));
    Value magnitude = arith::ShLIOp::create(b, l, arith::AndIOp::create(b, l, x, c(0x7f)), c(7));
    Value half = arith::BitcastOp::create(b, l, f16T, arith::OrIOp::create(b, l, sign, magnitude));
    Value scale = shaped ? arith::ConstantOp::create(
                               b, l, DenseElementsAttr::get(cast<ShapedType>(f32T), 256.0f))
                               .getResult()
                         : cF32(b, 256.0f).getDefiningOp()->getResult(0);
    return arith::MulFOp::create(b, l, arith::ExtFOp::create(b, l, f32T, half), scale);
  }

  /// exp(x) on a vector of f32 (any width) as an inline polynomial (Cephes expf: n =
  /// round(x log2 e), r = x - n ln 2 in two parts, degree-6 polynomial,
  /// times 2^n built in the exponent bits). LLVM would otherwise scalarize
  /// math.exp into one libm call per lane. Error: about 1 ulp. Inputs below
  /// -87 give exactly 0 (so exp(-inf) = 0), above 88 are clamped to 88.
  Value vexp(OpBuilder &b, Value x) {
    Location l = loc();
    auto vf32 = cast<VectorType>(x.getType());
    auto splatF32 = [&](OpBuilder &b, float v) -> Value {
      return arith::ConstantOp::create(b, l, DenseElementsAttr::get(vf32, v));
    };
    auto fma = [&](Value a, Value c, Value d) { return vector::FMAOp::create(b, l, a, c, d); };
    Value xc = arith::MinimumFOp::create(b, l, x, splatF32(b, 88.0f));
    xc = arith::MaximumFOp::create(b, l, xc, splatF32(b, -87.0f));
    Value fx =
        math::FloorOp::create(b, l, fma(xc, splatF32(b, 1.44269504088896341f), splatF32(b, 0.5f)));
    Value r = fma(fx, splatF32(b, -0.693359375f), xc);
    r = fma(fx, splatF32(b, 2.12194440e-4f), r);
    Value y = splatF32(b, 1.9875691500e-4f);
    for (float c :
         {1.3981999507e-3f, 8.3334519073e-3f, 4.1665795894e-2f, 1.6666665459e-1f, 5.0000001201e-1f})
      y = fma(y, r, splatF32(b, c));
    Value r2 = arith::MulFOp::create(b, l, r, r);
    y = fma(y, r2, arith::AddFOp::create(b, l, r, splatF32(b, 1.0f)));
    Type vi32 = vf32.clone(b.getI32Type());
    Value n = arith::FPToSIOp::create(b, l, vi32, fx);
    Value c127 = arith::ConstantOp::create(
        b, l, DenseElementsAttr::get(cast<ShapedType>(vi32), b.getI32IntegerAttr(127)));
    Value c23 = arith::ConstantOp::create(
        b, l, DenseElementsAttr::get(cast<ShapedType>(vi32), b.getI32IntegerAttr(23)));
    Value bits = arith::ShLIOp::create(b, l, arith::AddIOp::create(b, l, n, c127), c23);
    Value pow2 = arith::BitcastOp::create(b, l, vf32, bits);
    Value res = arith::MulFOp::create(b, l, y, pow2);
    Value tiny = arith::CmpFOp::create(b, l, arith::CmpFPredicate::OLT, x, splatF32(b, -87.0f));
    return arith::SelectOp::create(b, l, tiny, splatF32(b, 0.0f), res);
  }

  /// Slots in a vector of the mass pass.
  static constexpr int64_t kMassLanes = 16;
  /// The mass pass of a budget kernel (softmax): kv_mass[row, slot] += the
  /// attention mass its counted rows put on each slot of [lo, hi), from the
  /// scores the first pass kept (`scores[i, slot]`, row i), with the rows'
  /// final max `ref` and 1 / sum `inv` (vectors over rows; `counted`: the
  /// rows that count). kMassLanes slots at a time, a row's exponentials as
  /// one vector (the tiles' vectors hold the rows: Tq lanes of 16 at a
  /// decode step's 4 rows).
  void emitMassPass(OpBuilder &b, Location l, Value scores, Value mass, Value row, Value lo,
                    Value hi, Value ref, Value inv, Value counted) {
    auto vt = VectorType::get({kMassLanes}, f32());
    Value zeros = arith::ConstantOp::create(b, l, DenseElementsAttr::get(vt, 0.0f));
    scf::ForOp::create(
        b, l, lo, hi, cIdx(b, kMassLanes), ValueRange{},
        [&](OpBuilder &b, Location l, Value c, ValueRange) {
          Value acc = zeros;
          for (int64_t i = 0; i < Tq; ++i) {
            auto lane = [&](Value v) { return vector::ExtractOp::create(b, l, v, i).getResult(); };
            Value t = vector::LoadOp::create(b, l, vt, scores, ValueRange{cIdx(b, i), c});
            Value p = arith::MulFOp::create(
                b, l,
                vexp(b, arith::SubFOp::create(b, l, t,
                                              vector::BroadcastOp::create(b, l, vt, lane(ref)))),
                vector::BroadcastOp::create(b, l, vt, lane(inv)));
            acc = arith::SelectOp::create(b, l, lane(counted), arith::AddFOp::create(b, l, acc, p),
                                          acc);
          }
          // The last chunk stops at hi.
          Value n =
              arith::MinSIOp::create(b, l, cIdx(b, kMassLanes), arith::SubIOp::create(b, l, hi, c));
          Value in = vector::CreateMaskOp::create(
              b, l, VectorType::get({kMassLanes}, b.getI1Type()), ValueRange{n});
          Value old = vector::MaskedLoadOp::create(b, l, vt, mass, ValueRange{row, c}, in, zeros);
          vector::MaskedStoreOp::create(b, l, mass, ValueRange{row, c}, in,
                                        arith::AddFOp::create(b, l, old, acc));
          scf::YieldOp::create(b, l);
        });
  }

  /// How a region is cloned: `hoisted` holds values already vectorized once
  /// per item (k-invariant ops, e.g. doc[q]); in `hoistOnly` mode only the
  /// ops that do not depend on the block arguments `kDepArgs` are cloned,
  /// into `hoisted`. `scalarArgs` gives scalar versions of lane-uniform
  /// block arguments (b, h, k); ops computed from uniform values only also
  /// get a scalar version, and with `scalarLoads` (every key of the tile
  /// exists) a load at uniform indices is one scalar load + broadcast
  /// instead of a gather.
  struct RegionCtx {
    IRMapping *hoisted = nullptr;
    bool hoistOnly = false;
    SmallVector<unsigned> kDepArgs;
    SmallVector<Value> scalarArgs;
    bool scalarLoads = false;
  };

  /// Clones the ops of `block` onto vector<Tq> values. `args` are the
  /// vectorized block arguments; values defined outside the block are looked
  /// up in `outer` (scalars, broadcast on use; tensors, as memrefs).
  /// `laneValid` masks gathers so lanes outside the problem never read
  /// memory. Returns the vectorized yielded value.
  FailureOr<Value> vectorizeRegion(OpBuilder &b, Block &block, ArrayRef<Value> args,
                                   IRMapping &outer, Value laneValid, const RegionCtx &rc) {
    IRMapping local, scal;
    llvm::DenseSet<Value> kDep;
    for (auto [i, arg] : llvm::enumerate(block.getArguments())) {
      if (rc.hoistOnly) {
        if (llvm::is_contained(rc.kDepArgs, unsigned(i)))
          kDep.insert(arg);
        else if (args[i])
          local.map(arg, args[i]);
        continue;
      }
      local.map(arg, args[i]);
      if (i < rc.scalarArgs.size() && rc.scalarArgs[i])
        scal.map(arg, rc.scalarArgs[i]);
    }
    auto get = [&](Value v) -> Value {
      if (Value m = local.lookupOrNull(v))
        return m;
      if (rc.hoisted && !rc.hoistOnly)
        if (Value m = rc.hoisted->lookupOrNull(v)) {
          local.map(v, m);
          return m;
        }
      Value s = outer.lookup(v);
      if (isa<MemRefType>(s.getType()))
        return s;
      Value vec = bcast(b, s);
      local.map(v, vec);
      return vec;
    };
    // Scalar version of a lane-uniform value, or null.
    auto getScalar = [&](Value v) -> Value {
      if (Value m = scal.lookupOrNull(v))
        return m;
      if (v.getParentBlock() != &block)
        if (Value s = outer.lookupOrNull(v); s && !isa<MemRefType>(s.getType()))
          return s;
      return Value();
    };
    auto record = [&](Operation &op) {
      if (rc.hoistOnly && rc.hoisted)
        for (Value r : op.getResults())
          rc.hoisted->map(r, local.lookup(r));
    };
    for (Operation &op : block) {
      if (auto yield = dyn_cast<attn::YieldOp>(op))
        return rc.hoistOnly ? Value() : get(yield.getValue());
      if (rc.hoistOnly) {
        if (llvm::any_of(op.getOperands(), [&](Value v) { return kDep.contains(v); })) {
          for (Value r : op.getResults())
            kDep.insert(r);
          continue;
        }
      } else if (rc.hoisted && op.getNumResults() > 0 &&
                 llvm::all_of(op.getResults(), [&](Value r) { return rc.hoisted->contains(r); }) &&
                 !isa<arith::ConstantOp>(op)) {
        continue; // computed once per item
      }
      if (auto c = dyn_cast<arith::ConstantOp>(op)) {
        auto attr = dyn_cast<TypedAttr>(c.getValue());
        if (!attr || isa<ShapedType>(attr.getType()))
          return op.emitError("attn-to-cpu: unsupported constant"), failure();
        local.map(c.getResult(),
                  arith::ConstantOp::create(b, op.getLoc(),
                                            DenseElementsAttr::get(vecOf(attr.getType()), attr)));
        if (!rc.hoistOnly)
          scal.map(c.getResult(), b.clone(op)->getResult(0));
        record(op);
        continue;
      }
      if (auto load = dyn_cast<attn::LoadOp>(op)) {
        auto memref = cast<TypedValue<MemRefType>>(get(load.getTensor()));
        MemRefType mt = memref.getType();
        Type i32 = b.getI32Type();
        if (mt.getRank() == 0) {
          Value s = memref::LoadOp::create(b, op.getLoc(), memref, ValueRange{});
          local.map(load.getResult(), bcast(b, s));
          if (!rc.hoistOnly)
            scal.map(load.getResult(), s);
          record(op);
          continue;
        }
        if (rc.scalarLoads && !rc.hoistOnly &&
            llvm::all_of(load.getIndices(), [&](Value v) { return bool(getScalar(v)); })) {
          // Every lane reads the same element (indices from b, h, k and
          // invariants only), and the tile's keys all exist.
          SmallVector<Value> idx;
          for (Value v : load.getIndices())
            idx.push_back(
                arith::IndexCastOp::create(b, op.getLoc(), b.getIndexType(), getScalar(v)));
          Value s = memref::LoadOp::create(b, op.getLoc(), memref, idx);
          scal.map(load.getResult(), s);
          local.map(load.getResult(), bcast(b, s));
          continue;
        }
        // Row-major linear index over the (collapsed) tensor.
        Value linear;
        for (auto [d, idx] : llvm::enumerate(load.getIndices())) {
          Value iv = get(idx);
          if (!linear) {
            linear = iv;
            continue;
          }
          Value dim = memref::DimOp::create(b, op.getLoc(), memref, d);
          Value dim32 = arith::IndexCastOp::create(b, op.getLoc(), i32, dim);
          linear = arith::AddIOp::create(
              b, op.getLoc(), arith::MulIOp::create(b, op.getLoc(), linear, bcast(b, dim32)), iv);
        }
        Value flat = memref;
        if (mt.getRank() > 1) {
          ReassociationIndices all;
          for (int64_t d = 0; d < mt.getRank(); ++d)
            all.push_back(d);
          flat = memref::CollapseShapeOp::create(b, op.getLoc(), memref,
                                                 ArrayRef<ReassociationIndices>{all});
        }
        Type elem = mt.getElementType();
        Value pass = arith::ConstantOp::create(
            b, op.getLoc(), DenseElementsAttr::get(vecOf(elem), b.getZeroAttr(elem)));
        Value g = vector::GatherOp::create(b, op.getLoc(), vecOf(elem), flat,
                                           ValueRange{cIdx(b, 0)}, linear, laneValid, pass);
        local.map(load.getResult(), g);
        record(op);
        continue;
      }
      if (op.getNumRegions() == 0 && OpTrait::hasElementwiseMappableTraits(&op) &&
          isa<arith::ArithDialect, math::MathDialect>(op.getDialect())) {
        // Elementwise ops keep their attributes and properties (predicates,
        // fastmath and overflow flags); only the types change.
        for (Value v : op.getOperands())
          (void)get(v);
        Operation *clone = b.clone(op, local);
        for (Value r : clone->getResults())
          r.setType(vecOf(r.getType()));
        for (auto [from, to] : llvm::zip(op.getResults(), clone->getResults()))
          local.map(from, to);
        if (!rc.hoistOnly &&
            llvm::all_of(op.getOperands(), [&](Value v) { return bool(getScalar(v)); })) {
          IRMapping sm;
          for (Value v : op.getOperands())
            sm.map(v, getScalar(v));
          Operation *sc = b.clone(op, sm);
          for (auto [from, to] : llvm::zip(op.getResults(), sc->getResults()))
            scal.map(from, to);
        }
        record(op);
        continue;
      }
      return op.emitError("attn-to-cpu: cannot vectorize '") << op.getName() << "'", failure();
    }
    return failure();
  }

  func::FuncOp buildItem(OpBuilder &mb) {
    SmallVector<Type> types = commonArgTypes();
    Type idx = IndexType::get(ctx);
    types.append({idx, idx, idx});
    auto fnType = FunctionType::get(ctx, types, {});
    auto fn = func::FuncOp::create(mb, loc(), itemName, fnType);
    setArgNames(fn);
    unsigned nParams = kernel.getNumArguments();
    Block *entry = fn.addEntryBlock();
    OpBuilder b = OpBuilder::atBlockBegin(entry);
    Value Q = fn.getArgument(0), K = fn.getArgument(1), V = fn.getArgument(2),
          O = fn.getArgument(3), LSE = fn.getArgument(4), qOffset = fn.getArgument(5);
    const unsigned nCache = cacheKernel ? 4 + (quantized ? 2 : 0) + (slotMass ? 2 : 0) : 0;
    Value bIdx = fn.getArgument(6 + nParams + nCache), hIdx = fn.getArgument(7 + nParams + nCache),
          qTile = fn.getArgument(8 + nParams + nCache);
    Value kvPages, kvPos, kvLen, qPosOf, kScale, vScale; // the KV-cache ABI's tables
    if (cacheKernel) {
      kvPages = fn.getArgument(6 + nParams);
      kvPos = fn.getArgument(7 + nParams);
      kvLen = fn.getArgument(8 + nParams);
      qPosOf = fn.getArgument(9 + nParams);
    }
    if (quantized) {
      kScale = fn.getArgument(10 + nParams);
      vScale = fn.getArgument(11 + nParams);
    }
    Value kvMass, massRows; // budget retention: the eviction score's output
    if (slotMass) {
      kvMass = fn.getArgument(6 + nParams + nCache - 2);
      massRows = fn.getArgument(6 + nParams + nCache - 1);
    }
    Type i32 = b.getI32Type(), i64 = b.getI64Type();
    Location l = loc();

    // Kernel parameters and body values (constants, the scale).
    IRMapping outer;
    for (unsigned i = 0; i < nParams; ++i)
      outer.map(kernel.getArgument(i), fn.getArgument(6 + i));
    for (Operation &op : kernel.getBody().front())
      if (!isa<attn::AttentionOp>(op))
        b.clone(op, outer);

    Value c0 = cIdx(b, 0), c1 = cIdx(b, 1);
    Value hq = memref::DimOp::create(b, l, Q, 1), nq = memref::DimOp::create(b, l, Q, 2);
    Value hkv = memref::DimOp::create(b, l, K, 1), nk = memref::DimOp::create(b, l, K, 2);
    // Over a KV cache the pools are [pages, 1, P, D] (a page is one KV
    // head's), the tables have a row per (sequence, KV head) and q_pos one
    // per sequence: Hkv = rows / B; P is the pools' third extent (the
    // launch checks it against the policy's page size). The keys' page
    // lookups use the policy's size where it has one: a constant, so slot /
    // P and slot % P are a shift and a mask, not a 64-bit division per key
    // (decode steps 1.1-1.2x faster on one core). The prefetch's lookups
    // keep the runtime extent: with the constant there too, bf16 steps were
    // 15% slower than with neither (measured, bench/NOTES.md session 13;
    // not understood: the divisions' latency may space the prefetches out).
    Value pageSize, prefetchPageSize;
    if (cacheKernel) {
      pageSize = storage.pageSize ? cIdx(b, storage.pageSize) : nk;
      prefetchPageSize = nk;
      hkv = arith::DivUIOp::create(b, l, memref::DimOp::create(b, l, kvLen, 0),
                                   memref::DimOp::create(b, l, qPosOf, 0));
      qOffset = memref::LoadOp::create(b, l, qPosOf, ValueRange{bIdx});
    }
    const bool interleaved = attention.getHeads() == attn::HeadMapping::Interleaved;
    Value group = arith::DivUIOp::create(b, l, hq, hkv);
    Value kvh = interleaved ? arith::RemUIOp::create(b, l, hIdx, hkv).getResult()
                            : arith::DivUIOp::create(b, l, hIdx, group).getResult();
    // Over a KV cache the item's h is a KV head and its rows pack the G =
    // Hq / Hkv query heads that read it (packed row r: head g = r / Nq,
    // query r % Nq): decode (Nq = 1..8) fills the vector lanes and each K/V
    // row is read once for the group.
    Value packedRows = nq, tableRow, poolHead = kvh; // poolHead: K/V's head index
    if (cacheKernel) {
      kvh = hIdx;
      packedRows = arith::MulIOp::create(b, l, nq, group);
      // This (sequence, KV head)'s table row and slot count.
      tableRow = arith::AddIOp::create(b, l, arith::MulIOp::create(b, l, bIdx, hkv), kvh);
      nk = arith::IndexCastOp::create(b, l, b.getIndexType(),
                                      memref::LoadOp::create(b, l, kvLen, ValueRange{tableRow}));
      poolHead = c0; // pools are [pages, 1, P, D]
    }
    // The query head and row of packed row r (index values).
    auto headRow = [&](OpBuilder &b, Value r) -> std::pair<Value, Value> {
      if (!cacheKernel)
        return {hIdx, r};
      Value g = arith::DivUIOp::create(b, l, r, nq);
      Value head = interleaved
                       ? arith::AddIOp::create(b, l, hIdx, arith::MulIOp::create(b, l, g, hkv))
                       : arith::AddIOp::create(b, l, arith::MulIOp::create(b, l, hIdx, group), g);
      return {head, arith::RemUIOp::create(b, l, r, nq)};
    };
    Value r0 = arith::MulIOp::create(b, l, qTile, cIdx(b, Tq));
    Value rows =
        arith::MinSIOp::create(b, l, cIdx(b, Tq), arith::SubIOp::create(b, l, packedRows, r0));
    Value nqm1 = arith::SubIOp::create(b, l, packedRows, c1);
    Value nkm1 = arith::SubIOp::create(b, l, nk, c1);

    Value scale = attention.getScale() ? outer.lookup(attention.getScale())
                                       : cF32(b, float(1.0 / std::sqrt(double(D))));

    // Qt[d][i] = scale * Q[b, h, r0 + i, d], rows past Nq clamped to the
    // last one (their results are never stored).
    auto qtType = MemRefType::get({D, Tq}, f32());
    Value qt = memref::AllocaOp::create(b, l, qtType);
    // Decode over a KV cache (few packed rows): Q.K^T runs along the head
    // dim instead (vectors of K rows, one reduction per row and key), with
    // Q rows kept untransposed too.
    const int64_t dotVW = quantGroup ? std::gcd(int64_t(16), quantGroup)
                                     : (D % 16 == 0  ? 16
                                        : D % 8 == 0 ? 8
                                                     : 0);
    const bool dotAlongD = cacheKernel && Tq <= 8 && dotVW > 0 && D % dotVW == 0;
    // bf16 pages on a host with AVX-512 BF16: Q.K^T from bf16 pairs
    // (vdpbf16ps: 32 products into 16 f32 lanes a step), K not converted;
    // Q rows stay bf16 and unscaled, the scale applies to each dot.
    const bool dotBf16 = bf16Dot && dotAlongD && !quantized && elemType.isBF16() && D % 32 == 0;
    Value qRows;
    if (dotAlongD)
      qRows = memref::AllocaOp::create(b, l, MemRefType::get({Tq, D}, dotBf16 ? elemType : f32()));
    scf::ForOp::create(
        b, l, c0, cIdx(b, Tq), c1, ValueRange{},
        [&](OpBuilder &b, Location l, Value i, ValueRange) {
          auto [head, row] =
              headRow(b, arith::MinSIOp::create(b, l, arith::AddIOp::create(b, l, r0, i), nqm1));
          scf::ForOp::create(
              b, l, cIdx(b, 0), cIdx(b, D), cIdx(b, 1), ValueRange{},
              [&](OpBuilder &b, Location l, Value d, ValueRange) {
                Value raw = memref::LoadOp::create(b, l, Q, ValueRange{bIdx, head, row, d});
                Value x = arith::MulFOp::create(b, l, toF32(b, raw), scale);
                memref::StoreOp::create(b, l, x, qt, ValueRange{d, i});
                if (dotAlongD)
                  memref::StoreOp::create(b, l, dotBf16 ? raw : x, qRows, ValueRange{i, d});
                scf::YieldOp::create(b, l);
              });
          scf::YieldOp::create(b, l);
        });

    // Positions and validity of the lanes.
    SmallVector<int32_t> iota;
    for (int64_t i = 0; i < Tq; ++i)
      iota.push_back(int32_t(i));
    Value iotaV =
        arith::ConstantOp::create(b, l, DenseElementsAttr::get(vecOf(i32), ArrayRef(iota)));
    Value qBase = arith::AddIOp::create(b, l, qOffset, arith::IndexCastOp::create(b, l, i32, r0));
    Value qPos = arith::AddIOp::create(b, l, bcast(b, qBase), iotaV);
    Value rowValid = arith::CmpIOp::create(b, l, arith::CmpIPredicate::slt, iotaV,
                                           bcast(b, arith::IndexCastOp::create(b, l, i32, rows)));
    Value bVec = bcast(b, arith::IndexCastOp::create(b, l, i32, bIdx));
    Value hVec = bcast(b, arith::IndexCastOp::create(b, l, i32, hIdx));
    if (cacheKernel) {
      // Per lane: packed row r0 + i -> query head and position.
      Value r =
          arith::AddIOp::create(b, l, bcast(b, arith::IndexCastOp::create(b, l, i32, r0)), iotaV);
      Value nqV = bcast(b, arith::IndexCastOp::create(b, l, i32, nq));
      Value g = arith::DivUIOp::create(b, l, r, nqV);
      Value h32 = bcast(b, arith::IndexCastOp::create(b, l, i32, hIdx));
      hVec = interleaved
                 ? arith::AddIOp::create(
                       b, l, h32,
                       arith::MulIOp::create(b, l, g,
                                             bcast(b, arith::IndexCastOp::create(b, l, i32, hkv))))
                 : arith::AddIOp::create(
                       b, l,
                       arith::MulIOp::create(
                           b, l, h32, bcast(b, arith::IndexCastOp::create(b, l, i32, group))),
                       g);
      qPos = arith::AddIOp::create(b, l, bcast(b, qOffset), arith::RemUIOp::create(b, l, r, nqV));
    }

    // KV range of this item.
    Value qmin = arith::ExtSIOp::create(b, l, i64, qBase);
    Value qmax = arith::AddIOp::create(
        b, l, qmin, arith::IndexCastOp::create(b, l, i64, arith::SubIOp::create(b, l, rows, c1)));
    Value nk64 = arith::IndexCastOp::create(b, l, i64, nk);
    // Over a KV cache the ranges are of positions, not slots: every slot.
    attn::KvRange range;
    if (cacheKernel)
      range = {arith::ConstantIntOp::create(b, l, 0, 64), nk64, false};
    else
      range = attn::buildKvRange(b, l, attention.getMaskBlock(), attention.getMaskValue(), outer,
                                 qmin, qmax, nk64);
    Value lo = arith::MaxSIOp::create(b, l, range.lo, arith::ConstantIntOp::create(b, l, 0, 64));
    Value hi = arith::MinSIOp::create(b, l, range.hi, nk64);
    Value loIdx = arith::IndexCastOp::create(b, l, b.getIndexType(), lo);
    Value hiIdx = arith::IndexCastOp::create(b, l, b.getIndexType(), hi);

    // Accumulator and per-tile scratch.
    Value acc = memref::AllocaOp::create(b, l, MemRefType::get({Tq, Dv}, f32()));
    Value pt = memref::AllocaOp::create(b, l, MemRefType::get({Tk, Tq}, f32()));
    Value rowBuf = memref::AllocaOp::create(b, l, MemRefType::get({Tq}, f32()));
    Value lseBuf = memref::AllocaOp::create(b, l, MemRefType::get({Tq}, f32()));
    auto dvVec = VectorType::get({Dv}, f32());
    // P.V blocking: VW-lane vectors (16 = one zmm where Dv allows), NC of
    // them per row chunk, pvRows rows at a time (R * NC accumulators).
    int64_t pvVW = Dv % 16 == 0 ? 16 : Dv;
    if (quantGroup) // one V scale per vector
      pvVW = std::gcd(pvVW, quantGroup);
    int64_t pvNC = (Dv / pvVW) % 4 == 0 ? 4 : (Dv / pvVW) % 2 == 0 ? 2 : 1;
    int64_t pvRows = Tq % 4 == 0 ? 4 : Tq % 2 == 0 ? 2 : 1;
    auto pvVec = VectorType::get({pvVW}, f32());
    Value zeroDv = arith::ConstantOp::create(b, l, DenseElementsAttr::get(dvVec, 0.0f));
    scf::ForOp::create(b, l, c0, cIdx(b, Tq), c1, ValueRange{},
                       [&](OpBuilder &b, Location l, Value i, ValueRange) {
                         vector::StoreOp::create(b, l, zeroDv, acc, ValueRange{i, cIdx(b, 0)});
                         scf::YieldOp::create(b, l);
                       });

    float ninf = -std::numeric_limits<float>::infinity();
    Value negInf = splatF32(b, ninf), zero = splatF32(b, 0.0f), one = splatF32(b, 1.0f);
    bool softmax = attention.getNormalizer() == attn::Normalizer::Softmax;
    const bool maskAlwaysTrue = attn::maskIsAlwaysTrue(attention);

    // k-invariant region ops (e.g. doc[q]) once per item, before the KV
    // loops; b and h as scalars for lane-uniform ops (e.g. doc[k]).
    IRMapping hoistMask, hoistScore;
    {
      RegionCtx hm;
      hm.hoisted = &hoistMask;
      hm.hoistOnly = true;
      hm.kDepArgs = {3};
      if (!maskAlwaysTrue &&
          failed(vectorizeRegion(b, attention.getMaskBlock(), {bVec, hVec, qPos, Value()}, outer,
                                 rowValid, hm))) {
        fn.erase();
        return nullptr;
      }
      RegionCtx hs;
      hs.hoisted = &hoistScore;
      hs.hoistOnly = true;
      hs.kDepArgs = {0, 4};
      if (failed(vectorizeRegion(b, attention.getScoreBlock(), {Value(), bVec, hVec, qPos, Value()},
                                 outer, rowValid, hs))) {
        fn.erase();
        return nullptr;
      }
    }
    Value bS = arith::IndexCastOp::create(b, l, i32, bIdx);
    // Over a KV cache h varies across lanes (packed heads): no scalar h.
    Value hS = cacheKernel ? Value() : arith::IndexCastOp::create(b, l, i32, hIdx).getResult();

    bool hadError = false;
    // Set for the second pass of sigmoid budget kernels (after the KV loop):
    // the lanes whose mass counts. Tiles then add each slot's weights to
    // kv_mass instead of updating the state (softmax kernels take
    // emitMassPass over the scores they kept).
    Value massLanes;
    // Budget retention, softmax: the first pass keeps each slot's scores
    // (t, lanes = rows) in scoreBuf[slot], and the second pass reads them
    // instead of computing Q.K^T again (the tiles and masks of the two
    // passes are the same, so every tile the second pass computes, the first
    // stored).
    Value scoreBuf;
    // One KV tile [kt, kt + Tk). `partial`: the tile may run past Nk (keys
    // are clamped and masked); otherwise all Tk keys exist, so rows need no
    // clamp and share one base address.
    // `keepAll`: the tile is known FULL (run-time class), so its mask is not
    // evaluated.
    auto emitTile = [&](OpBuilder &b, Location l, Value kt, ValueRange iter, bool partial,
                        bool keepAll) {
      Value m = iter[0], sum = iter[1];
      SmallVector<Value> kRow, kValid, kPos, kSlot;
      Value allValid = arith::ConstantIntOp::create(b, l, 1, 1);
      for (int64_t j = 0; j < Tk; ++j) {
        Value k = arith::AddIOp::create(b, l, kt, cIdx(b, j));
        kSlot.push_back(k); // unclamped: scoreBuf has Tk rows past the last slot
        if (partial) {
          kValid.push_back(arith::CmpIOp::create(b, l, arith::CmpIPredicate::slt, k, nk));
          // Keys past Nk read the last key (always in bounds); they are
          // masked below.
          kRow.push_back(arith::MinSIOp::create(b, l, k, nkm1));
        } else {
          kValid.push_back(allValid);
          kRow.push_back(k);
        }
        kPos.push_back(arith::IndexCastOp::create(b, l, i32, k));
      }
      // Over a KV cache, slot kRow[j] lives in page kv_pages[b, slot / P] at
      // row slot % P and holds logical position kv_pos[b, slot]: the mask and
      // score see positions; slots not retained (-1) are masked.
      SmallVector<Value> kBatch(Tk, bIdx), kLine(kRow);
      if (cacheKernel)
        for (int64_t j = 0; j < Tk; ++j) {
          Value page = memref::LoadOp::create(
              b, l, kvPages, ValueRange{tableRow, arith::DivUIOp::create(b, l, kRow[j], pageSize)});
          kBatch[j] = arith::IndexCastOp::create(b, l, b.getIndexType(), page);
          kLine[j] = arith::RemUIOp::create(b, l, kRow[j], pageSize);
          kPos[j] = memref::LoadOp::create(b, l, kvPos, ValueRange{tableRow, kRow[j]});
          Value retained = arith::CmpIOp::create(b, l, arith::CmpIPredicate::sge, kPos[j],
                                                 arith::ConstantIntOp::create(b, l, 0, 32));
          kValid[j] = arith::AndIOp::create(b, l, kValid[j], retained);
        }
      // Software prefetch of the K/V rows kPrefetchSlots ahead (every
      // 64-byte line): a pool page holds one head's rows, pages come in
      // table order (scattered in the pool), so the hardware prefetchers
      // restart at each page and a core's few outstanding misses bounded
      // the step (bench/NOTES.md, CPU session 12).
      if (cacheKernel)
        for (int64_t j = 0; j < Tk; ++j) {
          Value ahead = arith::MinSIOp::create(
              b, l, arith::AddIOp::create(b, l, kRow[j], cIdx(b, kPrefetchSlots)), nkm1);
          Value page = arith::IndexCastOp::create(
              b, l, b.getIndexType(),
              memref::LoadOp::create(
                  b, l, kvPages,
                  ValueRange{tableRow, arith::DivUIOp::create(b, l, ahead, prefetchPageSize)}));
          Value line = arith::RemUIOp::create(b, l, ahead, prefetchPageSize);
          const int64_t bytes = kvElementType().getIntOrFloatBitWidth() / 8;
          for (auto [mem, cols] :
               {std::make_pair(K, nibbles ? D / 2 : D), std::make_pair(V, nibbles ? Dv / 2 : Dv)})
            for (int64_t o = 0; o < cols * bytes; o += 64)
              memref::PrefetchOp::create(b, l, mem,
                                         ValueRange{page, poolHead, line, cIdx(b, o / bytes)},
                                         /*isWrite=*/false, /*localityHint=*/3,
                                         /*isDataCache=*/true);
        }
      // Mask of every key first: a tile the mask rejects for every row
      // is skipped (data-dependent masks such as documents, where the KV
      // range cannot be bounded statically).
      SmallVector<Value> kVecs(Tk), valids(Tk), keep(Tk);
      for (int64_t j = 0; j < Tk && !hadError; ++j) {
        kVecs[j] = bcast(b, kPos[j]);
        valids[j] = arith::AndIOp::create(b, l, rowValid, bcast(b, kValid[j]));
        keep[j] = valids[j];
        if (!maskAlwaysTrue && !keepAll) {
          RegionCtx rc;
          rc.hoisted = &hoistMask;
          rc.scalarArgs = {bS, hS, Value(), kPos[j]};
          rc.scalarLoads = !partial;
          auto mv = vectorizeRegion(b, attention.getMaskBlock(), {bVec, hVec, qPos, kVecs[j]},
                                    outer, valids[j], rc);
          if (failed(mv)) {
            hadError = true;
            break;
          }
          keep[j] = arith::AndIOp::create(b, l, *mv, valids[j]);
        }
      }
      if (hadError) {
        scf::YieldOp::create(b, l, ValueRange{m, sum});
        return;
      }
      auto compute = [&](OpBuilder &b) -> SmallVector<Value> {
        SmallVector<Value> dots;
        // Key j of the tile: each row's partial dots reduced, times `factor`
        // (if any), as one vector over the rows.
        auto rowDots = [&](scf::ForOp rowPartials, Value factor) {
          Value sv = zero;
          for (int64_t i = 0; i < Tq; ++i) {
            Value sum = vector::ReductionOp::create(b, l, vector::CombiningKind::ADD,
                                                    rowPartials.getResult(i));
            if (factor)
              sum = arith::MulFOp::create(b, l, sum, factor);
            sv = vector::InsertOp::create(b, l, sum, sv, ArrayRef<int64_t>{i});
          }
          return sv;
        };
        if (dotBf16) {
          // s_ij = scale * (sum over 32-element chunks of bf16 pair dots of
          // Q_i and K_j, 16 f32 lanes), reduced per row.
          auto accTy = VectorType::get({16}, f32()), pairTy = VectorType::get({32}, elemType);
          Value zeroAcc = arith::ConstantOp::create(b, l, DenseElementsAttr::get(accTy, 0.0f));
          for (int64_t j = 0; j < Tk; ++j) {
            auto cLoop = scf::ForOp::create(
                b, l, cIdx(b, 0), cIdx(b, D), cIdx(b, 32), SmallVector<Value>(Tq, zeroAcc),
                [&](OpBuilder &b, Location l, Value c, ValueRange acc) {
                  Value kv = loadKVVector(b, l, K, kBatch[j], poolHead, kLine[j], c, 32);
                  SmallVector<Value> next;
                  for (int64_t i = 0; i < Tq; ++i) {
                    Value qv =
                        vector::LoadOp::create(b, l, pairTy, qRows, ValueRange{cIdx(b, i), c});
                    next.push_back(x86vector::DotBF16Op::create(b, l, accTy, acc[i], qv, kv));
                  }
                  scf::YieldOp::create(b, l, next);
                });
            dots.push_back(rowDots(cLoop, scale));
          }
        } else if (dotAlongD) {
          // s_ij = sum over D-chunks of Q_i . K_j (dotVW lanes), reduced per
          // row; the rows' scores then form the usual vector<Tq>.
          auto chunkTy = VectorType::get({dotVW}, f32());
          Value zeroChunk = arith::ConstantOp::create(b, l, DenseElementsAttr::get(chunkTy, 0.0f));
          for (int64_t j = 0; j < Tk; ++j) {
            auto cLoop = scf::ForOp::create(
                b, l, cIdx(b, 0), cIdx(b, D), cIdx(b, dotVW), SmallVector<Value>(Tq, zeroChunk),
                [&](OpBuilder &b, Location l, Value c, ValueRange acc) {
                  Value kv =
                      kvToF32(b, loadKVVector(b, l, K, kBatch[j], poolHead, kLine[j], c, dotVW));
                  if (quantGroup)
                    kv = arith::MulFOp::create(
                        b, l, kv,
                        vector::BroadcastOp::create(
                            b, l, chunkTy,
                            loadScale(
                                b, l, kScale,
                                ValueRange{kBatch[j], poolHead, kLine[j],
                                           arith::DivUIOp::create(b, l, c, cIdx(b, quantGroup))})));
                  SmallVector<Value> next;
                  for (int64_t i = 0; i < Tq; ++i) {
                    Value qv =
                        vector::LoadOp::create(b, l, chunkTy, qRows, ValueRange{cIdx(b, i), c});
                    next.push_back(vector::FMAOp::create(b, l, qv, kv, acc[i]));
                  }
                  scf::YieldOp::create(b, l, next);
                });
            dots.push_back(rowDots(cLoop, Value()));
          }
        }
        // s_j = Qt^T K_j, lanes = rows.
        SmallVector<Value> init(Tk, zero);
        auto dLoop =
            dotAlongD
                ? scf::ForOp()
                : scf::ForOp::create(
                      b, l, cIdx(b, 0), cIdx(b, D), cIdx(b, 1), init,
                      [&](OpBuilder &b, Location l, Value d, ValueRange s) {
                        Value qd = vector::LoadOp::create(b, l, vecOf(f32()), qt,
                                                          ValueRange{d, cIdx(b, 0)});
                        SmallVector<Value> next;
                        for (int64_t j = 0; j < Tk; ++j) {
                          Value kv =
                              kvToF32(b, loadKVElement(b, l, K, kBatch[j], poolHead, kLine[j], d));
                          if (quantGroup) // int8, a scale per group of the head dim
                            kv = arith::MulFOp::create(
                                b, l, kv,
                                loadScale(b, l, kScale,
                                          ValueRange{kBatch[j], poolHead, kLine[j],
                                                     arith::DivUIOp::create(b, l, d,
                                                                            cIdx(b, quantGroup))}));
                          next.push_back(vector::FMAOp::create(b, l, bcast(b, kv), qd, s[j]));
                        }
                        scf::YieldOp::create(b, l, next);
                      });
        // int8 with one scale per token: it factors out of the dot product.
        if (!dotAlongD)
          dots.assign(dLoop.getResults().begin(), dLoop.getResults().end());
        if (quantized && !quantGroup)
          for (int64_t j = 0; j < Tk; ++j)
            dots[j] = arith::MulFOp::create(
                b, l, dots[j],
                bcast(b, loadScale(b, l, kScale,
                                   ValueRange{kBatch[j], poolHead, kLine[j], cIdx(b, 0)})));
        // Mask and score per key, on vectors of rows.
        SmallVector<Value> t(Tk), w(Tk);
        Value tileMax = negInf;
        for (int64_t j = 0; j < Tk && !hadError; ++j) {
          Value kVec = kVecs[j], valid = valids[j], keepJ = keep[j];
          RegionCtx rc;
          rc.hoisted = &hoistScore;
          rc.scalarArgs = {Value(), bS, hS, Value(), kPos[j]};
          rc.scalarLoads = !partial;
          auto sv = vectorizeRegion(b, attention.getScoreBlock(), {dots[j], bVec, hVec, qPos, kVec},
                                    outer, valid, rc);
          if (failed(sv)) {
            hadError = true;
            break;
          }
          t[j] = arith::SelectOp::create(b, l, keepJ, *sv, negInf);
          if (scoreBuf) // row i's score of this slot at scoreBuf[i, slot]
            for (int64_t i = 0; i < Tq; ++i)
              memref::StoreOp::create(b, l, vector::ExtractOp::create(b, l, t[j], i), scoreBuf,
                                      ValueRange{cIdx(b, i), kSlot[j]});
          tileMax = arith::MaximumFOp::create(b, l, tileMax, t[j]);
          if (!softmax) {
            // sigmoid(s') = 1 / (1 + exp(-s')); masked keys weigh 0.
            Value e = vexp(b, arith::NegFOp::create(b, l, *sv));
            Value sg = arith::DivFOp::create(b, l, one, arith::AddFOp::create(b, l, one, e));
            w[j] = arith::SelectOp::create(b, l, keepJ, sg, zero);
          }
        }
        if (hadError)
          return {m, sum};
        if (massLanes) {
          // mass[slot] += sum over counted rows of the weights. Slots past
          // Nk (clamped to the last one) add 0.
          for (int64_t j = 0; j < Tk; ++j) {
            Value p = arith::SelectOp::create(b, l, massLanes, w[j], zero);
            Value total = vector::ReductionOp::create(b, l, vector::CombiningKind::ADD, p);
            total = arith::SelectOp::create(b, l, kValid[j], total, cF32(b, 0.0f));
            Value old = memref::LoadOp::create(b, l, kvMass, ValueRange{tableRow, kRow[j]});
            memref::StoreOp::create(b, l, arith::AddFOp::create(b, l, old, total), kvMass,
                                    ValueRange{tableRow, kRow[j]});
          }
          return {m, sum};
        }
        // Online softmax. A row that has seen no key keeps m = -inf; use 0
        // as its reference so that exp(-inf - ref) = 0 instead of NaN.
        Value mNew = arith::MaximumFOp::create(b, l, m, tileMax);
        Value isNinf = arith::CmpFOp::create(b, l, arith::CmpFPredicate::OEQ, mNew, negInf);
        Value ref = arith::SelectOp::create(b, l, isNinf, zero, mNew);
        Value alpha = vexp(b, arith::SubFOp::create(b, l, m, ref));
        Value newSum = arith::MulFOp::create(b, l, alpha, sum);
        for (int64_t j = 0; j < Tk; ++j) {
          Value p = vexp(b, arith::SubFOp::create(b, l, t[j], ref));
          newSum = arith::AddFOp::create(b, l, newSum, p);
          if (softmax)
            w[j] = p;
          // One V scale per token: it multiplies the key's weights once
          // (not each V vector of P.V).
          Value wj = w[j];
          if (quantized && !quantGroup)
            wj = arith::MulFOp::create(
                b, l, wj,
                bcast(b, loadScale(b, l, vScale,
                                   ValueRange{kBatch[j], poolHead, kLine[j], cIdx(b, 0)})));
          vector::StoreOp::create(b, l, wj, pt, ValueRange{cIdx(b, j), cIdx(b, 0)});
        }
        vector::StoreOp::create(b, l, alpha, rowBuf, ValueRange{cIdx(b, 0)});
        // acc[i] = alpha[i] * acc[i] + sum_j w_j[i] * V[kt + j], register
        // blocked: R rows x NC vectors of VW columns stay in registers
        // over the Tk keys, so each V vector load feeds R FMAs and each
        // broadcast weight NC FMAs.
        scf::ForOp::create(
            b, l, cIdx(b, 0), cIdx(b, Tq), cIdx(b, pvRows), ValueRange{},
            [&](OpBuilder &b, Location l, Value i0, ValueRange) {
              scf::ForOp::create(
                  b, l, cIdx(b, 0), cIdx(b, Dv), cIdx(b, pvVW * pvNC), ValueRange{},
                  [&](OpBuilder &b, Location l, Value c0v, ValueRange) {
                    SmallVector<Value> rowIdx, colIdx;
                    for (int64_t r = 0; r < pvRows; ++r)
                      rowIdx.push_back(arith::AddIOp::create(b, l, i0, cIdx(b, r)));
                    for (int64_t c = 0; c < pvNC; ++c)
                      colIdx.push_back(arith::AddIOp::create(b, l, c0v, cIdx(b, c * pvVW)));
                    SmallVector<Value> a(pvRows * pvNC);
                    for (int64_t r = 0; r < pvRows; ++r) {
                      Value al;
                      if (softmax)
                        al = vector::BroadcastOp::create(
                            b, l, pvVec, memref::LoadOp::create(b, l, rowBuf, rowIdx[r]));
                      for (int64_t c = 0; c < pvNC; ++c) {
                        Value x = vector::LoadOp::create(b, l, pvVec, acc,
                                                         ValueRange{rowIdx[r], colIdx[c]});
                        a[r * pvNC + c] =
                            softmax ? arith::MulFOp::create(b, l, x, al).getResult() : x;
                      }
                    }
                    for (int64_t j = 0; j < Tk; ++j) {
                      SmallVector<Value> v(pvNC);
                      for (int64_t c = 0; c < pvNC; ++c) {
                        v[c] = kvToF32(b, loadKVVector(b, l, V, kBatch[j], poolHead, kLine[j],
                                                       colIdx[c], pvVW));
                        // A V scale per group (pvVW divides it); one per
                        // token is in the weights already.
                        if (quantGroup) {
                          Value g = arith::DivUIOp::create(b, l, colIdx[c], cIdx(b, quantGroup));
                          Value sc =
                              loadScale(b, l, vScale, ValueRange{kBatch[j], poolHead, kLine[j], g});
                          v[c] = arith::MulFOp::create(
                              b, l, v[c], vector::BroadcastOp::create(b, l, pvVec, sc));
                        }
                      }
                      for (int64_t r = 0; r < pvRows; ++r) {
                        Value wj = vector::BroadcastOp::create(
                            b, l, pvVec,
                            memref::LoadOp::create(b, l, pt, ValueRange{cIdx(b, j), rowIdx[r]}));
                        for (int64_t c = 0; c < pvNC; ++c)
                          a[r * pvNC + c] = vector::FMAOp::create(b, l, wj, v[c], a[r * pvNC + c]);
                      }
                    }
                    for (int64_t r = 0; r < pvRows; ++r)
                      for (int64_t c = 0; c < pvNC; ++c)
                        vector::StoreOp::create(b, l, a[r * pvNC + c], acc,
                                                ValueRange{rowIdx[r], colIdx[c]});
                    scf::YieldOp::create(b, l);
                  });
              scf::YieldOp::create(b, l);
            });
        return {mNew, newSum};
      };
      if (maskAlwaysTrue || keepAll) {
        scf::YieldOp::create(b, l, compute(b));
        return;
      }
      Value any = keep[0];
      for (int64_t j = 1; j < Tk; ++j)
        any = arith::OrIOp::create(b, l, any, keep[j]);
      Value anyKeep = vector::ReductionOp::create(b, l, vector::CombiningKind::OR, any);
      auto ifOp = scf::IfOp::create(b, l, TypeRange{m.getType(), sum.getType()}, anyKeep,
                                    /*withElseRegion=*/true);
      {
        OpBuilder tb = ifOp.getThenBodyBuilder();
        scf::YieldOp::create(tb, l, compute(tb));
        OpBuilder eb = ifOp.getElseBodyBuilder();
        // No row keeps a key of the tile, but the mass pass reads every
        // slot's scores: -inf, no mass (stale ones added garbage where the
        // rows' queries end before the last keys, e.g. a launch's leading
        // queries, KvCache::scoringSplit).
        if (scoreBuf) {
          auto rowVec = VectorType::get({Tk}, f32());
          Value none = arith::ConstantOp::create(
              eb, l, DenseElementsAttr::get(rowVec, -std::numeric_limits<float>::infinity()));
          for (int64_t i = 0; i < Tq; ++i)
            vector::StoreOp::create(eb, l, none, scoreBuf, ValueRange{cIdx(eb, i), kt});
        }
        scf::YieldOp::create(eb, l, ValueRange{m, sum});
      }
      scf::YieldOp::create(b, l, ifOp.getResults());
    };
    // Full tiles [lo, fullHi), then at most one partial tile [fullHi, hi).
    Value hiC = arith::MaxSIOp::create(b, l, hiIdx, loIdx);
    // Rows of scores by slot: slots [0, hi) and a partial tile's (or the
    // mass pass's last chunk's) slots past it.
    if (slotMass && softmax)
      scoreBuf = memref::AllocOp::create(
          b, l, MemRefType::get({Tq, ShapedType::kDynamic}, f32()),
          ValueRange{arith::AddIOp::create(b, l, hiC, cIdx(b, std::max<int64_t>(Tk, kMassLanes)))});
    Value span = arith::SubIOp::create(b, l, hiC, loIdx);
    Value fullHi = arith::AddIOp::create(
        b, l, loIdx,
        arith::MulIOp::create(b, l, arith::DivUIOp::create(b, l, span, cIdx(b, Tk)), cIdx(b, Tk)));
    scf::ForOp fullLoop;
    if (cacheKernel || !attn::needsRunTimeTileClasses(attention)) {
      fullLoop = scf::ForOp::create(b, l, loIdx, fullHi, cIdx(b, Tk), ValueRange{negInf, zero},
                                    [&](OpBuilder &b, Location l, Value kt, ValueRange iter) {
                                      emitTile(b, l, kt, iter, /*partial=*/false,
                                               /*keepAll=*/false);
                                    });
    } else {
      // Data-dependent masks and masks with division (documents, prefix-LM,
      // block masks, 2-D neighborhoods): run-time classes of groups of
      // kClassTiles tiles (attnc/Analysis/TileBounds.h), from the id ranges
      // of the item's rows (once) and of the group's keys (one pass): an
      // EMPTY group costs that pass and nothing else, a FULL one runs its
      // tiles without the mask, a PARTIAL one evaluates the mask per tile.
      Block &maskBlock = attention.getMaskBlock();
      SmallVector<attn::RangeLoad> rangeLoads = attn::tileRangeLoads(maskBlock);
      // [min, max] (i64) of a range load's tensor over positions [p0, p1).
      auto tensorRange = [&](OpBuilder &b, attn::LoadOp load, Value p0,
                             Value p1) -> attn::IntervalValues {
        Value mem = outer.lookup(load.getTensor());
        Value lo0 = arith::ConstantIntOp::create(b, l, std::numeric_limits<int64_t>::max(), 64);
        Value hi0 = arith::ConstantIntOp::create(b, l, std::numeric_limits<int64_t>::min(), 64);
        auto loop = scf::ForOp::create(
            b, l, p0, p1, cIdx(b, 1), ValueRange{lo0, hi0},
            [&](OpBuilder &b, Location l, Value p, ValueRange lohi) {
              Value v = memref::LoadOp::create(b, l, mem, ValueRange{p});
              v = v.getType().isInteger(64) ? v
                  : v.getType().isInteger(1)
                      ? arith::ExtUIOp::create(b, l, b.getI64Type(), v).getResult()
                      : arith::ExtSIOp::create(b, l, b.getI64Type(), v).getResult();
              scf::YieldOp::create(b, l,
                                   ValueRange{arith::MinSIOp::create(b, l, lohi[0], v),
                                              arith::MaxSIOp::create(b, l, lohi[1], v)});
            });
        return {loop.getResult(0), loop.getResult(1)};
      };
      // A read at indices known per group (prefix_len[b], blocks[b, h, i, j]).
      auto uniformLoad = [&](OpBuilder &b, attn::LoadOp load, ArrayRef<Value> idx) -> Value {
        SmallVector<Value> indices;
        for (Value v : idx)
          indices.push_back(arith::IndexCastOp::create(b, l, b.getIndexType(), v));
        return memref::LoadOp::create(b, l, outer.lookup(load.getTensor()), indices);
      };
      Value rowsEnd = arith::AddIOp::create(
          b, l, arith::IndexCastOp::create(b, l, b.getIndexType(), qBase), rows);
      SmallVector<attn::IntervalValues> rowRanges(rangeLoads.size());
      for (auto [i, rl] : llvm::enumerate(rangeLoads))
        if (!rl.byKey)
          rowRanges[i] = tensorRange(
              b, rl.load, arith::IndexCastOp::create(b, l, b.getIndexType(), qBase), rowsEnd);
      Value groupKeys = cIdx(b, Tk * kClassTiles);
      fullLoop = scf::ForOp::create(
          b, l, loIdx, fullHi, groupKeys, ValueRange{negInf, zero},
          [&](OpBuilder &b, Location l, Value g0, ValueRange iter) {
            Value g1 =
                arith::MinSIOp::create(b, l, arith::AddIOp::create(b, l, g0, groupKeys), fullHi);
            SmallVector<attn::IntervalValues> ranges(rowRanges);
            for (auto [i, rl] : llvm::enumerate(rangeLoads))
              if (rl.byKey)
                ranges[i] = tensorRange(b, rl.load, g0, g1);
            Type i64 = b.getI64Type();
            attn::IntervalValues kIv{
                arith::IndexCastOp::create(b, l, i64, g0),
                arith::IndexCastOp::create(b, l, i64, arith::SubIOp::create(b, l, g1, c1))};
            attn::TileKeepBounds bounds = attn::buildTileKeepBounds(
                b, l, maskBlock, attention.getMaskValue(), outer, bS, hS, {qmin, qmax}, kIv,
                [&](unsigned i) { return ranges[i]; },
                [&](attn::LoadOp load, ArrayRef<Value> idx) { return uniformLoad(b, load, idx); });
            TypeRange types = iter.getTypes();
            auto liveIf = scf::IfOp::create(b, l, types, bounds.mayKeep, /*withElseRegion=*/true);
            OpBuilder tb = liveIf.getThenBodyBuilder();
            auto fullIf = scf::IfOp::create(tb, l, types, bounds.mustKeep, /*withElseRegion=*/true);
            for (bool keepAll : {true, false}) {
              OpBuilder fb = keepAll ? fullIf.getThenBodyBuilder() : fullIf.getElseBodyBuilder();
              auto tiles =
                  scf::ForOp::create(fb, l, g0, g1, cIdx(fb, Tk), iter,
                                     [&](OpBuilder &b, Location l, Value kt, ValueRange state) {
                                       emitTile(b, l, kt, state, /*partial=*/false, keepAll);
                                     });
              scf::YieldOp::create(fb, l, tiles.getResults());
            }
            scf::YieldOp::create(tb, l, fullIf.getResults());
            OpBuilder eb = liveIf.getElseBodyBuilder();
            scf::YieldOp::create(eb, l, iter);
            scf::YieldOp::create(b, l, liveIf.getResults());
          });
      fullLoop->setAttr("attn.tile_classes", b.getI64IntegerAttr(Tk * kClassTiles));
    }
    auto kvLoop =
        scf::ForOp::create(b, l, fullHi, hiC, cIdx(b, Tk), fullLoop.getResults(),
                           [&](OpBuilder &b, Location l, Value kt, ValueRange iter) {
                             emitTile(b, l, kt, iter, /*partial=*/true, /*keepAll=*/false);
                           });
    if (hadError) {
      fn.erase();
      return nullptr;
    }
    auto rangeAttr = StringAttr::get(ctx, range.bounded ? "bounded" : "full");
    fullLoop->setAttr("attn.kv_range", rangeAttr);
    kvLoop->setAttr("attn.kv_range", rangeAttr);

    // Finalize: O = acc / l, LSE = m + log(l); rows without keys: 0, -inf.
    Value m = kvLoop.getResult(0), sum = kvLoop.getResult(1);
    Value hasKeys = arith::CmpFOp::create(b, l, arith::CmpFPredicate::OGT, sum, zero);
    Value inv = softmax ? arith::SelectOp::create(b, l, hasKeys,
                                                  arith::DivFOp::create(b, l, one, sum), zero)
                              .getResult()
                        : one;
    Value lse = arith::SelectOp::create(
        b, l, hasKeys, arith::AddFOp::create(b, l, m, math::LogOp::create(b, l, sum)), negInf);
    vector::StoreOp::create(b, l, inv, rowBuf, ValueRange{c0});
    vector::StoreOp::create(b, l, lse, lseBuf, ValueRange{c0});
    if (slotMass) {
      // Budget retention: a second pass over the slots, now that each row's
      // max and sum are final, adds the attention mass of the rows of the
      // last mass_rows queries to each slot's eviction score.
      Value first = arith::SubIOp::create(
          b, l, arith::AddIOp::create(b, l, qOffset, arith::IndexCastOp::create(b, l, i32, nq)),
          massRows);
      Value counted = arith::CmpIOp::create(b, l, arith::CmpIPredicate::sge, qPos, bcast(b, first));
      if (scoreBuf) {
        // The final row max (-inf as 0, as in the loop) and 1 / sum.
        Value ref = arith::SelectOp::create(
            b, l, arith::CmpFOp::create(b, l, arith::CmpFPredicate::OEQ, m, negInf), zero, m);
        emitMassPass(b, l, scoreBuf, kvMass, tableRow, loIdx, arith::MinSIOp::create(b, l, hiC, nk),
                     ref, inv, counted);
        memref::DeallocOp::create(b, l, scoreBuf);
      } else { // sigmoid: the tiles again, each weight its own mass
        massLanes = counted;
        auto full = scf::ForOp::create(b, l, loIdx, fullHi, cIdx(b, Tk), ValueRange{m, sum},
                                       [&](OpBuilder &b, Location l, Value kt, ValueRange iter) {
                                         emitTile(b, l, kt, iter, /*partial=*/false,
                                                  /*keepAll=*/false);
                                       });
        scf::ForOp::create(b, l, fullHi, hiC, cIdx(b, Tk), full.getResults(),
                           [&](OpBuilder &b, Location l, Value kt, ValueRange iter) {
                             emitTile(b, l, kt, iter, /*partial=*/true, /*keepAll=*/false);
                           });
      }
      if (hadError) {
        fn.erase();
        return nullptr;
      }
    }
    scf::ForOp::create(
        b, l, c0, rows, c1, ValueRange{}, [&](OpBuilder &b, Location l, Value i, ValueRange) {
          auto [head, row] = headRow(b, arith::AddIOp::create(b, l, r0, i));
          Value a = vector::LoadOp::create(b, l, dvVec, acc, ValueRange{i, cIdx(b, 0)});
          Value s = memref::LoadOp::create(b, l, rowBuf, ValueRange{i});
          a = arith::MulFOp::create(b, l, a, vector::BroadcastOp::create(b, l, dvVec, s));
          vector::StoreOp::create(b, l, a, O, ValueRange{bIdx, head, row, cIdx(b, 0)});
          Value x = memref::LoadOp::create(b, l, lseBuf, ValueRange{i});
          memref::StoreOp::create(b, l, x, LSE, ValueRange{bIdx, head, row});
          scf::YieldOp::create(b, l);
        });
    func::ReturnOp::create(b, l);
    fn->setAttr("llvm.emit_c_interface", UnitAttr::get(ctx));
    return fn;
  }

  /// The whole problem on one thread: every (b, h, q-tile) in order.
  void buildEntry(OpBuilder &mb, func::FuncOp item) {
    auto fnType = FunctionType::get(ctx, commonArgTypes(), {});
    auto fn = func::FuncOp::create(mb, loc(), attn::cpuEntryName(kernel.getSymName()), fnType);
    setArgNames(fn);
    Block *entry = fn.addEntryBlock();
    OpBuilder b = OpBuilder::atBlockBegin(entry);
    Location l = loc();
    Value Q = fn.getArgument(0);
    Value c0 = cIdx(b, 0), c1 = cIdx(b, 1);
    Value nb = memref::DimOp::create(b, l, Q, 0), nh = memref::DimOp::create(b, l, Q, 1);
    Value nq = memref::DimOp::create(b, l, Q, 2);
    Value nt = arith::CeilDivUIOp::create(b, l, nq, cIdx(b, Tq));
    scf::ForOp::create(
        b, l, c0, nb, c1, ValueRange{}, [&](OpBuilder &b, Location l, Value bi, ValueRange) {
          scf::ForOp::create(
              b, l, c0, nh, c1, ValueRange{}, [&](OpBuilder &b, Location l, Value hi, ValueRange) {
                scf::ForOp::create(b, l, c0, nt, c1, ValueRange{},
                                   [&](OpBuilder &b, Location l, Value ti, ValueRange) {
                                     SmallVector<Value> args(fn.getArguments());
                                     args.append({bi, hi, ti});
                                     func::CallOp::create(b, l, item, args);
                                     scf::YieldOp::create(b, l);
                                   });
                scf::YieldOp::create(b, l);
              });
          scf::YieldOp::create(b, l);
        });
    func::ReturnOp::create(b, l);
    fn->setAttr("llvm.emit_c_interface", UnitAttr::get(ctx));
  }

  attn::KernelOp kernel;
  attn::AttentionOp attention;
  MLIRContext *ctx;
  int64_t D, Dv;
  Type elemType;
  int64_t Tq, Tk;
  /// Lower with the KV-cache ABI (pass option), and whether it applies.
  bool kvCache = false, cacheKernel = false;
  /// The option bf16-dot: Q.K^T of a bf16 cache's decode by vdpbf16ps.
  bool bf16Dot = false;
  /// The work item's name; only it (a decode twin's lowering).
  std::string itemName;
  bool itemOnly = false;
  /// The cache's storage (cacheKernel).
  attn::CacheStorage storage;
  /// Budget retention: the kernel also writes each slot's attention mass.
  bool slotMass = false;
  /// Quantized KV (int8): the stored element type, and the scale group
  /// along the head dim (0: one scale per token and head).
  bool quantized = false;
  Type kvElem;
  int64_t quantGroup = 0;
  /// int4: two values per byte (element 2i in the low nibble).
  bool nibbles = false;
  /// fp8 e4m3 bytes (decoded by kvToF32).
  bool fp8 = false;
  /// A stored scale as f32 (f16 scales are widened exactly).
  Value loadScale(OpBuilder &b, Location l, Value scales, ValueRange indices) {
    Value x = memref::LoadOp::create(b, l, scales, indices);
    return x.getType().isF32() ? x : arith::ExtFOp::create(b, l, f32(), x).getResult();
  }
  /// What the K/V memrefs hold: i8 when quantized, else Q's element type.
  Type kvElementType() const { return kvElem ? kvElem : elemType; }

  /// Element d of a K/V row at pool indices (page, head, line): i8 (int4:
  /// the nibble, sign-extended) or the kernel's element type.
  Value loadKVElement(OpBuilder &b, Location l, Value mem, Value page, Value head, Value line,
                      Value d) {
    if (!nibbles)
      return memref::LoadOp::create(b, l, mem, ValueRange{page, head, line, d});
    Value byte = memref::LoadOp::create(
        b, l, mem, ValueRange{page, head, line, arith::DivUIOp::create(b, l, d, cIdx(b, 2))});
    // Low nibble: shift left 4 first; high: as is. Then arithmetic >> 4.
    Value odd = arith::IndexCastOp::create(b, l, b.getI8Type(),
                                           arith::RemUIOp::create(b, l, d, cIdx(b, 2)));
    Value four = arith::ConstantIntOp::create(b, l, 4, 8);
    Value left = arith::SubIOp::create(b, l, four, arith::MulIOp::create(b, l, odd, four));
    return arith::ShRSIOp::create(b, l, arith::ShLIOp::create(b, l, byte, left), four);
  }
  /// n consecutive elements of a K/V row from element c (n even for int4).
  Value loadKVVector(OpBuilder &b, Location l, Value mem, Value page, Value head, Value line,
                     Value c, int64_t n) {
    if (!nibbles)
      return vector::LoadOp::create(b, l, VectorType::get({n}, kvElementType()), mem,
                                    ValueRange{page, head, line, c});
    auto half = VectorType::get({n / 2}, b.getI8Type());
    Value bytes = vector::LoadOp::create(
        b, l, half, mem, ValueRange{page, head, line, arith::DivUIOp::create(b, l, c, cIdx(b, 2))});
    Value four =
        arith::ConstantOp::create(b, l, DenseElementsAttr::get(half, b.getI8IntegerAttr(4)));
    Value lo = arith::ShRSIOp::create(b, l, arith::ShLIOp::create(b, l, bytes, four), four);
    Value hi = arith::ShRSIOp::create(b, l, bytes, four);
    return vector::InterleaveOp::create(b, l, lo, hi);
  }
  /// Tiles per run-time class group (data-dependent masks).
  static constexpr int64_t kClassTiles = 8;
  /// KV-cache kernels prefetch the K/V rows this many slots ahead (16 and
  /// 32 measured alike, bench/NOTES.md CPU session 12).
  static constexpr int64_t kPrefetchSlots = 16;
};

struct AttnToCPUPass : public attn::impl::AttnToCPUBase<AttnToCPUPass> {
  using AttnToCPUBase::AttnToCPUBase;

  void runOnOperation() override {
    ModuleOp module = getOperation();
    MLIRContext *ctx = &getContext();
    Type elem = llvm::StringSwitch<Type>(dtype)
                    .Case("f32", Float32Type::get(ctx))
                    .Case("bf16", BFloat16Type::get(ctx))
                    .Case("f16", Float16Type::get(ctx))
                    .Default(Type());
    if (!elem) {
      module.emitError("attn-to-cpu: dtype must be f32, bf16 or f16, got '") << dtype << "'";
      return signalPassFailure();
    }
    int64_t dv = headDimV > 0 ? headDimV : headDim;
    if (headDim <= 0 || tileQ <= 0 || tileK <= 0) {
      module.emitError("attn-to-cpu: head-dim, tile-q and tile-k must be positive");
      return signalPassFailure();
    }
    SmallVector<attn::KernelOp> kernels(module.getOps<attn::KernelOp>());
    for (attn::KernelOp kernel : kernels) {
      OpBuilder mb(kernel);
      KernelLowering lowering(kernel, headDim, dv, elem, tileQ, tileK, kvCache, bf16Dot);
      if (failed(lowering.run(mb)))
        return signalPassFailure();
      kernel.erase();
    }
    // Definitions are inlined by now; nothing references them any more.
    for (Operation &op : llvm::make_early_inc_range(module.getBody()->getOperations()))
      if (isa<attn::MaskOp, attn::ScoreOp>(op))
        op.erase();
  }
};

} // namespace
