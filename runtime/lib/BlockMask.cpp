//===- BlockMask.cpp - Block lists to the block tensor of a block mask ---===//

#include "attnc/Runtime/BlockMask.h"

#include <algorithm>
#include <cstring>
#include <string>

using namespace attnc::rt;

namespace {
Status checkI32(const char *what, const DLTensor *t, int ndim) {
  if (!t || !t->data)
    return Status::error(std::string("block lists: ") + what + " is null");
  if (t->device.device_type != kDLCPU)
    return Status::error(std::string("block lists: ") + what + " must be on kDLCPU");
  if (t->dtype.code != kDLInt || t->dtype.bits != 32 || t->dtype.lanes != 1)
    return Status::error(std::string("block lists: ") + what + " must be i32");
  if (t->ndim != ndim)
    return Status::error(std::string("block lists: ") + what + " must have rank " +
                         std::to_string(ndim));
  if (t->strides) {
    int64_t expect = 1;
    for (int d = ndim - 1; d >= 0; --d) {
      if (t->shape[d] != 1 && t->strides[d] != expect)
        return Status::error(std::string("block lists: ") + what + " must be dense");
      expect *= t->shape[d];
    }
  }
  return Status::ok();
}

const int32_t *data(const DLTensor *t) {
  return reinterpret_cast<const int32_t *>(static_cast<const char *>(t->data) + t->byte_offset);
}
} // namespace

Status attnc::rt::blockMaskFromLists(const DLTensor *numBlocks, const DLTensor *indices,
                                     DLTensor *blocks) {
  if (Status s = checkI32("numBlocks", numBlocks, 3); !s)
    return s;
  if (Status s = checkI32("indices", indices, 4); !s)
    return s;
  if (Status s = checkI32("blocks", blocks, 4); !s)
    return s;
  const int64_t B = numBlocks->shape[0], H = numBlocks->shape[1], QB = numBlocks->shape[2];
  const int64_t L = indices->shape[3], KB = blocks->shape[3];
  for (int d = 0; d < 3; ++d)
    if (indices->shape[d] != numBlocks->shape[d] || blocks->shape[d] != numBlocks->shape[d])
      return Status::error("block lists: numBlocks, indices and blocks disagree on [B, H, QB]");
  const int32_t *num = data(numBlocks), *idx = data(indices);
  for (int64_t r = 0; r < B * H * QB; ++r) {
    if (num[r] < 0 || num[r] > L)
      return Status::error("block lists: row " + std::to_string(r) + " has " +
                           std::to_string(num[r]) + " blocks, outside [0, " + std::to_string(L) +
                           "]");
    for (int32_t j = 0; j < num[r]; ++j)
      if (idx[r * L + j] < 0 || idx[r * L + j] >= KB)
        return Status::error("block lists: row " + std::to_string(r) + " names key block " +
                             std::to_string(idx[r * L + j]) + ", outside [0, " +
                             std::to_string(KB) + ")");
  }
  auto *out = reinterpret_cast<int32_t *>(static_cast<char *>(blocks->data) + blocks->byte_offset);
  std::fill(out, out + B * H * QB * KB, 0);
  for (int64_t r = 0; r < B * H * QB; ++r)
    for (int32_t j = 0; j < num[r]; ++j)
      out[r * KB + idx[r * L + j]] = 1;
  return Status::ok();
}
