//===- ReplayMain.cpp - Run the fuzz target over a corpus, without libFuzzer ==//
//
//   attnc-frontend-replay FILE_OR_DIR...
//
// Calls LLVMFuzzerTestOneInput once per file (directories are walked), so
// the fuzz corpus is a regression test in builds without clang/libFuzzer.
// Exits non-zero if no input was found; a finding aborts, as under libFuzzer.
//
//===----------------------------------------------------------------------===//

#include "llvm/Support/FileSystem.h"
#include "llvm/Support/MemoryBuffer.h"
#include "llvm/Support/raw_ostream.h"

#include <algorithm>
#include <cstdint>
#include <string>
#include <vector>

extern "C" int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int main(int argc, char **argv) {
  std::vector<std::string> files;
  for (int i = 1; i < argc; ++i) {
    if (!llvm::sys::fs::is_directory(argv[i])) {
      files.push_back(argv[i]);
      continue;
    }
    std::error_code ec;
    for (llvm::sys::fs::recursive_directory_iterator it(argv[i], ec), end; it != end && !ec;
         it.increment(ec))
      if (llvm::sys::fs::is_regular_file(it->path()))
        files.push_back(it->path());
  }
  std::sort(files.begin(), files.end());
  for (const std::string &file : files) {
    auto buffer = llvm::MemoryBuffer::getFile(file, /*IsText=*/false);
    if (!buffer) {
      llvm::errs() << "cannot read " << file << ": " << buffer.getError().message() << "\n";
      return 1;
    }
    llvm::errs() << "replay " << file << "\n";
    LLVMFuzzerTestOneInput(reinterpret_cast<const uint8_t *>((*buffer)->getBufferStart()),
                           (*buffer)->getBufferSize());
  }
  llvm::errs() << "replayed " << files.size() << " inputs\n";
  return files.empty() ? 1 : 0;
}
