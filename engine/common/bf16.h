// bfloat16 <-> float conversion. bf16 is the upper half of an IEEE float32; conversion
// to bf16 rounds to nearest even and keeps NaN a NaN.
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

}  // namespace mla

#endif  // MLA_ENGINE_COMMON_BF16_H_
