//===- Metadata.h - Kernel metadata shared by every target ------*- C++ -*-===//
//
// The parameter lines of an artifact's metadata text (docs/cpu-runtime.md,
// docs/cuda.md): the light runtime validates launches from them without the
// compiler.
//
//===----------------------------------------------------------------------===//

#ifndef ATTNC_PIPELINE_METADATA_H
#define ATTNC_PIPELINE_METADATA_H

#include "mlir/IR/Types.h"
#include "llvm/Support/raw_ostream.h"

#include <string>

namespace mlir::attn {
class KernelOp;
} // namespace mlir::attn

namespace attnc::pipeline {

/// Element / scalar type names the metadata uses (and the runtime parses):
/// f32, f64, f16, bf16, i1, i<N>; "?" otherwise.
std::string metadataTypeName(mlir::Type t);

/// One `param <name> tensor <elem> <rank> <dims...>` or
/// `param <name> scalar <type> <default|none>` line per runtime parameter.
void writeParamMetadata(mlir::attn::KernelOp kernel, llvm::raw_ostream &os);

/// The kernel's cache policy as one line: `kv_cache NAME contiguous|paged P
/// all|sink_window|budget SINK WINDOW STORAGE none|per_token|per_group GROUP`
/// (nothing without a policy).
void writeCacheMetadata(mlir::attn::KernelOp kernel, llvm::raw_ostream &os);

} // namespace attnc::pipeline

#endif // ATTNC_PIPELINE_METADATA_H
