#include "engine/tokenizer/pre_tokenizer.h"

#include <algorithm>
#include <utility>
#include <vector>

#include "absl/strings/str_cat.h"
#include "common/status_macros.h"
#include "engine/tokenizer/json_util.h"
#include "engine/tokenizer/normalizer.h"

namespace mla {
namespace {

using json_util::Field;
using json_util::Invalid;

// GPT-2's pre-tokenization regex, which ByteLevel applies when use_regex is true.
constexpr absl::string_view kGpt2Pattern =
    R"('s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+)";

struct Segment {
  size_t start;
  size_t end;
  bool flag;  // is_match while finding, `remove` after the behavior is applied
};
using Segments = std::vector<Segment>;

absl::StatusOr<SplitBehavior> ParseBehavior(const std::string& name, const std::string& where) {
  if (name == "Removed") return SplitBehavior::kRemoved;
  if (name == "Isolated") return SplitBehavior::kIsolated;
  if (name == "MergedWithPrevious") return SplitBehavior::kMergedWithPrevious;
  if (name == "MergedWithNext") return SplitBehavior::kMergedWithNext;
  if (name == "Contiguous") return SplitBehavior::kContiguous;
  return json_util::Unsupported(where, absl::StrCat("unknown Split behavior '", name, "'"));
}

// Folds the (offsets, is_match) list of a Split into the pieces to keep, following
// Hugging Face's NormalizedString::split for each behavior.
Segments ApplyBehavior(const Segments& found, SplitBehavior behavior) {
  Segments out;
  switch (behavior) {
    case SplitBehavior::kIsolated:
      for (const Segment& s : found) out.push_back({s.start, s.end, false});
      return out;
    case SplitBehavior::kRemoved:
      return found;
    case SplitBehavior::kContiguous: {
      bool previous_match = false;
      for (const Segment& s : found) {
        if (s.flag == previous_match && !out.empty()) {
          out.back().end = s.end;
        } else {
          out.push_back({s.start, s.end, false});
        }
        previous_match = s.flag;
      }
      return out;
    }
    case SplitBehavior::kMergedWithPrevious: {
      bool previous_match = false;
      for (const Segment& s : found) {
        if (s.flag && !previous_match && !out.empty()) {
          out.back().end = s.end;
        } else {
          out.push_back({s.start, s.end, false});
        }
        previous_match = s.flag;
      }
      return out;
    }
    case SplitBehavior::kMergedWithNext: {
      bool previous_match = false;
      for (auto it = found.rbegin(); it != found.rend(); ++it) {
        if (it->flag && !previous_match && !out.empty()) {
          out.back().start = it->start;
        } else {
          out.push_back({it->start, it->end, false});
        }
        previous_match = it->flag;
      }
      std::reverse(out.begin(), out.end());
      return out;
    }
  }
  return out;
}

}  // namespace

absl::Status PreTokenizer::AddStep(const nlohmann::json& j, const std::string& where, bool last) {
  MLA_ASSIGN_OR_RETURN(const std::string type, json_util::GetString(j, "type", where));
  if (type == "ByteLevel") {
    if (!last) {
      return json_util::Unsupported(where, "ByteLevel must be the last pre-tokenizer");
    }
    has_byte_level_ = true;
    MLA_ASSIGN_OR_RETURN(add_prefix_space_, json_util::GetBool(j, "add_prefix_space", true, where));
    MLA_ASSIGN_OR_RETURN(const bool use_regex, json_util::GetBool(j, "use_regex", true, where));
    if (use_regex) {
      MLA_ASSIGN_OR_RETURN(byte_level_regex_, Regex::Compile(kGpt2Pattern));
    }
    return absl::OkStatus();
  }
  if (type == "Split") {
    SplitStep step;
    const nlohmann::json* pattern = json_util::Find(j, "pattern");
    if (pattern == nullptr) return Invalid(Field(where, "pattern"), "missing");
    MLA_ASSIGN_OR_RETURN(step.regex, ParsePattern(*pattern, Field(where, "pattern")));
    MLA_ASSIGN_OR_RETURN(const std::string behavior, json_util::GetString(j, "behavior", where));
    MLA_ASSIGN_OR_RETURN(step.behavior, ParseBehavior(behavior, Field(where, "behavior")));
    MLA_ASSIGN_OR_RETURN(step.invert, json_util::GetBool(j, "invert", false, where));
    splits_.push_back(std::move(step));
    return absl::OkStatus();
  }
  return json_util::Unsupported(
      Field(where, "type"),
      absl::StrCat("pre-tokenizer type '", type,
                   "' is not supported (supported: Sequence of Split, then ByteLevel)"));
}

absl::StatusOr<std::unique_ptr<PreTokenizer>> PreTokenizer::FromJson(const nlohmann::json& j,
                                                                     absl::string_view where) {
  std::unique_ptr<PreTokenizer> pre(new PreTokenizer());
  const std::string at(where);
  if (j.is_object() && j.value("type", "") == "Sequence") {
    const nlohmann::json* list = json_util::Find(j, "pretokenizers");
    if (list == nullptr || !list->is_array()) {
      return Invalid(Field(at, "pretokenizers"), "expected an array");
    }
    for (size_t i = 0; i < list->size(); ++i) {
      MLA_RETURN_IF_ERROR(pre->AddStep((*list)[i], absl::StrCat(at, ".pretokenizers[", i, "]"),
                                       i + 1 == list->size()));
    }
  } else if (j.is_object()) {
    MLA_RETURN_IF_ERROR(pre->AddStep(j, at, /*last=*/true));
  }
  if (!pre->has_byte_level_) {
    return json_util::Unsupported(
        at, "only byte-level BPE is supported: the pre-tokenizer must end with ByteLevel");
  }
  return pre;
}

absl::Status PreTokenizer::Run(absl::string_view text,
                               absl::FunctionRef<void(absl::string_view)> emit) const {
  return RunStep(0, text, emit);
}

absl::Status PreTokenizer::RunStep(size_t step, absl::string_view piece,
                                   absl::FunctionRef<void(absl::string_view)> emit) const {
  if (piece.empty()) return absl::OkStatus();
  if (step == splits_.size()) return RunByteLevel(piece, emit);
  const SplitStep& split = splits_[step];
  Segments found;
  size_t previous = 0;
  MLA_RETURN_IF_ERROR(split.regex->ForEachMatch(piece, [&](size_t start, size_t end) {
    if (previous != start) found.push_back({previous, start, split.invert});
    found.push_back({start, end, !split.invert});
    previous = end;
  }));
  if (previous != piece.size()) found.push_back({previous, piece.size(), split.invert});
  for (const Segment& s : ApplyBehavior(found, split.behavior)) {
    if (s.flag || s.start == s.end) continue;
    MLA_RETURN_IF_ERROR(RunStep(step + 1, piece.substr(s.start, s.end - s.start), emit));
  }
  return absl::OkStatus();
}

absl::Status PreTokenizer::RunByteLevel(absl::string_view piece,
                                        absl::FunctionRef<void(absl::string_view)> emit) const {
  std::string prefixed;
  absl::string_view text = piece;
  // Hugging Face adds the space to every piece that reaches ByteLevel, not just the first.
  if (add_prefix_space_ && piece.front() != ' ') {
    prefixed = absl::StrCat(" ", piece);
    text = prefixed;
  }
  if (byte_level_regex_ == nullptr) {
    emit(text);
    return absl::OkStatus();
  }
  size_t previous = 0;
  MLA_RETURN_IF_ERROR(byte_level_regex_->ForEachMatch(text, [&](size_t start, size_t end) {
    if (start > previous) emit(text.substr(previous, start - previous));
    if (end > start) emit(text.substr(start, end - start));
    previous = end;
  }));
  if (previous < text.size()) emit(text.substr(previous));
  return absl::OkStatus();
}

}  // namespace mla
