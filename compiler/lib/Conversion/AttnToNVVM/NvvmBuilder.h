//===- NvvmBuilder.h - IR builders shared by the CUDA kernels ---*- C++ -*-===//
//
// What every kernel attn-to-nvvm emits builds on: scalar arith / LLVM
// helpers, tensor-core fragments (ldmatrix, mma.sync, wgmma), PTX special
// functions, and the cloning of a kernel's mask and score regions onto
// scalars (tensor parameters read from global memory). The prefill kernel
// (AttnToNVVM.cpp) and the KV-cache decode kernel (DecodeKernel.cpp) derive
// from it.
//
//===----------------------------------------------------------------------===//

#ifndef ATTNC_CONVERSION_ATTNTONVVM_NVVMBUILDER_H
#define ATTNC_CONVERSION_ATTNTONVVM_NVVMBUILDER_H

#include "attnc/Conversion/AttnToNVVM.h"
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

namespace mlir::attn::nvvm {

constexpr int64_t kWarp = 32;
constexpr double kLog2e = 1.4426950408889634;
/// Lazy rescaling threshold (log2 units) of the prefill and decode
/// kernels: P may grow to 2^8 before the running maximum moves.
constexpr double kLazyLog2 = 8.0;
constexpr double kLn2 = 0.6931471805599453;

class NvvmBuilder {
public:
  NvvmBuilder(attn::KernelOp kernel, const attn::NvvmKernelConfig &cfg, Type elemType)
      : kernel(kernel), attention(kernel.getAttention()), ctx(kernel.getContext()), cfg(cfg),
        elemType(elemType) {}

  /// Launch configuration of the emitted kernel (gpu.module attributes).
  int64_t sharedBytes = 0, numThreads = 0;

protected:
  /// A tensor parameter in global memory: pointer and dense extents.
  struct TensorArg {
    Value ptr;
    SmallVector<Value> extents;
  };

  /// Checks what every kernel needs (an attention, pure body ops, supported
  /// parameter types), then creates `gpu.module @attnc_<K>` holding the
  /// dynamic shared-memory array; returns a builder at its start.
  FailureOr<OpBuilder> createModule(OpBuilder &moduleBuilder) {
    if (!attention)
      return kernel.emitError("attn-to-nvvm: kernel has no attn.attention"), failure();
    for (Operation &op : kernel.getBody().front())
      if (!isa<attn::AttentionOp>(op) && !isPure(&op))
        return op.emitError("attn-to-nvvm: kernel body op has side effects"), failure();
    for (Type t : kernel.getArgumentTypes()) {
      Type s = getElementTypeOrSelf(t);
      bool ok = s.isInteger(32) || s.isInteger(64) || s.isF32() || s.isF64() ||
                (isa<RankedTensorType>(t) && s.isInteger(1));
      if (!ok)
        return kernel.emitError("attn-to-nvvm: unsupported parameter type ") << t, failure();
    }
    auto gpuModule =
        gpu::GPUModuleOp::create(moduleBuilder, loc(), attn::cudaEntryName(kernel.getSymName()));
    OpBuilder mb = OpBuilder::atBlockBegin(gpuModule.getBody());
    // Dynamic shared memory: one extern array for every entry of the
    // module, carved up by offsets (wgmma's swizzle atoms and the copy
    // engine's 128-byte swizzled boxes need 1024-byte alignment).
    const bool swizzled =
        cfg.wgmma || cfg.decodeTma || (cfg.cachePrefill.blockQ && cfg.cachePrefill.wgmma);
    LLVM::GlobalOp::create(mb, loc(), LLVM::LLVMArrayType::get(mb.getI8Type(), 0),
                           /*isConstant=*/false, LLVM::Linkage::External, "attnc_smem", Attribute(),
                           /*alignment=*/swizzled ? 1024 : 16,
                           /*addrSpace=*/3);
    return mb;
  }

