//===- attention_bench.cpp - attnc CPU kernels vs unfused BLAS vs FMA peak -===//
//
// For dense, causal, sliding-window (W = 1024) and document (8 equal docs)
// attention at B = 1, H = 8, N in {1024, 4096}, D in {64, 128}, f32, prints:
// time, effective GFLOP/s (4 * D * unmasked (q, k) pairs * B * H), % of the
// measured FMA peak (of the cores used), and the ratio against an unfused
// baseline (OpenBLAS sgemm for Q K^T, masked row softmax, sgemm for P V),
// for 1 thread and for all cores. The kernels are what users get: built
// through the JIT API (attnc::Compiler, as `attnc run --target=cpu`) and
// launched by the light runtime (rt::CpuKernel::launch) on its thread pool,
// LaunchArgs::numThreads = 1 or the pool's size.
//
// Usage: attnc-cpu-bench [--case=dense,causal,sliding,document] [--n=1024,4096]
//                        [--d=64,128] [--threads=1,all] [--reps=5]
//                        [--tile-q=32] [--tile-k=8] [--no-baseline]
// Times are the best and the median of --reps runs (after one warm-up).
//
//===----------------------------------------------------------------------===//

#include "attnc/JIT.h"
#include "attnc/Pipeline/CpuPipeline.h"
#include "attnc/Runtime/Runtime.h"

#include "LaunchBindings.h"

#include <cblas.h>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <cstring>
#include <ctime>
#include <functional>
#include <random>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

extern "C" void openblas_set_num_threads(int);
extern "C" double attnc_bench_fma_loop(int64_t iters, float *sink);
extern "C" const char *attnc_bench_peak_isa();

using namespace attnc;
using Clock = std::chrono::steady_clock;

namespace {

struct Options {
  std::vector<std::string> cases = {"dense", "causal", "sliding", "document"};
  std::vector<int64_t> ns = {1024, 4096}, ds = {64, 128};
  std::vector<int> threads;
  int reps = 5;
  int64_t tileQ = pipeline::CpuOptions().tileQ, tileK = pipeline::CpuOptions().tileK;
  bool baseline = true;
};

std::vector<std::string> split(const std::string &s) {
  std::vector<std::string> out;
  std::stringstream ss(s);
  std::string x;
  while (std::getline(ss, x, ','))
    if (!x.empty())
      out.push_back(x);
  return out;
}

/// The runtime pool's size ($ATTNC_NUM_THREADS, else the hardware's): the
/// most threads a launch can use.
int allCores() { return rt::defaultNumThreads(); }

/// Runs `f(t)` on `n` threads (t = 0 on the calling thread) and joins.
void parallel(int n, const std::function<void(int)> &f) {
  std::vector<std::thread> ts;
  for (int t = 1; t < n; ++t)
    ts.emplace_back(f, t);
  f(0);
  for (auto &t : ts)
    t.join();
}

struct Timing {
  double best = 1e300, median = 0;
  double cpuBest = 1e300; // CPU time of the calling thread (robust to time-sharing)
};
double threadCpuMs() {
  timespec ts;
  clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts);
  return ts.tv_sec * 1e3 + ts.tv_nsec * 1e-6;
}
Timing timeIt(int reps, const std::function<void()> &f) {
  f(); // warm-up
  std::vector<double> ms;
  double cpuBest = 1e300;
  for (int r = 0; r < reps; ++r) {
    double c0 = threadCpuMs();
    auto s = Clock::now();
    f();
    ms.push_back(std::chrono::duration<double, std::milli>(Clock::now() - s).count());
    cpuBest = std::min(cpuBest, threadCpuMs() - c0);
  }
  std::sort(ms.begin(), ms.end());
  return {ms.front(), ms[ms.size() / 2], cpuBest};
}

