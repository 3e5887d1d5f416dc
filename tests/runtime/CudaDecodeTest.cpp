//===- CudaDecodeTest.cpp - Decode over a device KV cache (fake driver) ---===//
//
// CudaKernel::launch(CudaCacheLaunchArgs) under the fake driver: the decode
// kernel's ABI (the compiler's DecodeKernel.h), the grid of row tiles x
// splits, the merge launch after a split decode, the split plan, and the
// checks that run before anything reaches the driver. The numerics of the
// kernels themselves run on the GPU machine (bench/gpu/decode.py --check).
//
//===----------------------------------------------------------------------===//

#include "CudaTestSupport.h"

#include "attnc/Runtime/CApi.h"

#include <cstdlib>
#include <cstring>
#include <functional>

using namespace attnc::rt;
using namespace attnc::test;

namespace {

/// Metadata of a decode kernel over a paged(16) bf16 cache (as attnc
/// --kv-cache writes it), with the entries' parameter lists in PTX.
const char *kDecodeMeta = R"(attnc-cuda-kernel 1
kernel dec
entry attnc_dec
arch sm_80
dtype bf16
head_dim 8
head_dim_v 8
block_q 16
tile_k 64
threads 128
shared_bytes 0
kv_cache pkv paged 16 all 0 0 bf16 none 0 0 none
)";

/// With `tensorMaps` the decode entries end with two 128-byte tensor maps
/// (a kernel of metadata decode_tma); with `prefill` the module has the
/// prefill-shaped entry (metadata cache_prefill).
std::string decodePtx(bool withMass = false, bool tensorMaps = false, bool prefill = false) {
  std::string p = ".version 7.0\n.target sm_80\n.address_size 64\n.visible .entry attnc_dec(";
  auto params = [&](std::initializer_list<std::pair<const char *, int>> groups) {
    int i = 0;
    std::string out;
    for (auto [type, n] : groups)
      for (int k = 0; k < n; ++k, ++i)
        out += std::string(i ? ",\n" : "\n") + "  .param ." + type + " p" + std::to_string(i);
    return out;
  };
  const std::string maps =
      tensorMaps ? ",\n  .param .align 64 .b8 km[128],\n  .param .align 64 .b8 vm[128]" : "";
  p += params({{"u64", 7}, {"u32", 9}, {"u64", 8}, {"u64", 6}, {"u32", 1}}) + maps +
       ")\n{\n  ret;\n}\n";
  p += ".visible .entry attnc_dec_merge(" +
       params({{"u64", 4}, {"u32", 4}, {"u64", 5}, {"u32", 1}}) + ")\n{\n  ret;\n}\n";
  p += ".visible .entry attnc_dec_append(" + params({{"u64", 9}, {"u32", 1}}) + ")\n{\n  ret;\n}\n";
  p += ".visible .entry attnc_dec_move(" + params({{"u64", 7}, {"u32", 1}}) + ")\n{\n  ret;\n}\n";
  for (const char *twin : {"attnc_dec_q16", "attnc_dec_q32"})
    p += ".visible .entry " + std::string(twin) + "(" +
         params({{"u64", 7}, {"u32", 9}, {"u64", 8}, {"u64", 6}, {"u32", 1}}) + maps +
         ")\n{\n  ret;\n}\n";
  if (prefill)
    p += ".visible .entry attnc_dec_prefill(" +
         params({{"u64", 5}, {"u32", 6}, {"u64", 14}, {"u32", 1}, {"u64", 5}, {"u32", 3}}) +
         ")\n{\n  ret;\n}\n";
  if (withMass) {
    p += ".visible .entry attnc_dec_mass(" +
         params({{"u64", 7},
                 {"u32", 9},
                 {"u64", 8},
                 {"u64", 6},
                 {"u32", 1},
                 {"u64", 1},
                 {"u32", 1},
                 {"u64", 1}}) +
         ")\n{\n  ret;\n}\n";
    p += ".visible .entry attnc_dec_victims(" + params({{"u64", 5}, {"u32", 2}}) +
         ")\n{\n  ret;\n}\n";
    p += ".visible .entry attnc_dec_pool(" + params({{"u64", 4}, {"u32", 4}}) + ")\n{\n  ret;\n}\n";
  }
  return p;
}

/// A KvCache of `kernel`'s policy (2 KV heads, D = 8) whose pools, `pages`
/// of them, live in a CudaKvStore; `adjust` sets further options.
struct StoreBackedCache {
  std::shared_ptr<CudaKvStore> store;
  std::unique_ptr<KvCache> cache;
};
Expected<StoreBackedCache>
storeBackedCache(const std::shared_ptr<CudaKernel> &kernel, int64_t pages,
                 const std::function<void(KvCacheOptions &)> &adjust = nullptr) {
  auto store = CudaKvStore::create(kernel, pages, 0);
  if (!store)
    return store.error();
  KvCacheOptions o;
  o.policy = *kernel->info().cache;
  o.numKvHeads = 2, o.headDim = 8, o.numPages = pages, o.store = *store;
  if (adjust)
    adjust(o);
  auto cache = KvCache::create(o);
  if (!cache)
    return cache.error();
  return StoreBackedCache{*store, std::move(*cache)};
}

/// The fake decode kernel with its mass, victims and pool entries, of
/// policy `policy` (a metadata kv_cache line's fields after the name).
Expected<std::shared_ptr<CudaKernel>> budgetKernel(const std::string &policy) {
  std::string meta = kDecodeMeta;
  const std::string plain = "pkv paged 16 all 0 0 bf16 none 0 0 none";
  meta.replace(meta.find(plain), plain.size(), policy);
  return CudaKernel::load(decodePtx(true), meta);
}

/// Q/O [B, Hq, Nq, D], pools [pages, 16, D] (D = 8 unless given), tables
/// for B sequences of Hkv heads (contents do not matter to the fake driver).
struct DecodeProblem {
  int64_t B, Hq, Hkv, Nq, maxSlots;
  DevTensor q, o, lse, kPool, vPool, pages, pos, len, qpos;
  DecodeProblem(int64_t B, int64_t Hq, int64_t Hkv, int64_t Nq, int64_t maxSlots,
                int64_t numPages = 64, int64_t P = 16, int64_t D = 8)
      : B(B), Hq(Hq), Hkv(Hkv), Nq(Nq), maxSlots(maxSlots), q({B, Hq, Nq, D}, kBF16),
        o({B, Hq, Nq, D}, kBF16), lse({B, Hq, Nq}, kF32), kPool({numPages, P, D}, kBF16),
        vPool({numPages, P, D}, kBF16), pages({B * Hkv, (maxSlots + P - 1) / P}, kI32),
        pos({B * Hkv, maxSlots}, kI32), len({B * Hkv}, kI32), qpos({B}, kI32) {}
  static constexpr DLDataType kI32{kDLInt, 32, 1};
  CudaCacheLaunchArgs args() {
    CudaCacheLaunchArgs a;
    a.q = &q, a.o = &o, a.lse = &lse;
    a.cache.keyPool = &kPool, a.cache.valuePool = &vPool;
    a.cache.pages = &pages, a.cache.positions = &pos, a.cache.lengths = &len;
    a.cache.queryPositions = &qpos;
    return a;
  }
};

/// ATTNC_CUDA_PREFILL_SPLITS=1 (the prefill-shaped entry may split a
/// chunk's keys) for the scope.
struct PrefillSplitsOn {
  PrefillSplitsOn() { setenv("ATTNC_CUDA_PREFILL_SPLITS", "1", 1); }
  ~PrefillSplitsOn() { unsetenv("ATTNC_CUDA_PREFILL_SPLITS"); }
};

/// The entry, grid and block one decode step of Nq queries launches.
struct ExpectedDecodeLaunch {
  int64_t Nq;
  const char *entry;
  unsigned rowTiles;
  int64_t blockQ;
  unsigned threads, sharedBytes;
};

class CudaDecodeFake : public ::testing::Test {
protected:
  void SetUp() override {
    REQUIRE_FAKE_DRIVER();
    std::string why;
    ASSERT_TRUE(cudaAvailable(&why)) << why;
    auto k = CudaKernel::load(decodePtx(), kDecodeMeta);
    ASSERT_TRUE(bool(k)) << k.message();
    kernel = *k;
  }
  void expectRejected(const CudaCacheLaunchArgs &a, const std::string &substring) {
    int launches = fake.launches();
    expectError(kernel->launch(a), substring);
    EXPECT_EQ(fake.launches(), launches);
  }
  /// Plans and launches each case on `k` at G = 4 (1 sequence, Hq/Hkv =
  /// 8/2, 300 keys, one split): the plan's tile and the launch's shape.
  void expectDecodeLaunches(CudaKernel &k, std::initializer_list<ExpectedDecodeLaunch> cases) {
    for (const ExpectedDecodeLaunch &c : cases) {
      SCOPED_TRACE(c.Nq);
      DecodeProblem p(1, 8, 2, c.Nq, 300);
      auto plan = k.decodePlan(1, 8, 2, c.Nq, 300, 0, 1);
      ASSERT_TRUE(bool(plan));
      EXPECT_EQ(plan->blockQ, c.blockQ);
      auto a = p.args();
      a.splits = 1;
      ASSERT_TRUE(k.launch(a));
      attnc_fake_launch l = fake.last();
      EXPECT_STREQ(l.entry, c.entry);
      EXPECT_EQ(l.grid[0], c.rowTiles);
      EXPECT_EQ(l.block[0], c.threads);
      EXPECT_EQ(l.sharedBytes, c.sharedBytes);
    }
  }
  /// kDecodeMeta with a 32-row twin and the prefill-shaped entry
  /// (`cache_prefill 64 128 163840`: one CTA per fake SM, as the 160 KB
  /// wgmma entry gets on an H100).
  static std::string prefillMeta() {
    return std::string(kDecodeMeta) + "decode_wide 32 256 4096\ncache_prefill 64 128 163840\n";
  }
  std::shared_ptr<CudaKernel> loadPrefillKernel() {
    auto k = CudaKernel::load(decodePtx(false, false, true), prefillMeta());
    EXPECT_TRUE(bool(k)) << k.message();
    return k ? *k : nullptr;
  }
  FakeHooks fake;
  std::shared_ptr<CudaKernel> kernel;
};

} // namespace