  /// A `gpu.func` kernel `name` with argument `types` and a known block of
  /// `threads`; returns it and a builder at its entry.
  std::pair<gpu::GPUFuncOp, OpBuilder> createKernelFunc(OpBuilder &mb, const std::string &name,
                                                        ArrayRef<Type> types, int64_t threads) {
    auto fn = gpu::GPUFuncOp::create(mb, loc(), name, FunctionType::get(ctx, types, {}));
    fn->setAttr(gpu::GPUDialect::getKernelFuncAttrName(), UnitAttr::get(ctx));
    fn.setKnownBlockSizeAttr(mb.getDenseI32ArrayAttr({int32_t(threads), 1, 1}));
    return {fn, OpBuilder::atBlockBegin(&fn.getBody().front())};
  }

  /// The KV-cache decode ABI before the runtime parameters (DecodeKernel.h):
  /// the decode kernel's arguments, which the mass kernel's extend.
  static constexpr unsigned kNumDecodeArgs = 7 + 9 + 8 + 6 + 1;
  SmallVector<Type> decodeAbiTypes() {
    SmallVector<Type> types(7, ptrT());
    types.append(9, i32());
    types.append(8, i64());
    types.append(6, ptrT());
    types.push_back(i32());
    assert(types.size() == kNumDecodeArgs);
    return types;
  }
  /// The query head of packed row `pr` of KV head `hk` in a decode step
  /// (g = pr / Nq, G = Hq / Hkv).
  Value queryHead(OpBuilder &b, Value hk, Value g, Value Hkv, Value G) {
    return attention.getHeads() == attn::HeadMapping::Interleaved ? add(b, hk, mul(b, g, Hkv))
                                                                  : add(b, mul(b, hk, G), g);
  }

  /// ABI types of the kernel's runtime parameters: a scalar as itself, a
  /// tensor as a pointer and one i32 extent per dimension.
  void appendParamTypes(SmallVectorImpl<Type> &types) {
    for (Type t : kernel.getArgumentTypes()) {
      if (auto tt = dyn_cast<RankedTensorType>(t)) {
        types.push_back(ptrT());
        types.append(tt.getRank(), i32());
      } else {
        types.push_back(t);
      }
    }
  }

  /// Binds the kernel's parameters to the function arguments from `first`
  /// on (see appendParamTypes) and clones the body's values (constants, the
  /// scale) into `b`.
  void bindParams(OpBuilder &b, gpu::GPUFuncOp fn, unsigned first) {
    unsigned ai = first;
    for (auto [i, t] : llvm::enumerate(kernel.getArgumentTypes())) {
      Value kArg = kernel.getArgument(i);
      if (auto tt = dyn_cast<RankedTensorType>(t)) {
        TensorArg ta;
        ta.ptr = toGlobal(b, fn.getArgument(ai++));
        for (int64_t d = 0; d < tt.getRank(); ++d)
          ta.extents.push_back(fn.getArgument(ai++));
        tensors[kArg] = ta;
        continue;
      }
      outer.map(kArg, fn.getArgument(ai++));
    }
    for (Operation &op : kernel.getBody().front())
      if (!isa<attn::AttentionOp>(op))
        b.clone(op, outer);
  }

