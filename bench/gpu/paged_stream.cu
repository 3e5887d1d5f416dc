//===- paged_stream.cu - the copy ceiling of a paged K/V stream -*- CUDA -*-===//
//
// How fast can a decode step's K/V pages reach shared memory on this GPU,
// by which copy instruction, in which page order? The decode kernel
// (attn-to-nvvm kv-cache) copies 16-byte chunks of each slot row with
// cp.async into XOR-swizzled tiles; it reaches ~3.08 TB/s at B=8 64k with
// pages in random order and ~3.11 with pages in order, against cuDNN's
// ~3.12 over dense K/V (bench/NOTES.md, session 14). This program streams
// the same layout (pages of P = 16 slot rows of one KV head, 256-byte bf16
// rows, 64-slot tiles, 3 stages, 128 threads, the decode's grid of splits x
// heads) with a trivial consumer, so it measures what the copies alone can
// do:
//   cp.async  - the decode's copies (16 bytes a thread and row chunk);
//   tma       - a bulk tensor copy per page and 128-byte half row (box of
//               16 rows x 64 bf16, 128-byte swizzle: the layout the
//               decode's ldmatrix reads), completing on a per-stage mbarrier;
//   ldg       - no shared memory: 16-byte loads into registers.
//   ldg.sts1/2 - the decode's shared tiles filled through registers:
//               16-byte loads of tile i + 1 (or i + 1 and i + 2, two
//               register sets) issued before tile i is consumed, stored
//               to the (swizzled) shared stage after it; the same shared
//               memory as cp.async, so the same CTAs per SM.
// Page orders: random (every page anywhere), runs of 16 pages, in order.
//
// Build (sm_90): nvcc -O3 -std=c++17 -gencode=arch=compute_90,code=sm_90
//   bench/gpu/paged_stream.cu -o paged_stream -lcuda
// Run: ./paged_stream [B] [Hkv] [L] [rounds] [work]   (default 8 8 65536 5 0)
//
//===----------------------------------------------------------------------===//

#include <cuda.h>
#include <cuda_runtime.h>

#include <algorithm>
#include <cstdio>
#include <cstdlib>
#include <numeric>
#include <random>
#include <string>
#include <vector>

