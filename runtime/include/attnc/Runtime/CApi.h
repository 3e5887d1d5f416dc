/*===- CApi.h - C interface of the CUDA executor (for ctypes) ----*- C -*-===*\
|*                                                                            *|
|* A plain C view of attnc::rt::CudaKernel for callers that are not C++       *|
|* (Python through ctypes, with tensors from PyTorch or CuPy). Everything is  *|
|* in libAttncRuntime.so. Functions never throw or abort: failures return     *|
|* NULL or nonzero and write a NUL-terminated message into `err` (at most     *|
|* `errlen` bytes, truncated; `err` may be NULL). docs/cuda.md shows a ctypes *|
|* binding.                                                                   *|
|*                                                                            *|
\*===----------------------------------------------------------------------===*/

#ifndef ATTNC_RUNTIME_CAPI_H
#define ATTNC_RUNTIME_CAPI_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

/* Bumped when a struct below changes layout. */
#define ATTNC_C_API_VERSION 1

/* Element types (dtype codes). */
enum {
  ATTNC_DTYPE_F32 = 0,
  ATTNC_DTYPE_F64 = 1,
  ATTNC_DTYPE_F16 = 2,
  ATTNC_DTYPE_BF16 = 3,
  ATTNC_DTYPE_I8 = 4, /* also bool / i1 tensors, one byte per element */
  ATTNC_DTYPE_I16 = 5,
  ATTNC_DTYPE_I32 = 6,
  ATTNC_DTYPE_I64 = 7
};

#define ATTNC_MAX_RANK 8

/* A strided view of device memory. */
typedef struct attnc_tensor {
  uint64_t data;                   /* device address of element [0, ..., 0] */
  int32_t dtype;                   /* ATTNC_DTYPE_* */
  int32_t rank;                    /* 0 .. ATTNC_MAX_RANK; lse: 0 = not wanted */
  int64_t shape[ATTNC_MAX_RANK];   /* extents */
  int64_t strides[ATTNC_MAX_RANK]; /* in elements (PyTorch's Tensor.stride()) */
} attnc_tensor;

/* A runtime parameter, bound by name. */
typedef struct attnc_param {
  const char *name;
  int32_t is_tensor; /* 1: `tensor` (dense row-major), 0: `scalar` */
  double scalar;     /* converted to the parameter's type (i32, f32, ...) */
  attnc_tensor tensor;
} attnc_param;

typedef struct attnc_launch_desc {
  attnc_tensor q, k, v; /* [B,Hq,Nq,D], [B,Hkv,Nk,D], [B,Hkv,Nk,Dv]: kernel dtype */
  attnc_tensor o;       /* [B,Hq,Nq,Dv], kernel dtype */
  attnc_tensor lse;     /* [B,Hq,Nq] f32, or rank 0: not wanted */
  int64_t q_offset;     /* position of query row 0 */
  int32_t device;       /* CUDA device ordinal every tensor lives on */
  int32_t num_params;
  const attnc_param *params;
  void *stream; /* CUstream (torch.cuda.current_stream().cuda_stream); NULL: default */
} attnc_launch_desc;

/* Decode over a KV cache in device memory (a kernel compiled with
   kv-cache; docs/kv-cache.md): pools [pages, P, D] / [pages, P, Dv] of the
   policy's storage; i32 tables with a row per (sequence b, KV head g) =
   b * Hkv + g: kv_pages [B*Hkv, max_pages], kv_pos [B*Hkv, max_slots]
   (-1: not retained) or rank 0 (slot j holds position j: policies that
   retain all), kv_len [B*Hkv]; q_pos [B] (first query position). */
typedef struct attnc_cache_launch_desc {
  attnc_tensor q, o, lse; /* as in attnc_launch_desc (lse rank 0: not wanted) */
  attnc_tensor k_pool, v_pool;
  attnc_tensor kv_pages, kv_pos, kv_len, q_pos;
  attnc_tensor k_scale, v_scale; /* quantized storage: f32 (or the policy's f16)
                                    [pages, P, groups]; else rank 0 */
  int64_t max_length; /* longest kv_len entry; 0: kv_pos's second extent (max_pages * P) */
  int64_t splits;     /* KV splits; 0: attnc_cuda_decode_plan's choice */
  uint64_t workspace; /* device scratch of attnc_cuda_decode_plan's size */
  uint64_t workspace_bytes;
  int32_t device;
  int32_t num_params;
  const attnc_param *params;
  void *stream;
  /* Budget policies (H2O, SnapKV): f32 [B*Hkv, max_slots] the slots'
     attention mass is added to (requires lse); rank 0 otherwise. mass_rows:
     the last queries that count (0: all). */
  attnc_tensor mass;
  int64_t mass_rows;
} attnc_cache_launch_desc;

/* What the metadata says (strings live as long as the kernel). */
typedef struct attnc_kernel_info {
  const char *name, *entry, *arch, *dtype;
  int64_t head_dim, head_dim_v, block_q, threads, shared_bytes, align;
  int32_t num_params;
} attnc_kernel_info;

/* ATTNC_C_API_VERSION of the library, and sizeof of its structs, so that a
   binding can check its layout: which = 0 attnc_tensor, 1 attnc_param,
   2 attnc_launch_desc, 3 attnc_kernel_info, 4 attnc_cache_launch_desc
   (0 for other values). */
int attnc_c_api_version(void);
size_t attnc_c_struct_size(int which);

/* 1 if the CUDA driver loads and reports a device, else 0 (and why). */
int attnc_cuda_available(char *err, size_t errlen);

/* Loads PTX text or a cubin (`image_len` bytes) described by the
   NUL-terminated `metadata`. Returns a kernel handle, or NULL. */
void *attnc_cuda_kernel_load(const char *image, size_t image_len, const char *metadata, char *err,
                             size_t errlen);

/* Releases a handle from attnc_cuda_kernel_load (NULL is ignored). */
void attnc_cuda_kernel_free(void *kernel);

/* Fills `out`; returns 0, or nonzero for a NULL argument. */
int attnc_cuda_kernel_info(const void *kernel, attnc_kernel_info *out);

/* Name, kind (1 tensor, 0 scalar) and type of parameter `index`. */
int attnc_cuda_kernel_param(const void *kernel, int32_t index, const char **name,
                            int32_t *is_tensor, const char **type);

/* Validates and enqueues one launch on desc->stream. Returns 0 on success. */
int attnc_cuda_launch(const void *kernel, const attnc_launch_desc *desc, char *err, size_t errlen);

/* The KV splits and workspace bytes a decode launch over a cache uses on
   `device` (`splits` in: 0 to choose, else the count wanted). Returns 0. */
int attnc_cuda_decode_plan(const void *kernel, int64_t B, int64_t Hq, int64_t Hkv, int64_t Nq,
                           int64_t max_length, int32_t device, int64_t *splits,
                           uint64_t *workspace_bytes, char *err, size_t errlen);

/* The key splits of the prefill-shaped entry that a launch of the same
   shape without cache positions runs (prompt chunks); 0 where the decode
   kernel runs it. Returns 0. */
int attnc_cuda_prefill_splits(const void *kernel, int64_t B, int64_t Hq, int64_t Hkv, int64_t Nq,
                              int64_t max_length, int32_t device, int64_t *splits, char *err,
                              size_t errlen);

/* Validates and enqueues a decode over a cache on desc->stream. */
int attnc_cuda_cache_launch(const void *kernel, const attnc_cache_launch_desc *desc, char *err,
                            size_t errlen);

#ifdef __cplusplus
}
#endif

#endif /* ATTNC_RUNTIME_CAPI_H */
