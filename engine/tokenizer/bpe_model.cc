#include "engine/tokenizer/bpe_model.h"

#include <queue>
#include <utility>

#include "absl/strings/str_cat.h"
#include "common/status_macros.h"
#include "engine/tokenizer/byte_level.h"
#include "engine/tokenizer/json_util.h"

namespace mla {
namespace {

using json_util::Field;
using json_util::Invalid;

uint64_t PairKey(int32_t left, int32_t right) {
  return (static_cast<uint64_t>(static_cast<uint32_t>(left)) << 32) | static_cast<uint32_t>(right);
}

// A possible merge of the symbol at `pos` with its right neighbour. The queue pops the
// lowest rank first and, among equal ranks, the leftmost position (Hugging Face's order).
struct Candidate {
  uint32_t rank;
  int32_t pos;
  int32_t new_id;
};
struct PopsLater {
  bool operator()(const Candidate& a, const Candidate& b) const {
    return a.rank != b.rank ? a.rank > b.rank : a.pos > b.pos;
  }
};

struct Symbol {
  int32_t id;
  int32_t prev;
  int32_t next;
  bool alive;
};

}  // namespace

absl::Status BpeModel::ParseVocab(const nlohmann::json& vocab, const std::string& where) {
  if (!vocab.is_object()) return Invalid(where, "expected an object of token -> id");
  vocab_.reserve(vocab.size());
  for (const auto& [token, id_json] : vocab.items()) {
    if (!id_json.is_number_integer() || id_json.get<int64_t>() < 0 ||
        id_json.get<int64_t>() > INT32_MAX) {
      return Invalid(where, absl::StrCat("the id of '", token, "' is not a valid token id"));
    }
    const auto id = static_cast<int32_t>(id_json.get<int64_t>());
    if (static_cast<size_t>(id) >= tokens_.size()) tokens_.resize(static_cast<size_t>(id) + 1);
    tokens_[static_cast<size_t>(id)] = token;
    vocab_[token] = id;
  }
  for (int b = 0; b < 256; ++b) {
    byte_ids_[b] = TokenToId(BytesToByteLevel(std::string(1, static_cast<char>(b))));
  }
  return absl::OkStatus();
}

absl::Status BpeModel::ParseMerges(const nlohmann::json& merges, const std::string& where) {
  if (!merges.is_array()) return Invalid(where, "expected an array");
  merges_.reserve(merges.size());
  for (size_t i = 0; i < merges.size(); ++i) {
    const nlohmann::json& m = merges[i];
    const std::string at = absl::StrCat(where, "[", i, "]");
    std::string left, right;
    // Either "left right" or ["left", "right"].
    if (m.is_string()) {
      const std::string s = m.get<std::string>();
      const size_t space = s.find(' ');
      if (space == std::string::npos) return Invalid(at, "expected \"left right\"");
      left = s.substr(0, space);
      right = s.substr(space + 1);
    } else if (m.is_array() && m.size() == 2 && m[0].is_string() && m[1].is_string()) {
      left = m[0].get<std::string>();
      right = m[1].get<std::string>();
    } else {
      return Invalid(at, "expected \"left right\" or [\"left\", \"right\"]");
    }
    const int32_t left_id = TokenToId(left);
    const int32_t right_id = TokenToId(right);
    const int32_t new_id = TokenToId(left + right);
    if (left_id < 0 || right_id < 0 || new_id < 0) {
      return Invalid(at, absl::StrCat("merge '", left, "' + '", right,
                                      "' uses or makes a token missing from model.vocab"));
    }
    // A repeated pair keeps its last rank, as in Hugging Face (a map built in order).
    merges_[PairKey(left_id, right_id)] = MergeInfo{static_cast<uint32_t>(i), new_id};
  }
  return absl::OkStatus();
}

absl::StatusOr<std::unique_ptr<BpeModel>> BpeModel::FromJson(const nlohmann::json& model,
                                                             absl::string_view where) {
  const std::string at(where);
  MLA_ASSIGN_OR_RETURN(const std::string type, json_util::GetString(model, "type", at));
  if (type != "BPE") {
    return json_util::Unsupported(Field(at, "type"), absl::StrCat("model type '", type,
                                                                  "' is not supported "
                                                                  "(only byte-level BPE)"));
  }
  for (const char* key : {"continuing_subword_prefix", "end_of_word_suffix"}) {
    const nlohmann::json* v = json_util::Find(model, key);
    if (v != nullptr && !(v->is_string() && v->get<std::string>().empty())) {
      return json_util::Unsupported(Field(at, key), "is not supported with byte-level BPE");
    }
  }
  if (const nlohmann::json* d = json_util::Find(model, "dropout");
      d != nullptr && !(d->is_number() && d->get<double>() == 0.0)) {
    return json_util::Unsupported(Field(at, "dropout"), "BPE dropout is not supported");
  }
  MLA_ASSIGN_OR_RETURN(const bool byte_fallback,
                       json_util::GetBool(model, "byte_fallback", false, at));
  if (byte_fallback) {
    return json_util::Unsupported(Field(at, "byte_fallback"), "is not supported");
  }
  std::unique_ptr<BpeModel> bpe(new BpeModel());
  MLA_ASSIGN_OR_RETURN(bpe->ignore_merges_, json_util::GetBool(model, "ignore_merges", false, at));
  MLA_ASSIGN_OR_RETURN(bpe->fuse_unk_, json_util::GetBool(model, "fuse_unk", false, at));
  const nlohmann::json* vocab = json_util::Find(model, "vocab");
  if (vocab == nullptr) return Invalid(Field(at, "vocab"), "missing");
  MLA_RETURN_IF_ERROR(bpe->ParseVocab(*vocab, Field(at, "vocab")));
  const nlohmann::json* merges = json_util::Find(model, "merges");
  if (merges == nullptr) return Invalid(Field(at, "merges"), "missing");
  MLA_RETURN_IF_ERROR(bpe->ParseMerges(*merges, Field(at, "merges")));
  if (const nlohmann::json* unk = json_util::Find(model, "unk_token"); unk != nullptr) {
    if (!unk->is_string()) return Invalid(Field(at, "unk_token"), "expected a string");
    bpe->unk_id_ = bpe->TokenToId(unk->get<std::string>());
    if (bpe->unk_id_ < 0) return Invalid(Field(at, "unk_token"), "is not in model.vocab");
  }
  if (bpe->ignore_merges_) {
    std::string bytes;
    for (const auto& [token, id] : bpe->vocab_) {
      if (ByteLevelToBytes(token, &bytes)) bpe->byte_vocab_[bytes] = id;
    }
  }
  return bpe;
}

int32_t BpeModel::TokenToId(absl::string_view token) const {
  auto it = vocab_.find(token);
  return it == vocab_.end() ? -1 : it->second;
}

const BpeModel::MergeInfo* BpeModel::FindMerge(int32_t left, int32_t right) const {
  auto it = merges_.find(PairKey(left, right));
  return it == merges_.end() ? nullptr : &it->second;
}

size_t BpeModel::CachedWords() const {
  absl::ReaderMutexLock lock(&cache_mu_);
  return cache_.size();
}

void BpeModel::ClearCache() const {
  absl::MutexLock lock(&cache_mu_);
  cache_.clear();
}

void BpeModel::Encode(absl::string_view word, std::vector<int32_t>* ids) const {
  if (word.empty()) return;
  if (word.size() == 1 && byte_ids_[static_cast<uint8_t>(word[0])] >= 0) {
    ids->push_back(byte_ids_[static_cast<uint8_t>(word[0])]);
    return;
  }
  if (ignore_merges_) {
    auto it = byte_vocab_.find(word);
    if (it != byte_vocab_.end()) {
      ids->push_back(it->second);
      return;
    }
  }
  const bool cacheable = word.size() <= kMaxCachedWordBytes;
  if (cacheable) {
    absl::ReaderMutexLock lock(&cache_mu_);
    auto it = cache_.find(word);
    if (it != cache_.end()) {
      ids->insert(ids->end(), it->second.begin(), it->second.end());
      return;
    }
  }
  Ids merged;
  MergeWord(word, &merged);
  ids->insert(ids->end(), merged.begin(), merged.end());
  if (cacheable) {
    absl::MutexLock lock(&cache_mu_);
    if (cache_.size() >= kCacheCapacity) cache_.clear();
    cache_.emplace(std::string(word), std::move(merged));
  }
}

void BpeModel::MergeWord(absl::string_view word, Ids* ids) const {
  std::vector<Symbol> symbols;
  symbols.reserve(word.size());
  bool previous_unk = false;
  for (char c : word) {
    int32_t id = byte_ids_[static_cast<uint8_t>(c)];
    if (id < 0) {
      // Without an unk token Hugging Face drops bytes missing from the vocabulary.
      if (unk_id_ < 0 || (fuse_unk_ && previous_unk)) continue;
      id = unk_id_;
    }
    previous_unk = byte_ids_[static_cast<uint8_t>(c)] < 0;
    const auto index = static_cast<int32_t>(symbols.size());
    symbols.push_back({id, index - 1, index + 1, true});
  }
  if (symbols.empty()) return;
  symbols.back().next = -1;

  std::priority_queue<Candidate, std::vector<Candidate>, PopsLater> queue;
  for (size_t i = 0; i + 1 < symbols.size(); ++i) {
    if (const MergeInfo* m = FindMerge(symbols[i].id, symbols[i + 1].id)) {
      queue.push({m->rank, static_cast<int32_t>(i), m->new_id});
    }
  }
  while (!queue.empty()) {
    const Candidate top = queue.top();
    queue.pop();
    Symbol& s = symbols[static_cast<size_t>(top.pos)];
    if (!s.alive || s.next < 0) continue;
    Symbol& right = symbols[static_cast<size_t>(s.next)];
    // Skip entries made stale by earlier merges (checked by result, as Hugging Face does).
    const MergeInfo* current = FindMerge(s.id, right.id);
    if (current == nullptr || current->new_id != top.new_id) continue;
    s.id = top.new_id;
    right.alive = false;
    s.next = right.next;
    if (s.next >= 0) symbols[static_cast<size_t>(s.next)].prev = top.pos;
    if (s.prev >= 0) {
      if (const MergeInfo* m = FindMerge(symbols[static_cast<size_t>(s.prev)].id, s.id)) {
        queue.push({m->rank, s.prev, m->new_id});
      }
    }
    if (s.next >= 0) {
      if (const MergeInfo* m = FindMerge(s.id, symbols[static_cast<size_t>(s.next)].id)) {
        queue.push({m->rank, top.pos, m->new_id});
      }
    }
  }
  for (int32_t i = 0; i >= 0; i = symbols[static_cast<size_t>(i)].next) {
    ids->push_back(symbols[static_cast<size_t>(i)].id);
  }
}

}  // namespace mla
