//===- jit_latency.cpp - JIT latency per lib/ kernel ----------------------===//
//
//   jit_latency [HEAD_DIM]
//
// For every kernel of every lib/*.attn file: cold compile (empty cache),
// memory hit (same Compiler), disk hit (a new Compiler on the same cache
// directory). Uses a private temporary cache directory.
//
//===----------------------------------------------------------------------===//

#include "attnc/JIT.h"

#include <cstdio>
#include <cstdlib>
#include <dirent.h>
#include <set>
#include <string>

int main(int argc, char **argv) {
  int64_t headDim = argc > 1 ? std::atoll(argv[1]) : 128;
  char tmpl[] = "/tmp/attnc-latency-XXXXXX";
  std::string dir = mkdtemp(tmpl);
  attnc::CompilerOptions opts;
  opts.cacheDir = dir;
  std::set<std::string> files;
  if (DIR *d = opendir(ATTNC_LIB_DIR)) {
    while (dirent *e = readdir(d)) {
      std::string n = e->d_name;
      if (n.size() > 5 && n.substr(n.size() - 5) == ".attn")
        files.insert(n);
    }
    closedir(d);
  }
  std::printf("%-24s %-36s %10s %10s %10s\n", "file", "kernel", "cold ms", "memory ms", "disk ms");
  std::set<std::string> seen;
  int failures = 0;
  for (auto &f : files) {
    auto c = attnc::Compiler::create(opts);
    if (!c->loadSource(std::string(ATTNC_LIB_DIR) + "/" + f))
      continue;
    for (auto &k : c->kernelNames()) {
      if (!seen.insert(k).second)
        continue; // imported from another file
      attnc::KernelSpec spec;
      spec.headDim = headDim;
      auto cold = c->getKernel(k, spec);
      if (!cold && cold.message().find("not declared for dtype") != std::string::npos) {
        spec.dtype = "bf16";
        cold = c->getKernel(k, spec);
      }
      if (!cold) {
        std::printf("%-24s %-36s   (skipped: %.60s)\n", f.c_str(), k.c_str(),
                    cold.message().c_str());
        continue;
      }
      double coldMs = c->stats().lastMs;
      (void)c->getKernel(k, spec);
      double memMs = c->stats().lastMs;
      auto c2 = attnc::Compiler::create(opts);
      (void)c2->loadSource(std::string(ATTNC_LIB_DIR) + "/" + f);
      auto disk = c2->getKernel(k, spec);
      double diskMs = c2->stats().lastMs;
      failures += !disk || c2->stats().lastSource != "disk";
      std::printf("%-24s %-36s %10.1f %10.3f %10.2f\n", f.c_str(), k.c_str(), coldMs, memMs,
                  diskMs);
    }
  }
  std::system(("rm -rf '" + dir + "'").c_str());
  return failures ? 1 : 0;
}
