//===- TilesTarget.cpp - attnc --emit=tiles (mask tile classes) ----------===//

#include "TilesTarget.h"

#include "attnc/Analysis/TileClasses.h"
#include "attnc/Analysis/TileStrategy.h"
#include "attnc/Dialect/Attn/IR/AttnOps.h"

#include "mlir/IR/MLIRContext.h"
#include "llvm/ADT/StringExtras.h"
#include "llvm/Support/Format.h"

using namespace attnc;
using namespace attnc::driver;

/// Most tiles a grid may have (a 64-key tile grid of 1M x 1M positions is
/// 2^28; --emit=tiles is for inspection).
static constexpr int64_t kMaxTiles = int64_t(1) << 24;

static bool fail(const llvm::Twine &msg) {
  llvm::errs() << "attnc: error: " << msg << "\n";
  return false;
}

/// "Nq,Nk" or "B,Hq,Hkv,Nq,Nk,D[,Dv]".
static bool parseTilesShape(llvm::StringRef text, int64_t &B, int64_t &H, int64_t &Nq,
                            int64_t &Nk) {
  llvm::SmallVector<llvm::StringRef> parts;
  text.split(parts, ',');
  llvm::SmallVector<int64_t> v;
  for (llvm::StringRef p : parts) {
    int64_t x;
    if (p.trim().getAsInteger(10, x) || x < 0)
      return false;
    v.push_back(x);
  }
  if (v.size() == 2) {
    B = H = -1;
    Nq = v[0];
    Nk = v[1];
    return true;
  }
  if (v.size() != 6 && v.size() != 7)
    return false;
  B = v[0];
  H = v[1];
  Nq = v[3];
  Nk = v[4];
  return true;
}