  // ---- small builders -----------------------------------------------------
  Location loc() { return kernel.getLoc(); }
  Type i32() { return IntegerType::get(ctx, 32); }
  Type i64() { return IntegerType::get(ctx, 64); }
  Type f32() { return Float32Type::get(ctx); }
  Type ptrT(unsigned as = 0) { return LLVM::LLVMPointerType::get(ctx, as); }
  Value ci32(OpBuilder &b, int64_t v) { return arith::ConstantIntOp::create(b, loc(), v, 32); }
  Value ci64(OpBuilder &b, int64_t v) { return arith::ConstantIntOp::create(b, loc(), v, 64); }
  Value cf32(OpBuilder &b, double v) {
    return arith::ConstantFloatOp::create(b, loc(), cast<FloatType>(f32()), APFloat(float(v)));
  }
  Value add(OpBuilder &b, Value x, Value y) { return arith::AddIOp::create(b, loc(), x, y); }
  Value mul(OpBuilder &b, Value x, Value y) { return arith::MulIOp::create(b, loc(), x, y); }
  Value sub(OpBuilder &b, Value x, Value y) { return arith::SubIOp::create(b, loc(), x, y); }
  Value divu(OpBuilder &b, Value x, Value y) { return arith::DivUIOp::create(b, loc(), x, y); }
  Value remu(OpBuilder &b, Value x, Value y) { return arith::RemUIOp::create(b, loc(), x, y); }
  Value mini(OpBuilder &b, Value x, Value y) { return arith::MinSIOp::create(b, loc(), x, y); }
  Value cmpi(OpBuilder &b, arith::CmpIPredicate p, Value x, Value y) {
    return arith::CmpIOp::create(b, loc(), p, x, y);
  }
  Value idx32(OpBuilder &b, Value v) { return arith::IndexCastOp::create(b, loc(), i32(), v); }
  Value ext64(OpBuilder &b, Value v) {
    return v.getType().isInteger(64) ? v : arith::ExtSIOp::create(b, loc(), i64(), v).getResult();
  }
  Value gep(OpBuilder &b, Value base, Value offset, Type elem) {
    return LLVM::GEPOp::create(b, loc(), base.getType(), elem, base, ValueRange{offset});
  }
  /// Element `index` of type `t` at `base` (a typed load / store).
  Value load(OpBuilder &b, Type t, Value base, Value index) {
    return LLVM::LoadOp::create(b, loc(), t, gep(b, base, index, t));
  }
  void store(OpBuilder &b, Value v, Value base, Value index) {
    LLVM::StoreOp::create(b, loc(), v, gep(b, base, index, v.getType()));
  }
  /// Runs `body` in an scf.if on `cond` (no results).
  void ifThen(OpBuilder &b, Value cond, llvm::function_ref<void(OpBuilder &)> body) {
    auto op = scf::IfOp::create(b, loc(), cond, /*withElseRegion=*/false);
    OpBuilder tb = op.getThenBodyBuilder();
    body(tb);
  }
  /// `values`, replaced by thenBody's results when `cond` holds (an scf.if
  /// that yields them; the else branch yields `values` unchanged).
  SmallVector<Value> ifElseValues(OpBuilder &b, Value cond, ValueRange values,
                                  llvm::function_ref<SmallVector<Value>(OpBuilder &)> thenBody) {
    auto op = scf::IfOp::create(b, loc(), values.getTypes(), cond, /*withElseRegion=*/true);
    OpBuilder tb = op.getThenBodyBuilder();
    scf::YieldOp::create(tb, loc(), thenBody(tb));
    OpBuilder eb = op.getElseBodyBuilder();
    scf::YieldOp::create(eb, loc(), values);
    return SmallVector<Value>(op.getResults());
  }
  /// body(index) for index = first, first + stride, ... below `count`
  /// (compile-time stride and count: threads or lanes strided over items;
  /// a bounds check only on the last, partial, round).
  void forStrided(OpBuilder &b, Value first, int64_t stride, int64_t count,
                  llvm::function_ref<void(OpBuilder &, Value)> body) {
    for (int64_t it = 0; it * stride < count; ++it) {
      Value index = add(b, first, ci32(b, it * stride));
      if ((it + 1) * stride <= count)
        body(b, index);
      else
        ifThen(b, arith::CmpIOp::create(b, loc(), arith::CmpIPredicate::slt, index, ci32(b, count)),
               [&](OpBuilder &b) { body(b, index); });
    }
  }
  Value toGlobal(OpBuilder &b, Value p) {
    return LLVM::AddrSpaceCastOp::create(b, loc(), ptrT(1), p);
  }
  Value fmax(OpBuilder &b, Value x, Value y) { return arith::MaximumFOp::create(b, loc(), x, y); }
  Value fadd(OpBuilder &b, Value x, Value y) { return arith::AddFOp::create(b, loc(), x, y); }
  Value fmul(OpBuilder &b, Value x, Value y) { return arith::MulFOp::create(b, loc(), x, y); }
  Value fsub(OpBuilder &b, Value x, Value y) { return arith::SubFOp::create(b, loc(), x, y); }
  Value select(OpBuilder &b, Value c, Value x, Value y) {
    return arith::SelectOp::create(b, loc(), c, x, y);
  }
  /// PTX special functions (approximate, ~2 ulp), no libdevice needed.
  Value ex2(OpBuilder &b, Value x) {
    return LLVM::CallIntrinsicOp::create(
               b, loc(), f32(), b.getStringAttr("llvm.nvvm.ex2.approx.ftz.f"), ValueRange{x})
        .getResult(0);
  }
  Value ptxUnary(OpBuilder &b, StringRef instr, Value x) {
    auto asmOp = LLVM::InlineAsmOp::create(
        b, loc(), f32(), ValueRange{x}, (instr + " $0, $1;").str(), "=f,f",
        /*has_side_effects=*/false, /*is_align_stack=*/false,
        LLVM::tailcallkind::TailCallKind::None, LLVM::AsmDialectAttr(), ArrayAttr());
    return asmOp.getResult(0);
  }
  Value lg2(OpBuilder &b, Value x) { return ptxUnary(b, "lg2.approx.f32", x); }
  Value shflXor(OpBuilder &b, Value v, int64_t mask) {
    return gpu::ShuffleOp::create(b, loc(), v, ci32(b, mask), ci32(b, kWarp), gpu::ShuffleMode::XOR)
        .getShuffleResult();
  }

