// FMA peak of one core: 12 independent vector FMA chains (enough to cover
// the FMA latency x throughput of current x86 cores). Built with
// -march=native: zmm (AVX-512) where the host has it, else ymm (AVX2 FMA).
#include <immintrin.h>

#include <cstdint>

extern "C" const char *attnc_bench_peak_isa() {
#if defined(__AVX512F__)
  return "avx512 (zmm)";
#elif defined(__FMA__)
  return "avx2+fma (ymm)";
#else
  return "scalar";
#endif
}

// Runs `iters` iterations of 12 FMAs on independent accumulators; returns
// the flops done (2 per lane per FMA) and a sink value.
extern "C" double attnc_bench_fma_loop(int64_t iters, float *sink) {
#if defined(__AVX512F__)
  using V = __m512;
  constexpr int L = 16;
#define SET1 _mm512_set1_ps
#define FMA _mm512_fmadd_ps
#define ADD _mm512_add_ps
#define RED _mm512_reduce_add_ps
#elif defined(__FMA__)
  using V = __m256;
  constexpr int L = 8;
#define SET1 _mm256_set1_ps
#define FMA _mm256_fmadd_ps
#define ADD _mm256_add_ps
#define RED(x) (((float *)&(x))[0])
#endif
#if defined(__AVX512F__) || defined(__FMA__)
  V a = SET1(0.999999f), b = SET1(1e-7f);
  V c0 = SET1(0.f), c1 = SET1(1.f), c2 = SET1(2.f), c3 = SET1(3.f), c4 = SET1(4.f),
    c5 = SET1(5.f), c6 = SET1(6.f), c7 = SET1(7.f), c8 = SET1(8.f), c9 = SET1(9.f),
    c10 = SET1(10.f), c11 = SET1(11.f);
  for (int64_t i = 0; i < iters; ++i) {
    c0 = FMA(c0, a, b); c1 = FMA(c1, a, b); c2 = FMA(c2, a, b); c3 = FMA(c3, a, b);
    c4 = FMA(c4, a, b); c5 = FMA(c5, a, b); c6 = FMA(c6, a, b); c7 = FMA(c7, a, b);
    c8 = FMA(c8, a, b); c9 = FMA(c9, a, b); c10 = FMA(c10, a, b); c11 = FMA(c11, a, b);
    asm volatile("" : "+v"(c0), "+v"(c1), "+v"(c2), "+v"(c3), "+v"(c4), "+v"(c5));
  }
  V s = ADD(ADD(ADD(c0, c1), ADD(c2, c3)), ADD(ADD(c4, c5), ADD(c6, c7)));
  s = ADD(s, ADD(ADD(c8, c9), ADD(c10, c11)));
  *sink = RED(s);
  return double(iters) * 12 * L * 2;
#else
  float x = 0;
  for (int64_t i = 0; i < iters; ++i)
    x = x * 0.999999f + 1e-7f;
  *sink = x;
  return double(iters) * 2;
#endif
}
