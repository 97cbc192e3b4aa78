// Token ids and decoded text must equal Hugging Face tokenizers' output exactly
// (tests/data/tokenizer/goldens.json, written by tools/tokenizer/make_goldens.py).
#include <string>
#include <vector>

#include "engine/tokenizer/tokenizer.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "tests/engine/tokenizer/test_util.h"

namespace mla {
namespace {

using testing_util::DeepSeekV3;
using testing_util::Goldens;
using testing_util::Ids;

// Checks every encode case of a goldens section against `tokenizer`; counts them.
void CheckEncodeCases(const Tokenizer& tokenizer, const nlohmann::json& cases,
                      const std::string& label, int* checked) {
  for (const nlohmann::json& c : cases) {
    const std::string text = c["text"].get<std::string>();
    SCOPED_TRACE(label + " text: \"" + text.substr(0, 80) + "\"");
    auto plain = tokenizer.Encode(text, /*add_special_tokens=*/false);
    ASSERT_TRUE(plain.ok()) << plain.status();
    EXPECT_EQ(*plain, Ids(c["ids"]));
    auto with_special = tokenizer.Encode(text, /*add_special_tokens=*/true);
    ASSERT_TRUE(with_special.ok()) << with_special.status();
    EXPECT_EQ(*with_special, Ids(c["ids_with_special"]));
    auto decoded = tokenizer.Decode(Ids(c["ids_with_special"]), /*skip_special_tokens=*/false);
    ASSERT_TRUE(decoded.ok()) << decoded.status();
    EXPECT_EQ(*decoded, c["decoded"].get<std::string>());
    auto skipped = tokenizer.Decode(Ids(c["ids_with_special"]), /*skip_special_tokens=*/true);
    ASSERT_TRUE(skipped.ok()) << skipped.status();
    EXPECT_EQ(*skipped, c["decoded_skip_special"].get<std::string>());
    ++*checked;
  }
}

TEST(DeepSeekV3GoldenTest, EncodeAndDecodeMatchHuggingFace) {
  const nlohmann::json& cases = Goldens()["deepseek_v3"]["cases"];
  int checked = 0;
  CheckEncodeCases(DeepSeekV3(), cases, "deepseek_v3", &checked);
  EXPECT_EQ(checked, static_cast<int>(cases.size()));
  EXPECT_GT(checked, 350);
}

TEST(DeepSeekV3GoldenTest, DecodeOfArbitraryIdsMatchesHuggingFace) {
  const Tokenizer& tokenizer = DeepSeekV3();
  int with_replacement = 0;
  for (const nlohmann::json& c : Goldens()["deepseek_v3"]["decode_cases"]) {
    const std::vector<int32_t> ids = Ids(c["ids"]);
    SCOPED_TRACE(::testing::PrintToString(ids));
    auto decoded = tokenizer.Decode(ids, false);
    ASSERT_TRUE(decoded.ok()) << decoded.status();
    EXPECT_EQ(*decoded, c["decoded"].get<std::string>());
    auto skipped = tokenizer.Decode(ids, true);
    ASSERT_TRUE(skipped.ok()) << skipped.status();
    EXPECT_EQ(*skipped, c["decoded_skip_special"].get<std::string>());
    if (decoded->find("\xEF\xBF\xBD") != std::string::npos) ++with_replacement;
  }
  // The random id lists must exercise the U+FFFD replacement of ill-formed UTF-8.
  EXPECT_GE(with_replacement, 10);
}

TEST(DeepSeekV3GoldenTest, ConfigGivesBosAndEos) {
  const Tokenizer& tokenizer = DeepSeekV3();
  EXPECT_EQ(tokenizer.bos_token_id(), 0);
  EXPECT_EQ(tokenizer.eos_token_id(), 1);
  EXPECT_EQ(tokenizer.bos_token(), "<｜begin▁of▁sentence｜>");
  EXPECT_EQ(tokenizer.eos_token(), "<｜end▁of▁sentence｜>");
  EXPECT_EQ(tokenizer.prefix_ids(), std::vector<int32_t>({0}));
  EXPECT_TRUE(tokenizer.suffix_ids().empty());
  EXPECT_THAT(tokenizer.chat_template(), ::testing::HasSubstr("<｜Assistant｜>"));
  EXPECT_EQ(tokenizer.vocab_size(), 128815);
  EXPECT_TRUE(tokenizer.IsSpecial(0));
  EXPECT_FALSE(tokenizer.IsSpecial(128803));  // <｜User｜> is an added, non-special token
  EXPECT_EQ(tokenizer.TokenToId("<｜User｜>"), 128803);
  EXPECT_EQ(tokenizer.IdToToken(19923), "Hello");
  EXPECT_EQ(tokenizer.TokenBytes(223), " ");  // "Ġ"
}

// The small hand-made tokenizer covers what DeepSeek's file does not use; each variant is
// a JSON merge patch over the base tokenizer.json.
TEST(TinyGoldenTest, EveryVariantMatchesHuggingFace) {
  const nlohmann::json& tiny = Goldens()["tiny"];
  int variants = 0;
  for (const nlohmann::json& variant : tiny["variants"]) {
    const std::string name = variant["name"].get<std::string>();
    SCOPED_TRACE("variant " + name);
    nlohmann::json json = tiny["base"];
    json.merge_patch(variant["patch"]);
    const std::string config = variant["config"].is_null() ? "" : variant["config"].dump();
    auto tokenizer = Tokenizer::FromJson(json.dump(), config, name);
    ASSERT_TRUE(tokenizer.ok()) << tokenizer.status();
    int checked = 0;
    CheckEncodeCases(**tokenizer, variant["cases"], name, &checked);
    EXPECT_EQ(checked, static_cast<int>(variant["cases"].size()));
    ++variants;
  }
  EXPECT_GE(variants, 20);
}

}  // namespace
}  // namespace mla
