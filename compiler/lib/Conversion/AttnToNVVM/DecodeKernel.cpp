//===- DecodeKernel.cpp - KV-cache decode kernels for NVIDIA GPUs ---------===//
//
// attn-to-nvvm with kv-cache=true: the kernel reads K/V through a KV
// cache's page tables (docs/kv-cache.md) and is built for decode, where a
// (sequence, KV head) has few query rows and many keys, so the work is
// split along the keys twice (flash-decoding):
//
//   * across CTAs: grid (row tiles x splits, Hkv, B); split s takes slots
//     [s * split_slots, (s + 1) * split_slots) of its (sequence, KV head)
//     and, with more than one split, writes its normalized part (O / l in
//     f32) and LSE, which `attnc_<K>_merge` combines by LSE;
//   * across warps: each KV tile of block-k slots gives every warp 16 of
//     them; warps keep their own (m, l, O) and combine them through shared
//     memory at the end.
//
// The query rows of a CTA pack the G = Hq / Hkv query heads of its KV head
// (packed row r: head g = r / Nq, query r % Nq), so a K/V row is read once
// for the whole group (GQA). A tile's slot rows are copied with cp.async,
// each row's address taken from the page table (slot j of table row
// b * Hkv + hk lives in page kv_pages[.., j / P] at row j % P); the mask and
// score see the slot's logical position kv_pos[.., j] (-1: not retained,
// dropped). Q.K^T and P.V run on mma.sync m16n8k16 with ldmatrix fragments
// (wgmma's 64-row tiles would mostly be padding): on 8-row tiles by default
// transposed, the warp's 16 keys as the MMAs' M (buildDecode's `tr`), with
// twins of 16 and 32 rows for more packed rows.
//
// Quantized pages (int8, int4, fp8) run f16 MMAs on exact values: K's and
// V's fragments come straight from the raw words of the stage (V through
// an f16 tile in shared memory only for int8 groups of 16 columns), and the
// scales multiply Q.K^T and P (see loadRawK, directV and dequantize in
// buildDecode).
//
//===----------------------------------------------------------------------===//

#include "DecodeKernel.h"
#include "CachePrefillKernel.h"
#include "CacheUpdateKernels.h"
#include "MassKernel.h"
#include "MergeKernel.h"
#include "NvvmBuilder.h"
#include "PoolKernel.h"
#include "VictimsKernel.h"

#include <cmath>
#include <limits>

using namespace mlir;
using namespace mlir::attn::nvvm;

/// Whether a kernel of this storage and these head dims can take the
/// transposed decode step (cfg.decodeTransposed): head dims multiples of 32,
/// and int4 only with V's fragments from the raw rows (quantDirectV).
static bool takesTransposedDecode(const attn::CacheStorage &storage,
                                  const attn::NvvmKernelConfig &cfg) {
  return cfg.headDim % 32 == 0 && cfg.headDimV % 32 == 0 && (!storage.nibbles || cfg.quantDirectV);
}

namespace {

class DecodeLowering : public NvvmBuilder {
public:
  DecodeLowering(attn::KernelOp kernel, const attn::NvvmKernelConfig &cfg, Type elemType,
                 attn::CacheStorage storage)
      : NvvmBuilder(kernel, cfg, elemType), storage(std::move(storage)) {}

  LogicalResult run(OpBuilder &moduleBuilder) {
    // A k16 chunk of Q.K^T (and an n16 pair of P.V) must lie in one group.
    if (storage.group % (storage.nibbles ? 32 : 16))
      return kernel.emitError("attn-to-nvvm: kv-cache: scale groups of ")
             << storage.group << " ('" << storage.policies.front().getSymName()
             << "'): the CUDA kernel needs multiples of 16 (int8) or 32 (int4)";
    if (attention.getNormalizer() != attn::Normalizer::Softmax)
      return kernel.emitError("attn-to-nvvm: kv-cache: only the softmax normalizer is supported");
    assert((!cfg.decodeTransposed || takesTransposedDecode(storage, cfg)) &&
           "lowerDecodeKernel resolves the transposed step per kernel");
    FailureOr<OpBuilder> mb = createModule(moduleBuilder);
    if (failed(mb))
      return failure();
    if (failed(buildDecode(*mb, "")))
      return failure();
    buildMergeKernel(kernel, cfg, elemType, *mb);
    if (int64_t rows = tmaBoxRows())
      mb->getBlock()->getParentOp()->setAttr(attn::kDecodeTmaAttr,
                                             IntegerAttr::get(IntegerType::get(ctx, 64), rows));
    if (cfg.decodePdl)
      mb->getBlock()->getParentOp()->setAttr(attn::kMergeWaitsAttr, UnitAttr::get(ctx));
    buildCacheUpdateKernels(kernel, cfg, elemType, storage, *mb);
    if (storage.slotMass) {
      buildMassKernel(kernel, cfg, elemType, numThreads, *mb);
      buildVictimsKernel(kernel, cfg, elemType, *mb);
      if (storage.pooledScores)
        buildPoolKernel(kernel, cfg, elemType, *mb);
    }
    // Twins `attnc_<K>_q16` and `_q32` for more packed rows (speculative
    // decoding, G x Nq above the tile's 8 or 16 rows): K/V are read once
    // per row tile, with 32 rows once up to 32, at 1.5% more time than 16
    // rows for one query (bench/NOTES.md "Speculative decoding"); the
    // runtime takes the smallest that holds a launch's rows. Their
    // (rows, threads, shared bytes) go to the metadata's decode_wide lines.
    SmallVector<Attribute> twins;
    for (int64_t rows : {16, 32}) {
      if (rows <= cfg.blockQ || (cfg.blockQ != 8 && cfg.blockQ != 16))
        continue;
      attn::NvvmKernelConfig twinCfg = cfg;
      twinCfg.blockQ = rows;
      twinCfg.decodeTransposed = false;
      DecodeLowering twin(kernel, twinCfg, elemType, storage);
      if (failed(twin.buildDecode(*mb, "_q" + std::to_string(rows))))
        return failure();
      twins.push_back(DenseI64ArrayAttr::get(ctx, {rows, twin.numThreads, twin.sharedBytes}));
    }
    if (!twins.empty())
      mb->getBlock()->getParentOp()->setAttr(attn::kDecodeTwinsAttr, ArrayAttr::get(ctx, twins));
    // Prompt chunks: the prefill kernel over the pages, for caches whose
    // slots follow positions (every head retains all) in bf16 / f16.
    if (cfg.cachePrefill.blockQ && !storage.quantized && retainsAll()) {
      auto shape = buildCachePrefillKernel(kernel, cfg, elemType, storage.pageSize, *mb);
      if (failed(shape))
        return failure();
      mb->getBlock()->getParentOp()->setAttr(attn::kCachePrefillAttr,
                                             DenseI64ArrayAttr::get(ctx, *shape));
    }
    return success();
  }

private:
  attn::CacheStorage storage;

  /// Whether every policy a KV head may follow keeps all positions.
  bool retainsAll() const {
    return llvm::all_of(storage.policies, [](attn::CachePolicyOp p) {
      return p.getRetention().getKind() == attn::RetentionKind::All;
    });
  }

  /// Bytes of a stored K (or V) row of head dim `d`: bf16 / f16 values,
  /// or the raw bytes of a quantized row (int4: two values a byte).
  int64_t storedRowBytes(int64_t d) const {
    return storage.quantized ? d / (storage.nibbles ? 2 : 1) : d * 2;
  }
  /// Rows of a bulk tensor copy's box where the decode copies K/V pages by
  /// the copy engine (cfg.decodeTma), else 0: pages of a constant page
  /// size, tiles of whole pages or pages of whole tiles, and rows the
  /// shared tiles already lay out as the engine's 128-byte swizzle does
  /// (a box is one 128-byte line of columns): bf16 / f16 rows of whole
  /// lines, quantized raw rows of exactly one line (int8 / fp8 at D = 128).
  int64_t tmaBoxRows() const {
    const int64_t P = storage.pageSize, BK = cfg.blockK;
    const int64_t kRow = storedRowBytes(cfg.headDim), vRow = storedRowBytes(cfg.headDimV);
    const bool lines =
        storage.quantized ? kRow == 128 && vRow == 128 : kRow % 128 == 0 && vRow % 128 == 0;
    if (!cfg.decodeTma || !lines || P <= 0 || (BK % P && P % BK))
      return 0;
    return std::min(P, BK);
  }

  Value pureAsm(OpBuilder &b, Type result, ValueRange operands, const std::string &text,
                StringRef constraints) {
    return LLVM::InlineAsmOp::create(b, loc(), result, operands, text, constraints,
                                     /*has_side_effects=*/false, /*is_align_stack=*/false,
                                     LLVM::tailcallkind::TailCallKind::None, LLVM::AsmDialectAttr(),
                                     ArrayAttr())
        .getResult(0);
  }

  /// Bytes 2k and 2k + 1 of `biased` (4 int8 + 128) as an f16x2 of the
  /// signed values: bytes [u, 0x64, u', 0x64] are (1024 + u, 1024 + u');
  /// minus 1152.
  /// With `keepBias` the pair stays (1024 + u, 1024 + u') (see biasK).
  Value bytePair(OpBuilder &b, Value biased, int64_t k, bool keepBias) {
    std::string select = k == 0 ? "0x4140" : "0x4342";
    if (keepBias)
      return pureAsm(b, i32(), ValueRange{biased},
                     "{\n.reg .b32 m;\nmov.b32 m, 0x64646464;\nprmt.b32 $0, $1, m, " + select +
                         ";\n}",
                     "=r,r");
    std::string text = "{\n.reg .b32 m, t;\nmov.b32 m, 0x64646464;\nprmt.b32 t, $1, m, " + select +
                       ";\nmov.b32 m, 0x64806480;\nsub.f16x2 $0, t, m;\n}";
    return pureAsm(b, i32(), ValueRange{biased}, text, "=r,r");
  }

