// The safetensors header parser and tensor index: any header text against any data size.
#include <cstddef>
#include <cstdint>
#include <cstring>

#include "engine/model/safetensors.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  // The first 4 bytes choose the data section's size, the rest is the header's JSON.
  uint32_t data_size = 0;
  if (size >= 4) {
    std::memcpy(&data_size, data, 4);
    data += 4;
    size -= 4;
  }
  const absl::string_view json(reinterpret_cast<const char*>(data), size);
  std::map<std::string, std::string> metadata;
  auto tensors = mla::ParseSafetensorsHeader(json, data_size, "fuzz.safetensors", &metadata);
  if (tensors.ok()) {
    for (const auto& [name, info] : *tensors) {
      // Offsets were checked against the data section: every tensor lies inside it.
      if (info.offset + info.nbytes > data_size) __builtin_trap();
      (void)info.ShapeString();
    }
  }
  return 0;
}
