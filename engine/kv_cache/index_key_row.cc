#include "engine/kv_cache/index_key_row.h"

#include <cstring>

#include "engine/common/bf16.h"
#include "engine/kv_cache/cache_row.h"

namespace mla {

void EncodeIndexKey(CacheDType dtype, int64_t dim, int64_t block_size, const float* key,
                    uint8_t* block, int64_t offset) {
  uint8_t* values = block + IndexKeyValuesOffset(dtype, dim, offset);
  if (dtype == CacheDType::kBF16) {
    for (int64_t i = 0; i < dim; ++i) {
      const bf16_t v = FloatToBf16(key[i]);
      std::memcpy(values + 2 * i, &v, sizeof(v));
    }
    return;
  }
  float scale;
  QuantizeFp8Group(key, dim, values, &scale);
  std::memcpy(block + IndexKeyScaleOffset(dim, block_size, offset), &scale, sizeof(scale));
}

void EncodeIndexKeys(CacheDType dtype, int64_t dim, int64_t block_size, const float* keys,
                     int64_t n, uint8_t* regions) {
  const int64_t region = block_size * IndexKeyBytes(dtype, dim);
  for (int64_t s = 0; s < n; ++s) {
    EncodeIndexKey(dtype, dim, block_size, keys + s * dim, regions + s / block_size * region,
                   s % block_size);
  }
}

float ReadIndexKey(CacheDType dtype, int64_t dim, int64_t block_size, const uint8_t* block,
                   int64_t offset, float* values) {
  const uint8_t* stored = block + IndexKeyValuesOffset(dtype, dim, offset);
  if (dtype == CacheDType::kBF16) {
    for (int64_t i = 0; i < dim; ++i) {
      bf16_t v;
      std::memcpy(&v, stored + 2 * i, sizeof(v));
      values[i] = Bf16ToFloat(v);
    }
    return 1.0f;
  }
  for (int64_t i = 0; i < dim; ++i) values[i] = Fp8E4M3ToFloat(stored[i]);
  float scale;
  std::memcpy(&scale, block + IndexKeyScaleOffset(dim, block_size, offset), sizeof(scale));
  return scale;
}

void DecodeIndexKey(CacheDType dtype, int64_t dim, int64_t block_size, const uint8_t* block,
                    int64_t offset, float* key) {
  const float scale = ReadIndexKey(dtype, dim, block_size, block, offset, key);
  if (dtype == CacheDType::kBF16) return;  // Not even × 1: bf16 keys read back exactly.
  for (int64_t i = 0; i < dim; ++i) key[i] *= scale;
}

}  // namespace mla