bool attnc::driver::emitTiles(mlir::MLIRContext &ctx, const dsl::Program &prog,
                              const TilesOptions &o, llvm::raw_ostream &os) {
  int64_t B = -1, H = -1, Nq = 0, Nk = 0;
  if (o.shape.empty())
    return fail("--emit=tiles needs --shape=Nq,Nk (or B,Hq,Hkv,Nq,Nk,D[,Dv])");
  if (!parseTilesShape(o.shape, B, H, Nq, Nk))
    return fail("--shape expects Nq,Nk or B,Hq,Hkv,Nq,Nk,D[,Dv] (non-negative integers), got '" +
                o.shape + "'");
  if (o.tileQ <= 0 || o.tileK <= 0)
    return fail("--tile-q and --tile-k must be positive");
  if (o.refine > 16)
    return fail("--tile-refine is at most 16");
  if (o.qOffset < 0)
    return fail("--q-offset must be non-negative");
  if (o.qOffset + Nq > INT32_MAX || Nk > INT32_MAX)
    return fail("positions must fit in i32 (q_offset + Nq and Nk at most 2147483647)");
  int64_t rows = (Nq + o.tileQ - 1) / o.tileQ, cols = (Nk + o.tileK - 1) / o.tileK;
  if (rows && cols && rows > kMaxTiles / cols)
    return fail("too many tiles (" + llvm::Twine(rows) + " x " + llvm::Twine(cols) +
                "); use larger --tile-q/--tile-k");

  // The kernel: --kernel, or the file's only one.
  std::string name = o.kernel;
  if (name.empty()) {
    if (prog.main->kernels.size() != 1)
      return fail("--emit=tiles needs --kernel when the file has " +
                  llvm::Twine(prog.main->kernels.size()) + " kernels");
    name = prog.main->kernels.front()->name;
  }
  const dsl::KernelDecl *decl = prog.lookupKernel(name);
  if (!decl)
    return fail("no kernel named '" + name + "'");

  // Runtime integer scalars go to the analysis, the rest to MLIRGen (which
  // reports unknown names and bad const values at the kernel's source).
  std::vector<std::string> constParams;
  llvm::StringMap<int64_t> known;
  for (const std::string &p : o.params) {
    auto [pname, value] = llvm::StringRef(p).split('=');
    pname = pname.trim();
    value = value.trim();
    const dsl::EffectiveParam *rt = nullptr;
    for (const auto &e : decl->runtimeParams)
      if (e.name == pname)
        rt = &e;
    if (!rt) {
      constParams.push_back(p);
      continue;
    }
    if (rt->decl->isTensor())
      return fail("--param " + pname +
                  ": tensor parameters have no compile-time value; --emit=tiles treats their "
                  "contents as unknown");
    int64_t v;
    if (rt->decl->elemType == dsl::ScalarType::Bool && (value == "true" || value == "false"))
      v = value == "true";
    else if (rt->decl->elemType == dsl::ScalarType::F32 || value.getAsInteger(10, v))
      return fail("--param " + pname + ": expected an integer value for runtime scalar of type " +
                  dsl::toString(rt->decl->elemType) + ", got '" + value + "'");
    if (!known.try_emplace(pname, v).second)
      return fail("parameter '" + pname + "' is given twice");
  }

  const dsl::KernelDecl *unused = nullptr;
  auto module = genInlinedKernel(ctx, prog, name, constParams, unused);
  if (!module)
    return false;
  mlir::attn::AttentionOp att;
  module->walk([&](mlir::attn::AttentionOp op) {
    if (!att)
      att = op;
  });
  if (!att)
    return fail("kernel '" + name + "' has no attention op");

  mlir::attn::TileClassifier classifier(att, known);
  os << "tiles of " << name << ": Nq " << Nq << ", Nk " << Nk << ", q_offset " << o.qOffset
     << ", tile " << o.tileQ << " x " << o.tileK;
  if (o.refine)
    os << ", refine " << o.refine;
  if (B >= 0)
    os << ", B " << B << ", Hq " << H;
  os << "\n";
  int64_t counts[3] = {0, 0, 0};
  std::string line;
  for (int64_t r = 0; r < rows; ++r) {
    line.clear();
    mlir::attn::TileBox box;
    box.q0 = o.qOffset + r * o.tileQ;
    box.q1 = o.qOffset + std::min(Nq, (r + 1) * o.tileQ);
    if (B >= 0) {
      box.b1 = B;
      box.h1 = H;
    }
    for (int64_t c = 0; c < cols; ++c) {
      box.k0 = c * o.tileK;
      box.k1 = std::min(Nk, (c + 1) * o.tileK);
      mlir::attn::TileClass cls = classifier.classify(box, o.refine);
      ++counts[int(cls)];
      line += mlir::attn::toChar(cls);
    }
    os << llvm::format("%8lld ", (long long)box.q0) << line << "\n";
  }
  int64_t total = rows * cols;
  int64_t full = counts[int(mlir::attn::TileClass::Full)],
          empty = counts[int(mlir::attn::TileClass::Empty)],
          partial = counts[int(mlir::attn::TileClass::Partial)];
  os << "tiles " << total << ": full " << full << ", empty " << empty << ", partial " << partial
     << "; empty fraction " << llvm::format("%.4f", total ? double(empty) / total : 0.0) << "\n";

  bool undecided = total && partial == total;
  for (const std::string &t : classifier.tensorReads())
    os << "note: mask depends on tensor parameter '" << t << "': "
       << (undecided ? "PARTIAL everywhere"
                     : "tiles its index arithmetic cannot decide are PARTIAL")
       << "\n";
  for (const std::string &s : classifier.unknownScalars())
    os << "note: runtime scalar '" << s << "' is unknown (bind it with --param " << s
       << "=VALUE)\n";
  if (!classifier.unmodeledOps().empty())
    os << "note: ops not modeled (any value): " << llvm::join(classifier.unmodeledOps(), ", ")
       << "\n";
  return true;
}

bool attnc::driver::emitTileRemarks(mlir::MLIRContext &ctx, const dsl::Program &prog,
                                    const std::string &kernel,
                                    const std::vector<std::string> &params) {
  std::vector<std::string> names;
  if (!kernel.empty())
    names.push_back(kernel);
  else
    for (const auto &k : prog.main->kernels)
      names.push_back(k->name);
  for (const std::string &name : names) {
    const dsl::KernelDecl *decl = prog.lookupKernel(name);
    if (!decl)
      return fail("no kernel named '" + name + "'");
    // Const parameters of this kernel only (a file's kernels differ).
    std::vector<std::string> consts;
    for (const std::string &p : params) {
      llvm::StringRef pname = llvm::StringRef(p).split('=').first.trim();
      if (llvm::any_of(decl->constParams, [&](const auto &c) { return c.name == pname; }))
        consts.push_back(p);
    }
    const dsl::KernelDecl *unused = nullptr;
    auto module = genInlinedKernel(ctx, prog, name, consts, unused);
    if (!module)
      return false;
    module->walk([&](mlir::attn::AttentionOp att) {
      auto k = att->getParentOfType<mlir::attn::KernelOp>();
      for (const std::string &line : mlir::attn::analyzeTileStrategy(att).describe())
        mlir::emitRemark(k ? k.getLoc() : att.getLoc()) << "kernel '" << name << "': " << line;
    });
  }
  return true;
}
