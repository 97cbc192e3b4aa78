// The OpenAI API's request parsing on any bytes, as both endpoints see them: every body
// is either refused with a 4xx naming why, or becomes a request with a prompt.
#include <cstddef>
#include <cstdint>

#include "server/openai/openai_request.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const absl::string_view body(reinterpret_cast<const char*>(data), size);
  for (const mla::openai::Endpoint endpoint :
       {mla::openai::Endpoint::kCompletions, mla::openai::Endpoint::kChat}) {
    mla::openai::OpenAiRequest request;
    const std::optional<mla::openai::ApiError> error =
        mla::openai::ParseRequest(endpoint, body, "demo", &request);
    if (error.has_value()) {
      if (error->status < 400 || error->status > 404 || error->message.empty()) {
        __builtin_trap();
      }
    } else if (request.generate.prompt_case() == mla::v1::GenerateRequest::PROMPT_NOT_SET ||
               request.model != "demo") {
      __builtin_trap();
    }
  }
  return 0;
}
