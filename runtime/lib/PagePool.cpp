//===- PagePool.cpp - The free pages of a KV cache's pool -----------------===//

#include "attnc/Runtime/PagePool.h"

#include <algorithm>
#include <cassert>

using namespace attnc::rt;

PagePool::PagePool(int64_t numPages, int64_t run) : run(std::max<int64_t>(run, 1)) {
  const int64_t runs = (numPages + this->run - 1) / this->run;
  freePages.at.assign(size_t(numPages), -1);
  wholeRuns.at.assign(size_t(runs), -1);
  freeInRun.assign(size_t(runs), 0);
  // Lowest first: the stacks' tops are page 0 and run 0.
  for (int64_t p = numPages - 1; p >= 0; --p)
    push(false, int32_t(p));
  for (int64_t r = runs - 1; r >= 0; --r) {
    freeInRun[size_t(r)] = int32_t(runSize(r));
    push(true, int32_t(r));
  }
  log.clear();
}

int64_t PagePool::runSize(int64_t r) const { return std::min(run, numPages() - r * run); }

void PagePool::push(bool runs, int32_t value) {
  IndexedStack &s = stack(runs);
  s.at[size_t(value)] = int32_t(s.items.size());
  s.items.push_back(value);
  log.push_back({runs, Change::Push, value, -1});
}

void PagePool::remove(bool runs, int32_t value) {
  IndexedStack &s = stack(runs);
  const int32_t pos = s.at[size_t(value)];
  assert(pos >= 0 && "removing a value the stack does not hold");
  const int32_t last = s.items.back();
  s.items[size_t(pos)] = last;
  s.at[size_t(last)] = pos;
  s.items.pop_back();
  s.at[size_t(value)] = -1;
  log.push_back({runs, Change::Remove, value, pos});
}

int32_t PagePool::take(int32_t after) {
  assert(freeCount() > 0 && "take from an empty pool");
  int32_t page;
  if (after >= 0 && after + 1 < numPages() && isFree(after + 1))
    page = after + 1;
  else if (!wholeRuns.items.empty())
    page = int32_t(wholeRuns.items.back() * run);
  else
    page = freePages.items.back();
  remove(false, page);
  const int32_t r = int32_t(page / run);
  if (freeInRun[size_t(r)]-- == runSize(r))
    remove(true, r);
  return page;
}

void PagePool::give(int32_t page) {
  assert(!isFree(page) && "giving back a free page");
  push(false, page);
  const int32_t r = int32_t(page / run);
  if (++freeInRun[size_t(r)] == runSize(r))
    push(true, r);
}

void PagePool::rollback() {
  while (!log.empty()) {
    const LogEntry e = log.back();
    log.pop_back();
    IndexedStack &s = stack(e.runs);
    if (e.change == Change::Push) { // the value is on top
      s.items.pop_back();
      s.at[size_t(e.value)] = -1;
    } else { // back to its position; the element that moved there on top
      if (e.pos == int32_t(s.items.size())) {
        s.items.push_back(e.value);
      } else {
        const int32_t moved = s.items[size_t(e.pos)];
        s.items[size_t(e.pos)] = e.value;
        s.at[size_t(moved)] = int32_t(s.items.size());
        s.items.push_back(moved);
      }
      s.at[size_t(e.value)] = e.pos;
    }
    // The free counts of runs follow the free pages.
    if (!e.runs)
      freeInRun[size_t(e.value / run)] += e.change == Change::Push ? -1 : 1;
  }
}
