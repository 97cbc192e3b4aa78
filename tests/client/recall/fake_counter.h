// A byte-counting stand-in for a tokenizer: one token per byte, plus BOS in prompts.
#ifndef MLA_TESTS_CLIENT_RECALL_FAKE_COUNTER_H_
#define MLA_TESTS_CLIENT_RECALL_FAKE_COUNTER_H_

#include <atomic>
#include <string>

#include "client/recall/haystack.h"

namespace mla::recall {

class ByteCounter : public TokenCounter {
 public:
  absl::StatusOr<int> CountPiece(const std::string& piece) override {
    ++calls_;
    return static_cast<int>(piece.size());
  }
  absl::StatusOr<int> CountPrompt(const std::string& prompt) override {
    ++calls_;
    return static_cast<int>(prompt.size()) + 1;  // BOS.
  }
  int calls() const { return calls_.load(); }

 private:
  std::atomic<int> calls_{0};
};

}  // namespace mla::recall

#endif  // MLA_TESTS_CLIENT_RECALL_FAKE_COUNTER_H_