namespace {

constexpr int D = 128, P = 16, BK = 64, STAGES = 3, THREADS = 128;
constexpr int ROW = D * 2;      // bytes of a bf16 K or V row
constexpr int TILE = BK * ROW;  // bytes of a tile's K (or V)
constexpr int STAGE = 2 * TILE; // K and V
constexpr int SMEM = STAGES * STAGE;

#define CHECK(x)                                                                                   \
  do {                                                                                             \
    cudaError_t e = (x);                                                                           \
    if (e != cudaSuccess) {                                                                        \
      std::fprintf(stderr, "%s:%d: %s\n", __FILE__, __LINE__, cudaGetErrorString(e));              \
      std::exit(1);                                                                                \
    }                                                                                              \
  } while (0)

struct Job {
  const char *k, *v;
  const int *pages; // [heads, pagesPerHead]
  int pagesPerHead, tilesPerSplit, tiles;
  int work; // dependent FMAs per thread and tile: the decode's math, roughly
  unsigned *sink;
};

__device__ __forceinline__ unsigned smemAddr(const void *p) {
  return unsigned(__cvta_generic_to_shared(p));
}

// Reads a stage's bytes once (16 bytes a thread and step), as the decode's
// ldmatrix reads do, folds them so nothing is dead, then spends `work`
// dependent FMAs (a stand-in for the tile's MMAs and softmax, which keep
// the decode's warps from issuing copies).
__device__ __forceinline__ void consume(const char *stage, unsigned &acc, int work) {
#pragma unroll 4
  for (int i = threadIdx.x; i < STAGE / 16; i += THREADS) {
    uint4 x = *reinterpret_cast<const uint4 *>(stage + i * 16);
    acc ^= x.x ^ x.y ^ x.z ^ x.w;
  }
  float f = __uint_as_float(acc & 0x3fffffffu);
  for (int i = 0; i < work; ++i)
    f = fmaf(f, 0.999f, 0.5f);
  acc ^= __float_as_uint(f);
}

__global__ void __launch_bounds__(THREADS) streamCpAsync(Job j) {
  extern __shared__ __align__(1024) char smem[];
  const int *table = j.pages + size_t(blockIdx.y) * j.pagesPerHead;
  const int t0 = blockIdx.x * j.tilesPerSplit, n = min(j.tiles, t0 + j.tilesPerSplit) - t0;
  auto load = [&](int i) {
    char *st = smem + (i % STAGES) * STAGE;
    const int t = t0 + i;
#pragma unroll 4
    for (int c = threadIdx.x; c < BK * (ROW / 16); c += THREADS) {
      const int r = c / (ROW / 16), ch = c % (ROW / 16), slot = t * BK + r;
      const size_t row = size_t(table[slot / P]) * P + slot % P;
      const int at = r * ROW + ((ch ^ (r & 7)) << 4);
      asm volatile("cp.async.cg.shared.global.L2::128B [%0], [%1], 16;" ::"r"(smemAddr(st + at)),
                   "l"(j.k + row * ROW + ch * 16));
      asm volatile(
          "cp.async.cg.shared.global.L2::128B [%0], [%1], 16;" ::"r"(smemAddr(st + TILE + at)),
          "l"(j.v + row * ROW + ch * 16));
    }
  };
  for (int s = 0; s + 1 < STAGES; ++s) {
    if (s < n)
      load(s);
    asm volatile("cp.async.commit_group;");
  }
  unsigned acc = 0;
  for (int i = 0; i < n; ++i) {
    asm volatile("cp.async.wait_group %0;" ::"n"(STAGES - 2));
    __syncthreads();
    if (i + STAGES - 1 < n)
      load(i + STAGES - 1);
    asm volatile("cp.async.commit_group;");
    consume(smem + (i % STAGES) * STAGE, acc, j.work);
  }
  if (acc == 0x9e3779b9u)
    j.sink[0] = acc;
}

__global__ void __launch_bounds__(THREADS)
    streamTma(const __grid_constant__ CUtensorMap tk, const __grid_constant__ CUtensorMap tv,
              Job j) {
  extern __shared__ __align__(1024) char smem[];
  __shared__ alignas(8) unsigned long long bars[STAGES];
  const int *table = j.pages + size_t(blockIdx.y) * j.pagesPerHead;
  const int t0 = blockIdx.x * j.tilesPerSplit, n = min(j.tiles, t0 + j.tilesPerSplit) - t0;
  if (threadIdx.x == 0) {
    for (int s = 0; s < STAGES; ++s)
      asm volatile("mbarrier.init.shared.b64 [%0], 1;" ::"r"(smemAddr(&bars[s])));
    asm volatile("fence.mbarrier_init.release.cluster;");
  }
  __syncthreads();
  // Thread 0: tile i's pages, a box of P rows x 64 columns per half row
  // (K then V), into stage i % STAGES laid out [half][slot][128 bytes].
  auto load = [&](int i) {
    char *st = smem + (i % STAGES) * STAGE;
    const unsigned bar = smemAddr(&bars[i % STAGES]);
    asm volatile("mbarrier.arrive.expect_tx.shared.b64 _, [%0], %1;" ::"r"(bar), "n"(STAGE));
    const int t = t0 + i;
#pragma unroll
    for (int p = 0; p < BK / P; ++p) {
      const int row = table[(t * BK) / P + p] * P;
#pragma unroll
      for (int h = 0; h < ROW / 128; ++h) {
        const int at = h * (BK * 128) + p * P * 128;
        asm volatile("cp.async.bulk.tensor.2d.shared::cluster.global.mbarrier::complete_tx::bytes"
                     " [%0], [%1, {%2, %3}], [%4];" ::"r"(smemAddr(st + at)),
                     "l"(&tk), "r"(h * 64), "r"(row), "r"(bar)
                     : "memory");
        asm volatile("cp.async.bulk.tensor.2d.shared::cluster.global.mbarrier::complete_tx::bytes"
                     " [%0], [%1, {%2, %3}], [%4];" ::"r"(smemAddr(st + TILE + at)),
                     "l"(&tv), "r"(h * 64), "r"(row), "r"(bar)
                     : "memory");
      }
    }
  };
  if (threadIdx.x == 0)
    for (int s = 0; s + 1 < STAGES; ++s)
      if (s < n)
        load(s);
  unsigned acc = 0;
  for (int i = 0; i < n; ++i) {
    const unsigned bar = smemAddr(&bars[i % STAGES]), parity = (i / STAGES) & 1;
    asm volatile("{\n .reg .pred p;\n W: mbarrier.try_wait.parity.shared.b64 p, [%0], %1;\n"
                 " @!p bra W;\n}" ::"r"(bar),
                 "r"(parity)
                 : "memory");
    __syncthreads(); // every thread is past tile i - 1: its stage is free
    if (threadIdx.x == 0 && i + STAGES - 1 < n)
      load(i + STAGES - 1);
    consume(smem + (i % STAGES) * STAGE, acc, j.work);
  }
  if (acc == 0x9e3779b9u)
    j.sink[0] = acc;
}

__global__ void __launch_bounds__(THREADS) streamLdg(Job j) {
  const int *table = j.pages + size_t(blockIdx.y) * j.pagesPerHead;
  const int t0 = blockIdx.x * j.tilesPerSplit, t1 = min(j.tiles, t0 + j.tilesPerSplit);
  unsigned acc = 0;
  for (int t = t0; t < t1; ++t) {
    uint4 x[2 * BK * (ROW / 16) / THREADS];
#pragma unroll
    for (int u = 0; u < BK * (ROW / 16) / THREADS; ++u) {
      const int c = threadIdx.x + u * THREADS;
      const int r = c / (ROW / 16), ch = c % (ROW / 16), slot = t * BK + r;
      const size_t row = size_t(table[slot / P]) * P + slot % P;
      x[2 * u] = __ldcs(reinterpret_cast<const uint4 *>(j.k + row * ROW + ch * 16));
      x[2 * u + 1] = __ldcs(reinterpret_cast<const uint4 *>(j.v + row * ROW + ch * 16));
    }
#pragma unroll
    for (auto &y : x)
      acc ^= y.x ^ y.y ^ y.z ^ y.w;
    float f = __uint_as_float(acc & 0x3fffffffu);
    for (int i = 0; i < j.work; ++i)
      f = fmaf(f, 0.999f, 0.5f);
    acc ^= __float_as_uint(f);
  }
  if (acc == 0x9e3779b9u)
    j.sink[0] = acc;
}

// Tiles through registers into shared memory (`ahead` tiles of 16-byte
// loads in flight, each in its own register set; 2 shared stages used, the
// cp.async kernel's shared size requested so the occupancy is the same).
template <int Ahead> __global__ void __launch_bounds__(THREADS) streamLdgSts(Job j) {
  extern __shared__ __align__(1024) char smem[];
  constexpr int PER = BK * (ROW / 16) / THREADS;
  const int *table = j.pages + size_t(blockIdx.y) * j.pagesPerHead;
  const int t0 = blockIdx.x * j.tilesPerSplit, n = min(j.tiles, t0 + j.tilesPerSplit) - t0;
  uint4 reg[Ahead][2 * PER];
  auto fetch = [&](int i, uint4 *x) {
    if (i >= n)
      return;
    const int t = t0 + i;
#pragma unroll
    for (int u = 0; u < PER; ++u) {
      const int c = threadIdx.x + u * THREADS;
      const int r = c / (ROW / 16), ch = c % (ROW / 16), slot = t * BK + r;
      const size_t row = size_t(table[slot / P]) * P + slot % P;
      x[2 * u] = __ldcs(reinterpret_cast<const uint4 *>(j.k + row * ROW + ch * 16));
      x[2 * u + 1] = __ldcs(reinterpret_cast<const uint4 *>(j.v + row * ROW + ch * 16));
    }
  };
  auto put = [&](int i, const uint4 *x) {
    if (i >= n)
      return;
    char *st = smem + (i % 2) * STAGE;
#pragma unroll
    for (int u = 0; u < PER; ++u) {
      const int c = threadIdx.x + u * THREADS;
      const int r = c / (ROW / 16), ch = c % (ROW / 16);
      const int at = r * ROW + ((ch ^ (r & 7)) << 4);
      *reinterpret_cast<uint4 *>(st + at) = x[2 * u];
      *reinterpret_cast<uint4 *>(st + TILE + at) = x[2 * u + 1];
    }
  };
  fetch(0, reg[0]);
  put(0, reg[0]);
#pragma unroll
  for (int a = 0; a < Ahead; ++a)
    fetch(1 + a, reg[a]);
  __syncthreads();
  unsigned acc = 0;
  // Unrolled by Ahead so that each register set is named statically.
  for (int i = 0; i < n; i += Ahead) {
#pragma unroll
    for (int a = 0; a < Ahead; ++a) {
      if (i + a < n)
        consume(smem + ((i + a) % 2) * STAGE, acc, j.work);
      put(i + a + 1, reg[a]);
      fetch(i + a + 1 + Ahead, reg[a]);
      __syncthreads();
    }
  }
  if (acc == 0x9e3779b9u)
    j.sink[0] = acc;
}

using EncodeTiled = CUresult (*)(CUtensorMap *, CUtensorMapDataType, cuuint32_t, void *,
                                 const cuuint64_t *, const cuuint64_t *, const cuuint32_t *,
                                 const cuuint32_t *, CUtensorMapInterleave, CUtensorMapSwizzle,
                                 CUtensorMapL2promotion, CUtensorMapFloatOOBfill);

CUtensorMap poolMap(void *base, size_t rows) {
  CUtensorMap m;
  cuuint64_t dims[2] = {D, rows}, strides[1] = {ROW};
  cuuint32_t box[2] = {64, P}, elem[2] = {1, 1};
  CUresult r =
      cuTensorMapEncodeTiled(&m, CU_TENSOR_MAP_DATA_TYPE_BFLOAT16, 2, base, dims, strides, box,
                             elem, CU_TENSOR_MAP_INTERLEAVE_NONE, CU_TENSOR_MAP_SWIZZLE_128B,
                             CU_TENSOR_MAP_L2_PROMOTION_L2_128B, CU_TENSOR_MAP_FLOAT_OOB_FILL_NONE);
  if (r != CUDA_SUCCESS) {
    std::fprintf(stderr, "cuTensorMapEncodeTiled failed: %d\n", int(r));
    std::exit(1);
  }
  return m;
}

} // namespace