TEST_F(CudaDecodeFake, OneSplitPacksTheAbi) {
  // 2 sequences, 8 query heads over 2 KV heads (G = 4), Nq = 3: 12 packed
  // rows, one 16-row tile per (sequence, KV head).
  DecodeProblem p(2, 8, 2, 3, 100);
  auto a = p.args();
  a.splits = 1;
  int before = fake.launches();
  void *stream = reinterpret_cast<void *>(uintptr_t(0x7000));
  ASSERT_TRUE(kernel->launch(a, stream));
  ASSERT_EQ(fake.launches(), before + 1) << "one split: no merge";
  attnc_fake_launch l = fake.last();
  EXPECT_STREQ(l.entry, "attnc_dec");
  EXPECT_EQ(l.grid[0], 1u);
  EXPECT_EQ(l.grid[1], 2u);
  EXPECT_EQ(l.grid[2], 2u);
  EXPECT_EQ(l.block[0], 128u);
  EXPECT_EQ(l.stream, stream);
  ASSERT_EQ(l.numParams, 31);
  EXPECT_EQ(l.values[0], p.q.address());
  EXPECT_EQ(l.values[1], p.kPool.address());
  EXPECT_EQ(l.values[2], p.vPool.address());
  EXPECT_EQ(l.values[3], p.o.address());
  EXPECT_EQ(l.values[4], p.lse.address());
  // B, Hq, Hkv, Nq, P, max_pages, max_slots, splits, split_slots.
  const uint64_t sizes[] = {2, 8, 2, 3, 16, 7, 100, 1, 128};
  for (int i = 0; i < 9; ++i)
    EXPECT_EQ(l.values[7 + i], sizes[i]) << "size argument " << i;
  EXPECT_EQ(l.values[16], uint64_t(8 * 3 * 8)) << "q batch stride";
  EXPECT_EQ(l.values[18], 8u) << "q row stride";
  EXPECT_EQ(l.values[22], uint64_t(8 * 3)) << "lse batch stride";
  EXPECT_EQ(l.values[24], p.pages.address());
  EXPECT_EQ(l.values[25], p.pos.address());
  EXPECT_EQ(l.values[26], p.len.address());
  EXPECT_EQ(l.values[27], p.qpos.address());
  EXPECT_EQ(l.values[30], 1u) << "write_lse";
  // Without LSE: null pointer and write_lse = 0.
  a.lse = nullptr;
  ASSERT_TRUE(kernel->launch(a));
  EXPECT_EQ(fake.last().values[4], 0u);
  EXPECT_EQ(fake.last().values[30], 0u);
}

TEST_F(CudaDecodeFake, NoPositionsTableMeansSlotsArePositions) {
  // A policy that retains all may leave the positions out: kv_pos is null,
  // max_slots the page table's max_pages * P, and max_length is checked
  // against it.
  DecodeProblem p(2, 8, 2, 1, 100);
  auto a = p.args();
  a.splits = 1;
  a.cache.positions = nullptr;
  ASSERT_TRUE(kernel->launch(a));
  attnc_fake_launch l = fake.last();
  EXPECT_EQ(l.values[13], uint64_t(7 * 16)) << "max_slots: 7 pages of 16";
  EXPECT_EQ(l.values[25], 0u) << "kv_pos";
  EXPECT_EQ(l.values[24], p.pages.address());
  a.cache.maxLength = 113;
  expectRejected(a, "maxLength 113 exceeds the 112 slots of the page table");
  // Other retentions move or drop slots: they must give the positions.
  std::string meta = kDecodeMeta;
  meta.replace(meta.find("pkv paged 16 all 0 0"), 20, "pkv paged 16 sink_window 4 60");
  auto stream = CudaKernel::load(decodePtx(), meta);
  ASSERT_TRUE(bool(stream)) << stream.message();
  a.cache.maxLength = 0;
  int before = fake.launches();
  expectError((*stream)->launch(a), "policy 'pkv' retains sink_window: slots do not follow "
                                    "positions, give the cache positions");
  EXPECT_EQ(fake.launches(), before);
  a.cache.positions = &p.pos;
  EXPECT_TRUE((*stream)->launch(a));
  // Per-head policies where some head drops positions: the same.
  meta = kDecodeMeta;
  meta.replace(meta.find("kv_cache pkv paged 16 all 0 0 bf16 none 0 0 none"), 48,
               "kv_cache duo per_head 0 per_head 0 0 - none 0 0 none -\n"
               "kv_head_policy 0 full paged 16 all 0 0 bf16 none 0 0 none f32\n"
               "kv_head_policy 1 stream paged 16 sink_window 4 60 bf16 none 0 0 none f32");
  auto duo = CudaKernel::load(decodePtx(), meta);
  ASSERT_TRUE(bool(duo)) << duo.message();
  a.cache.positions = nullptr;
  expectError((*duo)->launch(a), "policy 'duo' has heads that drop positions");
}

TEST_F(CudaDecodeFake, SplitsLaunchTheMerge) {
  // 1 sequence, 4 KV heads: 4 CTAs without splits on a GPU of many SMs, so
  // the plan splits the 8192 slots.
  DecodeProblem p(1, 16, 4, 1, 8192, 600);
  auto plan = kernel->decodePlan(1, 16, 4, 1, 8192, 0);
  ASSERT_TRUE(bool(plan)) << plan.message();
  EXPECT_GT(plan->splits, 1);
  EXPECT_EQ(plan->splitSlots % 64, 0) << "whole KV tiles per split";
  EXPECT_GE(plan->splits * plan->splitSlots, 8192);
  EXPECT_LT((plan->splits - 1) * plan->splitSlots, 8192) << "no empty split";
  EXPECT_EQ(plan->workspaceBytes, size_t(plan->splits) * 16 * (8 + 1) * sizeof(float));
  auto a = p.args();
  expectRejected(a, "needs a " + std::to_string(plan->workspaceBytes) + "-byte workspace");
  DevTensor ws({int64_t(plan->workspaceBytes)}, DLDataType{kDLUInt, 8, 1});
  a.workspace = ws.buffer.data();
  a.workspaceBytes = plan->workspaceBytes;
  int before = fake.launches();
  ASSERT_TRUE(kernel->launch(a));
  ASSERT_EQ(fake.launches(), before + 2);
  attnc_fake_launch l = fake.last();
  EXPECT_STREQ(l.entry, "attnc_dec_merge");
  EXPECT_EQ(l.grid[0], 1u);  // Nq
  EXPECT_EQ(l.grid[1], 16u); // Hq
  EXPECT_EQ(l.grid[2], 1u);  // B
  EXPECT_EQ(l.block[0], 8u); // Dv threads
  ASSERT_EQ(l.numParams, 14);
  EXPECT_EQ(l.values[0], ws.buffer.address()) << "O parts first";
  EXPECT_EQ(l.values[1], ws.buffer.address() + plan->splits * 16 * 8 * sizeof(float))
      << "then the LSE parts";
  EXPECT_EQ(l.values[2], p.o.address());
  EXPECT_EQ(l.values[3], p.lse.address());
  EXPECT_EQ(l.values[7], uint64_t(plan->splits));
  EXPECT_EQ(l.programmatic, 0) << "no merge_pdl: the merge waits for the decode as usual";
  // A given split count is fitted to the length; maxLength bounds it.
  auto three = kernel->decodePlan(1, 16, 4, 1, 8192, 0, 3);
  ASSERT_TRUE(bool(three));
  EXPECT_EQ(three->splits, 3);
  EXPECT_EQ(three->splitSlots, 2752);
  auto shortOne = kernel->decodePlan(1, 16, 4, 1, 100, 0);
  ASSERT_TRUE(bool(shortOne));
  EXPECT_EQ(shortOne->splits, 1) << "splits keep at least 256 slots";
}

TEST_F(CudaDecodeFake, AWaitingMergeLaunchesEarly) {
  // `merge_pdl 1`: the merge kernel waits on the decode grid itself, so the
  // runtime launches it with programmatic stream serialization; the decode
  // is launched as usual.
  auto info = parseCudaKernelInfo(std::string(kDecodeMeta) + "merge_pdl 1\n");
  ASSERT_TRUE(bool(info)) << info.message();
  EXPECT_TRUE(info->mergeWaits);
  auto k = CudaKernel::load(decodePtx(), std::string(kDecodeMeta) + "merge_pdl 1\n");
  ASSERT_TRUE(bool(k)) << k.message();
  DecodeProblem p(1, 16, 4, 1, 8192, 600);
  auto plan = (*k)->decodePlan(1, 16, 4, 1, 8192, 0, 4);
  ASSERT_TRUE(bool(plan)) << plan.message();
  DevTensor ws({int64_t(plan->workspaceBytes)}, DLDataType{kDLUInt, 8, 1});
  auto a = p.args();
  a.splits = 4, a.workspace = ws.buffer.data(), a.workspaceBytes = plan->workspaceBytes;
  int before = fake.launches();
  a.splits = 1;
  ASSERT_TRUE((*k)->launch(a));
  ASSERT_EQ(fake.launches(), before + 1);
  EXPECT_STREQ(fake.last().entry, "attnc_dec");
  EXPECT_EQ(fake.last().programmatic, 0) << "one split: the decode alone, launched as usual";
  a.splits = 4;
  ASSERT_TRUE((*k)->launch(a));
  ASSERT_EQ(fake.launches(), before + 3);
  attnc_fake_launch l = fake.last();
  EXPECT_STREQ(l.entry, "attnc_dec_merge");
  EXPECT_EQ(l.programmatic, 1);
  EXPECT_EQ(l.grid[1], 16u);
  EXPECT_EQ(l.block[0], 8u);
  EXPECT_EQ(l.values[7], 4u);
  for (const char *bad : {"merge_pdl 2\n", "merge_pdl\n", "merge_pdl yes\n"})
    expectError(parseCudaKernelInfo(std::string(kDecodeMeta) + bad).error(),
                "merge_pdl: expected 0 or 1");
}

