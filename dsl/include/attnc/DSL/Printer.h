//===- Printer.h - Printing the AST -----------------------------*- C++ -*-===//

#ifndef ATTNC_DSL_PRINTER_H
#define ATTNC_DSL_PRINTER_H

#include "attnc/DSL/AST.h"

namespace llvm {
class raw_ostream;
} // namespace llvm

namespace attnc::dsl {

/// The checked tree, with types and name resolutions (`--emit=ast`).
void dumpAST(const Module &mod, llvm::raw_ostream &os);

/// Canonical DSL source for the module; parsing it back gives the same
/// program, and formatting that again gives the same text (`--emit=format`).
void formatModule(const Module &mod, llvm::raw_ostream &os);

} // namespace attnc::dsl

#endif // ATTNC_DSL_PRINTER_H