  /// The 8 nibbles of `word` (two's complement int4, low first) as four
  /// f16x2 of the signed values, in the order (n0, n4), (n1, n5), (n2, n6),
  /// (n3, n7): with u = n ^ 8 = n + 8, (w & 0x000f000f) ^ 0x64086408 is
  /// (1024 + u0, 1024 + u4) in one LOP3 (immLut 0x6a, (a & b) ^ c: the
  /// bias's xor folded in, as 0x64006400 has no bit under the mask), and
  /// the 0x00f000f0 nibbles come out times 16 (one fma.f16x2 takes them
  /// back). 4 LOP3, 1 shift, 2 sub, 2 fma for 8 values: nibble j lands in
  /// column 2 * (j % 4) + j / 4 of its 8 (V's O columns are put back at
  /// the combine; K's order is kColumn's).
  /// With `keepBias` only the LOP3s and the shift: (1024 + u) and
  /// (1024 + 16u) (see biasK).
  SmallVector<Value> unpackNibbles(OpBuilder &b, Value word, bool keepBias) {
    std::string text =
        keepBias ? "{\n.reg .b32 s;\n"
                   "lop3.b32 $0, $4, 0x000f000f, 0x64086408, 0x6a;\n"
                   "lop3.b32 $1, $4, 0x00f000f0, 0x64806480, 0x6a;\n"
                   "shr.b32 s, $4, 8;\n"
                   "lop3.b32 $2, s, 0x000f000f, 0x64086408, 0x6a;\n"
                   "lop3.b32 $3, s, 0x00f000f0, 0x64806480, 0x6a;\n}"
                 : "{\n.reg .b32 a, c, s, m, h, k;\n"
                   "mov.b32 m, 0x64086408;\nmov.b32 h, 0x2c002c00;\nmov.b32 k, 0xd480d480;\n"
                   "lop3.b32 a, $4, 0x000f000f, 0x64086408, 0x6a;\n"
                   "lop3.b32 c, $4, 0x00f000f0, 0x64806480, 0x6a;\n"
                   "sub.f16x2 $0, a, m;\nfma.rn.f16x2 $1, c, h, k;\n"
                   "shr.b32 s, $4, 8;\n"
                   "lop3.b32 a, s, 0x000f000f, 0x64086408, 0x6a;\n"
                   "lop3.b32 c, s, 0x00f000f0, 0x64806480, 0x6a;\n"
                   "sub.f16x2 $2, a, m;\nfma.rn.f16x2 $3, c, h, k;\n}";
    SmallVector<Type> four(4, i32());
    Value r = pureAsm(b, LLVM::LLVMStructType::getLiteral(ctx, four), ValueRange{word}, text,
                      "=r,=r,=r,=r,r");
    SmallVector<Value> out;
    for (int64_t i = 0; i < 4; ++i)
      out.push_back(LLVM::ExtractValueOp::create(b, loc(), r, i));
    return out;
  }
  /// A 32-bit word of raw page bytes as f16x2 registers: int8 and fp8 (4
  /// values) as the pairs (0, 1), (2, 3); int4 (8) in unpackNibbles'
  /// order. fp8 e4m3 converts exactly with cvt.rn.f16x2.e4m3x2 (sm_89+);
  /// the integers by the magic-number tricks above (`keepBias`: without
  /// their last step, see biasK).
  SmallVector<Value> wordToF16(OpBuilder &b, Value word, bool keepBias = false) {
    if (storage.fp8) {
      SmallVector<Type> two(2, i32());
      Value r = LLVM::InlineAsmOp::create(
                    b, loc(), LLVM::LLVMStructType::getLiteral(ctx, two), ValueRange{word},
                    "{\n.reg .b16 lo, hi;\nmov.b32 {lo, hi}, $2;\n"
                    "cvt.rn.f16x2.e4m3x2 $0, lo;\ncvt.rn.f16x2.e4m3x2 $1, hi;\n}",
                    "=r,=r,r", /*has_side_effects=*/false, /*is_align_stack=*/false,
                    LLVM::tailcallkind::TailCallKind::None, LLVM::AsmDialectAttr(), ArrayAttr())
                    .getResult(0);
      return {LLVM::ExtractValueOp::create(b, loc(), r, 0),
              LLVM::ExtractValueOp::create(b, loc(), r, 1)};
    }
    if (storage.nibbles)
      return unpackNibbles(b, word, keepBias);
    Value biased = arith::XOrIOp::create(b, loc(), word, ci32(b, int32_t(0x80808080)));
    return {bytePair(b, biased, 0, keepBias), bytePair(b, biased, 1, keepBias)};
  }

  /// V's B fragment registers for one unit of 4 head-dim columns of two
  /// keys a and b (P.V's k pairs): `wa`, `wb` hold the unit's raw values
  /// of each key (int8 / fp8: a 32-bit word; int4: 16 bits in the low half)
  /// and the result is the four f16x2 (a_j, b_j), j < 4. The two keys'
  /// bytes (or half words) are interleaved first, so the conversions of
  /// wordToF16 produce the pairs directly (no shared-memory round trip).
  SmallVector<Value> keyPairToF16(OpBuilder &b, Value wa, Value wb) {
    auto prmt = [&](Value x, Value y, StringRef selector) {
      return pureAsm(b, i32(), ValueRange{x, y}, ("prmt.b32 $0, $1, $2, " + selector + ";").str(),
                     "=r,r,r");
    };
    if (storage.nibbles) // [a's 4 nibbles | b's 4 nibbles]: (n_j, n_j+4) pairs
      return wordToF16(b, prmt(wa, wb, "0x5410"));
    SmallVector<Value> out = wordToF16(b, prmt(wa, wb, "0x5140")); // a0 b0 a1 b1
    out.append(wordToF16(b, prmt(wa, wb, "0x7362")));              // a2 b2 a3 b3
    return out;
  }

  /// The Q.K^T position (k index of the MMAs) of head-dim column p when K's
  /// B fragments come from raw words (loadRawK): the fragment of lane tig
  /// holds k = 2tig, 2tig+1 (register 0) and 2tig+8, 2tig+9 (register 1).
  /// int8: its word holds columns 16kk + 4tig + j (j < 4), pairs (j = 0,
  /// 1) and (2, 3). int4: its word holds 32c + 8tig + j (j < 8), unpacked
  /// as (n0, n4), (n1, n5) for chunk 2c and (n2, n6), (n3, n7) for 2c + 1.
  Value kColumn(OpBuilder &b, Value p) {
    auto c = [&](int64_t v) { return ci32(b, v); };
    if (!storage.nibbles) {
      Value blk = divu(b, p, c(16)), q = remu(b, p, c(16));
      Value t = divu(b, q, c(4)), j = remu(b, q, c(4));
      // j < 2: 2t + j; else 2t + 8 + (j - 2) = 2t + j + 6.
      Value hi = cmpi(b, arith::CmpIPredicate::uge, j, c(2));
      return add(b, mul(b, blk, c(16)),
                 add(b, add(b, mul(b, t, c(2)), j), select(b, hi, c(6), c(0))));
    }
    Value blk = divu(b, p, c(32)), q = remu(b, p, c(32));
    Value t = divu(b, q, c(8)), j = remu(b, q, c(8));
    Value m = remu(b, j, c(4)), h = divu(b, j, c(4));
    // 16 * (2blk + m/2) + (m%2) * 8 + 2t + h.
    return add(b, mul(b, add(b, mul(b, blk, c(2)), divu(b, m, c(2))), c(16)),
               add(b, mul(b, remu(b, m, c(2)), c(8)), add(b, mul(b, t, c(2)), h)));
  }

