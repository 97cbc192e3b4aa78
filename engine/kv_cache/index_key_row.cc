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

void DecodeIndexKey(CacheDType dtype, int64_t dim, int64_t block_size, const uint8_t* block,
                    int64_t offset, float* key) {
  const uint8_t* values = block + IndexKeyValuesOffset(dtype, dim, offset);
  if (dtype == CacheDType::kBF16) {
    for (int64_t i = 0; i < dim; ++i) {
      bf16_t v;
      std::memcpy(&v, values + 2 * i, sizeof(v));
      key[i] = Bf16ToFloat(v);
    }
    return;
  }
  float scale;
  std::memcpy(&scale, block + IndexKeyScaleOffset(dim, block_size, offset), sizeof(scale));
  for (int64_t i = 0; i < dim; ++i) key[i] = Fp8E4M3ToFloat(values[i]) * scale;
}

}  // namespace mla