TEST_F(CudaDecodeFake, BulkCopyKernelsTakeTensorMapsOfThePools) {
  // `decode_tma 16`: the decode entries end with tensor maps over the key
  // and value pools as [pages * P, D] matrices, boxes of 16 slot rows x 64
  // elements swizzled by 128 bytes (the kernel's shared tiles), encoded
  // per launch; the merge takes none.
  std::string meta = kDecodeMeta;
  const std::string dims = "head_dim 8\nhead_dim_v 8";
  meta.replace(meta.find(dims), dims.size(), "head_dim 64\nhead_dim_v 64");
  meta += "decode_tma 16\n";
  auto info = parseCudaKernelInfo(meta);
  ASSERT_TRUE(bool(info)) << info.message();
  EXPECT_EQ(info->tmaBoxRows, 16);
  auto k = CudaKernel::load(decodePtx(false, true), meta);
  ASSERT_TRUE(bool(k)) << k.message();
  DecodeProblem p(2, 8, 2, 1, 100, 40, 16, 64);
  auto plan = (*k)->decodePlan(2, 8, 2, 1, 100, 0, 2);
  ASSERT_TRUE(bool(plan)) << plan.message();
  DevTensor ws({int64_t(plan->workspaceBytes)}, DLDataType{kDLUInt, 8, 1});
  auto a = p.args();
  a.splits = 2, a.workspace = ws.buffer.data(), a.workspaceBytes = plan->workspaceBytes;
  const int maps = fake.tensorMapCount(), launches = fake.launches();
  Status launched = (*k)->launch(a);
  ASSERT_TRUE(launched) << launched.message();
  ASSERT_EQ(fake.launches(), launches + 2);
  ASSERT_EQ(fake.tensorMapCount(), maps + 2);
  for (int i = 0; i < 2; ++i) {
    attnc_fake_tensor_map t = fake.tensorMap(maps + i);
    EXPECT_EQ(t.address, (i ? p.vPool : p.kPool).t.data);
    EXPECT_EQ(t.dims[0], 64u);
    EXPECT_EQ(t.dims[1], 40u * 16u) << "every pool row";
    EXPECT_EQ(t.rowBytes, 128u);
    EXPECT_EQ(t.box[0], 64u);
    EXPECT_EQ(t.box[1], 16u);
    EXPECT_EQ(t.type, 9) << "bf16";
    EXPECT_EQ(t.swizzle, 3) << "128-byte swizzle";
  }
  attnc_fake_launch merge = fake.last();
  EXPECT_STREQ(merge.entry, "attnc_dec_merge");
  a.splits = 1;
  ASSERT_TRUE((*k)->launch(a));
  attnc_fake_launch l = fake.last();
  EXPECT_STREQ(l.entry, "attnc_dec");
  ASSERT_EQ(l.numParams, 31 + 2);
  for (int i = 0; i < 2; ++i) {
    EXPECT_EQ(l.sizes[31 + i], 128u);
    EXPECT_EQ(l.values[31 + i], uint64_t(uintptr_t((i ? p.vPool : p.kPool).t.data)))
        << "the map itself, by value";
  }
  // A pool the copy engine cannot address (16-byte aligned) is refused
  // before the driver.
  p.kPool.t.byte_offset = 8;
  expectError((*k)->launch(a), "is not 16-byte aligned");

  // int8 per token at D = 128: the maps are over the rows' bytes (u8), a
  // box one 128-byte line of 128 columns.
  std::string q8 = meta;
  const std::string d64 = "head_dim 64\nhead_dim_v 64";
  q8.replace(q8.find(d64), d64.size(), "head_dim 128\nhead_dim_v 128");
  q8.replace(q8.find("pkv paged 16 all 0 0 bf16 none 0 0 none"), 39,
             "q8 paged 16 all 0 0 i8 per_token 0 0 none f32");
  auto kq = CudaKernel::load(decodePtx(false, true), q8);
  ASSERT_TRUE(bool(kq)) << kq.message();
  DecodeProblem pq(1, 8, 2, 1, 32, 8, 16, 128);
  DevTensor kRaw({8, 16, 128}, DLDataType{kDLInt, 8, 1}),
      vRaw({8, 16, 128}, DLDataType{kDLInt, 8, 1});
  DevTensor kScales({8, 16, 1}, kF32), vScales({8, 16, 1}, kF32);
  auto aq = pq.args();
  aq.splits = 1;
  aq.cache.keyPool = &kRaw, aq.cache.valuePool = &vRaw;
  aq.cache.keyScales = &kScales, aq.cache.valueScales = &vScales;
  const int before = fake.tensorMapCount();
  Status ran = (*kq)->launch(aq);
  ASSERT_TRUE(ran) << ran.message();
  ASSERT_EQ(fake.tensorMapCount(), before + 2);
  for (int i = 0; i < 2; ++i) {
    attnc_fake_tensor_map t = fake.tensorMap(before + i);
    EXPECT_EQ(t.address, (i ? vRaw : kRaw).t.data);
    EXPECT_EQ(t.type, 0) << "u8";
    EXPECT_EQ(t.dims[0], 128u);
    EXPECT_EQ(t.dims[1], 8u * 16u);
    EXPECT_EQ(t.rowBytes, 128u);
    EXPECT_EQ(t.box[0], 128u);
    EXPECT_EQ(t.box[1], 16u);
  }
  for (const char *bad : {"decode_tma 0\n", "decode_tma\n", "decode_tma 512\n"})
    expectError(parseCudaKernelInfo(std::string(kDecodeMeta) + bad).error(),
                "decode_tma: expected the box rows");
}

TEST_F(CudaDecodeFake, BudgetPolicyLaunchesTheMassKernel) {
  // The same kernel over an H2O budget(256) policy: after the decode and
  // merge, attnc_dec_mass (grid (slots / threads, Hkv, B)) with the decode
  // ABI plus the mass table and mass_rows.
  std::string meta = kDecodeMeta;
  meta.replace(meta.find("pkv paged 16 all 0 0 bf16 none 0 0 none"), 39,
               "h2o paged 16 budget 0 0 bf16 none 0 256 h2o");
  auto k = CudaKernel::load(decodePtx(true), meta);
  ASSERT_TRUE(bool(k)) << k.message();
  DecodeProblem p(2, 8, 2, 3, 1000, 200);
  DevTensor mass({4, 1000}, kF32);
  auto a = p.args();
  a.splits = 2;
  auto plan = (*k)->decodePlan(2, 8, 2, 3, 1000, 0, 2);
  ASSERT_TRUE(bool(plan));
  DevTensor ws({int64_t(plan->workspaceBytes)}, DLDataType{kDLUInt, 8, 1});
  a.workspace = ws.buffer.data();
  a.workspaceBytes = plan->workspaceBytes;
  int before = fake.launches();
  expectError((*k)->launch(a), "keeps a budget: give the mass table");
  a.mass = &mass;
  a.massRows = 2;
  a.lse = nullptr;
  expectError((*k)->launch(a), "reads the LSE, give lse");
  a.lse = &p.lse;
  DevTensor wrong({4, 999}, kF32);
  a.mass = &wrong;
  EXPECT_FALSE((*k)->launch(a));
  EXPECT_EQ(fake.launches(), before) << "checks before the driver";
  a.mass = &mass;
  ASSERT_TRUE((*k)->launch(a));
  ASSERT_EQ(fake.launches(), before + 3) << "decode, merge, mass";
  attnc_fake_launch l = fake.last();
  EXPECT_STREQ(l.entry, "attnc_dec_mass");
  EXPECT_EQ(l.grid[0], unsigned(plan->splits * plan->splitSlots / 128))
      << "a thread per slot of the splits, 128 a block";
  EXPECT_EQ(l.grid[1], 2u);
  EXPECT_EQ(l.grid[2], 2u);
  ASSERT_EQ(l.numParams, 34);
  EXPECT_EQ(l.values[4], p.lse.address()) << "reads the final LSE";
  EXPECT_EQ(l.values[14], 2u) << "splits";
  EXPECT_EQ(l.values[31], mass.address());
  EXPECT_EQ(l.values[32], 2u) << "mass_rows";
  EXPECT_EQ(l.values[33], 0u) << "no slot scores: the mass table";
  EXPECT_EQ(l.sharedBytes, 0u) << "it reads the stored scores, no tiles";
  // The workspace holds the parts and the scores, f32 [B * Hkv, G * Nq,
  // splits * split_slots], so a budget decode needs one even unsplit.
  EXPECT_EQ(plan->workspaceBytes,
            size_t(plan->splits) * (2 * 8 * 3) * size_t(8 + 1 + plan->splitSlots) * sizeof(float));
  auto one = (*k)->decodePlan(2, 8, 2, 3, 1000, 0, 1);
  ASSERT_TRUE(bool(one));
  EXPECT_EQ(one->workspaceBytes, size_t(2 * 8 * 3) * size_t(8 + 1 + 1024) * sizeof(float))
      << "1000 slots in tiles of 64: one split of 1024";
  a.massRows = 0;
  a.splits = 1;
  a.workspace = nullptr;
  expectError((*k)->launch(a), "split(s) with a mass pass needs a " +
                                   std::to_string(one->workspaceBytes) + "-byte workspace");
  a.workspace = ws.buffer.data();
  ASSERT_TRUE((*k)->launch(a));
  EXPECT_EQ(fake.last().values[32], 3u) << "0: all Nq queries";
  // A policy without a budget takes no mass table.
  auto plain = p.args();
  plain.mass = &mass;
  expectRejected(plain, "keeps no budget");
}

