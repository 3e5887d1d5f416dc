//===- PagePoolTest.cpp - The KV cache's page allocator -------------------===//
//
// PagePool hands a head the page after its last, else a wholly free run,
// else any free page; every change rolls back exactly.
//
//===----------------------------------------------------------------------===//

#include "attnc/Runtime/PagePool.h"

#include <gtest/gtest.h>

#include <random>

using attnc::rt::PagePool;

namespace {

/// Heads taking one page each in turn (decode steps of many sequences):
/// each head's pages.
std::vector<std::vector<int32_t>> roundRobin(PagePool &pool, int heads, int rounds) {
  std::vector<std::vector<int32_t>> pages(static_cast<size_t>(heads));
  for (int r = 0; r < rounds; ++r)
    for (auto &p : pages)
      p.push_back(pool.take(p.empty() ? -1 : p.back()));
  return pages;
}

/// Pages of `pool` in the order takes without a last page hand them out
/// (the pool is emptied).
std::vector<int32_t> drain(PagePool pool) {
  std::vector<int32_t> order;
  while (pool.freeCount() > 0)
    order.push_back(pool.take(-1));
  return order;
}

} // namespace

TEST(PagePool, HeadsSteppingTogetherGetRunsOfTheirOwn) {
  // 40 pages in runs of 16 (the last run 8): three heads fill a run each;
  // the fourth finds no whole run and takes what is free, and the others
  // then go on past their runs' ends.
  PagePool pool(40, 16);
  auto pages = roundRobin(pool, 3, 8);
  for (int h = 0; h < 3; ++h)
    for (int i = 0; i < 8; ++i)
      EXPECT_EQ(pages[size_t(h)][size_t(i)], 16 * h + i) << "head " << h << " page " << i;
  EXPECT_EQ(pool.freeCount(), 40 - 24);
  // No whole run left: a fourth head takes some free page, not one of the
  // three runs' first 8.
  const int32_t fourth = pool.take(-1);
  EXPECT_TRUE((fourth >= 8 && fourth < 16) || (fourth >= 24 && fourth < 32)) << fourth;
  // Every page once, none twice.
  std::vector<int32_t> rest = drain(pool);
  std::vector<bool> seen(40, false);
  for (auto &p : pages)
    for (int32_t x : p)
      seen[size_t(x)] = true;
  seen[size_t(fourth)] = true;
  for (int32_t x : rest) {
    EXPECT_FALSE(seen[size_t(x)]) << "page " << x << " handed out twice";
    seen[size_t(x)] = true;
  }
  for (bool b : seen)
    EXPECT_TRUE(b);
}

TEST(PagePool, RunsOfOnePageInterleaveHeads) {
  // run 1: no runs kept, the lowest free page first: heads stepping
  // together interleave (what a plain free list does).
  PagePool pool(12, 1);
  auto pages = roundRobin(pool, 3, 4);
  EXPECT_EQ(pages[0], (std::vector<int32_t>{0, 3, 6, 9}));
  EXPECT_EQ(pages[1], (std::vector<int32_t>{1, 4, 7, 10}));
  EXPECT_EQ(pool.freeCount(), 0);
}

TEST(PagePool, FreedRunsBecomeWholeAgain) {
  PagePool pool(32, 8);
  auto pages = roundRobin(pool, 4, 8); // every run taken
  EXPECT_EQ(pool.freeCount(), 0);
  for (int32_t p : pages[2]) // pages 16..23: run 2 whole again
    pool.give(p);
  pool.give(pages[0][3]);
  EXPECT_EQ(pool.take(-1), 16) << "a new head starts the whole run";
  EXPECT_EQ(pool.take(16), 17);
  EXPECT_EQ(pool.take(2), 3) << "the page after the head's last, freed";
}

TEST(PagePool, RollbackRestoresExactly) {
  std::mt19937 rng(3);
  PagePool pool(100, 16);
  std::vector<int32_t> used;
  for (int round = 0; round < 200; ++round) {
    const PagePool before = pool;
    const std::vector<int32_t> usedBefore = used;
    pool.mark();
    // Some takes (after random used pages) and gives.
    for (int i = 0; i < 10; ++i) {
      if (!used.empty() && rng() % 3 == 0) {
        size_t at = rng() % used.size();
        pool.give(used[at]);
        used.erase(used.begin() + long(at));
      } else if (pool.freeCount() > 0) {
        int32_t after = used.empty() || rng() % 4 == 0 ? -1 : used[rng() % used.size()];
        used.push_back(pool.take(after));
      }
    }
    if (rng() % 2) { // undo: the same free pages in the same order
      pool.rollback();
      used = usedBefore;
      ASSERT_EQ(drain(pool), drain(before)) << "round " << round;
      for (int32_t p = 0; p < 100; ++p)
        ASSERT_EQ(pool.isFree(p), before.isFree(p));
    }
    ASSERT_EQ(pool.freeCount() + int64_t(used.size()), 100);
  }
}
