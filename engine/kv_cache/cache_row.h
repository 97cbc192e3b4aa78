// Encoding of one token's cache row (one layer) in a CacheLayout's element layout, shared
// by every writer and reader of the host cache: the CPU backend's WriteCache, the
// attention kernels' fp8 key conversion, the reference kernels and the tests.
//
// kBF16:    [c: L × bf16][k_pe: R × bf16]
// kFp8E4M3: [c: L × e4m3][⌈L/128⌉ × fp32 scales][k_pe: R × bf16]   (DeepSeek's FP8 layout)
//
// FP8 quantization, per group of kFp8ScaleGroup (128) latent values (the last group takes
// the rest when 128 does not divide L, as in small test models): scale = amax / 448
// (amax = max |c_i| of the group), code_i = e4m3(c_i / scale) rounded to nearest even and
// saturated at ±448; c_i is read back as fp32(code_i) · scale. Why per 128 and why
// amax/448: the largest value of every group lands on the largest finite e4m3 number, so
// no value saturates and the relative step is 2^-3 at worst (2^-4 on average) for the
// normal range; values below amax · 2^-15 flush to e4m3 subnormals or zero. Two rules keep
// the scale honest: an all-zero (or denormal-tiny) group gets the smallest normal float as
// its scale, so codes are 0 and dequantize to 0, never 0/0; a group holding a NaN or an
// infinity gets a NaN scale, so the whole group reads back NaN and the fault stays
// visible (as a bf16 cache keeps a NaN). Finite input never reads back NaN.
#ifndef MLA_ENGINE_KV_CACHE_CACHE_ROW_H_
#define MLA_ENGINE_KV_CACHE_CACHE_ROW_H_

#include <cstdint>

#include "engine/kv_cache/cache_layout.h"

namespace mla {

// Bytes of one token's row in one layer (what CacheLayout::bytes_per_token_per_layer says;
// here for kernels that get the dims and the dtype only).
int64_t CacheRowBytes(CacheDType dtype, int64_t latent, int64_t rope);

// The scale of one group of `n` values (see the top of this file).
float Fp8GroupScale(const float* x, int64_t n);
// Quantizes one group of `n` values with Fp8GroupScale: codes[n], *scale.
void QuantizeFp8Group(const float* x, int64_t n, uint8_t* codes, float* scale);

// Writes one row: latent [L] and k_pe [R] in fp32 into `dst` (CacheRowBytes bytes).
void EncodeCacheRow(CacheDType dtype, int64_t latent_dim, int64_t rope_dim, const float* latent,
                    const float* k_pe, uint8_t* dst);
// Reads one row back into fp32 latent [L] and k_pe [R] (the values every kernel sees).
void DecodeCacheRow(CacheDType dtype, int64_t latent_dim, int64_t rope_dim, const uint8_t* src,
                    float* latent, float* k_pe);

// The byte that, repeated over a cache, makes every value of both layouts a NaN: bf16
// 0xffff, fp32 scale 0xffffffff and the e4m3 code 0xff are all NaN. Tests poison unused
// slots with it.
inline constexpr uint8_t kCacheNaNByte = 0xff;

}  // namespace mla

#endif  // MLA_ENGINE_KV_CACHE_CACHE_ROW_H_
