// The DeepSeek-V3.2 indexer keys' element layout inside one cache block of one layer
// (CacheLayout::index_dtype), shared by every writer and reader of the host cache: the
// CPU backend, the reference kernels and the tests.
//
//   kBF16:    [block_size × dim bf16]
//   kFp8E4M3: [block_size × dim e4m3][block_size × fp32 scale]
//
// FP8 keys take one scale per key (DeepSeek's deployment quantizes the indexer's 128-value
// keys in one group, vLLM stores them the same way): scale = amax / 448 and the codes as
// for the latent (cache_row.h: QuantizeFp8Group, with its rules for zero and non-finite
// keys). One scale per key lets a score kernel take the plain code dot products and
// multiply each key's weighted sum once by its scale: relu(s · x) = s · relu(x) for s > 0.
// The codes come first so that a key of a 16-multiple width starts 8-byte aligned in any
// block of an even block_size (the device's tensor-core scores load them 8 bytes at a time).
//
// DeepSeek's reference indexer also rotates keys and queries by a Walsh-Hadamard matrix
// before quantizing them. That is left out here, as in transformers: the rotation
// preserves dot products, and e4m3 is a floating-point format whose error follows each
// value, so spreading a large channel over every value does not shrink the error of a dot
// product (index_key_row_test measures it: no better with the rotation, worse with a few
// large channels).
#ifndef MLA_ENGINE_KV_CACHE_INDEX_KEY_ROW_H_
#define MLA_ENGINE_KV_CACHE_INDEX_KEY_ROW_H_

#include <cstdint>

#include "engine/kv_cache/cache_layout.h"

namespace mla {

// Byte offsets inside one block's indexer-key region of slot `offset` (< block_size):
// its values (bf16 or e4m3 codes) and, for kFp8E4M3, its scale.
inline int64_t IndexKeyValuesOffset(CacheDType dtype, int64_t dim, int64_t offset) {
  return offset * dim * (dtype == CacheDType::kBF16 ? 2 : 1);
}
inline int64_t IndexKeyScaleOffset(int64_t dim, int64_t block_size, int64_t offset) {
  return block_size * dim + offset * 4;
}

// Encodes one key (dim fp32 values) into slot `offset` of a block region `block`.
void EncodeIndexKey(CacheDType dtype, int64_t dim, int64_t block_size, const float* key,
                    uint8_t* block, int64_t offset);
// Keys 0 .. n − 1 ([n, dim] fp32) into consecutive slots of consecutive block regions
// (slot s in region s / block_size): a whole array of keys, for benches and tests.
void EncodeIndexKeys(CacheDType dtype, int64_t dim, int64_t block_size, const float* keys,
                     int64_t n, uint8_t* regions);
// The slot's stored values (bf16 values, or the e4m3 codes' values) into `values`, and its
// scale as the result (1 for bf16): the key is values × scale.
float ReadIndexKey(CacheDType dtype, int64_t dim, int64_t block_size, const uint8_t* block,
                   int64_t offset, float* values);
// The values every kernel sees for that slot (dequantized for FP8).
void DecodeIndexKey(CacheDType dtype, int64_t dim, int64_t block_size, const uint8_t* block,
                    int64_t offset, float* key);

}  // namespace mla

#endif  // MLA_ENGINE_KV_CACHE_INDEX_KEY_ROW_H_
