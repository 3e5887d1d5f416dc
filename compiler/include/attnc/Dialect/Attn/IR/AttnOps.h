//===- AttnOps.h - attn operations ------------------------------*- C++ -*-===//

#ifndef ATTNC_DIALECT_ATTN_IR_ATTNOPS_H
#define ATTNC_DIALECT_ATTN_IR_ATTNOPS_H

#include "attnc/Dialect/Attn/IR/AttnAttrs.h"
#include "attnc/Dialect/Attn/IR/AttnDialect.h"

#include "mlir/Bytecode/BytecodeOpInterface.h"
#include "mlir/IR/BuiltinTypes.h"
#include "mlir/IR/OpImplementation.h"
#include "mlir/IR/SymbolTable.h"
#include "mlir/Interfaces/CallInterfaces.h"
#include "mlir/Interfaces/ControlFlowInterfaces.h"
#include "mlir/Interfaces/FunctionInterfaces.h"
#include "mlir/Interfaces/SideEffectInterfaces.h"

#define GET_OP_CLASSES
#include "attnc/Dialect/Attn/IR/AttnOps.h.inc"

#endif // ATTNC_DIALECT_ATTN_IR_ATTNOPS_H