  /// ldmatrix.x4: four 8x8 b16 matrices, one row address per lane.
  SmallVector<Value> ldmatrix4(OpBuilder &b, Value sharedPtr, bool trans) {
    SmallVector<Type> regs(4, i32());
    Value r = NVVM::LdMatrixOp::create(
        b, loc(), LLVM::LLVMStructType::getLiteral(ctx, regs), sharedPtr, b.getI32IntegerAttr(4),
        NVVM::MMALayoutAttr::get(ctx, trans ? NVVM::MMALayout::col : NVVM::MMALayout::row),
        NVVM::LdStMatrixShapeAttr::get(ctx, 8, 8),
        NVVM::LdStMatrixEltTypeAttr::get(ctx, NVVM::LdStMatrixEltType::B16));
    SmallVector<Value> out;
    for (int i = 0; i < 4; ++i)
      out.push_back(LLVM::ExtractValueOp::create(b, loc(), r, i));
    return out;
  }

  /// One m16n8k16 MMA: c += a . b (a: 4 regs, b: 2 regs of packed 16-bit
  /// pairs as i32; c: 4 f32).
  /// `operands` (bf16 or f16) defaults to the kernel's element type.
  SmallVector<Value, 4> mma(OpBuilder &b, ArrayRef<Value> a, ArrayRef<Value> bf, ArrayRef<Value> c,
                            Type operands = {}) {
    Type et = operands ? operands : elemType;
    bool bf16 = et.isBF16();
    auto operand = [&](Value v) -> Value {
      if (bf16)
        return v;
      return LLVM::BitcastOp::create(b, loc(), VectorType::get({2}, et), v);
    };
    SmallVector<Value> av, bv;
    for (Value v : a)
      av.push_back(operand(v));
    for (Value v : bf)
      bv.push_back(operand(v));
    Type res = LLVM::LLVMStructType::getLiteral(ctx, {f32(), f32(), f32(), f32()});
    auto t = bf16 ? NVVM::MMATypes::bf16 : NVVM::MMATypes::f16;
    Value r = NVVM::MmaOp::create(
        b, loc(), res, av, bv, c, ArrayRef<int64_t>{16, 8, 16}, std::nullopt, std::nullopt,
        std::array<NVVM::MMATypes, 2>{t, t},
        std::array<NVVM::MMALayout, 2>{NVVM::MMALayout::row, NVVM::MMALayout::col});
    SmallVector<Value, 4> out;
    for (int i = 0; i < 4; ++i)
      out.push_back(LLVM::ExtractValueOp::create(b, loc(), r, i));
    return out;
  }

  /// Two f32 rounded to the element type, packed low-first into an i32.
  Value pack(OpBuilder &b, Value lo, Value hi, Type to = {}) {
    Type et = to ? to : elemType;
    auto v2 = VectorType::get({2}, et);
    Value v = LLVM::PoisonOp::create(b, loc(), v2);
    v = LLVM::InsertElementOp::create(b, loc(), v, arith::TruncFOp::create(b, loc(), et, lo),
                                      ci32(b, 0));
    v = LLVM::InsertElementOp::create(b, loc(), v, arith::TruncFOp::create(b, loc(), et, hi),
                                      ci32(b, 1));
    return LLVM::BitcastOp::create(b, loc(), i32(), v);
  }

  // ---- warpgroup MMA (sm_90a) -----------------------------------------------