TEST_F(CudaDecodeFake, H2oStoreKeepsScoresAndChoosesVictimsOnTheDevice) {
  // An H2O budget(256) policy: the store keeps a score and a position per
  // pool row (f32 / i32 [pages, 16]); appends write the positions
  // (attnc_dec_append with (row, pool row, position) and the metadata),
  // decode's mass kernel adds to the scores (no mass table, no download),
  // and an append past the budget asks attnc_dec_victims (a CTA of 128
  // per head) with (first page, slots, recent_from, keep, cursor). The
  // fake driver runs no kernel, so no victim comes back: the store says
  // so and the append changes nothing.
  auto k = budgetKernel("h2o paged 16 budget 0 0 bf16 none 0 256 h2o");
  ASSERT_TRUE(bool(k)) << k.message();
  auto store = CudaKvStore::create(*k, 80, 0);
  ASSERT_TRUE(bool(store)) << store.message();
  EXPECT_TRUE((*store)->keepsScores());
  CudaCacheView pools = (*store)->pools();
  ASSERT_TRUE(pools.slotScores && pools.slotPositions);
  EXPECT_EQ(pools.slotScores->shape[0], 80);
  EXPECT_EQ(pools.slotScores->shape[1], 16);
  EXPECT_EQ(pools.slotPositions->dtype.code, kDLInt);
  KvCacheOptions o;
  o.policy = *(*k)->info().cache;
  o.numKvHeads = 2, o.headDim = 8, o.numPages = 80, o.store = *store;
  auto cache = KvCache::create(o);
  ASSERT_TRUE(bool(cache)) << cache.message();
  int64_t seq = *(*cache)->addSequence();
  DevTensor kt({2, 300, 8}, kBF16), vt({2, 300, 8}, kBF16);
  ASSERT_TRUE((*cache)->append(seq, &kt.t, &vt.t));
  attnc_fake_launch l = fake.last();
  EXPECT_STREQ(l.entry, "attnc_dec_append");
  EXPECT_EQ(l.values[7], uint64_t(uintptr_t(pools.slotScores->data)));
  EXPECT_EQ(l.values[8], uint64_t(uintptr_t(pools.slotPositions->data)));
  const auto *triples = reinterpret_cast<const int32_t *>(uintptr_t(l.values[6]));
  EXPECT_EQ(triples[3 * 299 + 2], 299) << "the position of head 0's last token";
  EXPECT_EQ(triples[3 * 300 + 2], 0) << "head 1's first";
  // Decode: the mass kernel adds to the store's scores.
  DevTensor q({1, 4, 1, 8}, kBF16), out({1, 4, 1, 8}, kBF16);
  ASSERT_TRUE((*store)->decode(**cache, {seq}, &q.t, &out.t));
  l = fake.last();
  EXPECT_STREQ(l.entry, "attnc_dec_mass");
  EXPECT_EQ(l.values[31], 0u) << "no mass table";
  EXPECT_EQ(l.values[33], uint64_t(uintptr_t(pools.slotScores->data)));
  // Past the budget: the victims kernel, a CTA per head.
  DevTensor k1({2, 1, 8}, kBF16), v1({2, 1, 8}, kBF16);
  int before = fake.launches();
  std::vector<int32_t> kept = (*cache)->retainedPositions(seq, 0);
  expectError((*cache)->append(seq, &k1.t, &v1.t),
              "the victims kernel chose 0 slots of 300 where 44 distinct ones were to go");
  ASSERT_EQ(fake.launches(), before + 1) << "the victims kernel, then nothing";
  l = fake.last();
  EXPECT_STREQ(l.entry, "attnc_dec_victims");
  EXPECT_EQ(l.grid[0], 2u);
  EXPECT_EQ(l.block[0], 128u);
  ASSERT_EQ(l.numParams, 7);
  EXPECT_EQ(l.values[0], uint64_t(uintptr_t(pools.slotScores->data)));
  EXPECT_EQ(l.values[1], uint64_t(uintptr_t(pools.slotPositions->data)));
  EXPECT_EQ(l.values[5], 2u) << "requests";
  EXPECT_EQ(l.values[6], 16u) << "page size";
  // 300 slots, the 128 newest kept (half the budget), 128 of the 172 older.
  const auto *req = reinterpret_cast<const int32_t *>(uintptr_t(l.values[3]));
  const int32_t wantReq[10] = {0, 300, 172, 128, 0, 19, 300, 172, 128, 44};
  for (int i = 0; i < 10; ++i)
    EXPECT_EQ(req[i], wantReq[i]) << i;
  const auto *pageList = reinterpret_cast<const int32_t *>(uintptr_t(l.values[2]));
  EXPECT_EQ(pageList[0], 0) << "head 0's first page";
  EXPECT_EQ(l.values[2], l.values[3] + 10 * 4) << "the page lists after the requests";
  EXPECT_EQ(l.values[4], l.values[2] + 2 * 19 * 4) << "the victims after the page lists";
  EXPECT_EQ((*cache)->length(seq), 300);
  EXPECT_EQ((*cache)->retainedPositions(seq, 0), kept);
  // A batch append of two sequences past the budget asks once, a CTA per
  // head of both (and, refused, changes neither).
  int64_t seq2 = *(*cache)->addSequence();
  ASSERT_TRUE((*cache)->append(seq2, &kt.t, &vt.t));
  DevTensor kb({2, 2, 1, 8}, kBF16), vb({2, 2, 1, 8}, kBF16);
  before = fake.launches();
  expectError((*cache)->append(std::vector<int64_t>{seq, seq2}, &kb.t, &vb.t),
              "the victims kernel chose 0 slots of 300");
  ASSERT_EQ(fake.launches(), before + 1) << "one victims launch for the batch";
  l = fake.last();
  EXPECT_STREQ(l.entry, "attnc_dec_victims");
  EXPECT_EQ(l.grid[0], 4u) << "2 sequences x 2 heads";
  EXPECT_EQ(l.values[5], 4u) << "requests";
  EXPECT_EQ((*cache)->length(seq), 300);
  EXPECT_EQ((*cache)->length(seq2), 300);
}

/// Plays attnc_<K>_victims for the fake driver (VictimsKernel.h's ABI:
/// slot scores, slot positions, page lists, requests (first page, slots,
/// recent_from, keep, cursor), victims, count, page size): each request's
/// candidates (retained slots older than recent_from) beyond `keep` are
/// written in descending slot order, as any order may come from the
/// kernel, and the cursor advanced. `fault` spoils the first request's
/// answer.
struct VictimsPlay {
  enum Fault { None, Duplicate, OutOfRange, TooFew } fault = None;
  std::vector<std::vector<int32_t>> chosen; // per request, as written
  static void hook(const attnc_fake_launch *l, void *user) {
    auto &self = *static_cast<VictimsPlay *>(user);
    if (!std::strstr(l->entry, "_victims"))
      return;
    const auto *positions = reinterpret_cast<const int32_t *>(uintptr_t(l->values[1]));
    const auto *pages = reinterpret_cast<const int32_t *>(uintptr_t(l->values[2]));
    auto *req = reinterpret_cast<int32_t *>(uintptr_t(l->values[3]));
    auto *out = reinterpret_cast<int32_t *>(uintptr_t(l->values[4]));
    const int64_t count = int64_t(l->values[5]), P = int64_t(l->values[6]);
    self.chosen.assign(size_t(count), {});
    for (int64_t i = 0; i < count; ++i) {
      int32_t *r = req + 5 * i;
      std::vector<int32_t> candidates;
      for (int32_t slot = 0; slot < r[1]; ++slot) {
        const int32_t pos = positions[int64_t(pages[r[0] + slot / P]) * P + slot % P];
        if (pos >= 0 && pos < r[2])
          candidates.push_back(slot);
      }
      std::vector<int32_t> &v = self.chosen[size_t(i)];
      for (int64_t j = int64_t(candidates.size()) - 1; j >= r[3]; --j)
        v.push_back(candidates[size_t(j)]);
      if (i == 0 && self.fault == Duplicate)
        v[1] = v[0];
      if (i == 0 && self.fault == OutOfRange)
        v[2] = r[1];
      if (i == 0 && self.fault == TooFew)
        v.pop_back();
      std::copy(v.begin(), v.end(), out + r[4]);
      r[4] += int32_t(v.size());
    }
  }
};

/// What comes back from the victims kernel is checked (as many as asked,
/// distinct, in range) and given to the cache in ascending order; the
/// cache then drops exactly those slots' positions.
TEST_F(CudaDecodeFake, H2oVictimsFromTheDeviceAreCheckedAndOrdered) {
  auto k = budgetKernel("h2o paged 16 budget 0 0 bf16 none 0 256 h2o");
  ASSERT_TRUE(bool(k)) << k.message();
  auto made = storeBackedCache(*k, 80);
  ASSERT_TRUE(bool(made)) << made.message();
  std::shared_ptr<CudaKvStore> store = made->store;
  KvCache *cache = made->cache.get();
  int64_t seq = *cache->addSequence();
  DevTensor kt({2, 300, 8}, kBF16), vt({2, 300, 8}, kBF16);
  ASSERT_TRUE(cache->append(seq, &kt.t, &vt.t));
  // The fake driver runs no append kernel: the pool rows' positions are
  // written here, as attnc_dec_append would have.
  {
    auto t = cache->tables({seq}, 1);
    ASSERT_TRUE(bool(t));
    auto *rowPositions = static_cast<int32_t *>(store->pools().slotPositions->data);
    for (int64_t h = 0; h < 2; ++h) {
      auto view = cache->view(seq, h);
      ASSERT_TRUE(bool(view));
      for (int64_t slot = 0; slot < view->slots; ++slot)
        rowPositions[(*view->pages)[size_t(slot / 16)] * 16 + slot % 16] =
            t->positions[size_t(h * t->maxSlots + slot)];
    }
  }
  VictimsPlay play;
  fake.setLaunchHook(&VictimsPlay::hook, &play);
  // The store alone: two heads of 300 slots keeping 128 of their 172
  // older ones.
  std::vector<KvStore::VictimRequest> requests;
  for (int64_t h = 0; h < 2; ++h) {
    auto view = cache->view(seq, h);
    ASSERT_TRUE(bool(view));
    KvStore::VictimRequest r;
    r.pages = *view->pages, r.slots = view->slots, r.recentFrom = 172, r.keep = 128, r.drop = 44;
    requests.push_back(r);
  }
  std::vector<std::vector<int32_t>> victims;
  ASSERT_TRUE(store->chooseVictims(requests, victims));
  ASSERT_EQ(victims.size(), 2u);
  for (size_t i = 0; i < 2; ++i) {
    std::vector<int32_t> want = play.chosen[i];
    ASSERT_EQ(want.size(), 44u);
    EXPECT_GT(want.front(), want.back()) << "written in descending order";
    std::sort(want.begin(), want.end());
    EXPECT_EQ(victims[i], want) << "request " << i << ": the same slots, ascending";
  }
  for (auto [fault, what] : {std::pair{VictimsPlay::Duplicate, "a slot twice"},
                             {VictimsPlay::OutOfRange, "a slot past the head's"},
                             {VictimsPlay::TooFew, "one victim short"}}) {
    play.fault = fault;
    expectError(store->chooseVictims(requests, victims), "where 44 distinct ones were to go");
    EXPECT_TRUE(victims.size() != 2 || victims[0].empty()) << what;
  }
  // Through the cache: an append past the budget drops exactly the
  // positions of the slots the kernel chose.
  play.fault = VictimsPlay::None;
  std::vector<std::vector<int32_t>> before = {cache->retainedPositions(seq, 0),
                                              cache->retainedPositions(seq, 1)};
  std::vector<std::vector<int32_t>> slotPositions;
  for (int64_t h = 0; h < 2; ++h) {
    auto t = cache->tables({seq}, 1);
    ASSERT_TRUE(bool(t));
    slotPositions.emplace_back(t->positions.begin() + h * t->maxSlots,
                               t->positions.begin() + (h + 1) * t->maxSlots);
  }
  DevTensor k1({2, 1, 8}, kBF16), v1({2, 1, 8}, kBF16);
  ASSERT_TRUE(cache->append(seq, &k1.t, &v1.t));
  fake.setLaunchHook(nullptr, nullptr);
  for (int64_t h = 0; h < 2; ++h) {
    std::vector<int32_t> want;
    std::vector<int32_t> &dropped = play.chosen[size_t(h)];
    ASSERT_EQ(dropped.size(), 44u);
    for (int32_t p : before[size_t(h)]) {
      bool gone = false;
      for (int32_t slot : dropped)
        gone |= slotPositions[size_t(h)][size_t(slot)] == p;
      if (!gone)
        want.push_back(p);
    }
    want.push_back(300);
    EXPECT_EQ(cache->retainedPositions(seq, h), want) << "head " << h;
  }
}

