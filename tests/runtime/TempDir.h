//===- TempDir.h - A temporary directory for the runtime tests --*- C++ -*-===//

#ifndef ATTNC_TESTS_RUNTIME_TEMPDIR_H
#define ATTNC_TESTS_RUNTIME_TEMPDIR_H

#include <dirent.h>
#include <unistd.h>

#include <cstdlib>
#include <set>
#include <string>
#include <vector>

namespace attnc::test {

/// A fresh directory (a kernel cache) per test, removed at the end.
struct TempDir {
  std::string path;
  TempDir() {
    char tmpl[] = "/tmp/attnc-rt-test-XXXXXX";
    path = mkdtemp(tmpl);
  }
  ~TempDir() { std::system(("rm -rf '" + path + "'").c_str()); }
  TempDir(const TempDir &) = delete;
  TempDir &operator=(const TempDir &) = delete;

  /// Names of the files in it.
  std::set<std::string> names() const {
    std::set<std::string> out;
    if (DIR *d = opendir(path.c_str())) {
      while (dirent *e = readdir(d))
        if (e->d_name[0] != '.')
          out.insert(e->d_name);
      closedir(d);
    }
    return out;
  }
  /// Paths of the files whose names end in `suffix`.
  std::vector<std::string> files(const std::string &suffix) const {
    std::vector<std::string> out;
    for (const std::string &n : names())
      if (n.size() > suffix.size() &&
          n.compare(n.size() - suffix.size(), suffix.size(), suffix) == 0)
        out.push_back(path + "/" + n);
    return out;
  }
};

} // namespace attnc::test

#endif // ATTNC_TESTS_RUNTIME_TEMPDIR_H
