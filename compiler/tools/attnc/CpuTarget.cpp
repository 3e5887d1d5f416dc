//===- CpuTarget.cpp - attnc's CPU target (JIT, --emit stages) ------------===//

#include "CpuTarget.h"

#include "attnc/Conversion/AttnToCPU.h"
#include "attnc/DSL/MLIRGen.h"
#include "attnc/Dialect/Attn/IR/AttnOps.h"
#include "attnc/Pipeline/CpuPipeline.h"
#include "attnc/Pipeline/Pipeline.h"

#include "mlir/ExecutionEngine/ExecutionEngine.h"
#include "mlir/IR/DialectRegistry.h"
#include "mlir/IR/MLIRContext.h"
#include "llvm/IR/LLVMContext.h"
#include "llvm/IR/Module.h"
#include "llvm/Support/CommandLine.h"

#include <chrono>
#include <cstring>

using namespace attnc;
using namespace attnc::driver;

namespace {
llvm::cl::opt<int64_t> headDimOpt("head-dim",
                                  llvm::cl::desc("Head dimension for --emit=tiled|llvm "
                                                 "(default: the kernel's first head_dim, or 128)"),
                                  llvm::cl::init(0), llvm::cl::sub(llvm::cl::SubCommand::getAll()));
llvm::cl::opt<int64_t> tileQOpt("cpu-tile-q", llvm::cl::desc("CPU target: query rows per work item"),
                                llvm::cl::init(16), llvm::cl::sub(llvm::cl::SubCommand::getAll()));
llvm::cl::opt<int64_t> tileKOpt("cpu-tile-k", llvm::cl::desc("CPU target: keys per KV tile"),
                                llvm::cl::init(16), llvm::cl::sub(llvm::cl::SubCommand::getAll()));
llvm::cl::opt<unsigned> repeatOpt("cpu-repeat",
                                  llvm::cl::desc("CPU target: run N times, report the best time"),
                                  llvm::cl::init(1), llvm::cl::sub(llvm::cl::SubCommand::getAll()));

llvm::Error makeError(const llvm::Twine &msg) {
  return llvm::createStringError(llvm::inconvertibleErrorCode(), msg);
}

void registerCpu(mlir::MLIRContext &ctx) {
  mlir::DialectRegistry registry;
  pipeline::registerCpuDialects(registry);
  ctx.appendDialectRegistry(registry);
  ctx.loadAllAvailableDialects();
}

/// MLIRGen of one kernel, inlined and simplified.
mlir::OwningOpRef<mlir::ModuleOp> genKernel(mlir::MLIRContext &ctx, const dsl::Program &prog,
                                            const std::string &kernel,
                                            const std::map<std::string, std::string> &consts) {
  dsl::MLIRGenOptions genOptions;
  genOptions.kernel = kernel;
  genOptions.constValues = consts;
  auto module = dsl::mlirGen(ctx, prog, genOptions);
  if (!module || mlir::failed(pipeline::runInlineAndSimplify(*module)))
    return nullptr;
  return module;
}

/// A memref descriptor as the C interface expects it: base, aligned,
/// offset, sizes[rank], strides[rank] (row-major).
struct Descriptor {
  std::vector<int64_t> words;
  Descriptor(void *data, llvm::ArrayRef<int64_t> dims) {
    words.push_back(int64_t(reinterpret_cast<intptr_t>(data)));
    words.push_back(int64_t(reinterpret_cast<intptr_t>(data)));
    words.push_back(0);
    for (int64_t d : dims)
      words.push_back(d);
    std::vector<int64_t> strides(dims.size(), 1);
    for (int i = int(dims.size()) - 2; i >= 0; --i)
      strides[i] = strides[i + 1] * dims[i + 1];
    words.insert(words.end(), strides.begin(), strides.end());
  }
  void *ptr() { return words.data(); }
};

/// Typed storage for one runtime parameter.
struct ParamStorage {
  std::vector<char> bytes;
  std::unique_ptr<Descriptor> desc;
  void *descPtr = nullptr; // the C interface takes a pointer to the descriptor
  int64_t scalar = 0;      // scalar bits (i32/i64/f32)
};

bool fill(ParamStorage &s, mlir::Type elem, llvm::ArrayRef<double> values) {
  unsigned width = elem.isInteger(1) ? 8 : elem.getIntOrFloatBitWidth();
  s.bytes.assign(std::max<size_t>(1, values.size()) * width / 8, 0);
  for (size_t i = 0; i < values.size(); ++i) {
    char *p = s.bytes.data() + i * width / 8;
    if (elem.isF32()) {
      float f = float(values[i]);
      std::memcpy(p, &f, 4);
    } else if (elem.isInteger(64)) {
      int64_t v = int64_t(values[i]);
      std::memcpy(p, &v, 8);
    } else if (elem.isInteger(32)) {
      int32_t v = int32_t(int64_t(values[i]));
      std::memcpy(p, &v, 4);
    } else if (elem.isInteger(1) || elem.isInteger(8)) {
      *p = values[i] != 0;
    } else {
      return false;
    }
  }
  return true;
}

} // namespace

