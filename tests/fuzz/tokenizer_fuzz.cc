// The DeepSeek-V3 tokenizer on arbitrary bytes: Encode of the input as text, Decode of the
// input read as token ids; a round trip of valid UTF-8 must give the text back.
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <memory>
#include <vector>

#include "engine/tokenizer/tokenizer.h"
#include "engine/tokenizer/utf8.h"

namespace {

const mla::Tokenizer* GetTokenizer() {
  static const mla::Tokenizer* tokenizer = [] {
    const std::string dir = std::string(MLA_TEST_DATA_DIR) + "/tokenizer/deepseek-v3/";
    auto t = mla::Tokenizer::Load(dir + "tokenizer.json.xz", dir + "tokenizer_config.json");
    if (!t.ok()) __builtin_trap();
    return t->release();
  }();
  return tokenizer;
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const mla::Tokenizer* tokenizer = GetTokenizer();
  const absl::string_view text(reinterpret_cast<const char*>(data), size);
  auto ids = tokenizer->Encode(text, /*add_special_tokens=*/false);
  if (ids.ok() != mla::IsValidUtf8(text)) __builtin_trap();
  if (ids.ok()) {
    auto back = tokenizer->Decode(*ids);
    if (!back.ok() || *back != text) __builtin_trap();
  }
  std::vector<int32_t> raw(size / 4);
  if (!raw.empty()) std::memcpy(raw.data(), data, raw.size() * 4);
  (void)tokenizer->Decode(raw, /*skip_special_tokens=*/(size & 1) != 0);
  return 0;
}