/// Heads scored by h2o and by snapkv count different queries of a launch:
/// a step of more queries than the observation window runs as two
/// launches, the leading queries then the window's, on views of q and o
/// (the second's rows further on) with their own query positions; the
/// scores stay on the host (the mass table comes down after each).
struct DecodeLaunches {
  struct Seen {
    std::string entry;
    uint64_t q = 0;
    int32_t queryPosition = 0;
  };
  std::vector<Seen> seen;
  static void hook(const attnc_fake_launch *l, void *user) {
    auto &self = *static_cast<DecodeLaunches *>(user);
    Seen s{l->entry, l->values[0], 0};
    if (s.entry == "attnc_dec" || s.entry.rfind("attnc_dec_q", 0) == 0)
      s.queryPosition = *reinterpret_cast<const int32_t *>(uintptr_t(l->values[27]));
    self.seen.push_back(s);
  }
};

TEST_F(CudaDecodeFake, MixedScorersSplitLaunchesPastTheWindow) {
  std::string meta = kDecodeMeta;
  meta.replace(meta.find("kv_cache pkv paged 16 all 0 0 bf16 none 0 0 none"), 48,
               "kv_cache mix per_head 0 per_head 0 0 - none 0 0 none -\n"
               "kv_head_policy 0 h paged 16 budget 0 0 bf16 none 0 256 h2o f32\n"
               "kv_head_policy 1 s paged 16 budget 0 0 bf16 none 0 256 snapkv f32");
  auto k = CudaKernel::load(decodePtx(true), meta);
  ASSERT_TRUE(bool(k)) << k.message();
  auto made = storeBackedCache(*k, 64, [](KvCacheOptions &o) {
    o.headKinds = {0, 1};
    o.observationWindow = 4;
  });
  ASSERT_TRUE(bool(made)) << made.message();
  CudaKvStore *store = made->store.get();
  KvCache *cache = made->cache.get();
  EXPECT_FALSE(store->keepsScores()) << "two kinds of scores: kept on the host";
  int64_t seq = *cache->addSequence();
  DevTensor kt({2, 40, 8}, kBF16), vt({2, 40, 8}, kBF16);
  ASSERT_TRUE(cache->append(seq, &kt.t, &vt.t));
  DecodeLaunches launches;
  fake.setLaunchHook(&DecodeLaunches::hook, &launches);
  DevTensor q6({1, 4, 6, 8}, kBF16), o6({1, 4, 6, 8}, kBF16);
  ASSERT_TRUE(store->decode(*cache, {seq}, &q6.t, &o6.t));
  std::vector<DecodeLaunches::Seen> decodes;
  int masses = 0;
  for (const auto &s : launches.seen) {
    masses += s.entry == "attnc_dec_mass";
    if (s.entry == "attnc_dec" || s.entry.rfind("attnc_dec_q", 0) == 0)
      decodes.push_back(s);
  }
  ASSERT_EQ(decodes.size(), 2u) << "the leading 2 queries, then the window's 4";
  EXPECT_EQ(masses, 2);
  EXPECT_EQ(decodes[0].q, uint64_t(uintptr_t(q6.t.data)));
  EXPECT_EQ(decodes[1].q, uint64_t(uintptr_t(q6.t.data)) + 2 * 8 * 2) << "2 queries further";
  EXPECT_EQ(decodes[0].queryPosition, 34) << "positions 34, 35";
  EXPECT_EQ(decodes[1].queryPosition, 36) << "positions 36 .. 39";
  // Within the window: one launch.
  launches.seen.clear();
  DevTensor q4({1, 4, 4, 8}, kBF16), o4({1, 4, 4, 8}, kBF16);
  ASSERT_TRUE(store->decode(*cache, {seq}, &q4.t, &o4.t));
  fake.setLaunchHook(nullptr, nullptr);
  int decodes4 = 0;
  for (const auto &s : launches.seen)
    decodes4 += s.entry == "attnc_dec" || s.entry.rfind("attnc_dec_q", 0) == 0;
  EXPECT_EQ(decodes4, 1);
}

/// A SnapKV budget policy keeps its scores on the GPU too: decode's mass
/// kernel fills the mass table (zeroed, slot scores not given), then
/// attnc_dec_pool (a CTA of 128 ranks per row and 128 ranks) pools it
/// into the pool rows' scores, given each row's slots in position order
/// (uploaded before the launch), the page tables, the pooling's half
/// width; nothing comes back. Its evictions go to the victims kernel.
TEST_F(CudaDecodeFake, SnapKvStorePoolsScoresOnTheDevice) {
  auto k = budgetKernel("snap paged 16 budget 0 0 bf16 none 0 256 snapkv");
  ASSERT_TRUE(bool(k)) << k.message();
  auto made = storeBackedCache(*k, 64, [](KvCacheOptions &o) { o.snapkvPooling = 5; });
  ASSERT_TRUE(bool(made)) << made.message();
  CudaKvStore *store = made->store.get();
  KvCache *cache = made->cache.get();
  EXPECT_TRUE(store->keepsScores());
  CudaCacheView pools = store->pools();
  ASSERT_TRUE(pools.slotScores && pools.slotPositions);
  int64_t seq = *cache->addSequence();
  DevTensor kt({2, 40, 8}, kBF16), vt({2, 40, 8}, kBF16);
  ASSERT_TRUE(cache->append(seq, &kt.t, &vt.t));
  DevTensor q({1, 4, 3, 8}, kBF16), out({1, 4, 3, 8}, kBF16);
  int before = fake.launches();
  ASSERT_TRUE(store->decode(*cache, {seq}, &q.t, &out.t));
  attnc_fake_launch l = fake.last();
  ASSERT_STREQ(l.entry, "attnc_dec_pool");
  ASSERT_GE(fake.launches(), before + 3) << "decode, mass, pool";
  attnc_fake_launch mass = fake.previous();
  EXPECT_STREQ(mass.entry, "attnc_dec_mass");
  EXPECT_NE(mass.values[31], 0u) << "the mass table";
  EXPECT_EQ(mass.values[32], 3u) << "the window's rows (all 3 queries)";
  EXPECT_EQ(mass.values[33], 0u) << "no slot scores: the table is pooled";
  EXPECT_EQ(l.grid[0], 1u) << "40 slots: one CTA of ranks";
  EXPECT_EQ(l.grid[1], 2u) << "a row per (sequence, KV head)";
  EXPECT_EQ(l.block[0], 128u);
  ASSERT_EQ(l.numParams, 8);
  EXPECT_EQ(l.values[0], mass.values[31]) << "the mass table";
  EXPECT_EQ(l.values[3], uint64_t(uintptr_t(pools.slotScores->data)));
  const int64_t pitch = int64_t(l.values[4]);
  EXPECT_GE(pitch, 40);
  EXPECT_EQ(l.values[6], 16u) << "page size";
  EXPECT_EQ(l.values[7], 2u) << "half of snapkvPooling 5";
  // Row 0's slots by position: 0 .. 39 (nothing evicted yet), then -1.
  const auto *order = reinterpret_cast<const int32_t *>(uintptr_t(l.values[1]));
  for (int64_t i = 0; i < pitch; ++i)
    ASSERT_EQ(order[i], i < 40 ? int32_t(i) : -1) << i;
  // Past the budget, the victims kernel chooses (none come back here).
  DevTensor k1({2, 250, 8}, kBF16), v1({2, 250, 8}, kBF16);
  ASSERT_TRUE(cache->append(seq, &k1.t, &v1.t)); // 290 slots: over 256 only now
  DevTensor k2({2, 1, 8}, kBF16), v2({2, 1, 8}, kBF16);
  expectError(cache->append(seq, &k2.t, &v2.t), "the victims kernel chose 0 slots");
  EXPECT_STREQ(fake.last().entry, "attnc_dec_victims");
  EXPECT_EQ(cache->length(seq), 290);
}

