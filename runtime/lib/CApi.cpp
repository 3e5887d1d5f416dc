//===- CApi.cpp - C interface of the CUDA executor ------------------------===//

#include "attnc/Runtime/CApi.h"
#include "attnc/Runtime/Cuda.h"

#include <algorithm>
#include <cstring>
#include <exception>

using namespace attnc::rt;

namespace {
/// What a handle points to.
struct Handle {
  std::shared_ptr<CudaKernel> kernel;
};

void setError(char *err, size_t errlen, const std::string &msg) {
  if (!err || !errlen)
    return;
  size_t n = std::min(errlen - 1, msg.size());
  std::memcpy(err, msg.data(), n);
  err[n] = 0;
}

/// Runs `fn`, turning an escaping exception (bad_alloc) into an error.
template <typename Fn> Status guarded(Fn &&fn) {
  try {
    return fn();
  } catch (const std::exception &e) {
    return Status::error(std::string("attnc: internal error: ") + e.what());
  } catch (...) {
    return Status::error("attnc: internal error");
  }
}

Status dtypeOf(int32_t code, DLDataType &out) {
  switch (code) {
  case ATTNC_DTYPE_F32:
    out = {kDLFloat, 32, 1};
    return Status::ok();
  case ATTNC_DTYPE_F64:
    out = {kDLFloat, 64, 1};
    return Status::ok();
  case ATTNC_DTYPE_F16:
    out = {kDLFloat, 16, 1};
    return Status::ok();
  case ATTNC_DTYPE_BF16:
    out = {kDLBfloat, 16, 1};
    return Status::ok();
  case ATTNC_DTYPE_I8:
    out = {kDLInt, 8, 1};
    return Status::ok();
  case ATTNC_DTYPE_I16:
    out = {kDLInt, 16, 1};
    return Status::ok();
  case ATTNC_DTYPE_I32:
    out = {kDLInt, 32, 1};
    return Status::ok();
  case ATTNC_DTYPE_I64:
    out = {kDLInt, 64, 1};
    return Status::ok();
  default:
    return Status::error("unknown dtype code " + std::to_string(code));
  }
}

/// A DLTensor view of a C tensor (pointing into it for shape and strides).
Status view(const char *what, const attnc_tensor &t, int32_t device, DLTensor &out) {
  if (t.rank < 0 || t.rank > ATTNC_MAX_RANK)
    return Status::error(std::string(what) + ": rank " + std::to_string(t.rank) +
                         " is outside [0, " + std::to_string(ATTNC_MAX_RANK) + "]");
  out = DLTensor{};
  if (Status s = dtypeOf(t.dtype, out.dtype); !s)
    return Status::error(std::string(what) + ": " + s.message());
  out.data = reinterpret_cast<void *>(static_cast<uintptr_t>(t.data));
  out.device = {kDLCUDA, device};
  out.ndim = t.rank;
  out.shape = const_cast<int64_t *>(t.shape);
  out.strides = const_cast<int64_t *>(t.strides);
  return Status::ok();
}

/// Binds the C parameters to `args` (their tensors viewed in `tensors`).
Status bindParams(int32_t num, const attnc_param *list, int32_t device,
                  std::vector<DLTensor> &tensors, std::map<std::string, Arg> &args) {
  if (num < 0 || (num > 0 && !list))
    return Status::error("num_params is " + std::to_string(num) + " but params is null");
  tensors.resize(std::max(num, 0));
  for (int32_t i = 0; i < num; ++i) {
    const attnc_param &p = list[i];
    if (!p.name)
      return Status::error("params[" + std::to_string(i) + "]: name is null");
    std::string name = p.name;
    if (args.count(name))
      return Status::error("parameter '" + name + "' is given twice");
    if (!p.is_tensor) {
      args[name] = Arg::ofScalar(p.scalar);
      continue;
    }
    if (Status s = view(("parameter '" + name + "'").c_str(), p.tensor, device, tensors[i]); !s)
      return s;
    args[name] = Arg::ofTensor(&tensors[i]);
  }
  return Status::ok();
}

Status cacheLaunch(const Handle &h, const attnc_cache_launch_desc &desc) {
  DLTensor q, o, lse, kPool, vPool, pages, pos, len, qpos;
  const std::pair<const char *, std::pair<const attnc_tensor *, DLTensor *>> views[] = {
      {"q", {&desc.q, &q}},
      {"o", {&desc.o, &o}},
      {"k_pool", {&desc.k_pool, &kPool}},
      {"v_pool", {&desc.v_pool, &vPool}},
      {"kv_pages", {&desc.kv_pages, &pages}},
      {"kv_len", {&desc.kv_len, &len}},
      {"q_pos", {&desc.q_pos, &qpos}}};
  for (auto &[what, io] : views)
    if (Status s = view(what, *io.first, desc.device, *io.second); !s)
      return s;
  CudaCacheLaunchArgs args;
  args.q = &q, args.o = &o;
  if (desc.lse.rank != 0) {
    if (Status s = view("lse", desc.lse, desc.device, lse); !s)
      return s;
    args.lse = &lse;
  }
  args.cache.keyPool = &kPool, args.cache.valuePool = &vPool;
  args.cache.pages = &pages, args.cache.lengths = &len;
  if (desc.kv_pos.rank != 0) { // rank 0: slot j holds position j
    if (Status s = view("kv_pos", desc.kv_pos, desc.device, pos); !s)
      return s;
    args.cache.positions = &pos;
  }
  args.cache.queryPositions = &qpos;
  DLTensor kScale, vScale;
  if (desc.k_scale.rank != 0) {
    if (Status s = view("k_scale", desc.k_scale, desc.device, kScale); !s)
      return s;
    args.cache.keyScales = &kScale;
  }
  if (desc.v_scale.rank != 0) {
    if (Status s = view("v_scale", desc.v_scale, desc.device, vScale); !s)
      return s;
    args.cache.valueScales = &vScale;
  }
  DLTensor mass;
  if (desc.mass.rank != 0) {
    if (Status s = view("mass", desc.mass, desc.device, mass); !s)
      return s;
    args.mass = &mass;
  }
  args.massRows = desc.mass_rows;
  args.cache.maxLength = desc.max_length;
  args.splits = desc.splits;
  args.workspace = reinterpret_cast<void *>(uintptr_t(desc.workspace));
  args.workspaceBytes = size_t(desc.workspace_bytes);
  std::vector<DLTensor> tensors;
  if (Status s = bindParams(desc.num_params, desc.params, desc.device, tensors, args.params); !s)
    return s;
  return h.kernel->launch(args, desc.stream);
}

Status launch(const Handle &h, const attnc_launch_desc &desc) {
  DLTensor q, k, v, o, lse;
  if (Status s = view("q", desc.q, desc.device, q); !s)
    return s;
  if (Status s = view("k", desc.k, desc.device, k); !s)
    return s;
  if (Status s = view("v", desc.v, desc.device, v); !s)
    return s;
  if (Status s = view("o", desc.o, desc.device, o); !s)
    return s;
  LaunchArgs args;
  args.q = &q, args.k = &k, args.v = &v, args.o = &o;
  if (desc.lse.rank != 0) {
    if (Status s = view("lse", desc.lse, desc.device, lse); !s)
      return s;
    args.lse = &lse;
  }
  args.qOffset = desc.q_offset;
  std::vector<DLTensor> tensors;
  if (Status s = bindParams(desc.num_params, desc.params, desc.device, tensors, args.params); !s)
    return s;
  return h.kernel->launch(args, desc.stream);
}
} // namespace

