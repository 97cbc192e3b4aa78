#include "engine/sampling/sampling_params.h"

#include <cmath>

#include "absl/container/flat_hash_set.h"
#include "absl/strings/str_cat.h"

namespace mla {

absl::Status ValidateSamplingParams(const SamplingParams& params) {
  // Written so that NaN fails every check.
  if (!(params.temperature >= 0.0f) || std::isinf(params.temperature)) {
    return absl::InvalidArgumentError(
        absl::StrCat("temperature must be finite and >= 0, got ", params.temperature));
  }
  if (params.top_k < 0) {
    return absl::InvalidArgumentError(
        absl::StrCat("top_k must be >= 0 (0 = off), got ", params.top_k));
  }
  if (!(params.top_p > 0.0f && params.top_p <= 1.0f)) {
    return absl::InvalidArgumentError(
        absl::StrCat("top_p must be in (0, 1] (1 = off), got ", params.top_p));
  }
  if (!(params.min_p >= 0.0f && params.min_p <= 1.0f)) {
    return absl::InvalidArgumentError(
        absl::StrCat("min_p must be in [0, 1] (0 = off), got ", params.min_p));
  }
  if (!(params.presence_penalty >= -2.0f && params.presence_penalty <= 2.0f)) {
    return absl::InvalidArgumentError(absl::StrCat(
        "presence_penalty must be in [-2, 2] (0 = off), got ", params.presence_penalty));
  }
  if (!(params.frequency_penalty >= -2.0f && params.frequency_penalty <= 2.0f)) {
    return absl::InvalidArgumentError(absl::StrCat(
        "frequency_penalty must be in [-2, 2] (0 = off), got ", params.frequency_penalty));
  }
  if (!(params.repetition_penalty > 0.0f) || std::isinf(params.repetition_penalty)) {
    return absl::InvalidArgumentError(absl::StrCat(
        "repetition_penalty must be finite and > 0 (1 = off), got ", params.repetition_penalty));
  }
  if (params.min_tokens < 0) {
    return absl::InvalidArgumentError(
        absl::StrCat("min_tokens must be >= 0 (0 = off), got ", params.min_tokens));
  }
  if (params.logit_bias.size() > static_cast<size_t>(kMaxLogitBiasEntries)) {
    return absl::InvalidArgumentError(absl::StrCat("logit_bias: at most ", kMaxLogitBiasEntries,
                                                   " entries, got ", params.logit_bias.size()));
  }
  absl::flat_hash_set<int32_t> seen;
  for (const auto& [token, bias] : params.logit_bias) {
    if (token < 0) {
      return absl::InvalidArgumentError(absl::StrCat("logit_bias: token id ", token, " < 0"));
    }
    if (!(bias >= -100.0f && bias <= 100.0f)) {
      return absl::InvalidArgumentError(absl::StrCat("logit_bias: the bias of token ", token,
                                                     " must be in [-100, 100], got ", bias));
    }
    if (!seen.insert(token).second) {
      return absl::InvalidArgumentError(
          absl::StrCat("logit_bias: token ", token, " appears more than once"));
    }
  }
  return absl::OkStatus();
}

}  // namespace mla
