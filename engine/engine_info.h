// What the engine serves: the model geometry plus how it is served (device, cache).
#ifndef MLA_ENGINE_ENGINE_INFO_H_
#define MLA_ENGINE_ENGINE_INFO_H_

#include <cstdint>
#include <string>

#include "engine/model/config.h"

namespace mla {

struct EngineInfo {
  ModelConfig config;
  std::string model_name;      // Base name of the model directory.
  std::string device = "cpu";  // "cpu" or "cuda:N (name)".
  std::string weight_dtype;    // "bf16" or "f32".
  std::string cache_dtype = "bf16";
  std::string index_key_dtype;  // DeepSeek-V3.2's indexer keys; empty for other models.
  int kv_block_size = 0;        // Tokens per cache block.
  int64_t kv_num_blocks = 0;
  int64_t kv_bytes_per_token = 0;   // Latent cache, all layers.
  int64_t mha_bytes_per_token = 0;  // The equivalent plain multi-head K/V cache.
  int64_t max_context = 0;          // Longest prompt + generation accepted.
  int64_t weight_bytes = 0;         // Bytes of weight storage as served.
};

}  // namespace mla

#endif  // MLA_ENGINE_ENGINE_INFO_H_
