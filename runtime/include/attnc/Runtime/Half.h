//===- Half.h - bf16 and f16 on the host -------------------------*- C++ -*-===//
//
// Conversions between float and the 16-bit storage types of kernel inputs
// and outputs (IEEE binary16 "f16" and bfloat16 "bf16"), rounding to nearest
// even, for programs that prepare inputs or read outputs on the host.
//
//===----------------------------------------------------------------------===//

#ifndef ATTNC_RUNTIME_HALF_H
#define ATTNC_RUNTIME_HALF_H

#include <cmath>
#include <cstdint>
#include <cstring>

namespace attnc::rt {

inline float bf16ToFloat(uint16_t h) {
  uint32_t bits = uint32_t(h) << 16;
  float f;
  std::memcpy(&f, &bits, 4);
  return f;
}

inline uint16_t floatToBf16(float f) {
  uint32_t bits;
  std::memcpy(&bits, &f, 4);
  if (std::isnan(f))
    return uint16_t((bits >> 16) | 0x40); // quiet NaN, sign kept
  bits += 0x7fff + ((bits >> 16) & 1);
  return uint16_t(bits >> 16);
}

inline float f16ToFloat(uint16_t h) {
  uint32_t sign = uint32_t(h & 0x8000) << 16;
  int exp = (h >> 10) & 0x1f;
  uint32_t mant = h & 0x3ff;
  float f;
  if (exp == 0x1f) {
    uint32_t bits = sign | 0x7f800000u | (mant << 13);
    std::memcpy(&f, &bits, 4);
    return f;
  }
  if (exp == 0)
    f = std::ldexp(float(mant), -24); // zero and subnormals
  else
    f = std::ldexp(float(mant | 0x400), exp - 25);
  return sign ? -f : f;
}

inline uint16_t floatToF16(float f) {
  uint32_t bits;
  std::memcpy(&bits, &f, 4);
  uint16_t sign = uint16_t((bits >> 16) & 0x8000);
  if (std::isnan(f))
    return sign | 0x7e00;
  float a = std::fabs(f);
  if (a >= 65520.f) // rounds past the largest finite f16 (65504)
    return sign | 0x7c00;
  if (a < std::ldexp(1.f, -14)) {
    // Subnormal (or zero): multiples of 2^-24, nearest even by rint.
    return sign | uint16_t(std::nearbyint(std::ldexp(a, 24)));
  }
  int exp;
  float m = std::frexp(a, &exp); // a = m * 2^exp, m in [0.5, 1)
  // 11 significant bits: mantissa in [1024, 2048), nearest even.
  auto mant = uint32_t(std::nearbyint(std::ldexp(m, 11)));
  if (mant == 2048) {
    mant = 1024;
    ++exp;
  }
  return sign | uint16_t(uint32_t(exp + 14) << 10) | uint16_t(mant & 0x3ff);
}

/// FP8 E4M3 (the "fn" variant: no infinities, 0x7f / 0xff are NaN, the
/// largest finite value 448), the storage of fp8 KV caches.
inline float e4m3ToFloat(uint8_t x) {
  int exp = (x >> 3) & 0xf, mant = x & 7;
  if (exp == 15 && mant == 7)
    return NAN;
  float f = exp == 0 ? std::ldexp(float(mant), -9) : std::ldexp(float(8 + mant), exp - 10);
  return (x & 0x80) ? -f : f;
}

/// Nearest even, saturating to +-448 (as PTX cvt.rn.satfinite.e4m3x2.f32).
/// On the f32 bits (no libm calls: fp8 appends quantize every element).
inline uint8_t floatToE4M3(float f) {
  uint32_t bits;
  std::memcpy(&bits, &f, 4);
  const uint8_t sign = uint8_t((bits >> 24) & 0x80);
  const uint32_t abs = bits & 0x7fffffffu;
  if (abs > 0x7f800000u) // NaN
    return sign | 0x7f;
  if (abs >= 0x43e00000u) // >= 448 (and infinity): the largest finite
    return sign | 0x7e;
  if (abs < 0x3c800000u) { // below 2^-6: subnormal (or zero), multiples of 2^-9
    float a;
    std::memcpy(&a, &abs, 4);
    // a * 2^9 < 8 is exact; adding 2^23 rounds it to an integer, nearest even.
    float q = (a * 512.f + 8388608.f) - 8388608.f;
    return sign | uint8_t(q);
  }
  // Keep 3 of the 23 mantissa bits, nearest even (a carry moves the
  // exponent up); below 448 the result stays at most 448.
  const uint32_t rounded = abs + 0x7ffffu + ((abs >> 20) & 1);
  const uint32_t exp = (rounded >> 23) - 127 + 7, mant = (rounded >> 20) & 7;
  return sign | uint8_t(exp << 3) | uint8_t(mant);
}

/// Rounds `f` to the nearest value of `dtype` ("bf16", "f16"; else f32).
inline float roundTo(const char *dtype, float f) {
  if (dtype[0] == 'b')
    return bf16ToFloat(floatToBf16(f));
  if (dtype[0] == 'f' && dtype[1] == '1')
    return f16ToFloat(floatToF16(f));
  return f;
}

} // namespace attnc::rt

#endif // ATTNC_RUNTIME_HALF_H