TEST_F(CudaDecodeFake, KvStoreKeepsF16Scales) {
  // int4 per group of 4 with f16 scales (head dim 8: two groups): the
  // store's scale pools are f16 [pages, 16, 2], two bytes a scale, and a
  // launch takes them; a cache of the policy counts, per token and head,
  // 4 + 4 bytes of values and 2 x 2 x 2 of scales.
  std::string meta = kDecodeMeta;
  meta.replace(meta.find("pkv paged 16 all 0 0 bf16 none 0 0 none"), 39,
               "q4h paged 16 all 0 0 i4 per_group 4 0 none f16");
  auto k = CudaKernel::load(decodePtx(), meta);
  ASSERT_TRUE(bool(k)) << k.message();
  EXPECT_EQ((*k)->info().cache->scaleBytes(), 2);
  auto store = CudaKvStore::create(*k, 8, 0);
  ASSERT_TRUE(bool(store)) << store.message();
  CudaCacheView pools = (*store)->pools();
  ASSERT_TRUE(pools.keyScales && pools.valueScales);
  EXPECT_EQ(pools.keyScales->dtype.code, kDLFloat);
  EXPECT_EQ(pools.keyScales->dtype.bits, 16);
  EXPECT_EQ(pools.keyScales->shape[2], 2);
  KvCacheOptions o;
  o.policy = *(*k)->info().cache;
  o.numKvHeads = 2, o.headDim = 8, o.numPages = 8, o.store = *store;
  o.inputDtype = "bf16"; // quantized on append
  auto cache = KvCache::create(o);
  ASSERT_TRUE(bool(cache)) << cache.message();
  EXPECT_EQ((*cache)->scaleBytes(), 2);
  EXPECT_EQ((*cache)->bytesPerTokenPerHead(), 4 + 4 + 2 * 2 * 2);
  // A launch with f32 scale tensors is refused: the policy's are f16.
  DecodeProblem p(1, 8, 2, 1, 32, 8);
  DevTensor kq({8, 16, 4}, DLDataType{kDLInt, 8, 1}), vq({8, 16, 4}, DLDataType{kDLInt, 8, 1});
  DevTensor f32Scales({8, 16, 2}, kF32);
  auto a = p.args();
  a.cache.keyPool = &kq, a.cache.valuePool = &vq;
  a.cache.keyScales = &f32Scales, a.cache.valueScales = &f32Scales;
  int before = fake.launches();
  expectError((*k)->launch(a), "key scales: expected f16 elements");
  EXPECT_EQ(fake.launches(), before);
  a.cache.keyScales = pools.keyScales, a.cache.valueScales = pools.valueScales;
  EXPECT_TRUE((*k)->launch(a));
}

TEST_F(CudaDecodeFake, KvStoreWritesThroughTheCacheKernels) {
  // A KvCache whose pools live in a CudaKvStore: appends of device K/V run
  // attnc_dec_append with (row of k/v, pool row) pairs, decode() uploads
  // the tables and launches attnc_dec over the store's pools, moves run
  // attnc_dec_move.
  auto store = CudaKvStore::create(kernel, 8, 0);
  ASSERT_TRUE(bool(store)) << store.message();
  EXPECT_EQ((*store)->rows(), 8 * 16);
  KvCacheOptions o;
  o.policy = *kernel->info().cache;
  o.numKvHeads = 2, o.headDim = 8, o.numPages = 8, o.store = *store;
  auto cache = KvCache::create(o);
  ASSERT_TRUE(bool(cache)) << cache.message();
  int64_t seq = *(*cache)->addSequence();
  DevTensor k({2, 3, 8}, kBF16), v({2, 3, 8}, kBF16);
  int before = fake.launches();
  ASSERT_TRUE((*cache)->append(seq, &k.t, &v.t));
  ASSERT_EQ(fake.launches(), before + 1);
  attnc_fake_launch l = fake.last();
  EXPECT_STREQ(l.entry, "attnc_dec_append");
  EXPECT_EQ(l.grid[0], 2u) << "a warp per row, 4 per CTA: 6 rows";
  EXPECT_EQ(l.block[0], 128u);
  ASSERT_EQ(l.numParams, 10);
  EXPECT_EQ(l.values[0], k.address());
  EXPECT_EQ(l.values[1], v.address());
  CudaCacheView pools = (*store)->pools();
  EXPECT_EQ(l.values[2], uint64_t(uintptr_t(pools.keyPool->data)));
  EXPECT_EQ(l.values[3], uint64_t(uintptr_t(pools.valuePool->data)));
  EXPECT_EQ(l.values[4], 0u) << "no scales for bf16";
  EXPECT_EQ(l.values[7], 0u) << "no slot scores: the policy keeps no budget";
  EXPECT_EQ(l.values[8], 0u);
  EXPECT_EQ(l.values[9], 6u);
  // (row of k/v = head * n + token, pool row, position): head 0 in page 0,
  // head 1 in page 1 (pages handed out lowest first).
  const auto *triples = reinterpret_cast<const int32_t *>(uintptr_t(l.values[6]));
  const int32_t want[18] = {0, 0, 0, 1, 1, 1, 2, 2, 2, 3, 16, 0, 4, 17, 1, 5, 18, 2};
  for (int i = 0; i < 18; ++i)
    EXPECT_EQ(triples[i], want[i]) << i;
  // Host K/V are refused before anything changes.
  std::vector<uint16_t> hostBits(2 * 1 * 8);
  int64_t hostShape[3] = {2, 1, 8};
  DLTensor hk{};
  hk.data = hostBits.data(), hk.device = {kDLCPU, 0}, hk.ndim = 3, hk.dtype = kBF16;
  hk.shape = hostShape;
  expectError((*cache)->append(seq, &hk, &hk), "must be on the store's device (kDLCUDA 0)");
  EXPECT_EQ((*cache)->length(seq), 3);
  // decode(): the tables uploaded, the decode kernel over the store's pools.
  DevTensor q({1, 4, 1, 8}, kBF16), out({1, 4, 1, 8}, kBF16);
  ASSERT_TRUE((*store)->decode(**cache, {seq}, &q.t, &out.t));
  l = fake.last();
  EXPECT_STREQ(l.entry, "attnc_dec");
  EXPECT_EQ(l.values[1], uint64_t(uintptr_t(pools.keyPool->data)));
  EXPECT_EQ(l.values[9], 2u) << "Hkv";
  const auto *lengths = reinterpret_cast<const int32_t *>(uintptr_t(l.values[26]));
  EXPECT_EQ(lengths[0], 3);
  EXPECT_EQ(lengths[1], 3);
  // Moves.
  ASSERT_TRUE((*store)->move({{1, 5}, {2, 6}}));
  l = fake.last();
  EXPECT_STREQ(l.entry, "attnc_dec_move");
  ASSERT_EQ(l.numParams, 8);
  EXPECT_EQ(l.values[4], 0u) << "no slot scores";
  EXPECT_EQ(l.values[7], 2u);
  // A cache of another pool size than the store holds is refused.
  o.numPages = 4;
  expectError(KvCache::create(o).error(), "the store holds 128 pool rows");
}

/// The tables a CudaKvStore decode left on the (fake) device, read through
/// the decode launch's arguments (kv_pages, kv_pos, kv_len, q_pos, their
/// pitches), against what the cache holds: every row's pages and retained
/// slots, lengths and query positions.
static void expectDeviceTablesMatch(const attnc_fake_launch &l, const KvCache &cache,
                                    const std::vector<int64_t> &seqs, int64_t Nq) {
  auto t = cache.tables(seqs, Nq);
  ASSERT_TRUE(bool(t)) << t.message();
  const int64_t rows = int64_t(t->lengths.size()), pitchP = int64_t(l.values[12]),
                pitchS = int64_t(l.values[13]);
  ASSERT_GE(pitchP, t->maxPages);
  ASSERT_GE(pitchS, t->maxSlots);
  const auto *pages = reinterpret_cast<const int32_t *>(uintptr_t(l.values[24]));
  // No positions table where the cache's slots are its positions.
  const auto *pos = reinterpret_cast<const int32_t *>(uintptr_t(l.values[25]));
  EXPECT_EQ(pos == nullptr, cache.slotsArePositions());
  const auto *len = reinterpret_cast<const int32_t *>(uintptr_t(l.values[26]));
  const auto *qpos = reinterpret_cast<const int32_t *>(uintptr_t(l.values[27]));
  for (int64_t r = 0; r < rows; ++r) {
    SCOPED_TRACE("row " + std::to_string(r));
    ASSERT_EQ(len[r], t->lengths[r]);
    const int64_t used = (len[r] + 15) / 16;
    for (int64_t i = 0; i < used; ++i)
      EXPECT_EQ(pages[r * pitchP + i], t->pages[r * t->maxPages + i]) << "page " << i;
    for (int64_t i = 0; i < len[r]; ++i)
      EXPECT_EQ(pos ? pos[r * pitchS + i] : int32_t(i), t->positions[r * t->maxSlots + i])
          << "slot " << i;
  }
  for (size_t b = 0; b < t->queryPositions.size(); ++b)
    EXPECT_EQ(qpos[b], t->queryPositions[b]);
}

