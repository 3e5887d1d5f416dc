//===- Interpreter.cpp - Executes attn kernels element by element ---------===//

#include "attnc/Interp/Interpreter.h"

#include "attnc/Dialect/Attn/IR/AttnDialect.h"

#include "mlir/Dialect/Arith/IR/Arith.h"
#include "mlir/Dialect/Math/IR/Math.h"
#include "llvm/ADT/DenseMap.h"
#include "llvm/ADT/TypeSwitch.h"
#include "llvm/Support/FormatVariadic.h"

#include <cmath>
#include <limits>

using namespace mlir;
using namespace attnc::interp;

namespace {

/// One SSA value: integers (i1, i32, i64) in `i`, floats (f32) in `f`,
/// tensors by pointer.
struct Val {
  int64_t i = 0;
  float f = 0;
  const Tensor *t = nullptr;
};

/// Wraps `v` to the width of the integer type `type` (two's complement).
int64_t wrap(int64_t v, Type type) {
  unsigned w = type.getIntOrFloatBitWidth();
  if (w >= 64)
    return v;
  if (w == 1)
    return v & 1;
  uint64_t mask = (uint64_t(1) << w) - 1;
  uint64_t u = uint64_t(v) & mask;
  if (u >> (w - 1))
    u |= ~mask;
  return int64_t(u);
}

int64_t floorDiv(int64_t a, int64_t b) {
  int64_t q = a / b;
  if ((a % b != 0) && ((a < 0) != (b < 0)))
    --q;
  return q;
}

bool cmpI(arith::CmpIPredicate p, int64_t a, int64_t b, Type type) {
  unsigned w = type.getIntOrFloatBitWidth();
  uint64_t mask = w >= 64 ? ~uint64_t(0) : ((uint64_t(1) << w) - 1);
  uint64_t ua = uint64_t(a) & mask, ub = uint64_t(b) & mask;
  switch (p) {
  case arith::CmpIPredicate::eq:
    return ua == ub;
  case arith::CmpIPredicate::ne:
    return ua != ub;
  case arith::CmpIPredicate::slt:
    return a < b;
  case arith::CmpIPredicate::sle:
    return a <= b;
  case arith::CmpIPredicate::sgt:
    return a > b;
  case arith::CmpIPredicate::sge:
    return a >= b;
  case arith::CmpIPredicate::ult:
    return ua < ub;
  case arith::CmpIPredicate::ule:
    return ua <= ub;
  case arith::CmpIPredicate::ugt:
    return ua > ub;
  case arith::CmpIPredicate::uge:
    return ua >= ub;
  }
  return false;
}

bool cmpF(arith::CmpFPredicate p, float a, float b) {
  bool unordered = std::isnan(a) || std::isnan(b);
  switch (p) {
  case arith::CmpFPredicate::AlwaysFalse:
    return false;
  case arith::CmpFPredicate::AlwaysTrue:
    return true;
  case arith::CmpFPredicate::OEQ:
    return !unordered && a == b;
  case arith::CmpFPredicate::OGT:
    return !unordered && a > b;
  case arith::CmpFPredicate::OGE:
    return !unordered && a >= b;
  case arith::CmpFPredicate::OLT:
    return !unordered && a < b;
  case arith::CmpFPredicate::OLE:
    return !unordered && a <= b;
  case arith::CmpFPredicate::ONE:
    return !unordered && a != b;
  case arith::CmpFPredicate::ORD:
    return !unordered;
  case arith::CmpFPredicate::UEQ:
    return unordered || a == b;
  case arith::CmpFPredicate::UGT:
    return unordered || a > b;
  case arith::CmpFPredicate::UGE:
    return unordered || a >= b;
  case arith::CmpFPredicate::ULT:
    return unordered || a < b;
  case arith::CmpFPredicate::ULE:
    return unordered || a <= b;
  case arith::CmpFPredicate::UNE:
    return unordered || a != b;
  case arith::CmpFPredicate::UNO:
    return unordered;
  }
  return false;
}

class Evaluator {
public:
  llvm::DenseMap<Value, Val> env;

  /// Evaluates the ops of `block` in order; returns the yielded value.
  llvm::Expected<Val> runBlock(Block &block) {
    for (Operation &op : block) {
      if (auto yield = dyn_cast<attn::YieldOp>(op))
        return env.lookup(yield.getValue());
      if (isa<attn::AttentionOp>(op))
        continue;
      if (llvm::Error err = step(op))
        return std::move(err);
    }
    return Val{};
  }

private:
  llvm::Error fail(Operation &op, const llvm::Twine &msg) {
    std::string loc;
    llvm::raw_string_ostream os(loc);
    op.getLoc().print(os);
    return llvm::createStringError(llvm::inconvertibleErrorCode(),
                                   "interp: " + loc + ": " + msg);
  }

