//===- TileClassesLibTest.cpp - Tile classes of lib/ vs the reference ----===//
//
// Every kernel of every lib/*.attn file, with its default const values and
// with small ones that cut the test's lengths: the mask at every (b, h, q, k)
// comes from the float64 reference (Q = K = 0, V = identity over the keys,
// so O[row][key] > 0 exactly where the mask admits the key), and every tile
// the analysis calls FULL or EMPTY must be so. Tensor parameters take the
// reference's default bindings (sorted segment ids, uniform floats).
//
//===----------------------------------------------------------------------===//

#include "LibKernelTests.h"
#include "LoadedProgram.h"

#include "attnc/Analysis/TileClasses.h"
#include "attnc/DSL/MLIRGen.h"
#include "attnc/DSL/Reference.h"
#include "attnc/Dialect/Attn/IR/AttnOps.h"
#include "attnc/Pipeline/Pipeline.h"

#include "mlir/IR/MLIRContext.h"

#include <gtest/gtest.h>

#include <algorithm>
#include <cstdio>
#include <map>
#include <string>
#include <vector>

using namespace mlir::attn;
using namespace attnc;

namespace {

/// Small values of the lib's const parameters, by name.
const std::map<std::string, std::string> kSmallConsts = {
    {"W", "12"},  {"R", "6"},     {"BLOCK", "16"}, {"SINK", "3"}, {"DIL", "2"}, {"K", "5"},
    {"L", "100"}, {"ROWS", "10"}, {"COLS", "10"},  {"KR", "3"},   {"KC", "5"},  {"DR", "2"},
    {"DC", "1"},  {"MAXD", "4"},  {"HEADS", "4"},  {"BQ", "16"},  {"BK", "8"}};

struct Counts {
  int64_t tiles = 0, trulyEmpty = 0, foundEmpty = 0, trulyFull = 0, foundFull = 0;
  /// With TileClassifier::classify's bisection, 4 levels.
  int64_t refinedEmpty = 0, refinedFull = 0;
};

void checkKernel(mlir::MLIRContext &ctx, const dsl::Program &prog, const dsl::KernelDecl &k,
                 bool small, int64_t qOffset, Counts &counts) {
  SCOPED_TRACE(k.name + (small ? " small consts" : " default consts") + " q_offset " +
               std::to_string(qOffset));
  std::vector<std::string> consts;
  dsl::MLIRGenOptions options;
  options.kernel = k.name;
  if (small)
    for (const auto &p : k.constParams)
      if (auto it = kSmallConsts.find(p.name); it != kSmallConsts.end()) {
        consts.push_back(p.name + "=" + it->second);
        options.constValues[p.name] = it->second;
      }
  auto module = dsl::mlirGen(ctx, prog, options);
  ASSERT_TRUE(module);
  ASSERT_TRUE(mlir::succeeded(pipeline::runInlineAndSimplify(*module)));
  AttentionOp att;
  module->walk([&](AttentionOp op) { att = op; });
  ASSERT_TRUE(att);
  TileClassifier classifier(att);

  // The mask through the reference.
  reference::Shape shape{2, 2, 2, 40, 72, 1, 72};
  auto bindings = reference::parseBindings(k, shape, consts, /*seed=*/7, qOffset);
  ASSERT_TRUE(bool(bindings)) << llvm::toString(bindings.takeError());
  bindings->qOffset = qOffset;
  std::vector<double> Q(shape.B * shape.Hq * shape.Nq * shape.D, 0.0);
  std::vector<double> K(shape.B * shape.Hkv * shape.Nk * shape.D, 0.0);
  std::vector<double> V(shape.B * shape.Hkv * shape.Nk * shape.Dv, 0.0);
  for (int64_t bh = 0; bh < shape.B * shape.Hkv; ++bh)
    for (int64_t j = 0; j < shape.Nk; ++j)
      V[(bh * shape.Nk + j) * shape.Dv + j] = 1.0;
  auto out = reference::evaluate(k, shape, Q.data(), K.data(), V.data(), *bindings);
  ASSERT_TRUE(bool(out)) << llvm::toString(out.takeError());
  auto admitted = [&](int64_t b, int64_t h, int64_t i, int64_t j) {
    return out->O[((b * shape.Hq + h) * shape.Nq + i) * shape.Dv + j] > 0;
  };

  const int64_t tiles[][2] = {{8, 8}, {16, 4}, {5, 7}, {40, 72}};
  for (auto [tq, tk] : tiles)
    for (int64_t i0 = 0; i0 < shape.Nq; i0 += tq)
      for (int64_t j0 = 0; j0 < shape.Nk; j0 += tk) {
        TileBox box;
        box.q0 = qOffset + i0;
        box.q1 = qOffset + std::min(shape.Nq, i0 + tq);
        box.k0 = j0;
        box.k1 = std::min(shape.Nk, j0 + tk);
        box.b1 = shape.B;
        box.h1 = shape.Hq;
        TileClass cls = classifier.classify(box);
        TileClass refined = classifier.classify(box, 4);
        bool anyTrue = false, anyFalse = false;
        for (int64_t b = 0; b < shape.B; ++b)
          for (int64_t h = 0; h < shape.Hq; ++h)
            for (int64_t i = i0; i < box.q1 - qOffset; ++i)
              for (int64_t j = j0; j < box.k1; ++j)
                (admitted(b, h, i, j) ? anyTrue : anyFalse) = true;
        ++counts.tiles;
        counts.trulyEmpty += !anyTrue;
        counts.trulyFull += !anyFalse;
        counts.foundEmpty += !anyTrue && cls == TileClass::Empty;
        counts.foundFull += !anyFalse && cls == TileClass::Full;
        counts.refinedEmpty += !anyTrue && refined == TileClass::Empty;
        counts.refinedFull += !anyFalse && refined == TileClass::Full;
        if (refined == TileClass::Full) {
          ASSERT_FALSE(anyFalse) << "refined FULL tile q " << box.q0 << " k " << box.k0;
        }
        if (refined == TileClass::Empty) {
          ASSERT_FALSE(anyTrue) << "refined EMPTY tile q " << box.q0 << " k " << box.k0;
        }
        if (cls == TileClass::Full) {
          ASSERT_FALSE(anyFalse) << "FULL tile q " << box.q0 << " k " << box.k0 << " size " << tq
                                 << " x " << tk;
        }
        if (cls == TileClass::Empty) {
          ASSERT_FALSE(anyTrue) << "EMPTY tile q " << box.q0 << " k " << box.k0 << " size " << tq
                                << " x " << tk;
        }
      }
}

TEST(TileClassesLib, EveryLibKernelAgreesWithTheReference) {
  std::vector<std::string> files = numerics::libFiles();
  ASSERT_FALSE(files.empty()) << "no .attn files in " << dsl::stdlibDir().str();
  Counts total;
  int kernels = 0;
  for (const std::string &file : files) {
    SCOPED_TRACE(file);
    test::LoadedProgram loaded(file, std::nullopt, dsl::FrontendOptions{});
    ASSERT_TRUE(loaded.program) << loaded.diagnostics;
    mlir::MLIRContext &ctx = loaded.ctx;
    const dsl::Program *prog = loaded.program.get();
    for (auto &k : prog->main->kernels) {
      ++kernels;
      Counts c;
      for (bool small : {false, true})
        for (int64_t qOffset : {0, 30})
          ASSERT_NO_FATAL_FAILURE(checkKernel(ctx, *prog, *k, small, qOffset, c));
      std::printf("[precision] %-28s tiles %4lld: empty %3lld/%3lld (refined %3lld), full "
                  "%3lld/%3lld (refined %3lld)\n",
                  k->name.c_str(), (long long)c.tiles, (long long)c.foundEmpty,
                  (long long)c.trulyEmpty, (long long)c.refinedEmpty, (long long)c.foundFull,
                  (long long)c.trulyFull, (long long)c.refinedFull);
      total.tiles += c.tiles;
      total.trulyEmpty += c.trulyEmpty;
      total.foundEmpty += c.foundEmpty;
      total.trulyFull += c.trulyFull;
      total.foundFull += c.foundFull;
      total.refinedEmpty += c.refinedEmpty;
      total.refinedFull += c.refinedFull;
    }
  }
  std::printf("[precision] lib: %d kernels, %lld tiles; truly empty %lld, found %lld (refined "
              "%lld); truly full %lld, found %lld (refined %lld)\n",
              kernels, (long long)total.tiles, (long long)total.trulyEmpty,
              (long long)total.foundEmpty, (long long)total.refinedEmpty,
              (long long)total.trulyFull, (long long)total.foundFull, (long long)total.refinedFull);
  EXPECT_EQ(kernels, 36);
  // The affine masks (causal, windows, blocks, natten) empty many tiles.
  EXPECT_GT(total.foundEmpty, 0);
}

} // namespace
