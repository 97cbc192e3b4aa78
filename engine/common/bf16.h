// bfloat16 <-> float conversion (and the half and FP8 E4M3 conversions beside it). bf16 is
// the upper half of an IEEE float32; conversion to bf16 rounds to nearest even and keeps
// NaN a NaN.
#ifndef MLA_ENGINE_COMMON_BF16_H_
#define MLA_ENGINE_COMMON_BF16_H_

#include <cstdint>
#include <cstring>

namespace mla {

using bf16_t = uint16_t;

inline float Bf16ToFloat(bf16_t v) {
  const uint32_t bits = static_cast<uint32_t>(v) << 16;
  float f;
  std::memcpy(&f, &bits, sizeof(f));
  return f;
}

inline bf16_t FloatToBf16(float f) {
  uint32_t bits;
  std::memcpy(&bits, &f, sizeof(bits));
  if ((bits & 0x7fffffffu) > 0x7f800000u) return static_cast<bf16_t>((bits >> 16) | 0x40u);
  const uint32_t rounding = 0x7fffu + ((bits >> 16) & 1u);
  return static_cast<bf16_t>((bits + rounding) >> 16);
}

// IEEE half precision to float (handles subnormals, inf and NaN).
inline float F16ToFloat(uint16_t h) {
  const uint32_t sign = static_cast<uint32_t>(h & 0x8000u) << 16;
  uint32_t exp = (h >> 10) & 0x1fu;
  uint32_t mant = h & 0x3ffu;
  uint32_t bits;
  if (exp == 0) {
    if (mant == 0) {
      bits = sign;
    } else {  // Subnormal: renormalize.
      exp = 127 - 15 + 1;
      while ((mant & 0x400u) == 0) {
        mant <<= 1;
        --exp;
      }
      mant &= 0x3ffu;
      bits = sign | (exp << 23) | (mant << 13);
    }
  } else if (exp == 0x1f) {
    bits = sign | 0x7f800000u | (mant << 13);
  } else {
    bits = sign | ((exp - 15 + 127) << 23) | (mant << 13);
  }
  float f;
  std::memcpy(&f, &bits, sizeof(f));
  return f;
}

// FP8 E4M3 (the "fn" variant: no infinities, 0x7f/0xff are NaN, max 448) to float.
inline float Fp8E4M3ToFloat(uint8_t v) {
  const uint32_t sign = static_cast<uint32_t>(v & 0x80u) << 24;
  const uint32_t exp = (v >> 3) & 0xfu;
  const uint32_t mant = v & 0x7u;
  uint32_t bits;
  if (exp == 0xf && mant == 0x7) {
    bits = sign | 0x7fc00000u;
  } else if (exp == 0) {
    // Subnormal: mant * 2^-9.
    float f = static_cast<float>(mant) * (1.0f / 512.0f);
    return (v & 0x80u) ? -f : f;
  } else {
    bits = sign | ((exp - 7 + 127) << 23) | (mant << 20);
  }
  float f;
  std::memcpy(&f, &bits, sizeof(f));
  return f;
}

// Float to FP8 E4M3 ("fn": max 448, no infinities): round to nearest even, saturating at
// ±448 (±inf included) rather than producing the NaN code, which a cache that quantizes
// to a chosen scale must never store by accident. NaN stays NaN (0x7f, sign kept).
inline uint8_t FloatToFp8E4M3(float f) {
  uint32_t bits;
  std::memcpy(&bits, &f, sizeof(bits));
  const uint8_t sign = static_cast<uint8_t>((bits >> 24) & 0x80u);
  const uint32_t abs_bits = bits & 0x7fffffffu;
  if (abs_bits > 0x7f800000u) return sign | 0x7fu;
  if (abs_bits >= 0x43e00000u) return sign | 0x7eu;  // >= 448 (2^8 · 1.75)
  if (abs_bits < 0x3c800000u) {                      // < 2^-6: subnormal, steps of 2^-9
    float a;
    std::memcpy(&a, &abs_bits, sizeof(a));
    // a · 512 < 8 is exact; adding 2^23 rounds it to an integer, to nearest even.
    const float r = (a * 512.0f + 8388608.0f) - 8388608.0f;
    return sign | static_cast<uint8_t>(r);  // 8 is the smallest normal, 0x08: exact
  }
  // Normal: keep 3 of the 23 mantissa bits, rounding to nearest even; a carry moves into
  // the exponent, which is what rounding up to the next binade means.
  const uint32_t rounded = abs_bits + 0x7ffffu + ((abs_bits >> 20) & 1u);
  const uint32_t code = (rounded >> 20) - ((127u - 7u) << 3);
  return sign | static_cast<uint8_t>(code > 0x7eu ? 0x7eu : code);
}

}  // namespace mla

#endif  // MLA_ENGINE_COMMON_BF16_H_