TEST_F(CudaDecodeFake, KvStoreKeepsTablesOnTheDevice) {
  // Decode steps over the same sequences upload the positions (and pages)
  // appended since the last, in one rectangle per run of rows with the same
  // range; a head that dropped slots (sink + window) goes up whole; other
  // sequences, or more pages than the row pitch, upload everything again.
  // A cache that retains all keeps no positions table (slots are
  // positions): its pages alone go up.
  std::string meta = kDecodeMeta;
  meta.replace(meta.find("pkv paged 16 all 0 0 bf16 none 0 0 none"), 39,
               "psw paged 16 sink_window 2 30 bf16 none 0 0 none");
  for (const std::string &policyMeta : {std::string(kDecodeMeta), meta}) {
    const bool window = policyMeta != kDecodeMeta;
    SCOPED_TRACE(window ? "sink 2 + window 30" : "all");
    auto k = CudaKernel::load(decodePtx(), policyMeta);
    ASSERT_TRUE(bool(k)) << k.message();
    auto made = storeBackedCache(*k, 64);
    ASSERT_TRUE(bool(made)) << made.message();
    std::shared_ptr<CudaKvStore> store = made->store;
    KvCache &cache = *made->cache;
    std::vector<int64_t> seqs = {*cache.addSequence(), *cache.addSequence()};
    auto append = [&](int64_t seq, int64_t n) {
      DevTensor kn({2, n, 8}, kBF16), vn({2, n, 8}, kBF16);
      ASSERT_TRUE(cache.append(seq, &kn.t, &vn.t));
    };
    append(seqs[0], 20);
    append(seqs[1], 5);
    DevTensor q({2, 4, 1, 8}, kBF16), out({2, 4, 1, 8}, kBF16);
    auto step = [&](const std::vector<int64_t> &order) {
      ASSERT_TRUE(store->decode(cache, order, &q.t, &out.t));
      ASSERT_STREQ(fake.last().entry, "attnc_dec");
      expectDeviceTablesMatch(fake.last(), cache, order, 1);
    };
    step(seqs);
    const attnc_fake_launch first = fake.last();
    const size_t full = size_t(4 * (first.values[12] + (window ? first.values[13] : 0))) * 4;
    EXPECT_EQ(store->lastTableUploadBytes(), full) << "the first decode uploads every row";
    // One token each: 4 bytes of positions per (sequence, head) row, 16 in
    // all (none without positions: the pages hold it).
    append(seqs[0], 1);
    append(seqs[1], 1);
    step(seqs);
    EXPECT_EQ(store->lastTableUploadBytes(), window ? 16u : 0u);
    EXPECT_EQ(fake.last().values[25], first.values[25]) << "the same device table, in place";
    // Past a page boundary (21 -> 33 tokens): a page and 12 positions per
    // row of sequence 0; under the window, slots dropped: its rows whole.
    append(seqs[0], 12);
    step(seqs);
    if (!window)
      EXPECT_EQ(store->lastTableUploadBytes(), size_t(2 * 1) * 4) << "a page per row";
    else
      EXPECT_LT(store->lastTableUploadBytes(), full);
    // Many more steps, the tables still right.
    for (int i = 0; i < 40; ++i) {
      append(seqs[i % 2], 1 + i % 3);
      step(seqs);
    }
    // Another order of the sequences: every row again.
    step({seqs[1], seqs[0]});
    EXPECT_EQ(store->lastTableUploadBytes(),
              size_t(4 * (fake.last().values[12] + (window ? fake.last().values[13] : 0))) * 4);
    // A sequence removed and another, longer, added in its place (the same
    // id, other pages): a new layout, not an append.
    ASSERT_TRUE(cache.removeSequence(seqs[1]));
    seqs[1] = *cache.addSequence();
    append(seqs[1], 80);
    step({seqs[1], seqs[0]});
  }
}

TEST_F(CudaDecodeFake, ManyPackedRowsTakeTheWideTwin) {
  // With `decode_wide 32 256 4096`, G x Nq above 16 rows runs attnc_dec_q32
  // (its threads and shared memory), fewer the default kernel.
  std::string meta = kDecodeMeta;
  meta += "decode_wide 32 256 4096\n";
  auto k = CudaKernel::load(decodePtx(), meta);
  ASSERT_TRUE(bool(k)) << k.message();
  ASSERT_EQ((*k)->info().decodeTwins.size(), 1u);
  EXPECT_EQ((*k)->info().decodeTwins[0].blockQ, 32);
  expectDecodeLaunches(**k, {{4, "attnc_dec", 1, 16, 128, 0},
                             {5, "attnc_dec_q32", 1, 32, 256, 4096},
                             {8, "attnc_dec_q32", 1, 32, 256, 4096},
                             {100, "attnc_dec_q32", 13, 32, 256, 4096}});
  expectError(parseCudaKernelInfo(meta + "decode_wide 32\n").error(),
              "decode_wide: expected BLOCK_Q THREADS SHARED_BYTES");
}

TEST_F(CudaDecodeFake, PackedRowsTakeTheSmallestTwinThatHoldsThem) {
  // An 8-row kernel (the transposed decode) with twins of 16 and 32 rows:
  // each launch takes the first that holds G x Nq, more rows the widest.
  std::string meta = kDecodeMeta;
  meta.replace(meta.find("block_q 16"), 10, "block_q 8");
  meta += "decode_wide 16 128 2048\ndecode_wide 32 256 4096\n";
  auto k = CudaKernel::load(decodePtx(), meta);
  ASSERT_TRUE(bool(k)) << k.message();
  expectDecodeLaunches(**k, {{1, "attnc_dec", 1, 8, 128, 0},
                             {2, "attnc_dec", 1, 8, 128, 0},
                             {3, "attnc_dec_q16", 1, 16, 128, 2048},
                             {4, "attnc_dec_q16", 1, 16, 128, 2048},
                             {5, "attnc_dec_q32", 1, 32, 256, 4096},
                             {8, "attnc_dec_q32", 1, 32, 256, 4096},
                             {9, "attnc_dec_q32", 2, 32, 256, 4096}});
  // Twins out of order, or no wider than the kernel, are malformed.
  std::string base = kDecodeMeta;
  expectError(parseCudaKernelInfo(base + "decode_wide 32 128 0\ndecode_wide 16 128 0\n").error(),
              "decode_wide: twins must come in ascending BLOCK_Q");
  expectError(parseCudaKernelInfo(base + "decode_wide 16 128 0\n").error(),
              "decode_wide 16 takes no more rows than block_q 16");
}

TEST_F(CudaDecodeFake, PromptChunksTakeThePrefillEntry) {
  // With `cache_prefill 64 128 163840` (one CTA per fake SM, as on an
  // H100), launches of 64 or more queries without a positions table whose
  // query tiles give half the 132 resident CTAs one each run
  // attnc_dec_prefill: the prefill kernel's grid (query tiles, Hq, B) and
  // ABI over the pools, then the page table, lengths, query positions, the
  // parts, max_pages, P and one split. Fewer queries, or too few CTAs and
  // keys to split, or a positions table (which may drop slots), keep the
  // decode kernel.
  auto k = loadPrefillKernel();
  ASSERT_TRUE(k);
  EXPECT_EQ(k->info().cachePrefill.blockQ, 64);
  // G = 4, Hq = 8, one sequence of 300 slots: 8 query heads x 2 tiles = 16
  // CTAs, too few keys to split.
  expectDecodeLaunches(
      *k, {{63, "attnc_dec_q32", 8, 32, 256, 4096}, {100, "attnc_dec_q32", 13, 32, 256, 4096}});
  auto plan = k->decodePlan(2, 32, 8, 300, 400, 0);
  ASSERT_TRUE(bool(plan)) << plan.message();
  EXPECT_TRUE(plan->prefill) << "5 tiles x 32 heads x 2 sequences";
  EXPECT_EQ(plan->prefillSplits, 1);
  EXPECT_FALSE(k->decodePlan(2, 32, 8, 63, 400, 0)->prefill) << "too few queries";
  EXPECT_FALSE(k->decodePlan(1, 32, 8, 128, 400, 0)->prefill) << "64 CTAs, 400 keys";
  EXPECT_FALSE(k->decodePlan(1, 32, 8, 128, 2047, 0)->prefill) << "64 CTAs, 2047 keys";
  EXPECT_TRUE(k->decodePlan(1, 32, 8, 129, 400, 0)->prefill) << "96 CTAs";

  DecodeProblem p(2, 32, 8, 300, 400);
  auto a = p.args();
  a.splits = 1;
  ASSERT_TRUE(k->launch(a));
  EXPECT_STREQ(fake.last().entry, "attnc_dec_q32") << "a positions table keeps the decode";
  a.cache.positions = nullptr;
  int before = fake.launches();
  ASSERT_TRUE(k->launch(a));
  EXPECT_EQ(fake.launches(), before + 1) << "one split: no merge";
  attnc_fake_launch l = fake.last();
  EXPECT_STREQ(l.entry, "attnc_dec_prefill");
  EXPECT_EQ(l.grid[0], 5u);
  EXPECT_EQ(l.grid[1], 32u);
  EXPECT_EQ(l.grid[2], 2u);
  EXPECT_EQ(l.block[0], 128u);
  EXPECT_EQ(l.sharedBytes, 163840u);
  ASSERT_EQ(l.numParams, 34);
  const uint64_t pointers[] = {p.q.address(), p.kPool.address(), p.vPool.address(), p.o.address(),
                               p.lse.address()};
  for (int i = 0; i < 5; ++i)
    EXPECT_EQ(l.values[i], pointers[i]) << "pointer " << i;
  // B, Hq, Hkv, Nq, Nk (max_length: the 25 pages' 400 slots; the kernel
  // reads kv_len), q_offset (unused: q_pos).
  const uint64_t sizes[] = {2, 32, 8, 300, 400, 0};
  for (int i = 0; i < 6; ++i)
    EXPECT_EQ(l.values[5 + i], sizes[i]) << "size " << i;
  // Strides: Q (b, h, row), K and V (0, 0, D: the pools' rows), O, LSE.
  const uint64_t strides[] = {32 * 300 * 8, 300 * 8, 8, 0,        0,  8, 0, 0, 8,
                              32 * 300 * 8, 300 * 8, 8, 32 * 300, 300};
  for (int i = 0; i < 14; ++i)
    EXPECT_EQ(l.values[11 + i], strides[i]) << "stride " << i;
  EXPECT_EQ(l.values[25], 1u) << "write_lse";
  EXPECT_EQ(l.values[26], p.pages.address());
  EXPECT_EQ(l.values[27], p.len.address());
  EXPECT_EQ(l.values[28], p.qpos.address());
  EXPECT_EQ(l.values[29], 0u) << "no parts (no workspace)";
  EXPECT_EQ(l.values[31], 25u) << "max_pages";
  EXPECT_EQ(l.values[32], 16u) << "P";
  EXPECT_EQ(l.values[33], 1u) << "splits";
  expectError(parseCudaKernelInfo(prefillMeta() + "cache_prefill 64 2048 0\n").error(),
              "cache_prefill: expected BLOCK_Q THREADS SHARED_BYTES");
}

