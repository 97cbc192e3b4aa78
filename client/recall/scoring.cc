#include "client/recall/scoring.h"

#include <algorithm>
#include <cctype>
#include <cmath>

#include "absl/strings/ascii.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"

namespace mla::recall {

bool ExactMatch(absl::string_view generated, absl::string_view expected) {
  const absl::string_view text = absl::StripLeadingAsciiWhitespace(generated);
  if (expected.empty() || !absl::StartsWith(text, expected)) return false;
  if (text.size() == expected.size()) return true;
  return !std::isalnum(static_cast<unsigned char>(text[expected.size()]));
}

absl::StatusOr<double> SumAnswerLogprobs(
    const google::protobuf::RepeatedPtrField<v1::TokenLogprob>& prompt_logprobs,
    const std::vector<int32_t>& answer_ids) {
  const int n = static_cast<int>(answer_ids.size());
  if (n == 0) return absl::InvalidArgumentError("empty answer");
  if (prompt_logprobs.size() < n) {
    return absl::DataLossError(absl::StrCat("the server returned ", prompt_logprobs.size(),
                                            " prompt logprobs for an answer of ", n, " tokens"));
  }
  const int first = prompt_logprobs.size() - n;
  double sum = 0;
  for (int i = 0; i < n; ++i) {
    const v1::TokenLogprob& lp = prompt_logprobs[first + i];
    if (lp.token_id() != answer_ids[i]) {
      return absl::DataLossError(absl::StrCat("prompt logprob ", first + i, " is for token ",
                                              lp.token_id(), ", expected answer token ",
                                              answer_ids[i]));
    }
    sum += lp.logprob();
  }
  return sum;
}

absl::StatusOr<double> SumEchoLogprobs(const std::vector<int>& text_offsets,
                                       const std::vector<double>& logprobs, int answer_begin,
                                       int answer_end) {
  if (text_offsets.size() != logprobs.size()) {
    return absl::DataLossError("echoed logprobs and offsets differ in length");
  }
  double sum = 0;
  int used = 0;
  for (size_t i = 0; i < text_offsets.size(); ++i) {
    const int begin = text_offsets[i];
    // A token ends where the next one starts; the last one runs to the end of the text.
    const int end = i + 1 < text_offsets.size() ? text_offsets[i + 1] : answer_end;
    const bool overlaps = begin < answer_end && std::max(end, begin + 1) > answer_begin;
    if (!overlaps) continue;
    if (std::isnan(logprobs[i])) return absl::DataLossError("an answer token has no logprob");
    sum += logprobs[i];
    ++used;
  }
  if (used == 0) return absl::DataLossError("no echoed token covers the answer");
  return sum;
}

}  // namespace mla::recall
