//===- TileStrategy.cpp - How the backends skip work for a mask ----------===//

#include "attnc/Analysis/TileStrategy.h"

#include "attnc/Analysis/TileBounds.h"
#include "attnc/Analysis/TileClasses.h"

#include "llvm/ADT/SetVector.h"

using namespace mlir;
using namespace mlir::attn;

namespace {

/// Whether `v` is computed from the mask's q or k argument (inside `block`).
bool dependsOnPosition(Value v, Block &block) {
  llvm::SetVector<Value> work;
  work.insert(v);
  for (size_t i = 0; i < work.size(); ++i) {
    Value x = work[i];
    if (auto arg = dyn_cast<BlockArgument>(x)) {
      if (arg.getOwner() == &block && arg.getArgNumber() >= 2)
        return true;
      continue;
    }
    Operation *op = x.getDefiningOp();
    if (!op || op->getBlock() != &block)
      continue;
    for (Value operand : op->getOperands())
      work.insert(operand);
  }
  return false;
}

std::string tensorName(LoadOp load) {
  auto arg = dyn_cast<BlockArgument>(load.getTensor());
  if (auto kernel = arg ? dyn_cast<KernelOp>(arg.getOwner()->getParentOp()) : KernelOp())
    return kernel.getParamName(arg.getArgNumber()).str();
  return "#tensor";
}

} // namespace

TileStrategy mlir::attn::analyzeTileStrategy(AttentionOp attention) {
  TileStrategy s;
  if (maskIsAlwaysTrue(attention)) {
    s.kind = TileStrategy::Kind::AllKept;
    return s;
  }
  s.kind = needsRunTimeTileClasses(attention) ? TileStrategy::Kind::RunTime
                                              : TileStrategy::Kind::ClosedForm;
  Block &block = attention.getMaskBlock();
  SmallVector<RangeLoad> ranges = tileRangeLoads(block);
  block.walk([&](LoadOp load) {
    TileStrategy::TensorRead r{tensorName(load), TileStrategy::TensorRead::How::Point};
    if (!load.getResult().getType().isInteger()) {
      r.how = TileStrategy::TensorRead::How::Unbounded;
    } else if (auto it = llvm::find_if(ranges, [&](const RangeLoad &rl) { return rl.load == load; });
        it != ranges.end()) {
      r.how = TileStrategy::TensorRead::How::Range;
      r.byKey = it->byKey;
    } else if (llvm::none_of(load.getIndices(),
                             [&](Value idx) { return dependsOnPosition(idx, block); })) {
      r.how = TileStrategy::TensorRead::How::Uniform;
    }
    s.reads.push_back(r);
  });
  TileClassifier classifier(attention);
  s.unmodeledOps = classifier.unmodeledOps();
  return s;
}

std::vector<std::string> TileStrategy::describe() const {
  std::vector<std::string> out;
  switch (kind) {
  case Kind::AllKept:
    out.push_back("mask is always true: every tile FULL, no mask evaluated");
    return out;
  case Kind::ClosedForm:
    out.push_back("closed-form KV range per query tile from the mask's index arithmetic; tiles "
                  "inside its inner range skip the mask (nothing to build, nothing at launch)");
    break;
  case Kind::RunTime:
    out.push_back("tiles classified at launch from per-tile bounds, never O(Nq x Nk) (EMPTY: "
                  "skipped, FULL: no mask, PARTIAL: mask per element); nothing to build");
    break;
  }
  for (const TensorRead &r : reads) {
    std::string line = "'" + r.name + "': ";
    switch (r.how) {
    case TensorRead::How::Range:
      line += std::string("[min, max] over each tile's ") + (r.byKey ? "keys" : "rows");
      break;
    case TensorRead::How::Uniform:
      line += "read once per tile (indices from b, h and parameters)";
      break;
    case TensorRead::How::Unbounded:
      line += "float contents are not bounded";
      break;
    case TensorRead::How::Point:
      line += "one entry per tile when the tile lies within one entry's positions (block "
              "masks with blocks that are multiples of the tiles), else PARTIAL";
      break;
    }
    out.push_back(line);
  }
  if (!unmodeledOps.empty()) {
    std::string ops;
    for (const std::string &op : unmodeledOps)
      ops += (ops.empty() ? "" : ", ") + op;
    out.push_back("not bounded by the analysis: " + ops +
                  "; tiles that depend on them stay PARTIAL (correct, not faster)");
  }
  return out;
}
