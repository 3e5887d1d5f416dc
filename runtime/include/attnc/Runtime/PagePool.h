//===- PagePool.h - The free pages of a KV cache's pool ---------*- C++ -*-===//
//
// Which pool page a KV head gets when it needs one. Decode kernels read a
// head's pages in order. With a plain free list, sequences that grow
// together interleave their heads' pages, and sequences that come and go
// scatter them; on the CPU runs of 16 decode int8 and int4 pages 11-13%
// faster than interleaved ones, bf16 3-7% (the prefetchers restart at
// every page), and on the H100 single 4 KB pages in random order take 1.2%
// longer than runs of 16 or more (bench/NOTES.md, session 14; interleaved
// in lockstep they cost the GPU nothing). So the pool is cut into aligned
// runs of `run` pages, and a head that needs a page takes, in this order:
//   1. the page after its last one, if free (its run goes on);
//   2. the first page of a wholly free run (a new run of its own, whose
//      other pages then stay free for it while other runs are whole);
//   3. any free page (the pool is short of whole runs).
// Exhaustion is unchanged: a take fails only when no page is free.
//
// Every change can be undone exactly (rollback), so that a failed append
// leaves the free pages as they were, in the same order: the next append
// then takes the same pages.
//
//===----------------------------------------------------------------------===//

#ifndef ATTNC_RUNTIME_PAGEPOOL_H
#define ATTNC_RUNTIME_PAGEPOOL_H

#include <cstddef>
#include <cstdint>
#include <vector>

namespace attnc::rt {

class PagePool {
public:
  /// `numPages` free pages in aligned runs of `run` (the last run may be
  /// shorter); run 1 gives no runs (rule 2 takes the lowest free page).
  PagePool(int64_t numPages, int64_t run);
  PagePool() : PagePool(0, 1) {}

  int64_t numPages() const { return int64_t(freePages.at.size()); }
  int64_t freeCount() const { return int64_t(freePages.items.size()); }
  bool isFree(int32_t page) const { return freePages.at[size_t(page)] >= 0; }

  /// A free page for a head whose last page is `after` (-1: none), taken
  /// out of the pool. The pool must not be empty.
  int32_t take(int32_t after);
  /// Gives back a page in use.
  void give(int32_t page);

  /// Changes since the last mark() can be undone by rollback(), in reverse
  /// order, restoring the pool exactly. mark() forgets older changes.
  void mark() { log.clear(); }
  void rollback();

private:
  /// A stack with O(1) removal of any element (the last one moves into
  /// its place), whose every change rollback() can revert.
  struct IndexedStack {
    std::vector<int32_t> items;
    std::vector<int32_t> at; // position of each value in items, -1: absent
  };
  enum class Change : uint8_t { Push, Remove };
  struct LogEntry {
    bool runs;     // which stack: the whole runs, or the free pages
    Change change; // push(value), or remove(value) from position `pos`
    int32_t value, pos;
  };
  void push(bool runs, int32_t value);
  void remove(bool runs, int32_t value);
  IndexedStack &stack(bool runs) { return runs ? wholeRuns : freePages; }
  int64_t runSize(int64_t r) const;

  int64_t run;
  IndexedStack freePages;         // the free pages, the next taken last
  IndexedStack wholeRuns;         // runs all of whose pages are free
  std::vector<int32_t> freeInRun; // free pages per run
  std::vector<LogEntry> log;
};

} // namespace attnc::rt

#endif // ATTNC_RUNTIME_PAGEPOOL_H
