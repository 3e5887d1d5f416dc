//===- Driver.cpp - attnc subcommands -------------------------------------===//

#include "Driver.h"

#include "attnc/DSL/MLIRGen.h"
#include "attnc/DSL/Reference.h"
#include "attnc/Dialect/Attn/IR/AttnDialect.h"

#include "mlir/IR/Diagnostics.h"
#include "mlir/IR/DialectRegistry.h"
#include "mlir/IR/MLIRContext.h"
#include "llvm/ADT/StringExtras.h"
#include "llvm/Support/Format.h"

#include <chrono>
#include <random>

using namespace attnc;
using namespace attnc::driver;

void attnc::driver::registerDialects(mlir::MLIRContext &ctx) {
  mlir::DialectRegistry registry;
  mlir::attn::registerAttnDialect(registry);
  ctx.appendDialectRegistry(registry);
  ctx.loadAllAvailableDialects();
}

static bool splitParams(const std::vector<std::string> &params,
                        std::map<std::string, std::string> &out) {
  for (auto &p : params) {
    auto [name, value] = llvm::StringRef(p).split('=');
    if (name.empty() || value.empty() || !llvm::StringRef(p).contains('=')) {
      llvm::errs() << "attnc: error: --param expects NAME=VALUE, got '" << p << "'\n";
      return false;
    }
    if (!out.emplace(name.trim().str(), value.trim().str()).second) {
      llvm::errs() << "attnc: error: parameter '" << name << "' is given twice\n";
      return false;
    }
  }
  return true;
}

bool attnc::driver::emitAttn(mlir::MLIRContext &ctx, const dsl::Program &prog,
                             const std::string &kernel, const std::vector<std::string> &params,
                             llvm::raw_ostream &os) {
  dsl::MLIRGenOptions options;
  options.kernel = kernel;
  if (!splitParams(params, options.constValues))
    return false;
  if (!options.constValues.empty() && kernel.empty() && prog.main->kernels.size() != 1) {
    llvm::errs() << "attnc: error: --param needs --kernel when the file has "
                 << prog.main->kernels.size() << " kernels\n";
    return false;
  }
  auto module = dsl::mlirGen(ctx, prog, options);
  if (!module)
    return false;
  module->print(os);
  return true;
}

static bool parseShape(llvm::StringRef text, reference::Shape &s) {
  llvm::SmallVector<llvm::StringRef> parts;
  text.split(parts, ',');
  if (parts.size() != 6 && parts.size() != 7)
    return false;
  int64_t v[7];
  for (size_t i = 0; i < parts.size(); ++i)
    if (parts[i].trim().getAsInteger(10, v[i]) || v[i] < 0)
      return false;
  s = {v[0], v[1], v[2], v[3], v[4], v[5], parts.size() == 7 ? v[6] : v[5]};
  return true;
}

bool attnc::driver::runKernel(mlir::MLIRContext &ctx, const dsl::Program &prog,
                              const RunOptions &options, llvm::raw_ostream &os) {
  auto fail = [](const llvm::Twine &msg) {
    llvm::errs() << "attnc run: error: " << msg << "\n";
    return false;
  };
  if (options.kernel.empty())
    return fail("--kernel=NAME is required");
  const dsl::KernelDecl *k = prog.lookupKernel(options.kernel);
  if (!k) {
    std::vector<std::string> names;
    for (auto &[n, _] : prog.kernels)
      names.push_back(n);
    return fail("no kernel named '" + options.kernel + "'" +
                (names.empty() ? "" : " (available: " + llvm::join(names, ", ") + ")"));
  }
  reference::Shape shape;
  if (!parseShape(options.shape, shape))
    return fail("--shape expects B,Hq,Hkv,Nq,Nk,D[,Dv] (non-negative integers), got '" +
                options.shape + "'");
  if (shape.Hkv == 0 || shape.Hq % shape.Hkv != 0)
    return fail("Hq must be a multiple of Hkv");
  if (!k->headDims.empty() && !llvm::is_contained(k->headDims, shape.D))
    return fail("kernel '" + k->name + "' is declared for head_dim " +
                llvm::join(llvm::map_range(k->headDims, [](int64_t d) { return std::to_string(d); }),
                           ", ") +
                ", not " + std::to_string(shape.D));
  if (options.qOffset < 0)
    return fail("--q-offset must be non-negative");
  if (options.target != "reference")
    return fail("unknown target '" + options.target + "' (available: reference)");
  if (options.check)
    return fail("--check compares a compiled target against the reference; --target=reference "
                "has nothing to compare");

  auto bindings = reference::parseBindings(*k, shape, options.params, options.seed, options.qOffset);
  if (!bindings)
    return fail(llvm::toString(bindings.takeError()));
  bindings->qOffset = options.qOffset;

  std::mt19937_64 rng(options.seed);
  std::normal_distribution<double> normal(0.0, 1.0);
  auto random = [&](size_t n) {
    std::vector<double> v(n);
    for (auto &x : v)
      x = normal(rng);
    return v;
  };
  auto Q = random(shape.B * shape.Hq * shape.Nq * shape.D);
  auto K = random(shape.B * shape.Hkv * shape.Nk * shape.D);
  auto V = random(shape.B * shape.Hkv * shape.Nk * shape.Dv);

  auto start = std::chrono::steady_clock::now();
  auto out = reference::evaluate(*k, shape, Q.data(), K.data(), V.data(), *bindings);
  double ms = std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - start)
                  .count();
  if (!out)
    return fail(llvm::toString(out.takeError()));

  double sum = 0, sumAbs = 0;
  for (double x : out->O) {
    sum += x;
    sumAbs += std::abs(x);
  }
  size_t masked = 0;
  for (double l : out->LSE)
    masked += std::isinf(l) && l < 0;
  os << "kernel " << k->name << " target " << options.target << " shape B=" << shape.B
     << " Hq=" << shape.Hq << " Hkv=" << shape.Hkv << " Nq=" << shape.Nq << " Nk=" << shape.Nk
     << " D=" << shape.D << " Dv=" << shape.Dv << " q_offset=" << options.qOffset << "\n";
  os << "O checksum sum=" << llvm::format("%.6e", sum) << " sum|x|=" << llvm::format("%.6e", sumAbs)
     << "\n";
  os << "fully masked rows: " << masked << " of " << out->LSE.size() << "\n";
  os << "time: " << llvm::format("%.3f", ms) << " ms\n";
  return true;
}