int main(int argc, char **argv) {
  const int B = argc > 1 ? std::atoi(argv[1]) : 8, Hkv = argc > 2 ? std::atoi(argv[2]) : 8;
  const int L = argc > 3 ? std::atoi(argv[3]) : 65536, rounds = argc > 4 ? std::atoi(argv[4]) : 5;
  const int work = argc > 5 ? std::atoi(argv[5]) : 0;
  const int heads = B * Hkv, pagesPerHead = L / P, numPages = heads * pagesPerHead;
  const size_t poolBytes = size_t(numPages) * P * ROW;
  char *k, *v;
  int *pages;
  unsigned *sink;
  CHECK(cudaMalloc(&k, poolBytes));
  CHECK(cudaMalloc(&v, poolBytes));
  CHECK(cudaMalloc(&pages, size_t(numPages) * 4));
  CHECK(cudaMalloc(&sink, 4));
  CHECK(cudaMemset(k, 1, poolBytes));
  CHECK(cudaMemset(v, 2, poolBytes));

  // Page tables: every page anywhere, random runs of 16 pages, in order.
  std::mt19937 rng(1);
  auto tableOf = [&](int run) {
    std::vector<int> runs(numPages / run), table(numPages);
    std::iota(runs.begin(), runs.end(), 0);
    if (run < numPages)
      std::shuffle(runs.begin(), runs.end(), rng);
    for (int i = 0; i < numPages; ++i)
      table[i] = runs[i / run] * run + i % run;
    return table;
  };
  const std::vector<std::pair<std::string, std::vector<int>>> orders = {
      {"random", tableOf(1)}, {"runs16", tableOf(16)}, {"order", tableOf(numPages)}};

  CUtensorMap tk = poolMap(k, size_t(numPages) * P), tv = poolMap(v, size_t(numPages) * P);
  CHECK(cudaFuncSetAttribute(streamCpAsync, cudaFuncAttributeMaxDynamicSharedMemorySize, SMEM));
  CHECK(cudaFuncSetAttribute(streamTma, cudaFuncAttributeMaxDynamicSharedMemorySize, SMEM));
  CHECK(cudaFuncSetAttribute(streamLdgSts<1>, cudaFuncAttributeMaxDynamicSharedMemorySize, SMEM));
  CHECK(cudaFuncSetAttribute(streamLdgSts<2>, cudaFuncAttributeMaxDynamicSharedMemorySize, SMEM));
  int sms = 0;
  CHECK(cudaDeviceGetAttribute(&sms, cudaDevAttrMultiProcessorCount, 0));
  // The decode planner's rule (CudaKernel::decodePlan): whole waves of
  // resident CTAs, time ~ waves x (tiles per split + 2).
  const int tiles = L / BK;
  auto splitsFor = [&](const void *fn, int smem) {
    int perSm = 0;
    CHECK(cudaOccupancyMaxActiveBlocksPerMultiprocessor(&perSm, fn, THREADS, smem));
    const int resident = perSm * sms;
    double best = 0;
    int splits = 1;
    for (int s = 1; s <= std::min(tiles * BK / 256, 256); ++s) {
      double time = double((heads * s + resident - 1) / resident) * double((tiles + s - 1) / s + 2);
      if (best == 0 || time < best)
        best = time, splits = s;
    }
    std::printf("# %d CTAs per SM -> %d splits\n", perSm, splits);
    return splits;
  };
  struct Kind {
    const char *name;
    int splits;
  };
  std::vector<Kind> kinds = {{"cp.async", splitsFor((const void *)streamCpAsync, SMEM)},
                             {"tma", splitsFor((const void *)streamTma, SMEM)},
                             {"ldg", splitsFor((const void *)streamLdg, 0)},
                             {"ldg.sts1", splitsFor((const void *)streamLdgSts<1>, SMEM)},
                             {"ldg.sts2", splitsFor((const void *)streamLdgSts<2>, SMEM)}};

  cudaEvent_t e0, e1;
  CHECK(cudaEventCreate(&e0));
  CHECK(cudaEventCreate(&e1));
  std::vector<std::vector<float>> ms(kinds.size() * orders.size());
  const double bytes = 2.0 * poolBytes;
  for (int round = 0; round < rounds; ++round) {
    for (size_t o = 0; o < orders.size(); ++o) {
      CHECK(
          cudaMemcpy(pages, orders[o].second.data(), size_t(numPages) * 4, cudaMemcpyHostToDevice));
      for (size_t kd = 0; kd < kinds.size(); ++kd) {
        Job j{k,     v,    pages, pagesPerHead, (tiles + kinds[kd].splits - 1) / kinds[kd].splits,
              tiles, work, sink};
        dim3 grid((tiles + j.tilesPerSplit - 1) / j.tilesPerSplit, heads);
        auto launch = [&] {
          if (kd == 0)
            streamCpAsync<<<grid, THREADS, SMEM>>>(j);
          else if (kd == 1)
            streamTma<<<grid, THREADS, SMEM>>>(tk, tv, j);
          else if (kd == 2)
            streamLdg<<<grid, THREADS>>>(j);
          else if (kd == 3)
            streamLdgSts<1><<<grid, THREADS, SMEM>>>(j);
          else
            streamLdgSts<2><<<grid, THREADS, SMEM>>>(j);
        };
        launch();
        CHECK(cudaGetLastError());
        std::vector<float> t;
        for (int rep = 0; rep < 10; ++rep) {
          CHECK(cudaEventRecord(e0));
          launch();
          CHECK(cudaEventRecord(e1));
          CHECK(cudaEventSynchronize(e1));
          float x;
          CHECK(cudaEventElapsedTime(&x, e0, e1));
          t.push_back(x);
        }
        std::nth_element(t.begin(), t.begin() + 5, t.end());
        ms[kd * orders.size() + o].push_back(t[5]);
      }
    }
  }
  // The device's copy bandwidth (bytes read + written), as decode.py counts it.
  std::vector<float> copy;
  for (int rep = 0; rep < 10; ++rep) {
    CHECK(cudaEventRecord(e0));
    CHECK(cudaMemcpyAsync(v, k, poolBytes, cudaMemcpyDeviceToDevice));
    CHECK(cudaEventRecord(e1));
    CHECK(cudaEventSynchronize(e1));
    float x;
    CHECK(cudaEventElapsedTime(&x, e0, e1));
    copy.push_back(x);
  }
  std::sort(copy.begin(), copy.end());
  std::printf("# B=%d Hkv=%d L=%d D=%d work=%d: %.1f MB of K/V; copy %.0f GB/s\n", B, Hkv, L, D,
              work, bytes / 1e6, 2.0 * poolBytes / copy[5] / 1e6);
  std::printf("%-9s %-7s %s\n", "copy", "order", "ms per round (GB/s of the median)");
  for (size_t kd = 0; kd < kinds.size(); ++kd)
    for (size_t o = 0; o < orders.size(); ++o) {
      auto t = ms[kd * orders.size() + o];
      std::printf("%-9s %-7s", kinds[kd].name, orders[o].first.c_str());
      for (float x : t)
        std::printf(" %.4f", x);
      std::sort(t.begin(), t.end());
      std::printf("  (%.0f GB/s)\n", bytes / t[t.size() / 2] / 1e6);
    }
  return 0;
}