  LLVM::InlineAsmOp inlinePtx(OpBuilder &b, Type result, ValueRange operands, StringRef text,
                              StringRef constraints) {
    return LLVM::InlineAsmOp::create(b, loc(), result, operands, text, constraints,
                                     /*has_side_effects=*/true, /*is_align_stack=*/false,
                                     LLVM::tailcallkind::TailCallKind::None, LLVM::AsmDialectAttr(),
                                     ArrayAttr());
  }

  /// Orders this thread's earlier shared-memory writes (cp.async included)
  /// before later reads by the async proxy (wgmma operands).
  void fenceProxyAsync(OpBuilder &b) {
    inlinePtx(b, Type(), {}, "fence.proxy.async.shared::cta;", "");
  }

  /// True in every thread of warpgroup `group` if `pred` holds in one of
  /// them (bar.red.or on named barrier 1 + group, 128 threads): wgmma needs
  /// the branches around it uniform over the warpgroup, not only the warp.
  Value warpgroupAny(OpBuilder &b, Value pred, Value group) {
    Value in = arith::ExtUIOp::create(b, loc(), i32(), pred);
    Value id = add(b, group, ci32(b, 1));
    Value r = inlinePtx(b, i32(), ValueRange{in, id},
                        "{\n.reg .pred p, q;\nsetp.ne.u32 p, $1, 0;\n"
                        "bar.red.or.pred q, $2, 128, p;\nselp.u32 $0, 1, 0, q;\n}",
                        "=r,r,r")
                  .getResult(0);
    return arith::CmpIOp::create(b, loc(), arith::CmpIPredicate::ne, r, ci32(b, 0));
  }

  /// Shared-memory matrix descriptor of a 128B-swizzled wgmma operand at
  /// shared address `addr` (its swizzle atoms 1024-byte aligned): start
  /// address, leading and stride byte offsets (all >> 4), layout 1 (128B
  /// swizzle) in bits 62-63. A later k step within a 64-column atom adds
  /// its byte offset >> 4 to the start address (see wgmmaStep).
  Value wgmmaDesc(OpBuilder &b, Value addr, int64_t leadingBytes, int64_t strideBytes) {
    int64_t fixed = ((leadingBytes >> 4) << 16) | ((strideBytes >> 4) << 32) | (int64_t(1) << 62);
    Value start = arith::AndIOp::create(
        b, loc(), arith::ShRUIOp::create(b, loc(), addr, ci32(b, 4)), ci32(b, 0x3FFF));
    return arith::OrIOp::create(b, loc(), arith::ExtUIOp::create(b, loc(), i64(), start),
                                ci64(b, fixed));
  }
  Value wgmmaStep(OpBuilder &b, Value desc, int64_t byteOffset) {
    return byteOffset ? add(b, desc, ci64(b, byteOffset >> 4)) : desc;
  }

