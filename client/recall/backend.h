// What the recall harness needs from a serving endpoint, and the tokenizer plumbing
// shared by the backends.
#ifndef MLA_CLIENT_RECALL_BACKEND_H_
#define MLA_CLIENT_RECALL_BACKEND_H_

#include <cstdint>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/status/statusor.h"
#include "absl/synchronization/mutex.h"
#include "client/recall/haystack.h"

namespace mla::recall {

struct GenerateResult {
  std::string text;       // The generated continuation.
  int tokens = 0;         // Generated tokens.
  int prompt_tokens = 0;  // The prompt's length as the server counted it; 0 if unknown.
  // GenerateWatching on a DeepSeek-V3.2 server: the share of the watched tokens the
  // lightning indexer selected, averaged over layers.
  std::optional<double> indexer_recall;
};

// Characters [begin, end) of a prompt.
struct TextSpan {
  size_t begin = 0;
  size_t end = 0;
};

// A serving endpoint. All methods are called from many threads at once.
class RecallBackend {
 public:
  virtual ~RecallBackend() = default;

  // Counts tokens the way the endpoint's tokenizer does (or estimates them).
  virtual TokenCounter& counter() = 0;
  // Greedy (temperature 0) continuation of `prompt`, at most `max_tokens` tokens. The
  // prompt has no special tokens: the tokenizer adds BOS.
  virtual absl::StatusOr<GenerateResult> Generate(const std::string& prompt, int max_tokens) = 0;
  // Generate, also asking the server which share of the tokens of `watch` (the needle)
  // its sparse-attention indexer selected (GenerateResult::indexer_recall). Endpoints
  // without that telemetry just generate.
  virtual absl::StatusOr<GenerateResult> GenerateWatching(const std::string& prompt, int max_tokens,
                                                          TextSpan /*watch*/) {
    return Generate(prompt, max_tokens);
  }
  // Whether ScoreAnswer works; when not, note() says why.
  virtual bool can_score() const = 0;
  // Log-probability of `answer` as the continuation of `prompt`.
  virtual absl::StatusOr<double> ScoreAnswer(const std::string& prompt,
                                             const std::string& answer) = 0;
  // For the summary: the endpoint and how it is driven.
  virtual std::string Describe() const = 0;
  virtual std::string note() const { return ""; }
};

class Tokenizer {
 public:
  virtual ~Tokenizer() = default;
  // Ids of `text`; with add_special, with the special tokens the model's tokenizer
  // configuration adds (BOS).
  virtual absl::StatusOr<std::vector<int32_t>> Encode(const std::string& text,
                                                      bool add_special) = 0;
  virtual absl::StatusOr<std::string> Decode(const std::vector<int32_t>& ids) = 0;
};

// One id per byte (id = byte value), with an optional BOS id. A stand-in for servers
// that load no tokenizer: the ids are meaningful only to a byte-level model, but any
// model with at least 256 ids accepts them, so a sweep can exercise any deployment.
class BytesTokenizer : public Tokenizer {
 public:
  explicit BytesTokenizer(int32_t bos_id = -1) : bos_id_(bos_id) {}
  absl::StatusOr<std::vector<int32_t>> Encode(const std::string& text, bool add_special) override;
  // Ids outside [0, 256) (special tokens) are dropped.
  absl::StatusOr<std::string> Decode(const std::vector<int32_t>& ids) override;

 private:
  const int32_t bos_id_;
};

// Counts with a tokenizer. Piece counts are cached: a sweep counts the same corpus
// sentences over and over. Whole prompts are not (each is counted once or twice).
class CachingCounter : public TokenCounter {
 public:
  explicit CachingCounter(Tokenizer* tokenizer) : tokenizer_(tokenizer) {}
  absl::StatusOr<int> CountPiece(const std::string& piece) override;
  absl::StatusOr<int> CountPrompt(const std::string& prompt) override;
  int64_t cache_hits() const;

 private:
  Tokenizer* const tokenizer_;
  mutable absl::Mutex mu_;
  std::map<std::string, int> cache_ ABSL_GUARDED_BY(mu_);
  int64_t hits_ ABSL_GUARDED_BY(mu_) = 0;
};

}  // namespace mla::recall

#endif  // MLA_CLIENT_RECALL_BACKEND_H_