bool attnc::driver::emitCpu(mlir::MLIRContext &ctx, const dsl::Program &prog,
                            const std::string &kernel, const std::vector<std::string> &params,
                            CpuStage stage, llvm::raw_ostream &os) {
  registerCpu(ctx);
  std::map<std::string, std::string> consts;
  for (auto &p : params) {
    auto [name, value] = llvm::StringRef(p).split('=');
    consts[name.trim().str()] = value.trim().str();
  }
  std::string name = kernel;
  if (name.empty()) {
    if (prog.main->kernels.size() != 1) {
      llvm::errs() << "attnc: error: --emit=tiled|llvm needs --kernel when the file has "
                   << prog.main->kernels.size() << " kernels\n";
      return false;
    }
    name = prog.main->kernels.front()->name;
  }
  const dsl::KernelDecl *k = prog.lookupKernel(name);
  if (!k) {
    llvm::errs() << "attnc: error: no kernel named '" << name << "'\n";
    return false;
  }
  auto module = genKernel(ctx, prog, name, consts);
  if (!module)
    return false;
  pipeline::CpuOptions options;
  options.headDim = headDimOpt ? headDimOpt : (k->headDims.empty() ? 128 : k->headDims.front());
  options.tileQ = tileQOpt;
  options.tileK = tileKOpt;
  if (mlir::failed(pipeline::lowerToTiled(*module, options)))
    return false;
  if (stage == CpuStage::Tiled) {
    module->print(os);
    return true;
  }
  if (mlir::failed(pipeline::lowerToLLVM(*module, options)))
    return false;
  if (stage == CpuStage::LLVMDialect) {
    module->print(os);
    return true;
  }
  llvm::LLVMContext llvmCtx;
  auto llvmModule = pipeline::translateToLLVMIR(*module, llvmCtx, options);
  if (!llvmModule) {
    llvm::errs() << "attnc: error: " << llvm::toString(llvmModule.takeError()) << "\n";
    return false;
  }
  (*llvmModule)->print(os, nullptr);
  return true;
}

