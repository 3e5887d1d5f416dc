//===- TestPasses.h - test-only passes of attnc-opt -------------*- C++ -*-===//

#ifndef ATTNC_TOOLS_ATTNC_OPT_TESTPASSES_H
#define ATTNC_TOOLS_ATTNC_OPT_TESTPASSES_H

namespace mlir {
namespace attn {

/// -attn-test-builders: builds one of each op through the C++ API.
void registerTestAttnBuildersPass();

} // namespace attn
} // namespace mlir

#endif // ATTNC_TOOLS_ATTNC_OPT_TESTPASSES_H
