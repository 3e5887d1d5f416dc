//===- BlockMask.h - Block lists to the block tensor of a block mask -*- C++ -*-===//
//
// lib/block_sparse.attn takes a runtime block mask as a dense tensor
// `blocks[B, H, QB, KB]` (non-zero: query block i attends to key block j),
// which the kernels read one entry per tile. Top-k sparse methods (HiP,
// FlexPrefill, LServe) and FlexAttention's BlockMask produce block lists
// instead (BSR: per query block, how many key blocks and which). This fills
// the tensor from them, on the host, in O(B * H * QB * KB).
//
//===----------------------------------------------------------------------===//

#ifndef ATTNC_RUNTIME_BLOCKMASK_H
#define ATTNC_RUNTIME_BLOCKMASK_H

#include "attnc/Runtime/Runtime.h"

namespace attnc::rt {

/// `numBlocks` [B, H, QB] and `indices` [B, H, QB, L] (i32, dense, kDLCPU):
/// query block i of (b, h) attends to key blocks indices[b, h, i, 0 ..
/// numBlocks[b, h, i]). Writes `blocks` [B, H, QB, KB] (i32, dense, kDLCPU)
/// with 1 there and 0 elsewhere. Errors (nothing written): shapes or types
/// that disagree, a count outside [0, L], an index outside [0, KB).
Status blockMaskFromLists(const DLTensor *numBlocks, const DLTensor *indices, DLTensor *blocks);

} // namespace attnc::rt

#endif // ATTNC_RUNTIME_BLOCKMASK_H
