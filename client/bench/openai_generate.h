// mla-bench over the OpenAI-compatible HTTP API: a GenerateFn that sends each request as
// a streamed POST /v1/completions (token-id prompt, temperature 0, max_tokens with
// ignore_eos, stream_options.include_usage) and turns the Server-Sent Events back into
// GenerateResponse messages, so that the runner times both front ends the same way.
//
// Tokens are counted from the chunks' logprobs (one entry per token), so the request
// asks for `logprobs` alternatives (0 = the token's own only); compare with a gRPC run
// that asks for as many (mla-bench --logprobs).
#ifndef MLA_CLIENT_BENCH_OPENAI_GENERATE_H_
#define MLA_CLIENT_BENCH_OPENAI_GENERATE_H_

#include <string>

#include "absl/status/status.h"
#include "absl/strings/string_view.h"
#include "client/bench/runner.h"

namespace mla::bench {

struct OpenAiTarget {
  std::string host_port;  // host:port of the HTTP API.
  std::string model;      // The served model's name.
  std::string token;      // Bearer token; empty for none.
  int timeout_s = 600;
};

// Thread-safe: each calling thread keeps one keep-alive connection.
GenerateFn OpenAiGenerateFn(const OpenAiTarget& target);

// Feeds Server-Sent Event bytes; complete events become messages for `on_message`.
// Exposed for tests. Errors: an error event, or a chunk that is not JSON.
class SseParser {
 public:
  using OnMessage = std::function<bool(const v1::GenerateResponse&)>;
  explicit SseParser(OnMessage on_message) : on_message_(std::move(on_message)) {}
  // False when the consumer asked to stop or the stream carried an error (see status()).
  bool Feed(absl::string_view bytes);
  const absl::Status& status() const { return status_; }
  bool done() const { return done_; }  // "data: [DONE]" was seen.

 private:
  bool Event(absl::string_view data);

  OnMessage on_message_;
  std::string buffer_;
  absl::Status status_;
  bool done_ = false;
  std::string finish_reason_;
};

}  // namespace mla::bench

#endif  // MLA_CLIENT_BENCH_OPENAI_GENERATE_H_