extern "C" {

int attnc_c_api_version(void) { return ATTNC_C_API_VERSION; }

size_t attnc_c_struct_size(int which) {
  switch (which) {
  case 0:
    return sizeof(attnc_tensor);
  case 1:
    return sizeof(attnc_param);
  case 2:
    return sizeof(attnc_launch_desc);
  case 3:
    return sizeof(attnc_kernel_info);
  case 4:
    return sizeof(attnc_cache_launch_desc);
  default:
    return 0;
  }
}

int attnc_cuda_available(char *err, size_t errlen) {
  std::string why;
  Status s = guarded([&] { return cudaAvailable(&why) ? Status::ok() : Status::error(why); });
  setError(err, errlen, s.message());
  return s ? 1 : 0;
}

void *attnc_cuda_kernel_load(const char *image, size_t image_len, const char *metadata, char *err,
                             size_t errlen) {
  Handle *handle = nullptr;
  Status s = guarded([&] {
    if (!image || !metadata)
      return Status::error("attnc_cuda_kernel_load: image or metadata is null");
    auto k = CudaKernel::load(std::string(image, image_len), metadata);
    if (!k)
      return k.error();
    handle = new Handle{*k};
    return Status::ok();
  });
  setError(err, errlen, s.message());
  return handle;
}

void attnc_cuda_kernel_free(void *kernel) { delete static_cast<Handle *>(kernel); }

int attnc_cuda_kernel_info(const void *kernel, attnc_kernel_info *out) {
  if (!kernel || !out)
    return 1;
  const CudaKernelInfo &i = static_cast<const Handle *>(kernel)->kernel->info();
  out->name = i.name.c_str();
  out->entry = i.entry.c_str();
  out->arch = i.arch.c_str();
  out->dtype = i.dtype.c_str();
  out->head_dim = i.headDim;
  out->head_dim_v = i.headDimV;
  out->block_q = i.blockQ;
  out->threads = i.threads;
  out->shared_bytes = i.sharedBytes;
  out->align = i.align;
  out->num_params = int32_t(i.params.size());
  return 0;
}

int attnc_cuda_kernel_param(const void *kernel, int32_t index, const char **name,
                            int32_t *is_tensor, const char **type) {
  if (!kernel)
    return 1;
  const CudaKernelInfo &i = static_cast<const Handle *>(kernel)->kernel->info();
  if (index < 0 || size_t(index) >= i.params.size())
    return 1;
  const ParamInfo &p = i.params[index];
  if (name)
    *name = p.name.c_str();
  if (is_tensor)
    *is_tensor = p.isTensor;
  if (type)
    *type = p.type.c_str();
  return 0;
}

int attnc_cuda_launch(const void *kernel, const attnc_launch_desc *desc, char *err, size_t errlen) {
  Status s = guarded([&] {
    if (!kernel || !desc)
      return Status::error("attnc_cuda_launch: kernel or desc is null");
    return launch(*static_cast<const Handle *>(kernel), *desc);
  });
  setError(err, errlen, s.message());
  return s ? 0 : 1;
}

int attnc_cuda_decode_plan(const void *kernel, int64_t B, int64_t Hq, int64_t Hkv, int64_t Nq,
                           int64_t max_length, int32_t device, int64_t *splits,
                           uint64_t *workspace_bytes, char *err, size_t errlen) {
  Status s = guarded([&] {
    if (!kernel || !splits || !workspace_bytes)
      return Status::error("attnc_cuda_decode_plan: kernel, splits or workspace_bytes is null");
    auto plan = static_cast<const Handle *>(kernel)->kernel->decodePlan(B, Hq, Hkv, Nq, max_length,
                                                                        device, *splits);
    if (!plan)
      return plan.error();
    *splits = plan->splits;
    *workspace_bytes = plan->workspaceBytes;
    return Status::ok();
  });
  setError(err, errlen, s.message());
  return s ? 0 : 1;
}

int attnc_cuda_prefill_splits(const void *kernel, int64_t B, int64_t Hq, int64_t Hkv, int64_t Nq,
                              int64_t max_length, int32_t device, int64_t *splits, char *err,
                              size_t errlen) {
  Status s = guarded([&] {
    if (!kernel || !splits)
      return Status::error("attnc_cuda_prefill_splits: kernel or splits is null");
    auto plan =
        static_cast<const Handle *>(kernel)->kernel->decodePlan(B, Hq, Hkv, Nq, max_length, device);
    if (!plan)
      return plan.error();
    *splits = plan->prefill ? plan->prefillSplits : 0;
    return Status::ok();
  });
  setError(err, errlen, s.message());
  return s ? 0 : 1;
}

int attnc_cuda_cache_launch(const void *kernel, const attnc_cache_launch_desc *desc, char *err,
                            size_t errlen) {
  Status s = guarded([&] {
    if (!kernel || !desc)
      return Status::error("attnc_cuda_cache_launch: kernel or desc is null");
    return cacheLaunch(*static_cast<const Handle *>(kernel), *desc);
  });
  setError(err, errlen, s.message());
  return s ? 0 : 1;
}

} // extern "C"
