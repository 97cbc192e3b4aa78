// The OpenAI response objects as clients parse them: the error shape, Server-Sent Events,
// completion and chat objects and chunks, usage with cached tokens, and both logprobs
// formats (legacy with text offsets into the returned text, chat with bytes).
#include "server/openai/openai_response.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <memory>
#include <string>

namespace mla::openai {
namespace {

using Json = nlohmann::json;
using ::testing::StartsWith;

// The demo model's byte-level tokenizer: ids 0-255 are bytes, 256 BOS, 257 EOS.
std::unique_ptr<Tokenizer> DemoTokenizer() {
  const std::string dir = std::string(MLA_MODELS_DIR) + "/needle-v2-demo/";
  absl::StatusOr<std::unique_ptr<Tokenizer>> t =
      Tokenizer::Load(dir + "tokenizer.json", dir + "tokenizer_config.json");
  EXPECT_TRUE(t.ok()) << t.status();
  return t.ok() ? std::move(*t) : nullptr;
}

TokenLogprobs Lp(int32_t id, float logprob, std::vector<TokenLogprob> top) {
  return TokenLogprobs{id, logprob, std::move(top)};
}

OpenAiRequest Request(Endpoint endpoint, int logprobs) {
  OpenAiRequest r;
  r.endpoint = endpoint;
  r.model = "demo";
  r.logprobs = logprobs;
  return r;
}

TEST(OpenAiResponseTest, ErrorShapeAndEvents) {
  const Json e = Json::parse(ErrorBody(
      ApiError{404, "no such model", "invalid_request_error", "model", "model_not_found"}));
  EXPECT_EQ(e["error"]["message"], "no such model");
  EXPECT_EQ(e["error"]["type"], "invalid_request_error");
  EXPECT_EQ(e["error"]["param"], "model");
  EXPECT_EQ(e["error"]["code"], "model_not_found");
  const Json bare = Json::parse(ErrorBody(ApiError{500, "x", "server_error", "", ""}));
  EXPECT_TRUE(bare["error"]["param"].is_null());
  EXPECT_TRUE(bare["error"]["code"].is_null());
  EXPECT_EQ(SseEvent("{\"a\":1}"), "data: {\"a\":1}\n\n");
  EXPECT_EQ(kSseDone, "data: [DONE]\n\n");
  EXPECT_STREQ(FinishReasonName(FinishReason::kStopSequence), "stop");
  EXPECT_STREQ(FinishReasonName(FinishReason::kStop), "stop");
  EXPECT_STREQ(FinishReasonName(FinishReason::kLength), "length");
  // A piece of a UTF-8 character never makes the encoder throw.
  EXPECT_EQ(Dump(Json{{"t", std::string("\xe2\x82")}}), "{\"t\":\"\xef\xbf\xbd\"}");
}

TEST(OpenAiResponseTest, EchoedCompletionWithLegacyLogprobs) {
  std::unique_ptr<Tokenizer> tokenizer = DemoTokenizer();
  ASSERT_NE(tokenizer, nullptr);
  OpenAiRequest request = Request(Endpoint::kCompletions, 1);
  ResponseEncoder encoder(request, tokenizer.get(), "cmpl-1", 1700000000);
  // BOS, "a", "b": the first prompt token has no logprob.
  const std::vector<TokenLogprobs> prompt_lps = {Lp('a', -2.0f, {{'x', -0.5f}}),
                                                 Lp('b', -1.0f, {{'b', -1.0f}})};
  encoder.AddPrompt({256, 'a', 'b'}, prompt_lps);
  encoder.AddTokens({'c', 257}, {Lp('c', -0.25f, {{'c', -0.25f}}), Lp(257, -0.1f, {})}, "c");
  const Json j = Json::parse(encoder.Whole("stop", Usage{3, 2, 1}));
  EXPECT_EQ(j["id"], "cmpl-1");
  EXPECT_EQ(j["object"], "text_completion");
  EXPECT_EQ(j["created"], 1700000000);
  EXPECT_EQ(j["model"], "demo");
  const Json& choice = j["choices"][0];
  EXPECT_EQ(choice["text"], "abc");
  EXPECT_EQ(choice["finish_reason"], "stop");
  const Json& lp = choice["logprobs"];
  EXPECT_EQ(lp["tokens"],
            Json::array({"<｜begin▁of▁sentence｜>", "a", "b", "c", "<｜end▁of▁sentence｜>"}));
  // Offsets index the returned text: special tokens add none.
  EXPECT_EQ(lp["text_offset"], Json::array({0, 0, 1, 2, 3}));
  EXPECT_TRUE(lp["token_logprobs"][0].is_null());
  EXPECT_EQ(lp["token_logprobs"][1], -2.0);
  EXPECT_TRUE(lp["top_logprobs"][0].is_null());
  // The alternatives and the chosen token.
  EXPECT_EQ(lp["top_logprobs"][1], (Json{{"x", -0.5}, {"a", -2.0}}));
  EXPECT_EQ(lp["top_logprobs"][3], (Json{{"c", -0.25}}));
  EXPECT_EQ(j["usage"], (Json{{"prompt_tokens", 3},
                              {"completion_tokens", 2},
                              {"total_tokens", 5},
                              {"prompt_tokens_details", {{"cached_tokens", 1}}}}));
}

TEST(OpenAiResponseTest, ChatChunksCarryRoleThenDeltasThenReasonThenUsage) {
  std::unique_ptr<Tokenizer> tokenizer = DemoTokenizer();
  ASSERT_NE(tokenizer, nullptr);
  ResponseEncoder encoder(Request(Endpoint::kChat, 1), tokenizer.get(), "chatcmpl-7", 5);
  encoder.AddTokens({'h'}, {Lp('h', -0.5f, {{'h', -0.5f}, {'j', -1.5f}})}, "h");
  Json first = Json::parse(encoder.TakeChunk(nullptr));
  EXPECT_EQ(first["object"], "chat.completion.chunk");
  EXPECT_EQ(first["choices"][0]["delta"], (Json{{"role", "assistant"}, {"content", "h"}}));
  EXPECT_TRUE(first["choices"][0]["finish_reason"].is_null());
  const Json& content = first["choices"][0]["logprobs"]["content"];
  ASSERT_EQ(content.size(), 1u);
  EXPECT_EQ(content[0]["token"], "h");
  EXPECT_EQ(content[0]["bytes"], Json::array({104}));
  ASSERT_EQ(content[0]["top_logprobs"].size(), 1u);  // top_logprobs = 1.
  EXPECT_EQ(content[0]["top_logprobs"][0]["logprob"], -0.5);
  EXPECT_EQ(encoder.TakeChunk(nullptr), "");  // Nothing new.
  encoder.AddTokens({'i'}, {Lp('i', -0.1f, {{'i', -0.1f}})}, "i");
  Json second = Json::parse(encoder.TakeChunk(nullptr));
  EXPECT_EQ(second["choices"][0]["delta"], (Json{{"content", "i"}}));
  Json last = Json::parse(encoder.TakeChunk("length"));
  EXPECT_EQ(last["choices"][0]["delta"], Json::object());
  EXPECT_EQ(last["choices"][0]["finish_reason"], "length");
  Json usage = Json::parse(encoder.UsageChunk(Usage{4, 2, 0}));
  EXPECT_TRUE(usage["choices"].empty());
  EXPECT_EQ(usage["usage"]["total_tokens"], 6);
  Json whole = Json::parse(encoder.Whole("length", Usage{4, 2, 0}));
  EXPECT_EQ(whole["object"], "chat.completion");
  EXPECT_EQ(whole["choices"][0]["message"], (Json{{"role", "assistant"}, {"content", "hi"}}));
  EXPECT_EQ(whole["choices"][0]["logprobs"]["content"].size(), 2u);
}

TEST(OpenAiResponseTest, WithoutLogprobsOrTokenizer) {
  ResponseEncoder encoder(Request(Endpoint::kCompletions, -1), nullptr, "cmpl-2", 5);
  encoder.AddTokens({7, 8}, {}, "");
  Json chunk = Json::parse(encoder.TakeChunk(nullptr));
  EXPECT_TRUE(chunk["choices"][0]["logprobs"].is_null());
  EXPECT_EQ(chunk["choices"][0]["text"], "");
  ResponseEncoder ids(Request(Endpoint::kCompletions, 0), nullptr, "cmpl-3", 5);
  ids.AddTokens({7}, {Lp(7, -1.0f, {{9, -0.5f}})}, "");
  Json j = Json::parse(ids.Whole("length", Usage{}));
  EXPECT_EQ(j["choices"][0]["logprobs"]["tokens"], Json::array({"token_id:7"}));
  // logprobs 0: the chosen token only.
  EXPECT_EQ(j["choices"][0]["logprobs"]["top_logprobs"][0], (Json{{"token_id:7", -1.0}}));
  EXPECT_THAT(ids.id(), StartsWith("cmpl-"));
}

// n choices: each encoder writes its own index in chunks, and the whole object lists the
// choices in order with their own texts and finish reasons, one envelope and one usage.
TEST(OpenAiResponseTest, SeveralChoicesKeepTheirIndices) {
  std::unique_ptr<Tokenizer> tokenizer = DemoTokenizer();
  ASSERT_NE(tokenizer, nullptr);
  const OpenAiRequest request = Request(Endpoint::kCompletions, -1);
  ResponseEncoder first(request, tokenizer.get(), "cmpl-9", 5, 0);
  ResponseEncoder second(request, tokenizer.get(), "cmpl-9", 5, 1);
  first.AddTokens({'a'}, {}, "a");
  second.AddTokens({'b', 'c'}, {}, "bc");
  EXPECT_EQ(Json::parse(second.TakeChunk(nullptr))["choices"][0]["index"], 1);
  EXPECT_EQ(Json::parse(first.TakeChunk("stop"))["choices"][0]["index"], 0);
  const ResponseEncoder* encoders[] = {&first, &second};
  const char* reasons[] = {"stop", "length"};
  const Json whole =
      Json::parse(ResponseEncoder::WholeOfChoices(encoders, reasons, Usage{3, 3, 1}));
  EXPECT_EQ(whole["id"], "cmpl-9");
  ASSERT_EQ(whole["choices"].size(), 2u);
  EXPECT_EQ(whole["choices"][0]["index"], 0);
  EXPECT_EQ(whole["choices"][0]["text"], "a");
  EXPECT_EQ(whole["choices"][0]["finish_reason"], "stop");
  EXPECT_EQ(whole["choices"][1]["index"], 1);
  EXPECT_EQ(whole["choices"][1]["text"], "bc");
  EXPECT_EQ(whole["choices"][1]["finish_reason"], "length");
  EXPECT_EQ(whole["usage"]["total_tokens"], 6);
}

}  // namespace
}  // namespace mla::openai
