// tokenizer.json "model" of type BPE over the byte-level alphabet: the vocabulary, the
// merges by rank and a cache of encoded words.
#ifndef MLA_ENGINE_TOKENIZER_BPE_MODEL_H_
#define MLA_ENGINE_TOKENIZER_BPE_MODEL_H_

#include <array>
#include <cstdint>
#include <memory>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/container/flat_hash_map.h"
#include "absl/container/inlined_vector.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "absl/synchronization/mutex.h"

namespace mla {

class BpeModel {
 public:
  // Words longer than this are encoded without the cache.
  static constexpr size_t kMaxCachedWordBytes = 256;
  // The cache is cleared when it reaches this many words, which bounds its memory while
  // keeping it useful for a long-running server.
  static constexpr size_t kCacheCapacity = 1 << 16;

  static absl::StatusOr<std::unique_ptr<BpeModel>> FromJson(const nlohmann::json& model,
                                                            absl::string_view where);

  // Appends the ids of one pre-tokenized word, given as raw bytes. Thread-safe.
  void Encode(absl::string_view word, std::vector<int32_t>* ids) const;

  // The id of a vocabulary entry (byte-level form, as written in tokenizer.json), or -1.
  int32_t TokenToId(absl::string_view token) const;
  // Vocabulary entries by id ("" where an id has no entry).
  const std::vector<std::string>& tokens() const { return tokens_; }

  size_t CachedWords() const;
  void ClearCache() const;

 private:
  struct MergeInfo {
    uint32_t rank;
    int32_t new_id;
  };
  using Ids = absl::InlinedVector<int32_t, 4>;

  absl::Status ParseVocab(const nlohmann::json& vocab, const std::string& where);
  absl::Status ParseMerges(const nlohmann::json& merges, const std::string& where);
  const MergeInfo* FindMerge(int32_t left, int32_t right) const;
  void MergeWord(absl::string_view word, Ids* ids) const;

  absl::flat_hash_map<std::string, int32_t> vocab_;
  std::vector<std::string> tokens_;
  std::array<int32_t, 256> byte_ids_;  // the id of each single byte, -1 if absent
  absl::flat_hash_map<uint64_t, MergeInfo> merges_;
  bool ignore_merges_ = false;
  absl::flat_hash_map<std::string, int32_t> byte_vocab_;  // raw bytes -> id (ignore_merges)
  int32_t unk_id_ = -1;
  bool fuse_unk_ = false;

  mutable absl::Mutex cache_mu_;
  mutable absl::flat_hash_map<std::string, Ids> cache_ ABSL_GUARDED_BY(cache_mu_);
};

}  // namespace mla

#endif  // MLA_ENGINE_TOKENIZER_BPE_MODEL_H_