llvm::Expected<CpuRunResult>
attnc::driver::runCpu(mlir::MLIRContext &ctx, const dsl::Program &prog, const dsl::KernelDecl &k,
                      const RunOptions &options, const reference::Shape &shape,
                      const std::vector<double> &Q, const std::vector<double> &K,
                      const std::vector<double> &V, const reference::Bindings &bindings) {
  registerCpu(ctx);
  std::map<std::string, std::string> consts;
  for (auto &p : k.constParams) {
    auto it = bindings.scalars.find(p.name);
    if (it != bindings.scalars.end())
      consts[p.name] = p.decl->elemType == dsl::ScalarType::F32
                           ? std::to_string(it->second)
                           : std::to_string(int64_t(it->second));
  }
  auto module = genKernel(ctx, prog, k.name, consts);
  if (!module)
    return makeError("MLIRGen or the attn passes failed");
  mlir::attn::KernelOp kernel;
  module->walk([&](mlir::attn::KernelOp op) { kernel = op; });
  if (!kernel)
    return makeError("no kernel after MLIRGen");

  // Runtime parameters in kernel order, typed from the IR.
  unsigned nParams = kernel.getNumArguments();
  std::vector<ParamStorage> storage(nParams);
  for (unsigned i = 0; i < nParams; ++i) {
    std::string name = kernel.getParamName(i).str();
    mlir::Type type = kernel.getArgumentTypes()[i];
    ParamStorage &s = storage[i];
    if (auto tt = llvm::dyn_cast<mlir::RankedTensorType>(type)) {
      auto it = bindings.tensors.find(name);
      if (it == bindings.tensors.end())
        return makeError("tensor parameter '" + name + "' is not bound");
      if (!fill(s, tt.getElementType(), it->second.data))
        return makeError("unsupported element type of tensor parameter '" + name + "'");
      s.desc = std::make_unique<Descriptor>(s.bytes.data(), it->second.dims);
      s.descPtr = s.desc->ptr();
      continue;
    }
    double v;
    auto it = bindings.scalars.find(name);
    if (it != bindings.scalars.end()) {
      v = it->second;
    } else if (auto def = kernel.getArgAttrOfType<mlir::Attribute>(i, "attn.default")) {
      if (auto fa = llvm::dyn_cast<mlir::FloatAttr>(def))
        v = fa.getValueAsDouble();
      else
        v = double(llvm::cast<mlir::IntegerAttr>(def).getValue().getSExtValue());
    } else {
      return makeError("scalar parameter '" + name + "' is not bound and has no default");
    }
    if (type.isF32()) {
      float f = float(v);
      std::memcpy(&s.scalar, &f, 4);
    } else if (type.isInteger(32)) {
      int32_t x = int32_t(int64_t(v));
      std::memcpy(&s.scalar, &x, 4);
    } else if (type.isInteger(64)) {
      s.scalar = int64_t(v);
    } else {
      return makeError("unsupported type of scalar parameter '" + name + "'");
    }
  }

  pipeline::CpuOptions cpu;
  cpu.headDim = shape.D;
  cpu.headDimV = shape.Dv;
  cpu.tileQ = tileQOpt;
  cpu.tileK = tileKOpt;
  if (mlir::failed(pipeline::lowerToTiled(*module, cpu)))
    return makeError("attn-to-cpu failed");
  if (mlir::failed(pipeline::lowerToLLVM(*module, cpu)))
    return makeError("lowering to the LLVM dialect failed");
  auto engine = pipeline::createJIT(*module, cpu);
  if (!engine)
    return engine.takeError();

  // Inputs are f32 (bf16/f16 inputs arrive already rounded, so f32 holds
  // them exactly).
  std::vector<float> q(Q.begin(), Q.end()), kk(K.begin(), K.end()), v(V.begin(), V.end());
  std::vector<float> O(shape.B * shape.Hq * shape.Nq * shape.Dv), LSE(shape.B * shape.Hq * shape.Nq);
  Descriptor dQ(q.data(), {shape.B, shape.Hq, shape.Nq, shape.D});
  Descriptor dK(kk.data(), {shape.B, shape.Hkv, shape.Nk, shape.D});
  Descriptor dV(v.data(), {shape.B, shape.Hkv, shape.Nk, shape.Dv});
  Descriptor dO(O.data(), {shape.B, shape.Hq, shape.Nq, shape.Dv});
  Descriptor dL(LSE.data(), {shape.B, shape.Hq, shape.Nq});
  void *pQ = dQ.ptr(), *pK = dK.ptr(), *pV = dV.ptr(), *pO = dO.ptr(), *pL = dL.ptr();
  int32_t qOffset = int32_t(options.qOffset);
  llvm::SmallVector<void *> args = {&pQ, &pK, &pV, &pO, &pL, &qOffset};
  for (ParamStorage &s : storage)
    args.push_back(s.descPtr ? static_cast<void *>(&s.descPtr) : static_cast<void *>(&s.scalar));

  CpuRunResult result;
  result.bestMs = 1e300;
  std::string entry = "_mlir_ciface_" + mlir::attn::cpuEntryName(k.name);
  unsigned repeats = std::max(1u, unsigned(repeatOpt));
  for (unsigned r = 0; r < repeats; ++r) {
    // Poison the outputs: every element must be written.
    std::fill(O.begin(), O.end(), std::nanf(""));
    std::fill(LSE.begin(), LSE.end(), std::nanf(""));
    auto start = std::chrono::steady_clock::now();
    if (llvm::Error err = (*engine)->invokePacked(entry, args))
      return std::move(err);
    double ms = std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - start)
                    .count();
    result.bestMs = std::min(result.bestMs, ms);
  }
  result.repeats = repeats;
  result.O.assign(O.begin(), O.end());
  result.LSE.assign(LSE.begin(), LSE.end());
  return result;
}