  /// The decode kernel `attnc_<K><suffix>` (DecodeKernel.h). Budget
  /// policies' kernels also store each (packed row, slot) score in the
  /// workspace for their mass kernel (MassKernel.h).
  LogicalResult buildDecode(OpBuilder &mb, StringRef suffix) {
    const int64_t D = cfg.headDim, Dv = cfg.headDimV, BQ = cfg.blockQ, BK = cfg.blockK;
    // tr: the transposed step (cfg.decodeTransposed, block-q 8): the warp's
    // 16 keys are the MMAs' M and the tile's 8 packed rows their N, S^T =
    // K Q^T and O^T = V^T P^T. A thread holds 2 keys (grp, grp + 8) x 2 rows
    // (2tig, 2tig + 1) of S^T and O^T's Dv / 16 m-tiles: half the MMAs and
    // O registers of a 16-row tile, of whose rows G = 4 leaves 12 padding.
    // K's and V's registers are the ones the 16-row step builds (its B
    // fragments are the A fragments here, reordered), Q^T's B fragments
    // come from ldmatrix, and P^T's from S^T's C fragments by movmatrix
    // (bench/gpu/decode_fragments.py check_transposed).
    const bool tr = cfg.decodeTransposed;
    const int64_t MT = tr ? 1 : BQ / 16, warps = BK / 16, threads = warps * kWarp,
                  stages = cfg.stages;
    // Quantized pages (int8, or int4 two per byte) arrive raw with their f32
    // scales (one per token, or per group of the head dim); each KV step
    // turns V's into one f16 tile, K's feed the MMAs from the raw rows.
    const bool quant = storage.quantized;
    // Shared rows: the 8 row addresses of an ldmatrix phase must fall in
    // distinct banks. Q (and the quantized kernels' tiles) pad each row by
    // 16 bytes. bf16 / f16 K and V rows of whole 128-byte lines are stored
    // unpadded, their 16-byte chunks XOR-swizzled by row (chunk c of row r
    // at c ^ (r % 8) within its 128 bytes), so that a warp's cp.async
    // writes every 128-byte line it reads to one 128-byte line of shared
    // memory: padded rows split each line into two L2 requests and fetched
    // 1.5x the sectors (ncu, bench/NOTES.md "Swizzled K/V tiles").
    const bool swizzleK = !quant && (D * 2) % 128 == 0, swizzleV = !quant && (Dv * 2) % 128 == 0;
    const int64_t qStride = D + 8, kStride = swizzleK ? D : D + 8, vStride = swizzleV ? Dv : Dv + 8;
    // Bulk tensor copies (tmaBoxRows): one thread copies each page's rows
    // as boxes of one 128-byte line of columns (swizzled by 128 bytes: the
    // same chunk order as swizzleK and swizzleRawK), completing on the
    // stage's mbarrier. A bf16 tile is then stored as 128-byte column
    // blocks, [D / 64][BK][128 bytes], where the cp.async tiles keep whole
    // rows ([BK][D * 2 bytes]): rowPitch and blockPitch give a row's and a
    // column block's bytes. (Quantized raw rows are one line: no change.)
    const int64_t boxRows = tmaBoxRows();
    const bool tma = boxRows > 0;
    const int64_t kLines = storedRowBytes(D) / 128, vLines = storedRowBytes(Dv) / 128;
    const int64_t lineColumns = quant ? 128 : 64; // a line's elements in the tensor maps
    const int64_t kRowPitch = tma ? 128 : kStride * 2, vRowPitch = tma ? 128 : vStride * 2;
    const int64_t blockPitch = tma ? BK * 128 : 128;
    const int64_t qBytes = BQ * qStride * 2, kBytes = BK * kStride * 2, vBytes = BK * vStride * 2;
    const int64_t perByte = storage.nibbles ? 2 : 1;
    const int64_t kGroups = storage.group ? D / storage.group : 1;
    const int64_t vGroups = storage.group ? Dv / storage.group : 1;
    // Quantized V's B fragments straight from the raw rows (directV): a
    // lane reads units of 4 head-dim columns (d = 32m + 4 * (lane / 4) + j)
    // of its 4 keys and interleaves key pairs (keyPairToF16), so n-block
    // 4m + j holds columns 32m + 4c + j; with scale groups of 32 columns or
    // more each n-block lies in one group, whose scales multiply P as
    // before. Otherwise (int8 groups of 16) V goes through an f16 tile.
    // 12-17% faster than the tile at 64k on the GPU (bench/NOTES.md,
    // session 9); cfg.quantDirectV = false keeps the tile for comparison.
    const bool directV = cfg.quantDirectV && quant && Dv % 32 == 0 &&
                         (storage.group == 0 || storage.group % 32 == 0);
    // biasK: int8 / int4 K's B fragments skip the last step of the
    // magic-number conversion and stay 1024 + u (u = x + 128 or x + 8;
    // int4's odd nibbles 1024 + 16u). Q's f16 copy takes 1/16 on those
    // nibbles' columns, so Q.K_f16 = Q.x + Q.bias with a per-column bias
    // c(d) = 1024 + 128, 1024 + 8 or (1024 + 128) / 16 * 16; the Q.K^T
    // accumulators start from -Q.bias, which the same MMAs compute once
    // per row tile over constant fragments of -c. Half the conversion
    // instructions of K (the sub / fma per pair); the bias cancels in f32
    // (|Q.bias| is ~25x |Q.x|: ~5 of the accumulator's 24 bits).
    const bool biasK = cfg.quantBiasK && quant && !storage.fp8 && !tr;
    // A stage: K and V rows (raw bytes when quantized), their scales, the
    // slots' logical positions (i32); all 16-byte aligned.
    // K's B fragments are read from the raw rows with one 32-bit load per
    // lane (8 rows x 4 words, in distinct banks by the swizzle or padding).
    // Unpadded and swizzled like bf16 rows (see swizzleK) when a raw row
    // divides or fills whole 128-byte lines.
    auto swizzles = [](int64_t rowBytes) {
      return rowBytes % 128 == 0 || (rowBytes >= 16 && 128 % rowBytes == 0);
    };
    const bool swizzleRawK = quant && swizzles(D / perByte),
               swizzleRawV = quant && swizzles(Dv / perByte);
    const int64_t kRaw = D / perByte + (swizzleRawK ? 0 : 16),
                  vRaw = Dv / perByte + (swizzleRawV ? 0 : 16);
    const int64_t kIn = quant ? BK * kRaw : kBytes, vIn = quant ? BK * vRaw : vBytes;
    // Scales: f32, or f16 (storage.scaleBytes 2, an even number per row).
    const int64_t sB = storage.scaleBytes;
    const int64_t kScaleIn = quant ? BK * kGroups * sB : 0,
                  vScaleIn = quant ? BK * vGroups * sB : 0;
    // Swizzled rows need their 128-byte lines aligned in shared memory.
    // The copy engine's 128-byte swizzle follows address bits 7-9: its
    // boxes start 1024-byte aligned.
    const int64_t lineAlign = tma                                                  ? 1024
                              : swizzleK || swizzleV || swizzleRawK || swizzleRawV ? 128
                                                                                   : 16;
    // tma: each stage's mbarrier after its positions, in the padding the
    // 1024-byte alignment leaves (8 bytes more only where there is none),
    // so that it costs no CTA per SM (int8 at D = 128: 57344 bytes, four
    // CTAs; 24 bytes of barriers after everything made it three).
    const int64_t stK = 0, stV = kIn, stKs = kIn + vIn, stVs = stKs + kScaleIn,
                  stPos = stVs + vScaleIn, stBar = stPos + BK * 4,
                  stageBytes = llvm::alignTo(stBar + (tma ? 8 : 0), lineAlign);
    // Quantized: an f16 copy of Q (columns permuted, see kColumn) and one
    // f16 V tile precede the stages.
    const int64_t qF16Base = qBytes, tilesBase = qBytes + (quant ? qBytes : 0);
    const int64_t stagesBase =
        llvm::alignTo(tilesBase + (quant && !directV ? vBytes : 0), lineAlign);
    // After the KV loop the stages hold the warps' (m, l, O) for the
    // combine.
    const int64_t combineBytes = warps * BQ * (Dv + 2) * 4;
    sharedBytes = std::max(stagesBase + stages * stageBytes, qBytes + combineBytes);
    numThreads = threads;

    SmallVector<Type> types = decodeAbiTypes();
    appendParamTypes(types);
    // tma: the key and value pools' tensor maps, by value (lowerToNVVM
    // makes them byval grid constants).
    const unsigned kMapArg = types.size(), vMapArg = kMapArg + 1;
    if (tma)
      types.append(2, ptrT());
    auto [fn, b] = createKernelFunc(mb, attn::cudaEntryName(kernel.getSymName()) + suffix.str(),
                                    types, threads);
    if (tma)
      fn->setAttr(attn::kTensorMapArgsAttr,
                  b.getDenseI32ArrayAttr({int32_t(kMapArg), int32_t(vMapArg)}));
    // The decode is latency-bound at two CTAs (8 warps) per SM (ncu,
    // bench/NOTES.md session 10): int4 with scale groups (a Q.K^T chain per
    // group, more registers than per-token scales) asks for three, which
    // caps its registers at 168 (int4/group32 0.306 -> 0.292 ms at 64k on
    // the H100, with Q in shared memory, see qInRegs). With the cap int4
    // per token ran 1.5% slower and int8 1.2% (fp8 within 0.4%). Only where
    // that many CTAs' shared memory fits the SM (227 KB, 1 KB reserved per
    // CTA). cfg.decodeMinCtas replaces the default on the decode entry.
    int64_t minCtas = storage.nibbles && kGroups > 1 && MT == 1 ? 3 : 0;
    if (cfg.decodeMinCtas > 0 && suffix.empty())
      minCtas = cfg.decodeMinCtas;
    if (minCtas > 0 && minCtas * (sharedBytes + 1024) <= 227 * 1024)
      fn->setAttr("nvvm.minctasm", b.getI32IntegerAttr(minCtas));
    Location l = loc();
    auto arg = [&](unsigned i) { return fn.getArgument(i); };
    Value gQ = toGlobal(b, arg(0)), gK = toGlobal(b, arg(1)), gV = toGlobal(b, arg(2)),
          gO = toGlobal(b, arg(3)), gL = toGlobal(b, arg(4)), gOp = toGlobal(b, arg(5)),
          gLp = toGlobal(b, arg(6));
    // The policy's page size as a constant when it has one (divisions by it
    // become shifts).
    Value P = storage.pageSize ? ci32(b, storage.pageSize) : arg(11);
    Value B = arg(7), Hq = arg(8), Hkv = arg(9), Nq = arg(10), maxPages = arg(12),
          maxSlots = arg(13), splits = arg(14), splitSlots = arg(15);
    auto stride = [&](unsigned i) { return arg(16 + i); }; // q: 0-2, o: 3-5, lse: 6-7
    Value gPages = toGlobal(b, arg(24)), gPos = toGlobal(b, arg(25)), gLen = toGlobal(b, arg(26)),
          gQpos = toGlobal(b, arg(27));
    Value writeLse = arg(30);
    // kv_pos null: slot j holds position j (a cache that retains every
    // position in order), so no positions are read: 4 bytes a slot, 0.8% of
    // a bf16 D = 128 step's and 3% of an int4 one's.
    Value posGiven = cmpi(b, arith::CmpIPredicate::ne,
                          LLVM::PtrToIntOp::create(b, loc(), i64(), arg(25)), ci64(b, 0));
    bindParams(b, fn, kNumDecodeArgs);
    // The merge (the next launch) may start as soon as every CTA has begun:
    // its CTAs become resident while the decode streams K/V and wait in
    // griddepcontrol.wait, so the launch latency between the two kernels
    // leaves the step's critical path. The mass pass runs after the merge.
    if (cfg.decodePdl)
      NVVM::GriddepcontrolOp::create(b, l, NVVM::GridDepActionKind::launch_dependents);

    Value bx = idx32(b, gpu::BlockIdOp::create(b, l, gpu::Dimension::x));
    Value hk = idx32(b, gpu::BlockIdOp::create(b, l, gpu::Dimension::y));
    Value bIdx = idx32(b, gpu::BlockIdOp::create(b, l, gpu::Dimension::z));
    Value tid = idx32(b, gpu::ThreadIdOp::create(b, l, gpu::Dimension::x));
    Value split = remu(b, bx, splits), rowTile = divu(b, bx, splits);
    Value warp = divu(b, tid, ci32(b, kWarp)), lane = remu(b, tid, ci32(b, kWarp));
    Value grp = divu(b, lane, ci32(b, 4)), tig = remu(b, lane, ci32(b, 4));
    Value G = divu(b, Hq, Hkv), R = mul(b, G, Nq);
    Value lastRow = sub(b, R, ci32(b, 1));
    Value tableRow = add(b, mul(b, bIdx, Hkv), hk);
    Value numSlots = load(b, i32(), gLen, tableRow);
    Value qPos0 = load(b, i32(), gQpos, bIdx);
    Value s0 = mul(b, split, splitSlots);
    Value s1 = mini(b, numSlots, add(b, s0, splitSlots));
    Value nTiles = arith::MaxSIOp::create(
        b, l, arith::CeilDivSIOp::create(b, l, sub(b, s1, s0), ci32(b, BK)), ci32(b, 0));
    Value b64 = ext64(b, bIdx);
    Value pagesRow = mul(b, ext64(b, tableRow), ext64(b, maxPages));
    Value posRow = mul(b, ext64(b, tableRow), ext64(b, maxSlots));
    // (query head, query index) of packed row pr (clamped: rows past R read
    // row R - 1 and are never stored).
    auto rowCoords = [&](OpBuilder &b, Value pr) {
      Value prc = mini(b, pr, lastRow);
      Value g = divu(b, prc, Nq);
      return std::make_pair(queryHead(b, hk, g, Hkv, G), remu(b, prc, Nq));
    };
    // The tile row of this thread's fragment slot rs: slot 2 * mt + half is
    // row 16 * mt + lane / 4 + 8 * half; tr's slot rs is row 2 * tig + rs.
    auto rowInTile = [&](OpBuilder &b, int64_t rs) {
      return tr ? add(b, mul(b, tig, ci32(b, 2)), ci32(b, rs))
                : add(b, grp, ci32(b, 16 * (rs / 2) + 8 * (rs % 2)));
    };
    // Budget policies: the scores after the split parts in the workspace,
    // f32 [B * Hkv, G * Nq, splits * split_slots] (MassKernel.h).
    Value gScores, scoreStride;
    if (storage.slotMass) {
      gScores = gep(b, gLp, ext64(b, mul(b, splits, mul(b, B, mul(b, Hq, Nq)))), f32());
      scoreStride = ext64(b, mul(b, splits, splitSlots));
    }

    Value smem = LLVM::AddressOfOp::create(b, l, ptrT(3), "attnc_smem");
    auto smemAt = [&](OpBuilder &b, Value byteOffset) {
      return gep(b, smem, byteOffset, b.getI8Type());
    };
    auto sideAsm = [&](OpBuilder &b, ValueRange operands, StringRef text, StringRef constraints) {
      LLVM::InlineAsmOp::create(b, l, TypeRange{}, operands, text, constraints,
                                /*has_side_effects=*/true, /*is_align_stack=*/false,
                                LLVM::tailcallkind::TailCallKind::None, LLVM::AsmDialectAttr(),
                                ArrayAttr());
    };
    // tma: the shared address of stage `stage`'s mbarrier (stBar), and the
    // generic address of a tensor map (a grid-constant kernel parameter).
    auto barrierAt = [&](OpBuilder &b, Value stage) -> Value {
      return LLVM::PtrToIntOp::create(
          b, l, i64(),
          smemAt(b, add(b, ci32(b, stagesBase + stBar), mul(b, stage, ci32(b, stageBytes)))));
    };
    auto mapAt = [&](OpBuilder &b, unsigned argIndex) -> Value {
      return LLVM::PtrToIntOp::create(b, l, i64(), arg(argIndex));
    };
    Value isLeader = cmpi(b, arith::CmpIPredicate::eq, tid, ci32(b, 0));
    if (tma) {
      // One arrival (the leader's expect_tx) per phase; the bytes complete it.
      ifThen(b, isLeader, [&](OpBuilder &b) {
        for (int64_t s = 0; s < stages; ++s)
          sideAsm(b, {barrierAt(b, ci32(b, s))}, "mbarrier.init.shared::cta.b64 [$0], 1;", "l");
        sideAsm(b, {}, "fence.mbarrier_init.release.cluster;", "");
        for (unsigned m : {kMapArg, vMapArg})
          sideAsm(b, {mapAt(b, m)}, "prefetch.tensormap [$0];", "l");
      });
      gpu::BarrierOp::create(b, l);
    }
    // body(index) for index = tid, tid + threads, ... below `count`.
    auto forEachIndex = [&](OpBuilder &b, int64_t count,
                            llvm::function_ref<void(OpBuilder &, Value)> body) {
      forStrided(b, tid, threads, count, body);
    };
    // `rows` x `cols` elements of each (global base, shared offset) pair
    // into shared memory (sStride elements apart; `swizzled`: chunk c of row
    // r at c ^ (r % 8), see swizzleK), 16 bytes per cp.async;
    // row r comes from rowSource(r) = (element offset, valid), shared by the
    // pairs (K and V rows of a slot: one page-table read). Invalid rows are
    // zero-filled (src-size 0).
    using Target = std::pair<Value, Value>;
    // Byte offset `o` (from a 128-byte aligned base) in row `r` of a tile of
    // `rowBytes`-byte rows, swizzled: its 16-byte chunk's index within the
    // 128-byte line xor the row (rows of 128 bytes or more) or the line
    // (shorter rows) modulo 8. An ldmatrix phase or a warp's 32-bit loads of
    // one column over 8 rows then fall in distinct banks.
    auto swizzle = [&](OpBuilder &b, Value o, Value r, int64_t rowBytes) -> Value {
      Value key = rowBytes >= 128
                      ? remu(b, r, ci32(b, 8))
                      : arith::AndIOp::create(b, l, divu(b, o, ci32(b, 128)), ci32(b, 7));
      return arith::XOrIOp::create(b, l, o, mul(b, key, ci32(b, 16)));
    };
    auto copyRows = [&](OpBuilder &b, ArrayRef<Target> targets, Type elem, int64_t rows,
                        int64_t cols, int64_t sStride, bool swizzled,
                        llvm::function_ref<std::pair<Value, Value>(OpBuilder &, Value)> rowSource) {
      const int64_t bytes = elem.getIntOrFloatBitWidth() / 8, perChunk = 16 / bytes;
      int64_t perRow = cols / perChunk, chunks = rows * perRow;
      forEachIndex(b, chunks, [&](OpBuilder &b, Value c) {
        Value r = divu(b, c, ci32(b, perRow)),
              col = mul(b, remu(b, c, ci32(b, perRow)), ci32(b, perChunk));
        auto [offset, valid] = rowSource(b, r);
        Value size = select(b, valid, ci32(b, 16), ci32(b, 0));
        Value at = add(b, offset, ext64(b, col));
        Value rowByte = mul(b, add(b, mul(b, r, ci32(b, sStride)), col), ci32(b, bytes));
        if (swizzled)
          rowByte = swizzle(b, rowByte, r, sStride * bytes);
        // cp.async.cg with an L2 prefetch of the 128-byte line: K/V rows
        // are whole lines of contiguous pages. It made the padded rows'
        // split requests 1.3-1.7% faster; with swizzled rows it is
        // neutral (bench/NOTES.md, session 7), and kept.
        for (auto [gBase, sOff] : targets) {
          Value dst = LLVM::PtrToIntOp::create(b, l, i64(), smemAt(b, add(b, sOff, rowByte)));
          Value src = LLVM::PtrToIntOp::create(b, l, i64(), gep(b, gBase, at, elem));
          LLVM::InlineAsmOp::create(
              b, l, TypeRange{}, ValueRange{dst, src, size},
              "cp.async.cg.shared.global.L2::128B [$0], [$1], 16, $2;", "l,l,r",
              /*has_side_effects=*/true, /*is_align_stack=*/false,
              LLVM::tailcallkind::TailCallKind::None, LLVM::AsmDialectAttr(), ArrayAttr());
        }
      });
    };

    // One row tile [r0, r0 + BQ): Q, the pipelined KV loop over the split's
    // slots; returns the loop (its (m, l, O) for the combine).
    bool hadError = false;
    const int64_t nbO = Dv / 8, RS = 2 * MT; // O n-blocks; fragment rows per thread
    // O's accumulator tiles per thread: n-blocks, or tr's m-tiles of 16
    // head-dim rows (oIdx(0, t, i)).
    const int64_t oTiles = tr ? Dv / 16 : MT * nbO;
    const SmallVector<int64_t> rowLanes =
        tr ? SmallVector<int64_t>{4, 8, 16} : SmallVector<int64_t>{1, 2};
    auto oIdx = [&](int64_t mt, int64_t n, int i) { return 2 * RS + (mt * nbO + n) * 4 + i; };
    auto rowTileBody = [&](OpBuilder &b, Value r0) -> scf::ForOp {
      // Q rows of the tile -> shared memory (cp.async group 0).
      Value qBase = mul(b, b64, stride(0));
      copyRows(b, {{gQ, ci32(b, 0)}}, elemType, BQ, D, qStride, /*swizzled=*/false,
               [&](OpBuilder &b, Value r) {
                 Value pr = add(b, r0, r);
                 auto [h, i] = rowCoords(b, pr);
                 Value off =
                     add(b, qBase,
                         add(b, mul(b, ext64(b, h), stride(1)), mul(b, ext64(b, i), stride(2))));
                 return std::make_pair(off, cmpi(b, arith::CmpIPredicate::slt, pr, R));
               });
      NVVM::CpAsyncCommitGroupOp::create(b, l);

      Value gKs = toGlobal(b, arg(28)), gVs = toGlobal(b, arg(29));
      auto stageAt = [&](OpBuilder &b, Value stage, int64_t part) {
        return add(b, ci32(b, stagesBase + part), mul(b, stage, ci32(b, stageBytes)));
      };
      // 4-byte cp.asyncs of `count` i32/f32 per slot row of the tile (row r's
      // element e from rowSource(r) + e); rows past the split read nothing
      // (zero-filled) and are dropped by the KV loop.
      auto copyWords =
          [&](OpBuilder &b, Value gBase, Value sOff, int64_t count,
              llvm::function_ref<std::pair<Value, Value>(OpBuilder &, Value)> rowSource) {
            forEachIndex(b, BK * count, [&](OpBuilder &b, Value j) {
              Value r = divu(b, j, ci32(b, count)), e = remu(b, j, ci32(b, count));
              auto [offset, valid] = rowSource(b, r);
              NVVM::CpAsyncOp::create(
                  b, l, smemAt(b, add(b, sOff, mul(b, j, ci32(b, 4)))),
                  gep(b, gBase, add(b, offset, ext64(b, e)), i32()), b.getI32IntegerAttr(4),
                  NVVM::LoadCacheModifierKindAttr::get(ctx, NVVM::LoadCacheModifierKind::CA),
                  select(b, valid, ci32(b, 4), ci32(b, 0)));
            });
          };
      // The pool row (i64) of slot `slot` of this table row: page
      // kv_pages[.., slot / P], row slot % P.
      auto poolRow = [&](OpBuilder &b, Value slot) {
        Value page = load(b, i32(), gPages, add(b, pagesRow, ext64(b, divu(b, slot, P))));
        return add(b, mul(b, ext64(b, page), ext64(b, P)), ext64(b, remu(b, slot, P)));
      };
      // Slot rows of tile t -> stage t % stages, through the page table (one
      // read per slot row, shared by its K and V copies), with their scales
      // and logical positions.
      auto loadKV = [&](OpBuilder &b, Value t) {
        Value stage = remu(b, t, ci32(b, stages));
        Value kOff = stageAt(b, stage, stK), vOff = stageAt(b, stage, stV);
        Value first = add(b, s0, mul(b, t, ci32(b, BK)));
        // (pool row of slot row r, valid); the row scaled by `width` elements.
        auto slotRow = [&](OpBuilder &b, Value r) {
          Value slot = add(b, first, r);
          Value valid = cmpi(b, arith::CmpIPredicate::slt, slot, s1);
          Value sc = mini(b, slot, sub(b, s1, ci32(b, 1)));
          return std::make_pair(poolRow(b, sc), valid);
        };
        auto source = [&](int64_t width) {
          return [&, width](OpBuilder &b, Value r) {
            auto [row, valid] = slotRow(b, r);
            return std::make_pair(mul(b, row, ci64(b, width)), valid);
          };
        };
        Type in = quant ? Type(b.getI8Type()) : elemType;
        int64_t kCols = D / perByte, vCols = Dv / perByte;
        int64_t kPitch = quant ? kRaw : kStride, vPitch = quant ? vRaw : vStride;
        const bool swK = quant ? swizzleRawK : swizzleK, swV = quant ? swizzleRawV : swizzleV;
        if (tma) {
          // The leader copies the boxes of the tile's valid slots (a box
          // past the split is not copied: the KV loop zero-fills its rows)
          // and tells the stage's mbarrier how many bytes to expect.
          ifThen(b, isLeader, [&](OpBuilder &b) {
            // The boxes' pool rows first (slots clamped into the split):
            // independent page-table loads in flight together, not one
            // round trip per box on the leader's path.
            SmallVector<Value> rows;
            for (int64_t box = 0; box < BK / boxRows; ++box) {
              Value slot = mini(b, add(b, first, ci32(b, box * boxRows)), sub(b, s1, ci32(b, 1)));
              rows.push_back(arith::TruncIOp::create(b, l, i32(), poolRow(b, slot)));
            }
            Value bar = barrierAt(b, stage);
            Value boxes =
                mini(b, divu(b, add(b, sub(b, s1, first), ci32(b, boxRows - 1)), ci32(b, boxRows)),
                     ci32(b, BK / boxRows));
            sideAsm(b, {bar, mul(b, boxes, ci32(b, boxRows * (kLines + vLines) * 128))},
                    "mbarrier.arrive.expect_tx.shared::cta.b64 _, [$0], $1;", "l,r");
            for (int64_t box = 0; box < BK / boxRows; ++box) {
              Value slot = add(b, first, ci32(b, box * boxRows));
              ifThen(b, cmpi(b, arith::CmpIPredicate::slt, slot, s1), [&](OpBuilder &b) {
                Value row = rows[box];
                auto copy = [&](unsigned map, Value base, int64_t lines) {
                  for (int64_t blk = 0; blk < lines; ++blk) {
                    Value dst = LLVM::PtrToIntOp::create(
                        b, l, i64(),
                        smemAt(b, add(b, base, ci32(b, blk * blockPitch + box * boxRows * 128))));
                    sideAsm(b, {dst, mapAt(b, map), ci32(b, blk * lineColumns), row, bar},
                            "cp.async.bulk.tensor.2d.shared::cluster.global.mbarrier::complete_tx"
                            "::bytes [$0], [$1, {$2, $3}], [$4];",
                            "l,l,r,r,l");
                  }
                };
                copy(kMapArg, kOff, kLines);
                copy(vMapArg, vOff, vLines);
              });
            }
          });
        } else if (kCols == vCols && kPitch == vPitch) {
          copyRows(b, {{gK, kOff}, {gV, vOff}}, in, BK, kCols, kPitch, swK, source(kCols));
        } else {
          copyRows(b, {{gK, kOff}}, in, BK, kCols, kPitch, swK, source(kCols));
          copyRows(b, {{gV, vOff}}, in, BK, vCols, vPitch, swV, source(vCols));
        }
        if (quant) {
          // A slot's scales as 4-byte words (f16: two a word).
          const int64_t kWords = kGroups * sB / 4, vWords = vGroups * sB / 4;
          copyWords(b, gKs, stageAt(b, stage, stKs), kWords, source(kWords));
          copyWords(b, gVs, stageAt(b, stage, stVs), vWords, source(vWords));
        }
        ifThen(b, posGiven, [&](OpBuilder &b) {
          copyWords(b, gPos, stageAt(b, stage, stPos), 1, [&](OpBuilder &b, Value r) {
            Value slot = add(b, first, r);
            Value sc = mini(b, slot, sub(b, s1, ci32(b, 1)));
            return std::make_pair(add(b, posRow, ext64(b, sc)),
                                  cmpi(b, arith::CmpIPredicate::slt, slot, s1));
          });
        });
      };
      // The 128-byte lines of tile t's K and V rows -> L2 (prefetch.global.L2:
      // no registers, no shared memory, nothing to wait for).
      auto prefetchKV = [&](OpBuilder &b, Value t) {
        Value first = add(b, s0, mul(b, t, ci32(b, BK)));
        const int64_t bytes = quant ? 1 : elemType.getIntOrFloatBitWidth() / 8;
        const int64_t kRow = D / perByte * bytes, vRow = Dv / perByte * bytes;
        const int64_t kLines = (kRow + 127) / 128, lines = kLines + (vRow + 127) / 128;
        forEachIndex(b, BK * lines, [&](OpBuilder &b, Value j) {
          Value r = divu(b, j, ci32(b, lines)), line = remu(b, j, ci32(b, lines));
          Value slot = add(b, first, r);
          ifThen(b, cmpi(b, arith::CmpIPredicate::slt, slot, s1), [&](OpBuilder &b) {
            Value row = poolRow(b, slot);
            Value isK = cmpi(b, arith::CmpIPredicate::slt, line, ci32(b, kLines));
            Value kAt = add(b, mul(b, row, ci64(b, kRow)), ext64(b, mul(b, line, ci32(b, 128))));
            Value vAt = add(b, mul(b, row, ci64(b, vRow)),
                            ext64(b, mul(b, sub(b, line, ci32(b, kLines)), ci32(b, 128))));
            Value kPtr = LLVM::PtrToIntOp::create(b, l, i64(), gep(b, gK, kAt, b.getI8Type()));
            Value vPtr = LLVM::PtrToIntOp::create(b, l, i64(), gep(b, gV, vAt, b.getI8Type()));
            LLVM::InlineAsmOp::create(b, l, TypeRange{}, ValueRange{select(b, isK, kPtr, vPtr)},
                                      "prefetch.global.L2 [$0];", "l", /*has_side_effects=*/true,
                                      /*is_align_stack=*/false,
                                      LLVM::tailcallkind::TailCallKind::None,
                                      LLVM::AsmDialectAttr(), ArrayAttr());
          });
        });
      };
      // Quantized: the raw rows of a stage -> the K/V tiles as f16 integers
      // (exact: |x| <= 127); the scales are applied in registers (K's to
      // Q.K^T per key and group, V's to P per key and group). Bytes become
      // f16 by the magic-number trick: with u = x + 128 (x + 8 for int4),
      // the f16 bit pattern 0x6400 | u is 1024 + u, so one sub.f16x2 yields
      // two values (no int-to-float conversions, which run at quarter rate).
      auto dequantize = [&](OpBuilder &b, Value stage) {
        auto tile = [&](int64_t cols, int64_t part, int64_t dst, int64_t pitch) {
          const int64_t unitsPerRow = cols / 8, units = BK * unitsPerRow;
          const int64_t rowBytes = cols / perByte + (swizzleRawV ? 0 : 16);
          Value raw = smemAt(b, stageAt(b, stage, part));
          forEachIndex(b, units, [&](OpBuilder &b, Value u) {
            Value r = divu(b, u, ci32(b, unitsPerRow)), c8 = remu(b, u, ci32(b, unitsPerRow));
            Value col = mul(b, c8, ci32(b, 8));
            // 8 values in 8 (int8) or 4 (int4) bytes: words of 4 bytes.
            Value at = add(b, mul(b, r, ci32(b, rowBytes)), divu(b, col, ci32(b, perByte)));
            if (swizzleRawV) // the unit's 4 or 8 bytes lie in one chunk
              at = swizzle(b, at, r, rowBytes);
            SmallVector<Value> pairs;
            for (int64_t w = 0; w < 2 / perByte; ++w) {
              Value word = LLVM::LoadOp::create(
                  b, l, i32(), gep(b, raw, add(b, at, ci32(b, 4 * w)), b.getI8Type()),
                  /*alignment=*/4);
              pairs.append(wordToF16(b, word));
            }
            Value vec = LLVM::PoisonOp::create(b, l, VectorType::get({4}, i32()));
            for (int64_t k = 0; k < 4; ++k)
              vec = LLVM::InsertElementOp::create(b, l, vec, pairs[k], ci32(b, k));
            Value out =
                add(b, ci32(b, dst), mul(b, add(b, mul(b, r, ci32(b, pitch)), col), ci32(b, 2)));
            LLVM::StoreOp::create(b, l, vec, smemAt(b, out), /*alignment=*/16);
          });
        };
        tile(Dv, stV, tilesBase, vStride);
        gpu::BarrierOp::create(b, l);
      };
      // tma: waits for tile t's bytes (phase t / stages of its stage's
      // mbarrier), then zero-fills its rows past the split, as cp.async's
      // src-size 0 does (stale slots of a page must not reach P.V); the
      // copy engine writes those bytes again later, so the zeros are
      // ordered before it (fence.proxy.async).
      auto awaitTmaTile = [&](OpBuilder &b, Value t) {
        Value stage = remu(b, t, ci32(b, stages));
        Value parity = remu(b, divu(b, t, ci32(b, stages)), ci32(b, 2));
        sideAsm(b, {barrierAt(b, stage), parity},
                "{\n.reg .pred done;\nwait:\nmbarrier.try_wait.parity.shared::cta.b64 done, [$0], "
                "$1;\n@!done bra wait;\n}",
                "l,r");
        Value valid = sub(b, s1, add(b, s0, mul(b, t, ci32(b, BK))));
        ifThen(b, cmpi(b, arith::CmpIPredicate::slt, valid, ci32(b, BK)), [&](OpBuilder &b) {
          const int64_t kBlocks = kLines, blocks = kLines + vLines;
          Value kBase = stageAt(b, stage, stK), vBase = stageAt(b, stage, stV);
          Value zeros = LLVM::ZeroOp::create(b, l, VectorType::get({4}, i32()));
          forEachIndex(b, blocks * BK * 8, [&](OpBuilder &b, Value c) {
            Value r = remu(b, divu(b, c, ci32(b, 8)), ci32(b, BK));
            Value blk = divu(b, c, ci32(b, 8 * BK));
            ifThen(b, cmpi(b, arith::CmpIPredicate::sge, r, valid), [&](OpBuilder &b) {
              Value isK = cmpi(b, arith::CmpIPredicate::slt, blk, ci32(b, kBlocks));
              Value base =
                  select(b, isK, add(b, kBase, mul(b, blk, ci32(b, blockPitch))),
                         add(b, vBase, mul(b, sub(b, blk, ci32(b, kBlocks)), ci32(b, blockPitch))));
              Value at =
                  add(b, base,
                      add(b, mul(b, r, ci32(b, 128)), mul(b, remu(b, c, ci32(b, 8)), ci32(b, 16))));
              LLVM::StoreOp::create(b, l, zeros, smemAt(b, at), /*alignment=*/16);
            });
          });
          sideAsm(b, {}, "fence.proxy.async.shared::cta;", "");
        });
      };
      // Tiles 0 .. stages-2 in flight before the loop (a group each, committed
      // even when empty so that group counts stay uniform).
      for (int64_t st = 0; st + 1 < stages; ++st) {
        ifThen(b, cmpi(b, arith::CmpIPredicate::sgt, nTiles, ci32(b, st)),
               [&](OpBuilder &b) { loadKV(b, ci32(b, st)); });
        NVVM::CpAsyncCommitGroupOp::create(b, l);
      }
      NVVM::CpAsyncWaitGroupOp::create(b, l, uint32_t(stages - 1));
      gpu::BarrierOp::create(b, l);
      // Quantized K/V run f16 MMAs (their integers are exact in f16). K's B
      // fragments come straight from the raw bytes (loadRawK), which orders
      // the head dim differently (kColumn); Q is copied to f16 with the same
      // order, which leaves Q.K^T unchanged.
      Type mmaType = quant ? Type(Float16Type::get(ctx)) : elemType;
      if (quant) {
        forEachIndex(b, BQ * D, [&](OpBuilder &b, Value e) {
          Value row = divu(b, e, ci32(b, D)), p = remu(b, e, ci32(b, D));
          Value x =
              load(b, elemType, smemAt(b, ci32(b, 0)), add(b, mul(b, row, ci32(b, qStride)), p));
          Value xf = arith::ExtFOp::create(b, l, f32(), x);
          Value kp = kColumn(b, p);
          if (biasK && storage.nibbles) // k 8..15 of a chunk: nibbles times 16
            xf = select(b, cmpi(b, arith::CmpIPredicate::uge, remu(b, kp, ci32(b, 16)), ci32(b, 8)),
                        fmul(b, xf, cf32(b, 1.0 / 16)), xf);
          Value h = arith::TruncFOp::create(b, l, mmaType, xf);
          store(b, h, smemAt(b, ci32(b, qF16Base)), add(b, mul(b, row, ci32(b, qStride)), kp));
        });
        gpu::BarrierOp::create(b, l);
      }

      // Lane addresses of ldmatrix (bytes): Q rows lane%16, column
      // (lane/16)*8; K key row (lane/16)*8 + lane%8, column ((lane/8)%2)*8
      // of the warp's 16 keys; V key row lane%16, column (lane/16)*8.
      Value lane16 = remu(b, lane, ci32(b, 16)), laneHi = divu(b, lane, ci32(b, 16));
      Value lane8 = remu(b, lane, ci32(b, 8)),
            laneMid = remu(b, divu(b, lane, ci32(b, 8)), ci32(b, 2));
      Value warpKey = mul(b, warp, ci32(b, 16));
      Value laneQ = add(
          b, ci32(b, quant ? qF16Base : 0),
          mul(b, add(b, mul(b, lane16, ci32(b, qStride)), mul(b, laneHi, ci32(b, 8))), ci32(b, 2)));
      // A lane's ldmatrix rows are lane8 modulo 8 (K and V), so on swizzled
      // rows its 16-byte chunk 2 * kk + laneMid (K, k16 chunk kk) sits at
      // 2 * kk ^ (laneMid ^ lane8), and V's 2 * np + laneHi at
      // 2 * np ^ (laneHi ^ lane8).
      Value laneK = add(
          b, mul(b, add(b, warpKey, add(b, mul(b, laneHi, ci32(b, 8)), lane8)), ci32(b, kRowPitch)),
          swizzleK ? ci32(b, 0) : mul(b, laneMid, ci32(b, 16)));
      Value laneV = add(b, mul(b, add(b, warpKey, lane16), ci32(b, vRowPitch)),
                        swizzleV ? ci32(b, 0) : mul(b, laneHi, ci32(b, 16)));
      Value kChunkXor = arith::XOrIOp::create(b, l, laneMid, lane8),
            vChunkXor = arith::XOrIOp::create(b, l, laneHi, lane8);
      // Byte offset of k16 chunk kk (K) or n16 pair np (V) from the lane's
      // row address.
      // tma's column blocks: chunk 2k's block (2k / 8) is a constant.
      auto chunkPair = [&](OpBuilder &b, bool swizzled, Value chunkXor, int64_t k) -> Value {
        if (!swizzled)
          return ci32(b, k * 32);
        if (tma)
          return add(
              b, ci32(b, (2 * k / 8) * blockPitch),
              mul(b, arith::XOrIOp::create(b, l, ci32(b, 2 * k % 8), chunkXor), ci32(b, 16)));
        return mul(b, arith::XOrIOp::create(b, l, ci32(b, 2 * k), chunkXor), ci32(b, 16));
      };
      auto loadQ = [&](OpBuilder &b, int64_t mt, int64_t kk) {
        return ldmatrix4(b, smemAt(b, add(b, laneQ, ci32(b, (mt * 16 * qStride + kk * 16) * 2))),
                         false);
      };
      // One row tile's Q fragments stay in registers (D/4 of them); more are
      // reloaded per KV tile. So are int4's: their K and V conversions leave
      // the fewest registers, and 32 freed ones made the int4 per-token
      // kernel 7% faster at 64k on the H100 (0.276 -> 0.256 ms, two runs;
      // int8 and fp8 lost up to 2% at B=1 128k, bf16 gained 0.3%: they keep
      // Q in registers; bench/NOTES.md session 10).
      const bool qInRegs = MT == 1 && D <= 128 && !storage.nibbles && !tr;
      SmallVector<SmallVector<Value>> qa;
      if (qInRegs)
        for (int64_t kk = 0; kk < D / 16; ++kk)
          qa.push_back(loadQ(b, 0, kk));
      // tr: Q^T's B fragments of every k16 chunk, held (D / 8 registers):
      // an ldmatrix.x4 of the 8 rows gives lane (grp, tig) row grp, columns
      // 2tig, 2tig + 1 of four 8-column blocks, i.e. (b0, b1) of chunks 2c
      // and 2c + 1.
      SmallVector<SmallVector<Value>> qT;
      if (tr) {
        Value laneQT = add(b, ci32(b, quant ? qF16Base : 0),
                           mul(b,
                               add(b, mul(b, lane8, ci32(b, qStride)),
                                   mul(b, divu(b, lane, ci32(b, 8)), ci32(b, 8))),
                               ci32(b, 2)));
        for (int64_t c = 0; c < D / 32; ++c) {
          SmallVector<Value> r = ldmatrix4(b, smemAt(b, add(b, laneQT, ci32(b, 64 * c))), false);
          qT.push_back({r[0], r[1]});
          qT.push_back({r[2], r[3]});
        }
      }

      // This thread's fragment rows (rowInTile).
      SmallVector<Value> rowHead, rowPos;
      for (int64_t rs = 0; rs < RS; ++rs) {
        auto [h, i] = rowCoords(b, add(b, r0, rowInTile(b, rs)));
        rowHead.push_back(h);
        rowPos.push_back(add(b, qPos0, i));
      }
      auto slotOf = [](int64_t mt, int i) { return 2 * mt + (i < 2 ? 0 : 1); };

      Value scale = attention.getScale() ? outer.lookup(attention.getScale())
                                         : cf32(b, 1.0 / std::sqrt(double(D)));
      const bool maskAlwaysTrue = attn::maskIsAlwaysTrue(attention);
      Value scaleLog2 = fmul(b, scale, cf32(b, kLog2e));
      Value negInf = cf32(b, -std::numeric_limits<float>::infinity()), zero = cf32(b, 0.0);

      // biasK: Q.K^T's accumulators start from -Q.bias, per K scale group
      // and row tile in the accumulators' layout (alike for every key):
      // the MMAs of the KV loop over constant B fragments of -c as f16x2,
      // int8 -1152 (0xe480); int4 -1032 (0xe408) on k 0..7 of a chunk and
      // -1152 on k 8..15 (the nibbles times 16, where Q holds Q / 16).
      using Acc = SmallVector<Value, 4>;
      SmallVector<SmallVector<Acc>> kAccStart(quant ? kGroups : 1,
                                              SmallVector<Acc>(MT, Acc(4, zero)));
      if (biasK) {
        Value lo = ci32(b, int32_t(storage.nibbles ? 0xe408e408u : 0xe480e480u));
        Value hi = ci32(b, int32_t(0xe480e480u));
        for (int64_t kk = 0; kk < D / 16; ++kk)
          for (int64_t mt = 0; mt < MT; ++mt) {
            Acc &acc = kAccStart[kk * 16 * kGroups / D][mt];
            acc = mma(b, qInRegs ? qa[kk] : loadQ(b, mt, kk), {lo, hi}, acc, mmaType);
          }
      }

      // Loop state: m (RS rows, log2 domain), l (RS rows, thread-partial), O
      // (MT x Dv/8 n-blocks x 4).
      SmallVector<Value> init;
      init.append(RS, negInf);
      init.append(RS, zero);
      init.append(oTiles * 4, zero);

      auto loop = scf::ForOp::create(
          b, l, ci32(b, 0), nTiles, ci32(b, 1), init,
          [&](OpBuilder &b, Location l, Value t, ValueRange iter) {
            Value ahead = add(b, t, ci32(b, stages - 1));
            ifThen(b, cmpi(b, arith::CmpIPredicate::slt, ahead, nTiles),
                   [&](OpBuilder &b) { loadKV(b, ahead); });
            if (cfg.decodeL2Prefetch > 0) {
              Value further = add(b, ahead, ci32(b, cfg.decodeL2Prefetch));
              ifThen(b, cmpi(b, arith::CmpIPredicate::slt, further, nTiles),
                     [&](OpBuilder &b) { prefetchKV(b, further); });
            }
            NVVM::CpAsyncCommitGroupOp::create(b, l);
            NVVM::CpAsyncWaitGroupOp::create(b, l, uint32_t(stages - 1));
            if (tma)
              awaitTmaTile(b, t);
            gpu::BarrierOp::create(b, l);
            Value stage = remu(b, t, ci32(b, stages));
            Value kOff = quant ? ci32(b, tilesBase) : stageAt(b, stage, stK);
            Value vOff = quant ? ci32(b, tilesBase) : stageAt(b, stage, stV);
            Value posBase = smemAt(b, stageAt(b, stage, stPos));
            if (quant && !directV)
              dequantize(b, stage);

            // S = Q K^T over the warp's 16 keys: one ldmatrix.x4 of K per
            // k16 chunk gives the B fragments of both n8 blocks.
            // Per-group K scales: one accumulator chain per group (a k16
            // chunk lies in one group), scaled and summed below.
            const int64_t sGroups = quant ? kGroups : 1;
            using Frag = SmallVector<SmallVector<SmallVector<Value, 4>>>;
            SmallVector<Frag> sg(sGroups, Frag(MT, SmallVector<SmallVector<Value, 4>>(2)));
            for (int64_t g = 0; g < sGroups; ++g)
              for (int64_t mt = 0; mt < MT; ++mt)
                sg[g][mt][0] = sg[g][mt][1] = kAccStart[g][mt];
            Value kLane = smemAt(b, add(b, kOff, laneK));
            // Quantized: lane (grp, tig) reads key warpKey + nb*8 + grp, 4 bytes
            // at 16*kk + 4*tig (int8) or 16*c + 4*tig for chunks 2c, 2c+1
            // (int4, 8 nibbles).
            Value rawK = smemAt(b, stageAt(b, stage, stK)), laneRow = add(b, warpKey, grp);
            SmallVector<SmallVector<Value>> nibbleRegs(2);
            auto loadRawK = [&](OpBuilder &b, int64_t kk) {
              SmallVector<Value> kb;
              for (int64_t nb = 0; nb < 2; ++nb) {
                Value r = add(b, laneRow, ci32(b, nb * 8));
                int64_t byte = storage.nibbles ? 16 * (kk / 2) : 16 * kk;
                if (!storage.nibbles || kk % 2 == 0) {
                  Value at = add(b, mul(b, r, ci32(b, kRaw)),
                                 add(b, mul(b, tig, ci32(b, 4)), ci32(b, byte)));
                  if (swizzleRawK)
                    at = swizzle(b, at, r, kRaw);
                  Value word = LLVM::LoadOp::create(b, l, i32(), gep(b, rawK, at, b.getI8Type()),
                                                    /*alignment=*/4);
                  nibbleRegs[nb] = wordToF16(b, word, biasK);
                }
                int64_t first = storage.nibbles ? 2 * (kk % 2) : 0;
                kb.push_back(nibbleRegs[nb][first]);
                kb.push_back(nibbleRegs[nb][first + 1]);
              }
              return kb;
            };
            // kb: (key grp, k 2tig..), (key grp, k 2tig + 8..), the same of key
            // grp + 8: the B fragments of both n8 blocks, or (reordered) tr's
            // A fragment of S^T = K Q^T.
            for (int64_t kk = 0; kk < D / 16; ++kk) {
              Frag &s = sg[kk * 16 * sGroups / D];
              SmallVector<Value> kb =
                  quant
                      ? loadRawK(b, kk)
                      : ldmatrix4(
                            b, gep(b, kLane, chunkPair(b, swizzleK, kChunkXor, kk), b.getI8Type()),
                            false);
              if (tr) {
                s[0][0] = mma(b, {kb[0], kb[2], kb[1], kb[3]}, qT[kk], s[0][0], mmaType);
                continue;
              }
              for (int64_t mt = 0; mt < MT; ++mt) {
                SmallVector<Value> qf = qInRegs ? qa[kk] : loadQ(b, mt, kk);
                s[mt][0] = mma(b, qf, {kb[0], kb[1]}, s[mt][0], mmaType);
                s[mt][1] = mma(b, qf, {kb[2], kb[3]}, s[mt][1], mmaType);
              }
            }
            // The thread's keys: 4 (warp-local index nb*8 + 2*tig + j, as
            // key nb * 2 + j), tr's 2 (grp, grp + 8) and, quantized, their
            // K / V scales per group.
            const int64_t numKeys = tr ? 2 : 4;
            auto keyLocal = [&](OpBuilder &b, int64_t key) {
              return tr ? add(b, grp, ci32(b, 8 * key))
                        : add(b, mul(b, tig, ci32(b, 2)), ci32(b, (key / 2) * 8 + key % 2));
            };
            auto keyInTile = [&](OpBuilder &b, int64_t key) {
              return add(b, warpKey, keyLocal(b, key));
            };
            auto keyScales = [&](int64_t part, int64_t groups) {
              SmallVector<SmallVector<Value>> out(numKeys); // [key][group]
              Value base = smemAt(b, stageAt(b, stage, part));
              Type stored = sB == 2 ? Type(Float16Type::get(ctx)) : f32();
              for (int64_t key = 0; key < numKeys; ++key)
                for (int64_t g = 0; g < groups; ++g) {
                  Value x = load(b, stored, base,
                                 add(b, mul(b, keyInTile(b, key), ci32(b, groups)), ci32(b, g)));
                  out[key].push_back(sB == 2 ? arith::ExtFOp::create(b, l, f32(), x).getResult()
                                             : x);
                }
              return out;
            };
            // A thread's score element e: (mt, nb, i) = (e / 8, e % 8 / 4, e
            // % 4) of the 16-row step, its key nb * 2 + (i & 1) and slot
            // slotOf(mt, i); tr's e = i of S^T: key i / 2, slot i & 1.
            const int64_t numElems = tr ? 4 : MT * 8;
            auto elemKey = [&](int64_t e) { return tr ? e / 2 : (e % 8 / 4) * 2 + (e & 1); };
            auto elemSlot = [&](int64_t e) { return tr ? e & 1 : slotOf(e / 8, int(e % 4)); };
            // The scores by element, K's scales applied per key and group.
            auto rawScore = [&](int64_t g, int64_t e) {
              return tr ? sg[g][0][0][e] : sg[g][e / 8][e % 8 / 4][e % 4];
            };
            SmallVector<Value> sv(numElems);
            SmallVector<SmallVector<Value>> ks;
            if (quant)
              ks = keyScales(stKs, kGroups);
            for (int64_t e = 0; e < numElems; ++e) {
              if (!quant) {
                sv[e] = rawScore(0, e);
                continue;
              }
              Value acc = fmul(b, rawScore(0, e), ks[elemKey(e)][0]);
              for (int64_t g = 1; g < kGroups; ++g)
                acc = LLVM::FMAOp::create(b, l, rawScore(g, e), ks[elemKey(e)][g], acc);
              sv[e] = acc;
            }

            // The thread's keys: slot, logical position (-1: dropped or
            // past the split).
            Value tileSlot = add(b, s0, add(b, mul(b, t, ci32(b, BK)), warpKey));
            SmallVector<Value> keySlots;
            for (int64_t key = 0; key < numKeys; ++key)
              keySlots.push_back(add(b, tileSlot, keyLocal(b, key)));
            SmallVector<Value> keyPos = ifElseValues(b, posGiven, keySlots, [&](OpBuilder &b) {
              SmallVector<Value> stored;
              for (int64_t key = 0; key < numKeys; ++key)
                stored.push_back(load(b, i32(), posBase, keyInTile(b, key)));
              return stored;
            });
            for (int64_t key = 0; key < numKeys; ++key) {
              Value in = cmpi(b, arith::CmpIPredicate::slt, keySlots[key], s1);
              keyPos[key] = select(b, in, keyPos[key], ci32(b, -1));
            }
            SmallVector<Value> tv(numElems), tileMax(RS, negInf);
            for (int64_t e = 0; e < numElems; ++e) {
              int64_t rs = elemSlot(e);
              Value kp = keyPos[elemKey(e)];
              Value kc = arith::MaxSIOp::create(b, l, kp, ci32(b, 0));
              Value keep = cmpi(b, arith::CmpIPredicate::sge, kp, ci32(b, 0));
              if (!maskAlwaysTrue) {
                auto mv =
                    cloneRegion(b, attention.getMaskBlock(), {bIdx, rowHead[rs], rowPos[rs], kc});
                if (failed(mv)) {
                  hadError = true;
                  break;
                }
                keep = arith::AndIOp::create(b, l, keep, *mv);
              }
              auto tval =
                  log2Score(b, sv[e], scale, scaleLog2, {bIdx, rowHead[rs], rowPos[rs], kc});
              if (failed(tval)) {
                hadError = true;
                break;
              }
              tv[e] = select(b, keep, *tval, negInf);
              tileMax[rs] = fmax(b, tileMax[rs], tv[e]);
            }
            if (hadError) {
              scf::YieldOp::create(b, l, iter);
              return;
            }
            // Budget policies: the scores (log2 domain, masked -inf) of
            // the tile's rows and slots, for the mass kernel after the
            // merge (MassKernel.h), which needs the final LSE.
            if (storage.slotMass)
              for (int64_t e = 0; e < numElems; ++e) {
                Value pr = add(b, r0, rowInTile(b, elemSlot(e)));
                Value slot = add(b, tileSlot, keyLocal(b, elemKey(e)));
                Value valid = arith::AndIOp::create(b, l, cmpi(b, arith::CmpIPredicate::slt, pr, R),
                                                    cmpi(b, arith::CmpIPredicate::slt, slot, s1));
                ifThen(b, valid, [&](OpBuilder &b) {
                  Value row = add(b, mul(b, ext64(b, tableRow), ext64(b, R)), ext64(b, pr));
                  store(b, tv[e], gScores, add(b, mul(b, row, scoreStride), ext64(b, slot)));
                });
              }
            // A row's other keys: in the lanes of its quad (xor 1, 2), tr's
            // in the lanes of its column (xor 4, 8, 16).
            for (int64_t x : rowLanes)
              for (int64_t rs = 0; rs < RS; ++rs)
                tileMax[rs] = fmax(b, tileMax[rs], shflXor(b, tileMax[rs], x));
            // Online softmax; with cfg.decodeLazyRescale lazily, as in the
            // prefill kernel (AttnToNVVM.cpp): the warp keeps its rows'
            // references until some row's maximum grows by more than
            // 2^kLazyLog2 (a vote), so P stays <= 256 and most KV steps skip
            // O *= alpha (MT * Dv / 2 multiplies, a tenth of a quantized
            // step's instructions). Exact: O and l share the stale reference,
            // and O / l cancels it. Without it every step moves and rescales.
            Value grew = arith::ConstantIntOp::create(b, l, 1, 1);
            if (cfg.decodeLazyRescale) {
              Value anyGrow = arith::ConstantIntOp::create(b, l, 0, 1);
              for (int64_t rs = 0; rs < RS; ++rs) {
                Value g = arith::CmpFOp::create(b, l, arith::CmpFPredicate::OGT,
                                                fmax(b, iter[rs], tileMax[rs]),
                                                fadd(b, iter[rs], cf32(b, kLazyLog2)));
                anyGrow = arith::OrIOp::create(b, l, anyGrow, g);
              }
              grew = NVVM::VoteSyncOp::create(b, l, b.getI1Type(), ci32(b, -1), anyGrow,
                                              NVVM::VoteSyncKind::any);
            }
            // A row that has seen no key keeps m = -inf and uses 0 as its
            // reference, so 2^(-inf - ref) = 0, not NaN.
            SmallVector<Value> next(RS), negRef(RS), alpha(RS), sum(RS);
            for (int64_t rs = 0; rs < RS; ++rs) {
              next[rs] = select(b, grew, fmax(b, iter[rs], tileMax[rs]), iter[rs]);
              Value isNinf =
                  arith::CmpFOp::create(b, l, arith::CmpFPredicate::OEQ, next[rs], negInf);
              Value ref = select(b, isNinf, zero, next[rs]);
              negRef[rs] = arith::NegFOp::create(b, l, ref);
              alpha[rs] = ex2(b, fsub(b, iter[rs], ref));
              sum[rs] = fmul(b, alpha[rs], iter[RS + rs]);
            }
            SmallVector<Value> w(numElems);
            for (int64_t e = 0; e < numElems; ++e) {
              int64_t rs = elemSlot(e);
              w[e] = ex2(b, fadd(b, tv[e], negRef[rs]));
              sum[rs] = fadd(b, sum[rs], w[e]);
            }
            next.append(sum.begin(), sum.end());
            // O = alpha O + P V: P's C fragments are the A fragment of the
            // warp's k16 chunk; ldmatrix.trans of V gives two n8 blocks.
            // Quantized: P times each key's V scale, per group of columns.
            const int64_t pGroups = quant ? vGroups : 1;
            SmallVector<SmallVector<SmallVector<Value>>> pa(pGroups,
                                                            SmallVector<SmallVector<Value>>(MT));
            SmallVector<SmallVector<Value>> vs;
            if (quant)
              vs = keyScales(stVs, vGroups);
            // tr: P^T's B fragments (keys 2tig.., row grp) are the
            // transposes of its C fragments (key grp or grp + 8, rows 2tig,
            // 2tig + 1) packed: one movmatrix per 8 keys.
            auto movTrans = [&](Value x) {
              return pureAsm(b, i32(), ValueRange{x},
                             "movmatrix.sync.aligned.m8n8.trans.b16 $0, $1;", "=r,r");
            };
            for (int64_t g = 0; g < pGroups && tr; ++g) {
              auto W = [&](int64_t e) { return quant ? fmul(b, w[e], vs[elemKey(e)][g]) : w[e]; };
              pa[g][0] = {movTrans(pack(b, W(0), W(1), mmaType)),
                          movTrans(pack(b, W(2), W(3), mmaType))};
            }
            for (int64_t g = 0; g < pGroups && !tr; ++g)
              for (int64_t mt = 0; mt < MT; ++mt) {
                auto W = [&](int64_t nb, int i) {
                  Value x = w[mt * 8 + nb * 4 + i];
                  return quant ? fmul(b, x, vs[nb * 2 + (i & 1)][g]) : x;
                };
                pa[g][mt] = {pack(b, W(0, 0), W(0, 1), mmaType), pack(b, W(0, 2), W(0, 3), mmaType),
                             pack(b, W(1, 0), W(1, 1), mmaType),
                             pack(b, W(1, 2), W(1, 3), mmaType)};
              }
            SmallVector<Value> o(iter.begin() + 2 * RS, iter.end());
            // O *= alpha only when some row's reference moved.
            o = ifElseValues(b, grew, o, [&](OpBuilder &tb) {
              SmallVector<Value> scaled(o.size());
              for (int64_t t = 0; t < oTiles; ++t)
                for (int i = 0; i < 4; ++i) {
                  // tr: O^T's columns are the rows 2tig, 2tig + 1.
                  int64_t rs = tr ? i & 1 : slotOf(t / nbO, i);
                  scaled[4 * t + i] = fmul(tb, o[4 * t + i], alpha[rs]);
                }
              return scaled;
            });
            // O's n-block nb of row tile mt += P (A fragment) . V (B: b0, b1).
            auto accumulatePV = [&](int64_t mt, int64_t nb, ArrayRef<Value> a, Value b0, Value b1) {
              int64_t base = oIdx(mt, nb, 0) - 2 * RS;
              SmallVector<Value, 4> acc(o.begin() + base, o.begin() + base + 4);
              acc = mma(b, a, {b0, b1}, acc, mmaType);
              std::copy(acc.begin(), acc.end(), o.begin() + base);
            };
            // tr: O^T's m-tile t += V^T (A: the B registers of P.V's n-blocks
            // 2t, 2t + 1, reordered; see kb) . P^T (B) of group g.
            auto accumulateTr = [&](int64_t t, ArrayRef<Value> a, int64_t g) {
              SmallVector<Value, 4> acc(o.begin() + 4 * t, o.begin() + 4 * t + 4);
              acc = mma(b, a, pa[g][0], acc, mmaType);
              std::copy(acc.begin(), acc.end(), o.begin() + 4 * t);
            };
            if (directV) {
              // Unit m: 4 columns of keys 2tig, 2tig+1 (k pair 0) and
              // 2tig+8, 2tig+9 (pair 1) of the warp's 16, n-blocks 4m + j.
              Value rawV = smemAt(b, stageAt(b, stage, stV));
              Type unitType = storage.nibbles ? Type(b.getI16Type()) : i32();
              auto loadUnit = [&](OpBuilder &b, int64_t key, int64_t m) {
                Value r = add(b, warpKey, add(b, mul(b, tig, ci32(b, 2)), ci32(b, key)));
                // Column 32m + 4 * grp: a byte per column (int8, fp8) or two.
                const int64_t unitBytes = 4 / perByte;
                Value at = add(b, mul(b, r, ci32(b, vRaw)),
                               add(b, ci32(b, 32 / perByte * m), mul(b, grp, ci32(b, unitBytes))));
                if (swizzleRawV)
                  at = swizzle(b, at, r, vRaw);
                Value v = LLVM::LoadOp::create(b, l, unitType, gep(b, rawV, at, b.getI8Type()),
                                               /*alignment=*/storage.nibbles ? 2 : 4);
                return storage.nibbles ? arith::ExtUIOp::create(b, l, i32(), v).getResult() : v;
              };
              for (int64_t m = 0; m < Dv / 32; ++m) {
                SmallVector<Value> lo = keyPairToF16(b, loadUnit(b, 0, m), loadUnit(b, 1, m));
                SmallVector<Value> hi = keyPairToF16(b, loadUnit(b, 8, m), loadUnit(b, 9, m));
                // tr: m-tile 2m + h holds n-blocks 4m + 2h (its rows grp) and
                // 4m + 2h + 1 (rows grp + 8).
                for (int64_t h = 0; h < 2 && tr; ++h)
                  accumulateTr(2 * m + h, {lo[2 * h], lo[2 * h + 1], hi[2 * h], hi[2 * h + 1]},
                               32 * m * pGroups / Dv);
                for (int64_t j = 0; j < 4 && !tr; ++j) {
                  for (int64_t mt = 0; mt < MT; ++mt)
                    accumulatePV(mt, 4 * m + j, pa[32 * m * pGroups / Dv][mt], lo[j], hi[j]);
                }
              }
            } else {
              Value vLane = smemAt(b, add(b, vOff, laneV));
              for (int64_t np = 0; np < Dv / 16; ++np) {
                SmallVector<Value> vb = ldmatrix4(
                    b, gep(b, vLane, chunkPair(b, swizzleV, vChunkXor, np), b.getI8Type()), true);
                if (tr) {
                  accumulateTr(np, {vb[0], vb[2], vb[1], vb[3]}, np * 16 * pGroups / Dv);
                  continue;
                }
                for (int64_t mt = 0; mt < MT; ++mt)
                  for (int64_t half = 0; half < 2; ++half)
                    accumulatePV(mt, 2 * np + half, pa[np * 16 * pGroups / Dv][mt], vb[2 * half],
                                 vb[2 * half + 1]);
              }
            }
            next.append(o.begin(), o.end());
            // The next iteration's prefetch overwrites this stage.
            gpu::BarrierOp::create(b, l);
            scf::YieldOp::create(b, l, next);
          });
      NVVM::CpAsyncWaitGroupOp::create(b, l, uint32_t(0));
      // tma: every thread is past its last wait (the loop's final barrier)
      // and the combine reuses the stages' bytes: the mbarriers end here.
      if (tma)
        ifThen(b, isLeader, [&](OpBuilder &b) {
          for (int64_t s = 0; s < stages; ++s)
            sideAsm(b, {barrierAt(b, ci32(b, s))}, "mbarrier.inval.shared::cta.b64 [$0];", "l");
        });
      gpu::BarrierOp::create(b, l);
      return loop;
    };

    Value r0 = mul(b, rowTile, ci32(b, BQ));
    scf::ForOp loop = rowTileBody(b, r0);
    Value negInf = cf32(b, -std::numeric_limits<float>::infinity()), zero = cf32(b, 0.0);
    if (hadError)
      return failure();

    // Combine the warps: (m, l) per (warp, row) and O per (warp, row,
    // column) in the stage buffers, then each (row, column) of the tile
    // rescales the warps' parts to the common maximum.
    ValueRange res = loop.getResults();
    const int64_t mOff = qBytes, lOff = mOff + warps * BQ * 4, oOff = lOff + warps * BQ * 4;
    Value mBase = smemAt(b, ci32(b, mOff)), lBase = smemAt(b, ci32(b, lOff)),
          oBase = smemAt(b, ci32(b, oOff));
    for (int64_t rs = 0; rs < RS; ++rs) {
      Value lsum = res[RS + rs];
      for (int64_t x : rowLanes)
        lsum = fadd(b, lsum, shflXor(b, lsum, x));
      Value at = add(b, mul(b, warp, ci32(b, BQ)), rowInTile(b, rs));
      ifThen(b, cmpi(b, arith::CmpIPredicate::eq, tr ? grp : tig, ci32(b, 0)), [&](OpBuilder &b) {
        store(b, res[rs], mBase, at);
        store(b, lsum, lBase, at);
      });
    }
    // tr: O^T's m-tile t, register i is row 2tig + (i & 1) and head-dim
    // row grp + 8 (i / 2) of the tile: with directV n-block 4(t / 2) + 2(t %
    // 2) + i / 2's column grp, V's column 32(t / 2) + 4grp + 2(t % 2) + i / 2;
    // else column 16t + grp + 8(i / 2).
    for (int64_t t = 0; t < oTiles && tr; ++t)
      for (int i = 0; i < 4; ++i) {
        Value row = add(b, mul(b, tig, ci32(b, 2)), ci32(b, i & 1));
        Value col =
            directV ? add(b, mul(b, grp, ci32(b, 4)), ci32(b, 32 * (t / 2) + 2 * (t % 2) + i / 2))
                    : add(b, grp, ci32(b, 16 * t + 8 * (i / 2)));
        Value at = add(b, mul(b, add(b, mul(b, warp, ci32(b, BQ)), row), ci32(b, Dv)), col);
        store(b, res[2 * RS + 4 * t + i], oBase, at);
      }
    for (int64_t mt = 0; mt < MT && !tr; ++mt)
      for (int64_t n = 0; n < nbO; ++n)
        for (int i = 0; i < 4; ++i) {
          Value row = add(b, grp, ci32(b, 16 * mt + 8 * (i / 2)));
          // int4: accumulator column 2*tig + (i & 1) of the 8 holds V's
          // column (i & 1) * 4 + tig (see unpackNibbles).
          // directV: n-block n's column c = 2*tig + (i & 1) holds V's
          // column 32 * (n / 4) + 4c + n % 4 (see directV).
          Value col =
              directV ? add(b, mul(b, add(b, mul(b, tig, ci32(b, 2)), ci32(b, i & 1)), ci32(b, 4)),
                            ci32(b, 32 * (n / 4) + n % 4))
              : storage.nibbles ? add(b, tig, ci32(b, n * 8 + (i & 1) * 4))
                                : add(b, mul(b, tig, ci32(b, 2)), ci32(b, n * 8 + (i & 1)));
          Value at = add(b, mul(b, add(b, mul(b, warp, ci32(b, BQ)), row), ci32(b, Dv)), col);
          store(b, res[oIdx(mt, n, i)], oBase, at);
        }
    gpu::BarrierOp::create(b, l);

    Value oRowsB = mul(b, B, mul(b, Hq, Nq)); // partial rows per split
    forEachIndex(b, BQ * Dv, [&](OpBuilder &b, Value e) {
      Value row = divu(b, e, ci32(b, Dv)), col = remu(b, e, ci32(b, Dv));
      Value pr = add(b, r0, row);
      ifThen(b, cmpi(b, arith::CmpIPredicate::slt, pr, R), [&](OpBuilder &b) {
        SmallVector<Value> mw, lw, ow;
        Value M = negInf;
        for (int64_t w = 0; w < warps; ++w) {
          Value at = add(b, ci32(b, w * BQ), row);
          mw.push_back(load(b, f32(), mBase, at));
          lw.push_back(load(b, f32(), lBase, at));
          ow.push_back(load(b, f32(), oBase, add(b, mul(b, at, ci32(b, Dv)), col)));
          M = fmax(b, M, mw.back());
        }
        Value isNinf = arith::CmpFOp::create(b, l, arith::CmpFPredicate::OEQ, M, negInf);
        Value ref = select(b, isNinf, zero, M);
        Value lsum = zero, acc = zero;
        for (int64_t w = 0; w < warps; ++w) {
          Value f = ex2(b, fsub(b, mw[w], ref));
          lsum = fadd(b, lsum, fmul(b, lw[w], f));
          acc = fadd(b, acc, fmul(b, ow[w], f));
        }
        Value hasKeys = arith::CmpFOp::create(b, l, arith::CmpFPredicate::OGT, lsum, zero);
        Value out = select(b, hasKeys, arith::DivFOp::create(b, l, acc, lsum), zero);
        Value lse = select(b, hasKeys, fmul(b, fadd(b, ref, lg2(b, lsum)), cf32(b, kLn2)), negInf);
        auto [h, i] = rowCoords(b, pr);
        Value first = cmpi(b, arith::CmpIPredicate::eq, col, ci32(b, 0));
        Value single = cmpi(b, arith::CmpIPredicate::eq, splits, ci32(b, 1));
        auto ifSingle = scf::IfOp::create(b, l, single, /*withElseRegion=*/true);
        {
          // One split: the final O and LSE.
          OpBuilder tb = ifSingle.getThenBodyBuilder();
          Value off =
              add(tb, mul(tb, b64, stride(3)),
                  add(tb, mul(tb, ext64(tb, h), stride(4)), mul(tb, ext64(tb, i), stride(5))));
          store(tb, arith::TruncFOp::create(tb, l, elemType, out), gO,
                add(tb, off, ext64(tb, col)));
          Value want = cmpi(tb, arith::CmpIPredicate::ne, writeLse, ci32(tb, 0));
          ifThen(tb, arith::AndIOp::create(tb, l, first, want), [&](OpBuilder &b) {
            Value lo =
                add(b, mul(b, b64, stride(6)), add(b, mul(b, ext64(b, h), stride(7)), ext64(b, i)));
            store(b, lse, gL, lo);
          });
        }
        {
          // Several: this split's normalized part and LSE for the merge.
          OpBuilder eb = ifSingle.getElseBodyBuilder();
          Value prow = add(eb, mul(eb, add(eb, mul(eb, bIdx, Hq), h), Nq), i);
          Value at = ext64(eb, add(eb, mul(eb, split, oRowsB), prow));
          store(eb, out, gOp, add(eb, mul(eb, at, ci64(eb, Dv)), ext64(eb, col)));
          ifThen(eb, first, [&](OpBuilder &b) { store(b, lse, gLp, at); });
        }
      });
    });
    gpu::ReturnOp::create(b, l);
    return success();
  }
};

} // namespace

FailureOr<mlir::attn::nvvm::DecodeLaunch>
mlir::attn::nvvm::lowerDecodeKernel(attn::KernelOp kernel, const attn::NvvmKernelConfig &cfg,
                                    Type elemType, OpBuilder &moduleBuilder) {
  auto storage =
      attn::analyzeCacheStorage(kernel, "attn-to-nvvm", elemType, cfg.headDim, cfg.headDimV);
  if (failed(storage))
    return failure();
  // The transposed step is a preference (on by default): a kernel that
  // cannot take it gets the 16-row step, whose tile the runtime reads from
  // the kernel's metadata.
  attn::NvvmKernelConfig kernelCfg = cfg;
  if (cfg.decodeTransposed && !takesTransposedDecode(*storage, cfg)) {
    kernelCfg.decodeTransposed = false;
    kernelCfg.blockQ = 16;
  }
  DecodeLowering lowering(kernel, kernelCfg, elemType, std::move(*storage));
  if (failed(lowering.run(moduleBuilder)))
    return failure();
  return DecodeLaunch{lowering.numThreads, lowering.sharedBytes, kernelCfg.blockQ};
}
