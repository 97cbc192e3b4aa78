// Collects one engine request's output stream for tests (engine_test on the CPU,
// tests/gpu on a device).
#ifndef MLA_TESTS_ENGINE_COLLECTOR_H_
#define MLA_TESTS_ENGINE_COLLECTOR_H_

#include <gtest/gtest.h>

#include <memory>
#include <vector>

#include "absl/synchronization/mutex.h"
#include "engine/engine.h"
#include "engine/sampling/logprobs.h"

namespace mla::testing {

// Collects one request's stream; Wait() blocks until the finished output arrives.
class Collector {
 public:
  OutputCallback Callback() {
    return [this](GenerationOutput o) {
      absl::MutexLock lock(&mu_);
      tokens_.insert(tokens_.end(), o.tokens.begin(), o.tokens.end());
      for (auto& l : o.logprobs) logprobs_.push_back(l);
      for (auto& l : o.prompt_logprobs) prompt_logprobs_.push_back(l);
      ++messages_;
      if (o.finished) final_ = o;
      done_ = o.finished;
    };
  }
  GenerationOutput Wait() {
    absl::MutexLock lock(&mu_);
    mu_.Await(absl::Condition(&done_));
    return final_;
  }
  std::vector<int32_t> tokens() {
    absl::MutexLock lock(&mu_);
    return tokens_;
  }
  std::vector<TokenLogprobs> logprobs() {
    absl::MutexLock lock(&mu_);
    return logprobs_;
  }
  std::vector<TokenLogprobs> prompt_logprobs() {
    absl::MutexLock lock(&mu_);
    return prompt_logprobs_;
  }

 private:
  absl::Mutex mu_;
  bool done_ = false;
  int messages_ = 0;
  std::vector<int32_t> tokens_;
  std::vector<TokenLogprobs> logprobs_, prompt_logprobs_;
  GenerationOutput final_;
};

// Submits every request before waiting for any (they share steps as far as the engine's
// limits allow) and returns their finished streams, in order.
inline std::vector<std::unique_ptr<Collector>> RunTogether(
    Engine& engine, const std::vector<GenerationRequest>& requests) {
  std::vector<std::unique_ptr<Collector>> out;
  for (const GenerationRequest& r : requests) {
    out.push_back(std::make_unique<Collector>());
    const absl::StatusOr<std::string> id = engine.Submit(r, out.back()->Callback());
    EXPECT_TRUE(id.ok()) << id.status();
    if (!id.ok()) out.pop_back();
  }
  for (auto& c : out) c->Wait();
  return out;
}

// Runs the requests one at a time, each alone in the engine.
inline std::vector<std::unique_ptr<Collector>> RunOneByOne(
    Engine& engine, const std::vector<GenerationRequest>& requests) {
  std::vector<std::unique_ptr<Collector>> out;
  for (const GenerationRequest& r : requests) {
    std::vector<std::unique_ptr<Collector>> one = RunTogether(engine, {r});
    for (auto& c : one) out.push_back(std::move(c));
  }
  return out;
}

}  // namespace mla::testing

#endif  // MLA_TESTS_ENGINE_COLLECTOR_H_
