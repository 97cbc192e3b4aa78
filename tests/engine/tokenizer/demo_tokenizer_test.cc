// The byte-level tokenizer of models/needle-v2-demo (written by tools/train_demo): one token
// per byte with ids equal to the byte values, BOS after 255, and the same ids as Hugging
// Face tokenizers gives for these texts (checked with tools/tokenizer/.venv).
#include <memory>
#include <string>
#include <vector>

#include "engine/tokenizer/tokenizer.h"
#include "gtest/gtest.h"

namespace mla {
namespace {

constexpr int32_t kBos = 256;
constexpr int32_t kEos = 257;

std::unique_ptr<Tokenizer> LoadDemo() {
  const std::string dir = std::string(MLA_MODELS_DIR) + "/needle-v2-demo/";
  auto loaded = Tokenizer::Load(dir + "tokenizer.json", dir + "tokenizer_config.json");
  EXPECT_TRUE(loaded.ok()) << loaded.status();
  return loaded.ok() ? std::move(*loaded) : nullptr;
}

TEST(DemoTokenizerTest, EncodesEachByteAsItsValueAfterBos) {
  std::unique_ptr<Tokenizer> t = LoadDemo();
  ASSERT_NE(t, nullptr);
  auto ids = t->Encode("Hello");
  ASSERT_TRUE(ids.ok()) << ids.status();
  EXPECT_EQ(*ids, (std::vector<int32_t>{kBos, 72, 101, 108, 108, 111}));
  auto plain = t->Encode("Hello", /*add_special_tokens=*/false);
  ASSERT_TRUE(plain.ok()) << plain.status();
  EXPECT_EQ(*plain, (std::vector<int32_t>{72, 101, 108, 108, 111}));
}

TEST(DemoTokenizerTest, MatchesHuggingFaceOnSpacesNewlinesUtf8AndSpecials) {
  std::unique_ptr<Tokenizer> t = LoadDemo();
  ASSERT_NE(t, nullptr);
  // Ids from Hugging Face tokenizers for the same text with add_special_tokens=True.
  const std::string text = "Hello w\xC3\xB6rld <\xEF\xBD\x9C" "end\xE2\x96\x81of\xE2\x96\x81"
                           "sentence\xEF\xBD\x9C>\n 12";
  const std::vector<int32_t> expected = {256, 72, 101, 108, 108, 111, 32, 119, 195, 182,
                                         114, 108, 100, 32, 257, 10, 32, 49, 50};
  auto ids = t->Encode(text);
  ASSERT_TRUE(ids.ok()) << ids.status();
  EXPECT_EQ(*ids, expected);
  auto decoded = t->Decode(expected, /*skip_special_tokens=*/true);
  ASSERT_TRUE(decoded.ok()) << decoded.status();
  EXPECT_EQ(*decoded, "Hello w\xC3\xB6rld \n 12");
}

TEST(DemoTokenizerTest, EveryByteRoundTripsAndSpecialIdsFollowTheBytes) {
  std::unique_ptr<Tokenizer> t = LoadDemo();
  ASSERT_NE(t, nullptr);
  for (int b = 0; b < 256; ++b) {
    EXPECT_EQ(t->TokenBytes(b), std::string(1, static_cast<char>(b))) << "byte " << b;
  }
  EXPECT_EQ(t->bos_token_id(), kBos);
  EXPECT_EQ(t->eos_token_id(), kEos);
  EXPECT_EQ(t->vocab_size(), 259);
}

}  // namespace
}  // namespace mla
