// config.json parsing: any bytes. An accepted config must respect the bounds that the
// loader sizes allocations from.
#include <cstddef>
#include <cstdint>

#include "engine/model/config.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const absl::string_view text(reinterpret_cast<const char*>(data), size);
  auto config = mla::ParseModelConfig(text, "fuzz/config.json");
  if (config.ok()) {
    if (config->num_hidden_layers < 1 || config->num_hidden_layers > 1024) __builtin_trap();
    if (config->vocab_size < 1 || config->vocab_size > (1 << 24)) __builtin_trap();
    (void)mla::SoftmaxScale(*config);
    for (int layer = 0; layer < config->num_hidden_layers; ++layer) {
      (void)config->IsMoeLayer(layer);
    }
  }
  return 0;
}
