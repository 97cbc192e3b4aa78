// The two scores of a recall trial: exact match of the greedy answer and the
// log-probability of the correct answer's tokens given the prompt.
#ifndef MLA_CLIENT_RECALL_SCORING_H_
#define MLA_CLIENT_RECALL_SCORING_H_

#include <cstdint>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "mla/v1/inference.pb.h"

namespace mla::recall {

// True when `generated`, with leading white space removed, starts with `expected` and
// the value ends there: the next character, if any, is not a letter or digit (so
// "12345." and " 12345\n" match 12345, while "123456" and "1234" do not).
bool ExactMatch(absl::string_view generated, absl::string_view expected);

// The sum of the logprobs of the last answer_ids.size() prompt tokens, from a Generate
// response's prompt_logprobs (one entry per prompt token from the second on). The
// entries' token ids must equal `answer_ids`: a mismatch means the ids sent were not
// prompt + answer.
absl::StatusOr<double> SumAnswerLogprobs(
    const google::protobuf::RepeatedPtrField<v1::TokenLogprob>& prompt_logprobs,
    const std::vector<int32_t>& answer_ids);

// The same from an OpenAI-style echoed completion: `text_offsets[i]` is where token i
// starts in the echoed text and `logprobs[i]` its logprob (the first is usually null,
// given as NaN). Sums the tokens that overlap the answer's characters
// [answer_begin, answer_end): a token that straddles the prompt/answer boundary counts
// as an answer token. An error when no token overlaps or one lacks a logprob.
absl::StatusOr<double> SumEchoLogprobs(const std::vector<int>& text_offsets,
                                       const std::vector<double>& logprobs, int answer_begin,
                                       int answer_end);

}  // namespace mla::recall

#endif  // MLA_CLIENT_RECALL_SCORING_H_
