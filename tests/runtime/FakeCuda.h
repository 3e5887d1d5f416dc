//===- FakeCuda.h - Test hooks of the fake CUDA driver ----------*- C++ -*-===//
//
// libattnc-fake-cuda.so stands in for libcuda.so.1 (through $ATTNC_LIBCUDA)
// on machines without a GPU: "device" memory is host memory, two devices of
// compute capability 9.0 by default, modules are PTX text whose `.entry`
// parameter lists give each argument's size, and launches are recorded.
// Two entries are run on the host:
//   attnc_fake_attention_<bf16|f16>  softmax attention under the kernel ABI
//     (docs/cuda.md) with no mask and no parameters; block_q comes from a
//     `// fake-block-q N` line of the PTX. Rows, heads and batches outside the
//     launched grid are left alone, and every access outside an allocation
//     fails the launch (CUDA_ERROR_ILLEGAL_ADDRESS).
//   attnc_fake_noop                  writes nothing.
// Tensor maps (cuTensorMapEncodeTiled) are checked as the driver does and
// recorded; a map's first 8 bytes are its address.
// Tests reach the hooks below with dlopen on the same path (same handle).
//
//===----------------------------------------------------------------------===//

#ifndef ATTNC_TESTS_RUNTIME_FAKECUDA_H
#define ATTNC_TESTS_RUNTIME_FAKECUDA_H

#include <cstddef>
#include <cstdint>

extern "C" {

struct attnc_fake_launch {
  unsigned grid[3], block[3], sharedBytes;
  void *stream;
  char entry[64];
  int numParams;
  unsigned sizes[96];  // bytes of each argument (from the PTX)
  uint64_t values[96]; // its bytes, zero-extended
  int programmatic;    // cuLaunchKernelEx with programmatic stream serialization
};

/// A tensor map cuTensorMapEncodeTiled encoded (a 2-D tiled map).
struct attnc_fake_tensor_map {
  void *address;
  uint64_t dims[2], rowBytes;
  uint32_t box[2];
  int type, swizzle, l2Promotion, oobFill;
};

/// Tensor maps encoded so far, and the i-th of them (0 if there was one).
int attnc_fake_cuda_tensor_map_count(void);
int attnc_fake_cuda_tensor_map(int i, attnc_fake_tensor_map *out);

/// Launches so far, and the last one (0 if there was one).
int attnc_fake_cuda_launch_count(void);
int attnc_fake_cuda_last_launch(attnc_fake_launch *out);
/// The launch before the last.
int attnc_fake_cuda_previous_launch(attnc_fake_launch *out);
/// Modules loaded and unloaded, memsets run, the last value given to
/// CU_FUNC_ATTRIBUTE_MAX_DYNAMIC_SHARED_SIZE_BYTES (0: none yet).
int attnc_fake_cuda_module_loads(void);
int attnc_fake_cuda_module_unloads(void);
int attnc_fake_cuda_memsets(void);
int attnc_fake_cuda_dynamic_shared_attribute(void);
/// Compute capability (major * 10 + minor) the devices report.
void attnc_fake_cuda_set_capability(int cc);
/// Makes [p, p + n) pinned host memory for cuPointerGetAttributes.
void attnc_fake_cuda_register_host(void *p, size_t n);
/// A function every launch calls after it is recorded (null: none), so a
/// test can play a kernel the fake driver does not run (its device memory
/// is host memory).
typedef void (*attnc_fake_launch_hook)(const attnc_fake_launch *launch, void *user);
void attnc_fake_cuda_set_launch_hook(attnc_fake_launch_hook hook, void *user);
}

#endif // ATTNC_TESTS_RUNTIME_FAKECUDA_H
