//===- Interpreter.h - Executes attn kernels element by element -*- C++ -*-===//
//
// The `interp` target: runs an attn.kernel (after inlining and
// canonicalization) directly from its IR, evaluating the mask and score
// regions op by op with float32 arithmetic, the precision of a compiled f32
// kernel. It shares no code with the float64 reference (which evaluates the
// AST), so comparing the two checks MLIRGen and the attn passes end to end.
// It is slow by design: a correctness target, not a fast one.
//
//===----------------------------------------------------------------------===//

#ifndef ATTNC_INTERP_INTERPRETER_H
#define ATTNC_INTERP_INTERPRETER_H

#include "attnc/Dialect/Attn/IR/AttnOps.h"

#include "llvm/Support/Error.h"

#include <map>
#include <string>
#include <vector>

namespace attnc::interp {

struct Shape {
  int64_t B = 1, Hq = 1, Hkv = 1, Nq = 1, Nk = 1, D = 1, Dv = 1;
};

/// A runtime tensor parameter: row-major values (integers stored exactly).
struct Tensor {
  std::vector<int64_t> dims;
  std::vector<double> data;
};

struct Inputs {
  const float *Q = nullptr; // [B, Hq, Nq, D]
  const float *K = nullptr; // [B, Hkv, Nk, D]
  const float *V = nullptr; // [B, Hkv, Nk, Dv]
  int64_t qOffset = 0;
  /// Runtime parameters by `attn.name`; scalars missing here take their
  /// `attn.default`.
  std::map<std::string, Tensor> tensors;
  std::map<std::string, double> scalars;
};

struct Outputs {
  std::vector<float> O;   // [B, Hq, Nq, Dv]
  std::vector<float> LSE; // [B, Hq, Nq]
};

/// Runs `kernel`. Calls must already be inlined. Errors (unsupported ops,
/// out-of-bounds tensor reads, division by zero, missing parameters) are
/// returned, never fatal.
llvm::Expected<Outputs> run(mlir::attn::KernelOp kernel, const Shape &shape, const Inputs &in);

} // namespace attnc::interp

#endif // ATTNC_INTERP_INTERPRETER_H