/// GFLOP/s of `threads` cores running 12 independent FMA chains.
double fmaPeak(int threads) {
  const int64_t iters = 20'000'000;
  double best = 0;
  for (int r = 0; r < 9; ++r) { // best of 9: the machine may be shared
    std::vector<double> flops(threads);
    std::vector<float> sink(threads);
    auto s = Clock::now();
    parallel(threads, [&](int t) { flops[t] = attnc_bench_fma_loop(iters, &sink[t]); });
    double sec = std::chrono::duration<double>(Clock::now() - s).count();
    double total = 0;
    for (double f : flops)
      total += f;
    best = std::max(best, total / sec * 1e-9);
  }
  return best;
}

/// The benchmarked problem: one kernel of lib/, its mask as a predicate for
/// the baseline, and its extra parameters.
struct Case {
  std::string name, file, kernel;
  std::map<std::string, std::string> consts;
  std::function<bool(int64_t q, int64_t k)> keep;
};

struct Problem {
  int64_t B = 1, H = 8, N, D;
  std::vector<float> Q, K, V;
  std::vector<int32_t> doc;
};

/// The kernel of a case, through the JIT API (memory cache only).
std::shared_ptr<rt::CpuKernel> compile(const Case &c, int64_t D, const Options &opt) {
  CompilerOptions options;
  options.diskCache = false;
  static std::unique_ptr<Compiler> compiler = Compiler::create(options);
  if (rt::Status s = compiler->loadSource(std::string(ATTNC_LIB_DIR) + "/" + c.file); !s) {
    std::fprintf(stderr, "%s\n", s.message().c_str());
    return nullptr;
  }
  KernelSpec spec;
  spec.headDim = D;
  spec.consts = c.consts;
  spec.tileQ = opt.tileQ;
  spec.tileK = opt.tileK;
  auto kernel = compiler->getKernel(c.kernel, spec);
  if (!kernel) {
    std::fprintf(stderr, "%s\n", kernel.message().c_str());
    return nullptr;
  }
  return *kernel;
}

/// One launch of the kernel over all (b, h, q-tile) items on `threads`
/// threads of the runtime's pool (1: the calling thread only).
void runFused(const rt::CpuKernel &k, Problem &p, float *O, float *LSE, int threads) {
  std::vector<int64_t> sx = {p.B, p.H, p.N, p.D}, sl = {p.B, p.H, p.N}, sd = {p.N};
  DLDataType f32{kDLFloat, 32, 1}, i32{kDLInt, 32, 1};
  using driver::dlView;
  DLTensor q = dlView(p.Q.data(), f32, sx), kk = dlView(p.K.data(), f32, sx),
           v = dlView(p.V.data(), f32, sx), o = dlView(O, f32, sx), l = dlView(LSE, f32, sl),
           doc = dlView(p.doc.data(), i32, sd);
  rt::LaunchArgs a;
  a.q = &q, a.k = &kk, a.v = &v, a.o = &o, a.lse = &l;
  for (const rt::ParamInfo &param : k.info().params)
    if (param.isTensor)
      a.params[param.name] = rt::Arg::ofTensor(&doc); // the only tensor benchmarked: doc
  a.numThreads = threads;
  if (rt::Status s = k.launch(a); !s) {
    std::fprintf(stderr, "launch failed: %s\n", s.message().c_str());
    std::exit(1);
  }
}

/// Unfused baseline for heads [h0, h1): S = scale Q K^T (sgemm), masked
/// row softmax, O = P V (sgemm). `S` holds N*N floats.
void runUnfusedHeads(const Case &c, Problem &p, float *O, int64_t h0, int64_t h1, float *S) {
  int64_t N = p.N, D = p.D;
  float scale = float(1.0 / std::sqrt(double(D)));
  for (int64_t bh = h0; bh < h1; ++bh) {
    const float *q = p.Q.data() + bh * N * D, *k = p.K.data() + bh * N * D,
                *v = p.V.data() + bh * N * D;
    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, int(N), int(N), int(D), scale, q, int(D),
                k, int(D), 0.0f, S, int(N));
    for (int64_t i = 0; i < N; ++i) {
      float *row = S + i * N;
      float m = -INFINITY;
      for (int64_t j = 0; j < N; ++j) {
        if (!c.keep(i, j))
          row[j] = -INFINITY;
        m = std::max(m, row[j]);
      }
      float sum = 0;
      for (int64_t j = 0; j < N; ++j) {
        float e = m == -INFINITY ? 0.0f : std::exp(row[j] - m);
        row[j] = e;
        sum += e;
      }
      float inv = sum > 0 ? 1.0f / sum : 0.0f;
      for (int64_t j = 0; j < N; ++j)
        row[j] *= inv;
    }
    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, int(N), int(D), int(N), 1.0f, S, int(N),
                v, int(D), 0.0f, O + bh * N * D, int(D));
  }
}