  /// A chain of wgmma.mma_async m64nNk16 (f32 accumulators) in one asm
  /// block: fence, the MMAs, commit, wait. Step k reads B through descB[k]
  /// and A through descA[k] (shared memory) or, when descA is empty, from
  /// the 4 registers aRegs[k]. Without `acc` the first step starts from
  /// zero. One block per chain means no register the MMAs read or write is
  /// touched while they run (the PTX rule wgmma.fence otherwise enforces).
  SmallVector<Value> wgmmaChain(OpBuilder &b, int64_t n, ArrayRef<Value> acc, ArrayRef<Value> descA,
                                ArrayRef<SmallVector<Value>> aRegs, ArrayRef<Value> descB,
                                bool transB) {
    const int64_t m = n / 2;
    std::string type = elemType.isBF16() ? "bf16" : "f16";
    std::string cons;
    SmallVector<Value> ins;
    for (int64_t i = 0; i < m; ++i)
      cons += "=f,";
    for (auto [i, v] : llvm::enumerate(acc)) {
      cons += std::to_string(i) + ",";
      ins.push_back(v);
    }
    auto operand = [&](Value v, StringRef c) {
      cons += c.str() + ",";
      ins.push_back(v);
      return "$" + std::to_string(m + ins.size() - 1);
    };
    std::string zero = operand(ci32(b, 0), "r");
    std::string d = "{";
    for (int64_t i = 0; i < m; ++i)
      d += (i ? ",$" : "$") + std::to_string(i);
    d += "}";
    std::string text = "{\n.reg .pred zd, ad;\nsetp.ne.b32 zd, " + zero + ", 0;\nsetp.eq.b32 ad, " +
                       zero + ", 0;\nwgmma.fence.sync.aligned;\n";
    for (size_t k = 0; k < descB.size(); ++k) {
      std::string a;
      if (!descA.empty()) {
        a = operand(descA[k], "l");
      } else {
        a = "{";
        for (int r = 0; r < 4; ++r)
          a += (r ? "," : "") + operand(aRegs[k][r], "r");
        a += "}";
      }
      std::string bDesc = operand(descB[k], "l");
      bool accumulate = !acc.empty() || k > 0;
      text += "wgmma.mma_async.sync.aligned.m64n" + std::to_string(n) + "k16.f32." + type + "." +
              type + " " + d + ", " + a + ", " + bDesc + ", " + (accumulate ? "ad" : "zd") +
              ", 1, 1, " + (descA.empty() ? "" : "0, ") + (transB ? "1" : "0") + ";\n";
    }
    text += "wgmma.commit_group.sync.aligned;\nwgmma.wait_group.sync.aligned 0;\n}";
    cons.pop_back();
    SmallVector<Type> fs(m, f32());
    Value r = inlinePtx(b, LLVM::LLVMStructType::getLiteral(ctx, fs), ins, text, cons).getResult(0);
    SmallVector<Value> out;
    for (int64_t i = 0; i < m; ++i)
      out.push_back(LLVM::ExtractValueOp::create(b, loc(), r, i));
    return out;
  }

  // ---- region cloning -----------------------------------------------------

  /// Clones the ops of an attn region on scalars. `args` maps the block
  /// arguments; kernel values come from `outer`; tensor parameters are read
  /// through `tensors` (pointer + extents). Returns the yielded value.
  FailureOr<Value> cloneRegion(OpBuilder &b, Block &block, ArrayRef<Value> args) {
    IRMapping map;
    for (auto [arg, v] : llvm::zip(block.getArguments(), args))
      map.map(arg, v);
    auto get = [&](Value v) -> Value {
      if (Value m = map.lookupOrNull(v))
        return m;
      return outer.lookup(v);
    };
    for (Operation &op : block) {
      if (auto yield = dyn_cast<attn::YieldOp>(op))
        return get(yield.getValue());
      if (auto load = dyn_cast<attn::LoadOp>(op)) {
        SmallVector<Value> indices;
        for (Value idx : load.getIndices())
          indices.push_back(get(idx));
        Value v = loadElement(b, load, indices);
        if (!v)
          return op.emitError("attn-to-nvvm: load from an unknown tensor"), failure();
        map.map(load.getResult(), v);
        continue;
      }
      if (isa<math::MathDialect>(op.getDialect())) {
        FailureOr<Value> r = lowerMath(b, op, get);
        if (failed(r))
          return failure();
        map.map(op.getResult(0), *r);
        continue;
      }
      if (op.getNumRegions() == 0 && isa<arith::ArithDialect>(op.getDialect())) {
        for (Value v : op.getOperands())
          if (!map.contains(v))
            map.map(v, get(v));
        Operation *clone = b.clone(op, map);
        // f32 division in masks and scores runs as div.approx (2 ulp), as
        // FlexAttention's Triton code does; IEEE div.rn is a ~10-instruction
        // subroutine per element.
        if (auto div = dyn_cast<arith::DivFOp>(clone))
          div.setFastmath(arith::FastMathFlags::afn | arith::FastMathFlags::arcp);
        continue;
      }
      return op.emitError("attn-to-nvvm: cannot lower '") << op.getName() << "'", failure();
    }
    return failure();
  }

  /// The score of the raw product `s` of (b, h, q, k) in the log2 domain:
  /// s * scaleLog2 for the plain score, else score(s * scale, b, h, q, k)
  /// * log2(e).
  FailureOr<Value> log2Score(OpBuilder &b, Value s, Value scale, Value scaleLog2,
                             ArrayRef<Value> bhqk) {
    Block &score = attention.getScoreBlock();
    if (attention.getScoreValue() == score.getArgument(0))
      return fmul(b, s, scaleLog2);
    SmallVector<Value> args = {fmul(b, s, scale)};
    args.append(bhqk.begin(), bhqk.end());
    FailureOr<Value> r = cloneRegion(b, score, args);
    if (failed(r))
      return failure();
    return fmul(b, *r, cf32(b, kLog2e));
  }

