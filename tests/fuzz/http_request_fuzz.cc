// The metrics port's request-head parsing: any bytes, split the way the server splits them.
#include <cstddef>
#include <cstdint>

#include "server/http/http_request.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  absl::string_view buffer(reinterpret_cast<const char*>(data), size);
  while (!buffer.empty()) {
    const size_t end = mla::http::FindHeadEnd(buffer);
    if (end == absl::string_view::npos) break;
    if (end > buffer.size()) __builtin_trap();
    auto head = mla::http::ParseRequestHead(buffer.substr(0, end));
    if (head.ok() && (head->method.empty() || head->path.empty())) __builtin_trap();
    buffer.remove_prefix(end);
  }
  return 0;
}
