// The OpenAI request bodies: what each field becomes in the shared GenerateRequest, and
// the 400/404 answers (naming the field) for malformed JSON, wrong types, out-of-range
// values, unknown fields and supported-only-at-neutral fields.
#include "server/openai/openai_request.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <string>

namespace mla::openai {
namespace {

using ::testing::ElementsAre;
using ::testing::HasSubstr;

constexpr char kModel[] = "demo";

OpenAiRequest ParseOk(Endpoint endpoint, const std::string& body) {
  OpenAiRequest r;
  std::optional<ApiError> error = ParseRequest(endpoint, body, kModel, &r);
  EXPECT_FALSE(error.has_value()) << body << " → " << (error ? error->message : "");
  return r;
}

ApiError ParseError(Endpoint endpoint, const std::string& body) {
  OpenAiRequest r;
  std::optional<ApiError> error = ParseRequest(endpoint, body, kModel, &r);
  EXPECT_TRUE(error.has_value()) << body;
  return error.value_or(ApiError{});
}

TEST(OpenAiRequestTest, CompletionFieldsMapOntoTheSharedRequest) {
  const OpenAiRequest r =
      ParseOk(Endpoint::kCompletions,
              R"({"model": "demo", "prompt": "hello", "max_tokens": 7, "temperature": 0.5,
          "top_p": 0.9, "top_k": 40, "min_p": 0.05, "seed": -3, "stop": ["a", "bc"],
          "ignore_eos": true, "n": 3, "priority": 5, "cache_salt": "s", "echo": true,
          "logprobs": 2, "user": "u", "presence_penalty": -0.5, "frequency_penalty": 1.5,
          "repetition_penalty": 1.2, "logit_bias": {"7": -100, "12": 2.5}, "min_tokens": 3,
          "stream": true, "stream_options": {"include_usage": true}})");
  const v1::GenerateRequest& g = r.generate;
  EXPECT_EQ(g.text(), "hello");
  EXPECT_EQ(r.prompt_text, "hello");
  EXPECT_EQ(g.sampling().max_tokens(), 7);
  EXPECT_FLOAT_EQ(g.sampling().temperature(), 0.5f);
  EXPECT_FLOAT_EQ(g.sampling().top_p(), 0.9f);
  EXPECT_EQ(g.sampling().top_k(), 40);
  EXPECT_FLOAT_EQ(g.sampling().min_p(), 0.05f);
  EXPECT_TRUE(g.sampling().has_seed());
  EXPECT_EQ(g.sampling().seed(), static_cast<uint64_t>(int64_t{-3}));
  EXPECT_THAT(g.sampling().stop(), ElementsAre("a", "bc"));
  EXPECT_TRUE(g.sampling().ignore_eos());
  EXPECT_FLOAT_EQ(g.sampling().presence_penalty(), -0.5f);
  EXPECT_FLOAT_EQ(g.sampling().frequency_penalty(), 1.5f);
  EXPECT_FLOAT_EQ(g.sampling().repetition_penalty(), 1.2f);
  ASSERT_EQ(g.sampling().logit_bias().size(), 2u);
  EXPECT_FLOAT_EQ(g.sampling().logit_bias().at(7), -100.0f);
  EXPECT_FLOAT_EQ(g.sampling().logit_bias().at(12), 2.5f);
  EXPECT_EQ(g.sampling().min_tokens(), 3);
  EXPECT_EQ(r.n, 3);
  EXPECT_EQ(g.priority(), 5);
  EXPECT_EQ(g.cache_salt(), "s");
  EXPECT_EQ(g.logprobs(), 2);
  EXPECT_EQ(g.prompt_logprobs(), 2);  // echo + logprobs: the prompt's logprobs too.
  EXPECT_TRUE(r.echo);
  EXPECT_TRUE(r.stream);
  EXPECT_TRUE(r.include_usage);
  EXPECT_EQ(r.logprobs, 2);
}

TEST(OpenAiRequestTest, DefaultsFollowOpenAi) {
  OpenAiRequest r = ParseOk(Endpoint::kCompletions, R"({"model": "demo", "prompt": [1, 2, 3]})");
  EXPECT_THAT(r.generate.token_ids().ids(), ElementsAre(1, 2, 3));
  EXPECT_EQ(r.generate.sampling().max_tokens(), 16);  // Completions default.
  EXPECT_FLOAT_EQ(r.generate.sampling().temperature(), 1.0f);
  EXPECT_FALSE(r.generate.sampling().has_seed());
  EXPECT_EQ(r.logprobs, -1);
  EXPECT_FALSE(r.generate.has_prompt_logprobs());
  EXPECT_EQ(r.generate.sampling().presence_penalty(), 0.0f);  // Penalties off.
  EXPECT_EQ(r.generate.sampling().frequency_penalty(), 0.0f);
  EXPECT_EQ(r.generate.sampling().repetition_penalty(), 1.0f);
  EXPECT_TRUE(r.generate.sampling().logit_bias().empty());
  EXPECT_EQ(r.n, 1);
  // null is absent; one prompt in a list is that prompt; top_k -1 is off.
  r = ParseOk(Endpoint::kCompletions,
              R"({"model": "demo", "prompt": [[4, 5]], "seed": null, "top_k": -1,
                  "temperature": 0})");
  EXPECT_THAT(r.generate.token_ids().ids(), ElementsAre(4, 5));
  EXPECT_EQ(r.generate.sampling().top_k(), 0);
  EXPECT_FLOAT_EQ(r.generate.sampling().temperature(), 0.0f);
  r = ParseOk(Endpoint::kCompletions, R"({"model": "demo", "prompt": ["one"], "stop": "x"})");
  EXPECT_EQ(r.generate.text(), "one");
  EXPECT_THAT(r.generate.sampling().stop(), ElementsAre("x"));
}