/// All heads on `threads` workers (heads split evenly, BLAS single-threaded
/// in each: every core runs sgemm + softmax of its own heads).
void runUnfused(const Case &c, Problem &p, float *O, int threads,
                std::vector<std::vector<float>> &S) {
  int64_t BH = p.B * p.H;
  parallel(threads, [&](int t) {
    int64_t h0 = BH * t / threads, h1 = BH * (t + 1) / threads;
    runUnfusedHeads(c, p, O, h0, h1, S[t].data());
  });
}

double relErr(const std::vector<float> &a, const std::vector<float> &b) {
  double num = 0, den = 0;
  for (size_t i = 0; i < a.size(); ++i) {
    double d = double(a[i]) - double(b[i]);
    if (std::isnan(a[i]))
      return INFINITY;
    num += d * d, den += double(b[i]) * b[i];
  }
  return std::sqrt(num / std::max(den, 1e-300));
}

} // namespace

int main(int argc, char **argv) {
  Options opt;
  opt.threads = {1, allCores()};
  for (int i = 1; i < argc; ++i) {
    std::string a = argv[i];
    auto val = [&](const char *pre) -> const char * {
      size_t n = std::strlen(pre);
      return a.compare(0, n, pre) == 0 ? a.c_str() + n : nullptr;
    };
    if (auto v = val("--case="))
      opt.cases = split(v);
    else if (auto v = val("--n=")) {
      opt.ns.clear();
      for (auto &s : split(v))
        opt.ns.push_back(std::stoll(s));
    } else if (auto v = val("--d=")) {
      opt.ds.clear();
      for (auto &s : split(v))
        opt.ds.push_back(std::stoll(s));
    } else if (auto v = val("--threads=")) {
      opt.threads.clear();
      for (auto &s : split(v))
        opt.threads.push_back(s == "all" ? allCores() : std::stoi(s));
      for (int t : opt.threads)
        if (t < 1 || t > allCores()) {
          std::fprintf(stderr,
                       "--threads: %d is not in [1, %d] (the runtime pool's size; "
                       "set ATTNC_NUM_THREADS for more)\n",
                       t, allCores());
          return 2;
        }
    } else if (auto v = val("--reps="))
      opt.reps = std::stoi(v);
    else if (auto v = val("--tile-q="))
      opt.tileQ = std::stoll(v);
    else if (auto v = val("--tile-k="))
      opt.tileK = std::stoll(v);
    else if (a == "--no-baseline")
      opt.baseline = false;
    else {
      std::fprintf(stderr, "unknown option %s (see the header of attention_bench.cpp)\n", argv[i]);
      return 2;
    }
  }

  std::map<int, double> peak;
  peak[1] = fmaPeak(1);
  for (int t : opt.threads)
    if (!peak.count(t))
      peak[t] = fmaPeak(t);
  std::printf("FMA peak (%s, 12 chains): ", attnc_bench_peak_isa());
  for (auto [t, g] : peak)
    std::printf("%d thread(s) %.1f GFLOP/s  ", t, g);
  std::printf("\n%%peak: against max(measured t-thread peak, t x 1-thread peak)\n");
  std::printf("tile-q=%lld tile-k=%lld, reps=%d (best / median), B=1 H=8 f32\n\n",
              (long long)opt.tileQ, (long long)opt.tileK, opt.reps);

  const int64_t W = 1024, docs = 8;
  std::vector<Case> cases;
  for (auto &name : opt.cases) {
    if (name == "dense")
      cases.push_back(
          {name, "causal.attn", "full_attention", {}, [](int64_t, int64_t) { return true; }});
    else if (name == "causal")
      cases.push_back({name, "causal.attn", "causal_attention", {}, [](int64_t q, int64_t k) {
                         return k <= q;
                       }});
    else if (name == "sliding")
      cases.push_back({name,
                       "sliding_window.attn",
                       "sliding_window_attention",
                       {{"W", std::to_string(W)}},
                       [W](int64_t q, int64_t k) { return k <= q && q - k < W; }});
    else if (name == "document")
      cases.push_back({name, "document.attn", "document_attention", {}, nullptr});
    else {
      std::fprintf(stderr, "unknown case %s\n", name.c_str());
      return 2;
    }
  }

  std::printf("%-9s %5s %4s %3s | %9s %9s %9s %7s %6s | %9s %7s | %6s | %8s\n", "case", "N", "D",
              "thr", "best ms", "med ms", "cpu ms", "GFLOP/s", "%peak", "blas ms", "GFLOP/s",
              "ratio", "relerr");
  for (Case &c : cases) {
    for (int64_t D : opt.ds) {
      std::shared_ptr<rt::CpuKernel> k = compile(c, D, opt);
      if (!k) {
        std::fprintf(stderr, "compiling %s D=%lld failed\n", c.name.c_str(), (long long)D);
        return 1;
      }
      for (int64_t N : opt.ns) {
        Problem p;
        p.N = N, p.D = D;
        std::mt19937 rng(1234 + N + D);
        std::normal_distribution<float> normal(0.f, 1.f);
        for (auto *v : {&p.Q, &p.K, &p.V}) {
          v->resize(p.B * p.H * N * D);
          for (float &x : *v)
            x = normal(rng);
        }
        p.doc.resize(N);
        for (int64_t i = 0; i < N; ++i)
          p.doc[i] = int32_t(i * docs / N);
        Case cc = c;
        if (c.name == "document") {
          const int32_t *doc = p.doc.data();
          cc.keep = [doc](int64_t q, int64_t k) { return doc[q] == doc[k]; };
        }
        double pairs = 0;
        for (int64_t q = 0; q < N; ++q) {
          if (c.name == "dense")
            pairs += N;
          else if (c.name == "causal")
            pairs += q + 1;
          else if (c.name == "sliding")
            pairs += std::min<int64_t>(q + 1, W);
          else
            pairs += N / docs; // equal documents
        }
        double gflop = 4.0 * D * pairs * p.B * p.H * 1e-9;

        std::vector<float> O(p.B * p.H * N * D), LSE(p.B * p.H * N), Ob(O.size());
        for (int t : opt.threads) {
          std::fill(O.begin(), O.end(), NAN);
          Timing tf = timeIt(opt.reps, [&] { runFused(*k, p, O.data(), LSE.data(), t); });
          Timing tb;
          double err = NAN;
          if (opt.baseline) {
            openblas_set_num_threads(1);
            std::vector<std::vector<float>> S(t, std::vector<float>(N * N));
            tb = timeIt(std::max(1, opt.reps / 2), [&] { runUnfused(cc, p, Ob.data(), t, S); });
            err = relErr(O, Ob);
          }
          double g = gflop / (tf.best * 1e-3);
          // % of peak against t x the 1-thread peak: the all-threads FMA loop
          // undercounts on a shared machine (printed in the header too).
          double pk = std::max(peak[t], t * peak[1]);
          std::printf("%-9s %5lld %4lld %3d | %9.2f %9.2f %9.2f %7.1f %5.1f%% | %9.2f %7.1f | "
                      "%5.2fx | %8.1e\n",
                      c.name.c_str(), (long long)N, (long long)D, t, tf.best, tf.median,
                      t == 1 ? tf.cpuBest : NAN, g, 100 * g / pk, opt.baseline ? tb.best : NAN,
                      opt.baseline ? gflop / (tb.best * 1e-3) : NAN,
                      opt.baseline ? tb.best / tf.best : NAN, err);
          std::fflush(stdout);
        }
      }
    }
  }
  return 0;
}
