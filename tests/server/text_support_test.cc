// TextSupport: prompts as token ids, text and chat messages; Tokenize / Detokenize errors;
// an unsupported chat template refuses chat requests without failing anything else.
#include "server/text_support.h"

#include <algorithm>
#include <memory>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "engine/chat/chat_template.h"
#include "engine/tokenizer/byte_level.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace mla {
namespace {

using ::testing::ElementsAre;
using ::testing::HasSubstr;

// A byte-level tokenizer: ids 0-255 are the bytes, 256 = <s> (BOS), 257 = </s> (EOS).
std::unique_ptr<Tokenizer> MakeTokenizer(const std::string& chat_template) {
  nlohmann::json vocab = nlohmann::json::object();
  for (int b = 0; b < 256; ++b) vocab[BytesToByteLevel(std::string(1, static_cast<char>(b)))] = b;
  nlohmann::json added = nlohmann::json::array();
  for (const auto& [id, content] : {std::pair{256, "<s>"}, std::pair{257, "</s>"}}) {
    added.push_back({{"id", id}, {"content", content}, {"special", true},
                     {"normalized", false}, {"lstrip", false}, {"rstrip", false},
                     {"single_word", false}});
  }
  const nlohmann::json json = {
      {"version", "1.0"},
      {"added_tokens", added},
      {"normalizer", nullptr},
      {"pre_tokenizer", {{"type", "ByteLevel"}, {"add_prefix_space", false}, {"use_regex", true}}},
      {"post_processor", nullptr},
      {"decoder", {{"type", "ByteLevel"}}},
      {"model", {{"type", "BPE"}, {"vocab", vocab}, {"merges", nlohmann::json::array()}}}};
  nlohmann::json config = {{"add_bos_token", true}, {"add_eos_token", false},
                           {"bos_token", "<s>"}, {"eos_token", "</s>"}};
  if (!chat_template.empty()) config["chat_template"] = chat_template;
  auto tokenizer = Tokenizer::FromJson(json.dump(), config.dump());
  EXPECT_TRUE(tokenizer.ok()) << tokenizer.status();
  return tokenizer.ok() ? std::move(*tokenizer) : nullptr;
}

constexpr char kTemplate[] =
    "{{ bos_token }}{% for m in messages %}[{{ m['role'] }}]{{ m['content'] }}"
    "{% endfor %}{% if add_generation_prompt %}[a]{% endif %}";

v1::GenerateRequest TextRequest(const std::string& text) {
  v1::GenerateRequest r;
  r.set_text(text);
  return r;
}

TEST(TextSupportTest, TokenIdsPassThroughAndEmptyPromptsAreRefused) {
  TextSupport text(nullptr);
  v1::GenerateRequest r;
  r.mutable_token_ids()->add_ids(5);
  r.mutable_token_ids()->add_ids(7);
  auto ids = text.PromptIds(r);
  ASSERT_TRUE(ids.ok()) << ids.status();
  EXPECT_THAT(*ids, ElementsAre(5, 7));
  EXPECT_THAT(text.PromptIds(v1::GenerateRequest()).status().message(), HasSubstr("prompt"));
  r.mutable_token_ids()->clear_ids();
  EXPECT_EQ(text.PromptIds(r).status().code(), absl::StatusCode::kInvalidArgument);
}

TEST(TextSupportTest, WithoutATokenizerTextIsAFailedPrecondition) {
  TextSupport text(nullptr);
  EXPECT_EQ(text.tokenizer(), nullptr);
  EXPECT_FALSE(text.has_chat_template());
  const absl::Status s = text.PromptIds(TextRequest("hi")).status();
  EXPECT_EQ(s.code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_THAT(s.message(), HasSubstr("tokenizer"));
  v1::GenerateRequest chat;
  chat.mutable_messages()->add_messages()->set_content("hi");
  EXPECT_EQ(text.PromptIds(chat).status().code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_EQ(text.Tokenize("hi", true).status().code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_EQ(text.Detokenize({1}, false).status().code(), absl::StatusCode::kFailedPrecondition);
}

TEST(TextSupportTest, TextPromptsGetTheBos) {
  auto tokenizer = MakeTokenizer("");
  ASSERT_NE(tokenizer, nullptr);
  TextSupport text(tokenizer.get());
  auto ids = text.PromptIds(TextRequest("hi"));
  ASSERT_TRUE(ids.ok()) << ids.status();
  EXPECT_THAT(*ids, ElementsAre(256, 'h', 'i'));
  EXPECT_EQ(text.PromptIds(TextRequest("")).status().code(), absl::StatusCode::kInvalidArgument);
  const absl::Status bad = text.PromptIds(TextRequest("a\xFF")).status();
  EXPECT_EQ(bad.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(bad.message(), HasSubstr("text: "));
}

TEST(TextSupportTest, TokenizeAndDetokenize) {
  auto tokenizer = MakeTokenizer("");
  ASSERT_NE(tokenizer, nullptr);
  TextSupport text(tokenizer.get());
  auto with = text.Tokenize("ab", true);
  ASSERT_TRUE(with.ok()) << with.status();
  EXPECT_THAT(*with, ElementsAre(256, 'a', 'b'));
  auto without = text.Tokenize("ab", false);
  ASSERT_TRUE(without.ok());
  EXPECT_THAT(*without, ElementsAre('a', 'b'));
  EXPECT_THAT(text.Tokenize("\xC3", false).status().message(), HasSubstr("text: "));
  auto decoded = text.Detokenize({256, 'a', 257}, false);
  ASSERT_TRUE(decoded.ok());
  EXPECT_EQ(*decoded, "<s>a</s>");
  decoded = text.Detokenize({256, 'a', 257}, true);
  ASSERT_TRUE(decoded.ok());
  EXPECT_EQ(*decoded, "a");
  const absl::Status s = text.Detokenize({'a', 'b', 999}, false).status();
  EXPECT_EQ(s.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(s.message(), HasSubstr("token_ids[2]: 999"));
}

TEST(TextSupportTest, NoChatTemplateRefusesChatOnly) {
  auto tokenizer = MakeTokenizer("");
  ASSERT_NE(tokenizer, nullptr);
  TextSupport text(tokenizer.get());
  EXPECT_FALSE(text.has_chat_template());
  v1::GenerateRequest chat;
  chat.mutable_messages()->add_messages()->set_content("hi");
  const absl::Status s = text.PromptIds(chat).status();
  EXPECT_EQ(s.code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_THAT(s.message(), HasSubstr("no chat_template"));
}

TEST(TextSupportTest, UnsupportedChatTemplateQuotesTheParseError) {
  const std::string bad = "{% frobnicate %}";
  auto tokenizer = MakeTokenizer(bad);
  ASSERT_NE(tokenizer, nullptr);
  const absl::Status parse = ChatTemplate::Parse(bad).status();
  ASSERT_FALSE(parse.ok());
  TextSupport text(tokenizer.get());
  EXPECT_FALSE(text.has_chat_template());
  v1::GenerateRequest chat;
  chat.mutable_messages()->add_messages()->set_content("hi");
  const absl::Status s = text.PromptIds(chat).status();
  EXPECT_EQ(s.code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_THAT(s.message(), HasSubstr(std::string(parse.message())));
  EXPECT_TRUE(text.PromptIds(TextRequest("still works")).ok());
}

TEST(TextSupportTest, ChatIsRenderedThenEncodedWithoutAddingTheBosTwice) {
  auto tokenizer = MakeTokenizer(kTemplate);
  ASSERT_NE(tokenizer, nullptr);
  TextSupport text(tokenizer.get());
  ASSERT_TRUE(text.has_chat_template());
  v1::GenerateRequest chat;
  v1::ChatMessage* m = chat.mutable_messages()->add_messages();
  m->set_role("user");
  m->set_content("hi");
  chat.mutable_messages()->set_add_generation_prompt(true);
  auto rendered = text.RenderChat(chat.messages());
  ASSERT_TRUE(rendered.ok()) << rendered.status();
  EXPECT_EQ(*rendered, "<s>[user]hi[a]");
  auto ids = text.PromptIds(chat);
  ASSERT_TRUE(ids.ok()) << ids.status();
  auto expected = tokenizer->Encode("<s>[user]hi[a]", /*add_special_tokens=*/false);
  ASSERT_TRUE(expected.ok());
  EXPECT_EQ(*ids, *expected);
  EXPECT_EQ(std::count(ids->begin(), ids->end(), 256), 1);
  chat.mutable_messages()->mutable_messages(0)->clear_role();
  EXPECT_THAT(text.PromptIds(chat).status().message(), HasSubstr("messages.messages[0].role"));
}

}  // namespace
}  // namespace mla