  Val get(Value v) { return env.lookup(v); }

  llvm::Error step(Operation &op) {
    Type resultType = op.getNumResults() ? op.getResult(0).getType() : Type();
    auto setI = [&](int64_t v) { env[op.getResult(0)] = Val{wrap(v, resultType), 0, nullptr}; };
    auto setF = [&](float v) { env[op.getResult(0)] = Val{0, v, nullptr}; };
    auto i = [&](unsigned n) { return get(op.getOperand(n)).i; };
    auto f = [&](unsigned n) { return get(op.getOperand(n)).f; };

    if (auto c = dyn_cast<arith::ConstantOp>(op)) {
      if (auto ia = dyn_cast<IntegerAttr>(c.getValue()))
        setI(ia.getValue().getSExtValue());
      else if (auto fa = dyn_cast<FloatAttr>(c.getValue()))
        setF(float(fa.getValueAsDouble()));
      else
        return fail(op, "unsupported constant");
      return llvm::Error::success();
    }
    if (auto load = dyn_cast<attn::LoadOp>(op)) {
      const Tensor *t = get(load.getTensor()).t;
      if (!t)
        return fail(op, "tensor parameter is not bound");
      int64_t flat = 0;
      for (auto [d, idx] : llvm::enumerate(load.getIndices())) {
        int64_t x = get(idx).i;
        if (x < 0 || x >= t->dims[d])
          return fail(op, llvm::formatv("index {0} out of bounds for dimension {1} of size {2}",
                                        x, d, t->dims[d]));
        flat = flat * t->dims[d] + x;
      }
      double v = t->data[flat];
      if (isa<FloatType>(resultType))
        setF(float(v));
      else
        setI(int64_t(v));
      return llvm::Error::success();
    }

    // Integer arithmetic (results wrap to their width).
    if (isa<arith::AddIOp>(op))
      return setI(i(0) + i(1)), llvm::Error::success();
    if (isa<arith::SubIOp>(op))
      return setI(i(0) - i(1)), llvm::Error::success();
    if (isa<arith::MulIOp>(op))
      return setI(i(0) * i(1)), llvm::Error::success();
    if (isa<arith::DivSIOp, arith::FloorDivSIOp, arith::CeilDivSIOp, arith::RemSIOp>(op)) {
      if (i(1) == 0)
        return fail(op, "integer division by zero");
      // x / -1 is -x, wrapped to the width (INT_MIN / -1 traps in C++).
      if (i(1) == -1) {
        bool rem = isa<arith::RemSIOp>(op);
        setI(rem ? 0 : int64_t(0 - uint64_t(i(0))));
        return llvm::Error::success();
      }
      if (isa<arith::DivSIOp>(op))
        setI(i(0) / i(1));
      else if (isa<arith::FloorDivSIOp>(op))
        setI(floorDiv(i(0), i(1)));
      else if (isa<arith::CeilDivSIOp>(op))
        setI(-floorDiv(-i(0), i(1)));
      else
        setI(i(0) % i(1));
      return llvm::Error::success();
    }
    if (isa<arith::AndIOp>(op))
      return setI(i(0) & i(1)), llvm::Error::success();
    if (isa<arith::OrIOp>(op))
      return setI(i(0) | i(1)), llvm::Error::success();
    if (isa<arith::XOrIOp>(op))
      return setI(i(0) ^ i(1)), llvm::Error::success();
    if (isa<arith::MinSIOp>(op))
      return setI(std::min(i(0), i(1))), llvm::Error::success();
    if (isa<arith::MaxSIOp>(op))
      return setI(std::max(i(0), i(1))), llvm::Error::success();
    if (isa<arith::ShLIOp>(op))
      return setI(int64_t(uint64_t(i(0)) << (i(1) & 63))), llvm::Error::success();
    if (isa<arith::ShRSIOp>(op))
      return setI(i(0) >> (i(1) & 63)), llvm::Error::success();
    if (auto cmp = dyn_cast<arith::CmpIOp>(op))
      return setI(cmpI(cmp.getPredicate(), i(0), i(1), cmp.getLhs().getType())),
             llvm::Error::success();
    if (auto sel = dyn_cast<arith::SelectOp>(op)) {
      env[op.getResult(0)] = get(i(0) ? sel.getTrueValue() : sel.getFalseValue());
      return llvm::Error::success();
    }
    if (isa<arith::ExtSIOp, arith::TruncIOp>(op))
      return setI(i(0)), llvm::Error::success();
    if (isa<arith::ExtUIOp>(op)) {
      Type from = op.getOperand(0).getType();
      unsigned w = from.getIntOrFloatBitWidth();
      uint64_t mask = w >= 64 ? ~uint64_t(0) : ((uint64_t(1) << w) - 1);
      return setI(int64_t(uint64_t(i(0)) & mask)), llvm::Error::success();
    }
    if (isa<arith::SIToFPOp>(op))
      return setF(float(i(0))), llvm::Error::success();
    if (isa<arith::UIToFPOp>(op)) {
      Type from = op.getOperand(0).getType();
      unsigned w = from.getIntOrFloatBitWidth();
      uint64_t mask = w >= 64 ? ~uint64_t(0) : ((uint64_t(1) << w) - 1);
      return setF(float(uint64_t(i(0)) & mask)), llvm::Error::success();
    }
    if (isa<arith::FPToSIOp>(op)) {
      // Saturate like the hardware conversions; NaN becomes 0.
      float x = f(0);
      unsigned w = resultType.getIntOrFloatBitWidth();
      double lo = -std::ldexp(1.0, w - 1), hi = std::ldexp(1.0, w - 1) - 1;
      double v = std::isnan(x) ? 0.0 : std::min(std::max(double(std::trunc(x)), lo), hi);
      return setI(int64_t(v)), llvm::Error::success();
    }

    // Float arithmetic, rounded to f32 after each op.
    if (isa<arith::AddFOp>(op))
      return setF(f(0) + f(1)), llvm::Error::success();
    if (isa<arith::SubFOp>(op))
      return setF(f(0) - f(1)), llvm::Error::success();
    if (isa<arith::MulFOp>(op))
      return setF(f(0) * f(1)), llvm::Error::success();
    if (isa<arith::DivFOp>(op))
      return setF(f(0) / f(1)), llvm::Error::success();
    if (isa<arith::NegFOp>(op))
      return setF(-f(0)), llvm::Error::success();
    if (isa<arith::MaximumFOp>(op))
      return setF(std::isnan(f(0)) || std::isnan(f(1)) ? NAN : std::max(f(0), f(1))),
             llvm::Error::success();
    if (isa<arith::MinimumFOp>(op))
      return setF(std::isnan(f(0)) || std::isnan(f(1)) ? NAN : std::min(f(0), f(1))),
             llvm::Error::success();
    if (isa<arith::MaxNumFOp>(op))
      return setF(std::fmax(f(0), f(1))), llvm::Error::success();
    if (isa<arith::MinNumFOp>(op))
      return setF(std::fmin(f(0), f(1))), llvm::Error::success();
    if (auto cmp = dyn_cast<arith::CmpFOp>(op))
      return setI(cmpF(cmp.getPredicate(), f(0), f(1))), llvm::Error::success();
    if (isa<math::ExpOp>(op))
      return setF(std::exp(f(0))), llvm::Error::success();
    if (isa<math::Exp2Op>(op))
      return setF(std::exp2(f(0))), llvm::Error::success();
    if (isa<math::LogOp>(op))
      return setF(std::log(f(0))), llvm::Error::success();
    if (isa<math::Log2Op>(op))
      return setF(std::log2(f(0))), llvm::Error::success();
    if (isa<math::TanhOp>(op))
      return setF(std::tanh(f(0))), llvm::Error::success();
    if (isa<math::SqrtOp>(op))
      return setF(std::sqrt(f(0))), llvm::Error::success();
    if (isa<math::FloorOp>(op))
      return setF(std::floor(f(0))), llvm::Error::success();
    if (isa<math::AbsFOp>(op))
      return setF(std::fabs(f(0))), llvm::Error::success();
    if (isa<math::AbsIOp>(op))
      return setI(i(0) < 0 ? -i(0) : i(0)), llvm::Error::success();
    if (isa<attn::CallOp>(op))
      return fail(op, "calls must be inlined first (run -attn-inline-definitions)");
    return fail(op, "unsupported operation '" + op.getName().getStringRef() + "'");
  }
};

} // namespace