TEST(OpenAiRequestTest, ChatMessagesAndLogprobs) {
  const OpenAiRequest r =
      ParseOk(Endpoint::kChat,
              R"({"model": "demo", "messages": [{"role": "system", "content": "be brief"},
          {"role": "user", "content": [{"type": "text", "text": "hi "},
                                       {"type": "text", "text": "there"}]}],
          "max_completion_tokens": 9, "logprobs": true, "top_logprobs": 3,
          "tools": [], "response_format": {"type": "text"}})");
  const v1::ChatMessages& m = r.generate.messages();
  ASSERT_EQ(m.messages_size(), 2);
  EXPECT_EQ(m.messages(0).role(), "system");
  EXPECT_EQ(m.messages(1).content(), "hi there");
  EXPECT_TRUE(m.add_generation_prompt());
  EXPECT_EQ(r.generate.sampling().max_tokens(), 9);
  EXPECT_EQ(r.logprobs, 3);
  EXPECT_EQ(r.generate.logprobs(), 3);
  // No max_tokens: chat runs up to the context (0 in the shared request).
  EXPECT_EQ(ParseOk(Endpoint::kChat, R"({"model": "demo", "messages": [{"role": "user",
            "content": "x"}]})")
                .generate.sampling()
                .max_tokens(),
            0);
}