TEST_F(CudaDecodeFake, ShortPromptChunksSplitThePrefillEntrysKeys) {
  // One sequence, 8 query heads, 100 queries: 16 CTAs of the entry. Over
  // 8192 slots its keys split 8 ways (132 / 16 resident CTAs, 8192 / 1024
  // keys), into parts the merge kernel combines; 64 CTAs over 4096 keys
  // split 2 ways (132 / 64).
  auto k = loadPrefillKernel();
  ASSERT_TRUE(k);
  // Off until the split has run on a GPU: the decode kernel runs these.
  unsetenv("ATTNC_CUDA_PREFILL_SPLITS");
  EXPECT_FALSE(k->decodePlan(1, 8, 2, 100, 8192, 0)->prefill);
  setenv("ATTNC_CUDA_PREFILL_SPLITS", "0", 1);
  EXPECT_FALSE(k->decodePlan(1, 8, 2, 100, 8192, 0)->prefill);
  PrefillSplitsOn on;
  auto two = k->decodePlan(1, 32, 8, 128, 4096, 0);
  ASSERT_TRUE(bool(two)) << two.message();
  EXPECT_TRUE(two->prefill);
  EXPECT_EQ(two->prefillSplits, 2);
  auto plan = k->decodePlan(1, 8, 2, 100, 8192, 0);
  ASSERT_TRUE(bool(plan)) << plan.message();
  EXPECT_TRUE(plan->prefill);
  EXPECT_EQ(plan->prefillSplits, 8);
  const size_t rows = 8 * 100, partBytes = size_t(8) * rows * 8 * sizeof(float);
  EXPECT_GE(plan->workspaceBytes, partBytes + 8 * rows * sizeof(float));

  DecodeProblem p(1, 8, 2, 100, 8192);
  auto a = p.args();
  a.cache.positions = nullptr;
  int before = fake.launches();
  expectError(k->launch(a), "prefill-shaped entry over 8 split(s) needs a " +
                                std::to_string(plan->workspaceBytes) + "-byte workspace");
  EXPECT_EQ(fake.launches(), before);
  DevTensor ws({int64_t(plan->workspaceBytes)}, DLDataType{kDLUInt, 8, 1});
  a.workspace = ws.buffer.data(), a.workspaceBytes = plan->workspaceBytes;
  ASSERT_TRUE(k->launch(a));
  ASSERT_EQ(fake.launches(), before + 2) << "the entry, then the merge";
  attnc_fake_launch entry = fake.previous(), merge = fake.last();
  EXPECT_STREQ(entry.entry, "attnc_dec_prefill");
  EXPECT_EQ(entry.grid[0], 2u * 8u) << "2 query tiles x 8 splits";
  EXPECT_EQ(entry.grid[1], 8u);
  EXPECT_EQ(entry.grid[2], 1u);
  ASSERT_EQ(entry.numParams, 34);
  const uint64_t oPart = ws.address(), lPart = oPart + partBytes;
  EXPECT_EQ(entry.values[29], oPart);
  EXPECT_EQ(entry.values[30], lPart);
  EXPECT_EQ(entry.values[33], 8u) << "splits";
  EXPECT_STREQ(merge.entry, "attnc_dec_merge");
  EXPECT_EQ(merge.grid[0], 100u);
  EXPECT_EQ(merge.grid[1], 8u);
  EXPECT_EQ(merge.grid[2], 1u);
  EXPECT_EQ(merge.values[0], oPart);
  EXPECT_EQ(merge.values[1], lPart);
  EXPECT_EQ(merge.values[2], p.o.address());
  EXPECT_EQ(merge.values[3], p.lse.address());
  EXPECT_EQ(merge.values[7], 8u) << "splits";
}

TEST_F(CudaDecodeFake, CApiPlansAndLaunches) {
  std::string ptx = decodePtx();
  char err[256] = "";
  void *k = attnc_cuda_kernel_load(ptx.c_str(), ptx.size(), kDecodeMeta, err, sizeof(err));
  ASSERT_NE(k, nullptr) << err;
  int64_t splits = 0;
  uint64_t bytes = 0;
  ASSERT_EQ(attnc_cuda_decode_plan(k, 2, 8, 2, 3, 100, 0, &splits, &bytes, err, sizeof(err)), 0)
      << err;
  EXPECT_EQ(splits, 1);
  EXPECT_EQ(bytes, 0u);
  DecodeProblem p(2, 8, 2, 3, 100);
  auto tensor = [](DevTensor &t, int32_t dtype) {
    attnc_tensor c{};
    c.data = t.address();
    c.dtype = dtype;
    c.rank = t.t.ndim;
    for (int i = 0; i < c.rank; ++i) {
      c.shape[i] = t.shape[i];
      c.strides[i] = t.strides[i];
    }
    return c;
  };
  attnc_cache_launch_desc d{};
  d.q = tensor(p.q, ATTNC_DTYPE_BF16);
  d.o = tensor(p.o, ATTNC_DTYPE_BF16);
  d.k_pool = tensor(p.kPool, ATTNC_DTYPE_BF16);
  d.v_pool = tensor(p.vPool, ATTNC_DTYPE_BF16);
  d.kv_pages = tensor(p.pages, ATTNC_DTYPE_I32);
  d.kv_pos = tensor(p.pos, ATTNC_DTYPE_I32);
  d.kv_len = tensor(p.len, ATTNC_DTYPE_I32);
  d.q_pos = tensor(p.qpos, ATTNC_DTYPE_I32);
  int before = fake.launches();
  ASSERT_EQ(attnc_cuda_cache_launch(k, &d, err, sizeof(err)), 0) << err;
  EXPECT_EQ(fake.launches(), before + 1);
  EXPECT_EQ(fake.last().values[4], 0u) << "lse rank 0: not wanted";
  d.kv_pos = tensor(p.pos, ATTNC_DTYPE_I64);
  EXPECT_NE(attnc_cuda_cache_launch(k, &d, err, sizeof(err)), 0);
  EXPECT_NE(std::string(err).find("cache positions: expected i32 elements"), std::string::npos)
      << err;
  int64_t prefillSplits = -1;
  ASSERT_EQ(attnc_cuda_prefill_splits(k, 1, 8, 2, 100, 8192, 0, &prefillSplits, err, sizeof(err)),
            0)
      << err;
  EXPECT_EQ(prefillSplits, 0) << "no prefill-shaped entry";
  attnc_cuda_kernel_free(k);
  // With one: 16 CTAs over 8192 keys split 8 ways (as in
  // ShortPromptChunksSplitThePrefillEntrysKeys).
  PrefillSplitsOn on;
  std::string meta = prefillMeta(), prefillPtx = decodePtx(false, false, true);
  k = attnc_cuda_kernel_load(prefillPtx.c_str(), prefillPtx.size(), meta.c_str(), err, sizeof(err));
  ASSERT_NE(k, nullptr) << err;
  ASSERT_EQ(attnc_cuda_prefill_splits(k, 1, 8, 2, 100, 8192, 0, &prefillSplits, err, sizeof(err)),
            0)
      << err;
  EXPECT_EQ(prefillSplits, 8);
  EXPECT_NE(attnc_cuda_prefill_splits(k, 1, 8, 2, 100, 8192, 0, nullptr, err, sizeof(err)), 0);
  EXPECT_NE(std::string(err).find("kernel or splits is null"), std::string::npos) << err;
  attnc_cuda_kernel_free(k);
}

TEST_F(CudaDecodeFake, ChecksBeforeTheDriver) {
  DecodeProblem p(2, 8, 2, 1, 100);
  {
    auto a = p.args();
    DevTensor f16Pool({64, 16, 8}, kF16);
    a.cache.keyPool = &f16Pool;
    expectRejected(a, "key pool: expected bf16 elements");
  }
  {
    DevTensor small({64, 8, 8}, kBF16), smallV({64, 8, 8}, kBF16);
    auto a = p.args();
    a.cache.keyPool = &small, a.cache.valuePool = &smallV;
    expectRejected(a, "pages of 8 slots, but policy 'pkv' pages hold 16");
  }
  {
    DevTensor wideD({64, 16, 16}, kBF16);
    auto a = p.args();
    a.cache.keyPool = &wideD;
    expectRejected(a, "key pool: dimension 2 is 16, expected 8");
  }
  {
    DevTensor lens({3}, DecodeProblem::kI32);
    auto a = p.args();
    a.cache.lengths = &lens;
    expectRejected(a, "cache lengths: expected an i32 [B * Hkv] tensor");
  }
  {
    DevTensor fewPages({4, 2}, DecodeProblem::kI32);
    auto a = p.args();
    a.cache.pages = &fewPages;
    expectRejected(a, "more than the 2 pages of 16 slots hold");
  }
  {
    DevTensor noHeads({0}, DecodeProblem::kI32);
    auto a = p.args();
    a.cache.lengths = &noHeads;
    expectRejected(a, "cache lengths: expected an i32 [B * Hkv] tensor");
  }
  {
    // No sequence: nothing to compute, nothing launched.
    DecodeProblem empty(0, 8, 2, 1, 16);
    int launches = fake.launches();
    EXPECT_TRUE(kernel->launch(empty.args()));
    EXPECT_EQ(fake.launches(), launches);
  }
  {
    auto a = p.args();
    a.cache.maxLength = 101;
    expectRejected(a, "maxLength 101 exceeds the 100 slots");
  }
  {
    auto a = p.args();
    a.cache.queryPositions = nullptr;
    expectRejected(a, "query positions: missing");
  }
  {
    // Q/O/LSE go through the plain launch's checks.
    DevTensor f32Out({2, 8, 1, 8}, kF32);
    auto a = p.args();
    a.o = &f32Out;
    expectRejected(a, "o");
  }
  {
    // Host memory is refused by the pointer check.
    std::vector<int32_t> host(2 * 2);
    DLTensor t{};
    int64_t shape[1] = {4};
    t.data = host.data();
    t.device = {kDLCUDA, 0};
    t.ndim = 1;
    t.dtype = DecodeProblem::kI32;
    t.shape = shape;
    fake.registerHost(host.data(), host.size() * 4);
    auto a = p.args();
    a.cache.lengths = &t;
    expectRejected(a, "cache lengths: points to host memory");
  }
}

TEST_F(CudaDecodeFake, PlainKernelsRefuseCacheLaunches) {
  const char *plainMeta = R"(attnc-cuda-kernel 1
kernel dec
entry attnc_dec
arch sm_80
dtype bf16
head_dim 8
head_dim_v 8
block_q 16
threads 128
shared_bytes 0
)";
  auto k = CudaKernel::load(decodePtx(), plainMeta);
  ASSERT_TRUE(bool(k)) << k.message();
  DecodeProblem p(1, 2, 1, 1, 16);
  expectError((*k)->launch(p.args()), "was not compiled for a KV cache");
  expectError((*k)->decodePlan(1, 2, 1, 1, 16, 0).error(), "is not a KV-cache decode kernel");
}