  /// Element `indices` of a tensor parameter (global memory, dense row-major;
  /// i1 tensors are bytes); null for an unknown tensor.
  Value loadElement(OpBuilder &b, attn::LoadOp load, ArrayRef<Value> indices) {
    auto it = tensors.find(load.getTensor());
    if (it == tensors.end())
      return {};
    const TensorArg &t = it->second;
    Location l = load.getLoc();
    Value linear;
    for (auto [d, idx] : llvm::enumerate(indices)) {
      Value iv = ext64(b, idx);
      linear = linear ? add(b, mul(b, linear, ext64(b, t.extents[d])), iv) : iv;
    }
    if (!linear)
      linear = ci64(b, 0);
    Type elem = load.getResult().getType();
    Value p = gep(b, t.ptr, linear, elem.isInteger(1) ? b.getI8Type() : elem);
    if (elem.isInteger(1)) {
      Value byte = LLVM::LoadOp::create(b, l, b.getI8Type(), p);
      return arith::CmpIOp::create(b, l, arith::CmpIPredicate::ne, byte,
                                   arith::ConstantIntOp::create(b, l, 0, 8));
    }
    return LLVM::LoadOp::create(b, l, elem, p, /*alignment=*/0, /*isVolatile=*/false,
                                /*isNonTemporal=*/false, /*isInvariant=*/true);
  }

  /// Math builtins on f32 as PTX instructions (ex2/lg2/tanh approx, which
  /// is what the fast paths of FlashAttention and Triton use) or LLVM
  /// intrinsics the NVPTX backend selects natively.
  FailureOr<Value> lowerMath(OpBuilder &b, Operation &op, llvm::function_ref<Value(Value)> get) {
    if (auto absi = dyn_cast<math::AbsIOp>(op)) {
      // |x| with the reference's wrap-around at INT_MIN.
      Value x = get(absi.getOperand());
      Value zero = arith::ConstantIntOp::create(b, op.getLoc(), x.getType(), 0);
      Value neg = arith::SubIOp::create(b, op.getLoc(), zero, x);
      return Value(arith::MaxSIOp::create(b, op.getLoc(), x, neg));
    }
    if (op.getNumOperands() != 1 || !op.getResult(0).getType().isF32())
      return op.emitError("attn-to-nvvm: unsupported math op '") << op.getName() << "'", failure();
    Value x = get(op.getOperand(0));
    Location l = op.getLoc();
    return llvm::TypeSwitch<Operation *, FailureOr<Value>>(&op)
        .Case([&](math::ExpOp) { return ex2(b, fmul(b, x, cf32(b, kLog2e))); })
        .Case([&](math::Exp2Op) { return ex2(b, x); })
        .Case([&](math::LogOp) { return fmul(b, lg2(b, x), cf32(b, kLn2)); })
        .Case([&](math::Log2Op) { return lg2(b, x); })
        .Case([&](math::TanhOp) { return ptxUnary(b, "tanh.approx.f32", x); })
        .Case([&](math::SqrtOp) { return Value(LLVM::SqrtOp::create(b, l, x)); })
        .Case([&](math::FloorOp) { return Value(LLVM::FFloorOp::create(b, l, x)); })
        .Case([&](math::CeilOp) { return Value(LLVM::FCeilOp::create(b, l, x)); })
        .Case([&](math::AbsFOp) { return Value(LLVM::FAbsOp::create(b, l, x)); })
        .Default([&](Operation *) -> FailureOr<Value> {
          return op.emitError("attn-to-nvvm: unsupported math op '") << op.getName() << "'",
                 failure();
        });
  }

  attn::KernelOp kernel;
  attn::AttentionOp attention;
  MLIRContext *ctx;
  attn::NvvmKernelConfig cfg;
  Type elemType;
  IRMapping outer;
  llvm::DenseMap<Value, TensorArg> tensors;
};

} // namespace mlir::attn::nvvm

#endif // ATTNC_CONVERSION_ATTNTONVVM_NVVMBUILDER_H