TEST(OpenAiRequestTest, ErrorsNameTheField) {
  struct Case {
    Endpoint endpoint;
    std::string body;
    int status;
    std::string param;
    std::string message;
  };
  const Endpoint c = Endpoint::kCompletions, chat = Endpoint::kChat;
  const Case cases[] = {
      {c, "{\"model\": ", 400, "", "not valid JSON"},
      {c, "[1]", 400, "", "must be a JSON object"},
      {c, R"({"prompt": "x"})", 400, "model", "model: is required"},
      {c, R"({"model": "other", "prompt": "x"})", 404, "model", "does not exist"},
      {c, R"({"model": "demo"})", 400, "prompt", "is required"},
      {c, R"({"model": "demo", "prompt": ""})", 400, "prompt", "must not be empty"},
      {c, R"({"model": "demo", "prompt": ["a", "b"]})", 400, "prompt", "several prompts"},
      {c, R"({"model": "demo", "prompt": [1, -2]})", 400, "prompt", "token ids"},
      {c, R"({"model": "demo", "prompt": "x", "temperature": "hot"})", 400, "temperature",
       "must be a number"},
      {c, R"({"model": "demo", "prompt": "x", "temperature": 2.5})", 400, "temperature",
       "must be in [0, 2]"},
      {c, R"({"model": "demo", "prompt": "x", "top_p": 0})", 400, "top_p", "(0, 1]"},
      {c, R"({"model": "demo", "prompt": "x", "max_tokens": 0})", 400, "max_tokens", "[1, "},
      {c, R"({"model": "demo", "prompt": "x", "max_tokens": 1.5})", 400, "max_tokens",
       "must be an integer"},
      {c, R"({"model": "demo", "prompt": "x", "logprobs": 21})", 400, "logprobs", "[0, 20]"},
      {c, R"({"model": "demo", "prompt": "x", "n": 17})", 400, "n", "must be in [1, 16]"},
      {c, R"({"model": "demo", "prompt": "x", "n": 0})", 400, "n", "must be in [1, 16]"},
      {c, R"({"model": "demo", "prompt": "x", "best_of": 3})", 400, "best_of", "only 1"},
      {c, R"({"model": "demo", "prompt": "x", "presence_penalty": 2.5})", 400, "presence_penalty",
       "[-2, 2]"},
      {c, R"({"model": "demo", "prompt": "x", "frequency_penalty": "a"})", 400, "frequency_penalty",
       "must be a number"},
      {c, R"({"model": "demo", "prompt": "x", "repetition_penalty": 0})", 400, "repetition_penalty",
       "(0, "},
      {c, R"({"model": "demo", "prompt": "x", "logit_bias": [5]})", 400, "logit_bias",
       "must be an object"},
      {c, R"({"model": "demo", "prompt": "x", "logit_bias": {"x5": 1}})", 400, "logit_bias",
       "is not a token id"},
      {c, R"({"model": "demo", "prompt": "x", "logit_bias": {"-1": 1}})", 400, "logit_bias",
       "is not a token id"},
      {c, R"({"model": "demo", "prompt": "x", "logit_bias": {"5": "up"}})", 400, "logit_bias",
       "must be a number"},
      {c, R"({"model": "demo", "prompt": "x", "logit_bias": {"5": 101}})", 400, "logit_bias",
       "[-100, 100]"},
      {c, R"({"model": "demo", "prompt": "x", "logit_bias": {"5": 1, "05": 2}})", 400, "logit_bias",
       "more than once"},
      {c, R"({"model": "demo", "prompt": "x", "min_tokens": -1})", 400, "min_tokens", "[0, "},
      {c, R"({"model": "demo", "prompt": "x", "suffix": "y"})", 400, "suffix", "insertion"},
      {c, R"({"model": "demo", "prompt": "x", "frobnicate": true})", 400, "frobnicate",
       "unknown field"},
      {c, R"({"model": "demo", "prompt": "x", "stop": [1]})", 400, "stop", "strings"},
      {c, R"({"model": "demo", "prompt": "x", "stream_options": {"include_usage": true}})", 400,
       "stream_options", "only allowed when stream is true"},
      {c, R"({"model": "demo", "prompt": "x", "ignore_eos": 1})", 400, "ignore_eos",
       "true or false"},
      {chat, R"({"model": "demo", "messages": []})", 400, "messages", "non-empty"},
      {chat, R"({"model": "demo", "messages": [{"content": "x"}]})", 400, "messages[0].role",
       "must be a string"},
      {chat, R"({"model": "demo", "messages": [{"role": "user", "content": [{"type":
       "image_url"}]}]})",
       400, "messages[0].content[0]", "text"},
      {chat, R"({"model": "demo", "messages": [{"role": "user", "content": [{"type": 5}]}]})", 400,
       "messages[0].content[0]", "text"},
      {chat, R"({"model": "demo", "messages": [{"role": "user", "content": "x"}],
       "response_format": {"type": ["text"]}})",
       400, "response_format", "not supported"},
      {chat, R"({"model": "demo", "messages": [{"role": "user", "content": "x",
       "tool_calls": []}]})",
       400, "messages[0].tool_calls", "not supported"},
      {chat, R"({"model": "demo", "messages": [{"role": "user", "content": "x"}],
       "top_logprobs": 2})",
       400, "top_logprobs", "needs logprobs"},
      {chat, R"({"model": "demo", "messages": [{"role": "user", "content": "x"}],
       "tools": [{"type": "function"}]})",
       400, "tools", "no tool calling"},
      {chat, R"({"model": "demo", "messages": [{"role": "user", "content": "x"}],
       "max_tokens": 3, "max_completion_tokens": 4})",
       400, "max_completion_tokens", "differs"},
      {chat, R"({"model": "demo", "messages": [{"role": "user", "content": "x"}],
       "echo": true})",
       400, "echo", "unknown field"},
  };
  for (const Case& k : cases) {
    const ApiError e = ParseError(k.endpoint, k.body);
    EXPECT_EQ(e.status, k.status) << k.body;
    EXPECT_EQ(e.param, k.param) << k.body;
    EXPECT_THAT(e.message, HasSubstr(k.message)) << k.body;
    EXPECT_EQ(e.type, "invalid_request_error");
    EXPECT_EQ(e.code, k.status == 404 ? "model_not_found" : "") << k.body;
  }
}

TEST(OpenAiRequestTest, SharedValidationErrorsSpeakOpenAiFieldNames) {
  ApiError e = FromStatus(absl::InvalidArgumentError("sampling.top_k: must be <= 512"),
                          Endpoint::kCompletions);
  EXPECT_EQ(e.status, 400);
  EXPECT_EQ(e.param, "top_k");
  EXPECT_EQ(e.message, "top_k: must be <= 512");
  e = FromStatus(absl::InvalidArgumentError("token_ids.ids[2]: 900 is outside the vocabulary"),
                 Endpoint::kCompletions);
  EXPECT_EQ(e.param, "prompt[2]");
  e = FromStatus(absl::InvalidArgumentError(
                     "prompt (9 tokens) + max_tokens (9000) exceeds the model's context of 4096 "
                     "tokens"),
                 Endpoint::kChat);
  EXPECT_EQ(e.code, "context_length_exceeded");
  EXPECT_EQ(e.param, "messages");
  e = FromStatus(absl::FailedPreconditionError("messages: the model has no chat_template"),
                 Endpoint::kChat);
  EXPECT_EQ(e.status, 400);
  EXPECT_EQ(e.param, "messages");
  e = FromStatus(absl::ResourceExhaustedError("the waiting queue is full"), Endpoint::kChat);
  EXPECT_EQ(e.status, 429);
  EXPECT_EQ(e.type, "rate_limit_error");
  EXPECT_EQ(FromStatus(absl::UnavailableError("shutting down"), Endpoint::kChat).status, 503);
  EXPECT_EQ(FromStatus(absl::InternalError("boom"), Endpoint::kChat).status, 500);
}

}  // namespace
}  // namespace mla::openai