llvm::Expected<Outputs> attnc::interp::run(attn::KernelOp kernel, const Shape &s,
                                           const Inputs &in) {
  auto err = [](const llvm::Twine &msg) {
    return llvm::createStringError(llvm::inconvertibleErrorCode(), "interp: " + msg);
  };
  attn::AttentionOp attention = kernel.getAttention();
  if (!attention)
    return err("kernel has no attn.attention");
  if (s.Hkv <= 0 || s.Hq % s.Hkv != 0)
    return err("Hq must be a positive multiple of Hkv");

  Evaluator ev;
  Block &body = kernel.getBody().front();
  for (auto [idx, arg] : llvm::enumerate(body.getArguments())) {
    std::string name = kernel.getParamName(idx).str();
    if (isa<RankedTensorType>(arg.getType())) {
      auto it = in.tensors.find(name);
      if (it == in.tensors.end())
        return err("tensor parameter '" + name + "' is not bound");
      if (it->second.dims.size() != cast<RankedTensorType>(arg.getType()).getRank())
        return err("tensor parameter '" + name + "' has the wrong rank");
      ev.env[arg] = Val{0, 0, &it->second};
      continue;
    }
    double v;
    auto it = in.scalars.find(name);
    if (it != in.scalars.end()) {
      v = it->second;
    } else if (auto def = kernel.getArgAttrOfType<Attribute>(idx, "attn.default")) {
      if (auto fa = dyn_cast<FloatAttr>(def))
        v = fa.getValueAsDouble();
      else if (auto ia = dyn_cast<IntegerAttr>(def))
        v = double(ia.getValue().getSExtValue());
      else
        return err("bad default for '" + name + "'");
    } else {
      return err("scalar parameter '" + name + "' is not bound and has no default");
    }
    ev.env[arg] = isa<FloatType>(arg.getType()) ? Val{0, float(v), nullptr}
                                                : Val{wrap(int64_t(v), arg.getType()), 0, nullptr};
  }
  // Values computed once in the kernel body (constants, the scale).
  if (auto r = ev.runBlock(body); !r)
    return r.takeError();

  float scale = attention.getScale() ? ev.env.lookup(attention.getScale()).f
                                     : float(1.0 / std::sqrt(double(s.D)));
  bool sigmoid = attention.getNormalizer() == attn::Normalizer::Sigmoid;
  bool interleaved = attention.getHeads() == attn::HeadMapping::Interleaved;
  Block &maskBlock = attention.getMaskBlock();
  Block &scoreBlock = attention.getScoreBlock();

  Outputs out;
  out.O.assign(s.B * s.Hq * s.Nq * s.Dv, 0.0f);
  out.LSE.assign(s.B * s.Hq * s.Nq, -std::numeric_limits<float>::infinity());
  int64_t group = s.Hq / s.Hkv;
  std::vector<float> scores(s.Nk);
  std::vector<char> keep(s.Nk);
  for (int64_t b = 0; b < s.B; ++b) {
    for (int64_t h = 0; h < s.Hq; ++h) {
      int64_t kvh = interleaved ? h % s.Hkv : h / group;
      for (int64_t i = 0; i < s.Nq; ++i) {
        int64_t qpos = in.qOffset + i;
        const float *q = in.Q + ((b * s.Hq + h) * s.Nq + i) * s.D;
        float rowMax = -std::numeric_limits<float>::infinity();
        for (int64_t j = 0; j < s.Nk; ++j) {
          Val idx[4] = {{b}, {h}, {qpos}, {j}};
          for (int a = 0; a < 4; ++a)
            ev.env[maskBlock.getArgument(a)] = Val{wrap(idx[a].i, maskBlock.getArgument(a).getType())};
          auto m = ev.runBlock(maskBlock);
          if (!m)
            return m.takeError();
          keep[j] = m->i != 0;
          if (!keep[j])
            continue;
          const float *k = in.K + ((b * s.Hkv + kvh) * s.Nk + j) * s.D;
          float dot = 0;
          for (int64_t d = 0; d < s.D; ++d)
            dot += q[d] * k[d];
          ev.env[scoreBlock.getArgument(0)] = Val{0, scale * dot};
          for (int a = 0; a < 4; ++a)
            ev.env[scoreBlock.getArgument(a + 1)] =
                Val{wrap(idx[a].i, scoreBlock.getArgument(a + 1).getType())};
          auto sc = ev.runBlock(scoreBlock);
          if (!sc)
            return sc.takeError();
          scores[j] = sc->f;
          // A key scored -inf contributes nothing, exactly like a masked one.
          if (std::isinf(scores[j]) && scores[j] < 0)
            keep[j] = false;
          else
            rowMax = std::max(rowMax, scores[j]);
        }
        float *o = out.O.data() + ((b * s.Hq + h) * s.Nq + i) * s.Dv;
        if (std::isinf(rowMax) && rowMax < 0)
          continue; // fully masked: O = 0, LSE = -inf
        float sum = 0;
        for (int64_t j = 0; j < s.Nk; ++j) {
          if (!keep[j])
            continue;
          float p = std::exp(scores[j] - rowMax);
          sum += p;
          float w = sigmoid ? 1.0f / (1.0f + std::exp(-scores[j])) : p;
          const float *v = in.V + ((b * s.Hkv + kvh) * s.Nk + j) * s.Dv;
          for (int64_t d = 0; d < s.Dv; ++d)
            o[d] += w * v[d];
        }
        if (!sigmoid)
          for (int64_t d = 0; d < s.Dv; ++d)
            o[d] /= sum;
        out.LSE[(b * s.Hq + h) * s.Nq + i] = rowMax + std::log(sum);
      }
    }
  }
  return out;
}
