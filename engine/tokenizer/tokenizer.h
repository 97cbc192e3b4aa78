// Text <-> token ids, exactly as Hugging Face's `tokenizers` library does for byte-level
// BPE tokenizer.json files (DeepSeek V2/V3, GPT-2 style vocabularies).
//
// Encode: added/special tokens are cut out of the text first (they are recognized in the
// text whatever add_special_tokens says), the rest is normalized, pre-tokenized (regex
// Splits, ByteLevel) and BPE-merged by rank. With add_special_tokens, BOS/EOS are added as
// transformers' LlamaTokenizerFast (DeepSeek's tokenizer_class) does: when
// tokenizer_config.json has add_bos_token / add_eos_token they decide; otherwise the
// TemplateProcessing post-processor of tokenizer.json (if any) does.
//
// Decode: each id becomes its token's bytes (byte-level characters mapped back to bytes;
// tokens outside that alphabet, like "<｜User｜>", are taken as written), and the bytes
// are read as UTF-8 with each ill-formed sequence replaced by U+FFFD, as Hugging Face does.
//
// Unsupported tokenizer.json features (other model types, normalizers such as NFC,
// pre-tokenizers other than Split/ByteLevel, decoders other than ByteLevel) fail Load with
// an error naming the file and the JSON field. `truncation` and `padding` are ignored.
//
// A Tokenizer is immutable after loading apart from an internal word cache, and all its
// methods may be called from several threads at once.
#ifndef MLA_ENGINE_TOKENIZER_TOKENIZER_H_
#define MLA_ENGINE_TOKENIZER_TOKENIZER_H_

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "absl/types/span.h"

namespace mla {

class AddedVocabulary;
class BpeModel;
class Normalizer;
class PreTokenizer;

class Tokenizer {
 public:
  // Reads tokenizer.json (a path ending in ".xz" is decompressed) and, when the second path
  // is not empty, tokenizer_config.json.
  static absl::StatusOr<std::unique_ptr<Tokenizer>> Load(
      const std::string& tokenizer_json_path, const std::string& tokenizer_config_json_path = "");
  // The same from file contents; an empty config means none. The names appear in errors.
  static absl::StatusOr<std::unique_ptr<Tokenizer>> FromJson(
      absl::string_view tokenizer_json, absl::string_view tokenizer_config_json = "",
      absl::string_view tokenizer_json_name = "tokenizer.json",
      absl::string_view tokenizer_config_json_name = "tokenizer_config.json");

  ~Tokenizer();
  Tokenizer(const Tokenizer&) = delete;
  Tokenizer& operator=(const Tokenizer&) = delete;

  // `text` must be valid UTF-8 (InvalidArgument otherwise).
  absl::StatusOr<std::vector<int32_t>> Encode(absl::string_view text,
                                              bool add_special_tokens = true) const;
  // InvalidArgument for an id that names no token.
  absl::StatusOr<std::string> Decode(absl::Span<const int32_t> ids,
                                     bool skip_special_tokens = false) const;

  // One past the largest token id (model vocabulary and added tokens).
  int32_t vocab_size() const { return static_cast<int32_t>(token_bytes_.size()); }
  bool IsValidId(int32_t id) const {
    return id >= 0 && id < vocab_size() && has_token_[static_cast<size_t>(id)];
  }
  // The bytes Decode produces for this token alone, before UTF-8 repair; it may be part
  // of a multi-byte character. Empty for an invalid id.
  absl::string_view TokenBytes(int32_t id) const;
  bool IsSpecial(int32_t id) const { return IsValidId(id) && special_[static_cast<size_t>(id)]; }
  // Token strings as tokenizer.json writes them (byte-level form for vocabulary entries).
  int32_t TokenToId(absl::string_view token) const;  // -1 when unknown
  std::string IdToToken(int32_t id) const;           // "" for an invalid id

  // From tokenizer_config.json; -1 / "" when not configured.
  int32_t bos_token_id() const { return bos_token_id_; }
  int32_t eos_token_id() const { return eos_token_id_; }
  const std::string& bos_token() const { return bos_token_; }
  const std::string& eos_token() const { return eos_token_; }
  const std::string& chat_template() const { return chat_template_; }
  // Ids Encode adds before / after the text when add_special_tokens is true.
  const std::vector<int32_t>& prefix_ids() const { return prefix_ids_; }
  const std::vector<int32_t>& suffix_ids() const { return suffix_ids_; }

  // Words currently in the BPE cache (for tests and metrics), and emptying it (for
  // benchmarks of the uncached path; results never depend on the cache).
  size_t CachedWords() const;
  void ClearCache() const;

 private:
  Tokenizer();
  absl::Status EncodePlain(absl::string_view piece, std::vector<int32_t>* ids) const;

  std::unique_ptr<Normalizer> normalizer_;
  std::unique_ptr<PreTokenizer> pre_tokenizer_;
  std::unique_ptr<BpeModel> bpe_;
  std::unique_ptr<AddedVocabulary> added_;

  std::vector<std::string> token_bytes_;  // by id: what the byte-level decoder yields
  std::vector<bool> has_token_;
  std::vector<bool> special_;
  std::vector<int32_t> prefix_ids_;
  std::vector<int32_t> suffix_ids_;
  int32_t bos_token_id_ = -1;
  int32_t eos_token_id_ = -1;
  std::string bos_token_;
  std::string eos_token_;
  std::string chat_template_;

  friend class TokenizerBuilder;
};

}  // namespace mla

#endif  // MLA_ENGINE_TOKENIZER_TOKENIZER_H_
