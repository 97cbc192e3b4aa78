// The chat-template parser and evaluator: any template source, rendered (when it parses)
// over a fixed conversation.
#include <cstddef>
#include <cstdint>

#include "engine/chat/chat_template.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const absl::string_view source(reinterpret_cast<const char*>(data), size);
  auto tmpl = mla::ChatTemplate::Parse(source);
  if (!tmpl.ok()) return 0;
  const mla::ChatTurn turns[] = {
      {"system", "Be brief."}, {"user", "Hi {{ x }}"}, {"assistant", "Hello"}, {"user", ""}};
  mla::ChatRenderOptions options;
  options.add_generation_prompt = (size & 1) != 0;
  options.bos_token = "<bos>";
  options.eos_token = "<eos>";
  (void)(*tmpl)->Render(turns, options);
  return 0;
}
