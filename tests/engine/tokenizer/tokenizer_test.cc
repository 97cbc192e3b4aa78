// Tokenizer behaviour on small hand-made tokenizer.json files (merge ranks, the cache,
// errors for malformed or unsupported files) and on the real DeepSeek-V3 tokenizer (round
// trips on random text, concurrent use).
#include "engine/tokenizer/tokenizer.h"

#include <cstdio>
#include <fstream>
#include <functional>
#include <nlohmann/json.hpp>
#include <random>
#include <string>
#include <thread>
#include <vector>

#include "engine/tokenizer/byte_level.h"
#include "engine/tokenizer/utf8.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "tests/engine/tokenizer/test_util.h"

namespace mla {
namespace {

using ::testing::HasSubstr;
using testing_util::DeepSeekV3;

// A byte-level BPE tokenizer.json: ids 0-255 are the bytes, then one id per merge result.
nlohmann::json MakeTokenizerJson(const std::vector<std::pair<std::string, std::string>>& merges) {
  nlohmann::json vocab = nlohmann::json::object();
  for (int b = 0; b < 256; ++b) vocab[BytesToByteLevel(std::string(1, static_cast<char>(b)))] = b;
  nlohmann::json merge_list = nlohmann::json::array();
  for (const auto& [left, right] : merges) {
    const std::string l = BytesToByteLevel(left), r = BytesToByteLevel(right);
    if (!vocab.contains(l + r)) vocab[l + r] = vocab.size();
    merge_list.push_back(l + " " + r);
  }
  nlohmann::json added = nlohmann::json::array();
  added.push_back({{"id", vocab.size()},
                   {"content", "<eos>"},
                   {"special", true},
                   {"normalized", false},
                   {"lstrip", false},
                   {"rstrip", false},
                   {"single_word", false}});
  return {
      {"version", "1.0"},
      {"added_tokens", added},
      {"normalizer", nullptr},
      {"pre_tokenizer", {{"type", "ByteLevel"}, {"add_prefix_space", false}, {"use_regex", true}}},
      {"post_processor", nullptr},
      {"decoder", {{"type", "ByteLevel"}}},
      {"model", {{"type", "BPE"}, {"vocab", vocab}, {"merges", merge_list}}}};
}

std::unique_ptr<Tokenizer> MustLoad(const nlohmann::json& json, const std::string& config = "") {
  auto tokenizer = Tokenizer::FromJson(json.dump(), config);
  EXPECT_TRUE(tokenizer.ok()) << tokenizer.status();
  return tokenizer.ok() ? std::move(*tokenizer) : nullptr;
}

std::vector<int32_t> MustEncode(const Tokenizer& tokenizer, const std::string& text,
                                bool add_special_tokens = false) {
  auto ids = tokenizer.Encode(text, add_special_tokens);
  EXPECT_TRUE(ids.ok()) << ids.status();
  return ids.ok() ? *ids : std::vector<int32_t>();
}

TEST(TokenizerTest, MergesApplyInRankOrder) {
  // "abc": a+b outranks b+c, so the result is (ab)c merged to abc.
  auto first = MustLoad(MakeTokenizerJson({{"a", "b"}, {"b", "c"}, {"ab", "c"}}));
  ASSERT_NE(first, nullptr);
  EXPECT_EQ(MustEncode(*first, "abc"), std::vector<int32_t>({first->TokenToId("abc")}));
  // b+c first: a(bc), and without an "a bc" merge that is where it stops.
  auto second = MustLoad(MakeTokenizerJson({{"b", "c"}, {"a", "b"}, {"ab", "c"}}));
  ASSERT_NE(second, nullptr);
  EXPECT_EQ(MustEncode(*second, "abc"), std::vector<int32_t>({'a', second->TokenToId("bc")}));
  // Equal pairs merge leftmost first: "aaa" -> (aa)a.
  auto third = MustLoad(MakeTokenizerJson({{"a", "a"}}));
  ASSERT_NE(third, nullptr);
  EXPECT_EQ(MustEncode(*third, "aaa"), std::vector<int32_t>({third->TokenToId("aa"), 'a'}));
  // GPT-2's regex makes "abc" and " abc" words; no merge joins the space (Ġ, id 0x20).
  EXPECT_EQ(MustEncode(*first, "abc abc"),
            std::vector<int32_t>({first->TokenToId("abc"), ' ', first->TokenToId("abc")}));
}

TEST(TokenizerTest, SpecialTokensAreMatchedBeforeBpeAndSkippedOnRequest) {
  auto tokenizer = MustLoad(MakeTokenizerJson({{"a", "b"}}));
  ASSERT_NE(tokenizer, nullptr);
  const int32_t eos = tokenizer->TokenToId("<eos>");
  EXPECT_EQ(MustEncode(*tokenizer, "ab<eos>a"),
            std::vector<int32_t>({tokenizer->TokenToId("ab"), eos, 'a'}));
  EXPECT_TRUE(tokenizer->IsSpecial(eos));
  auto text = tokenizer->Decode({'x', eos, 'y'}, /*skip_special_tokens=*/false);
  ASSERT_TRUE(text.ok());
  EXPECT_EQ(*text, "x<eos>y");
  text = tokenizer->Decode({'x', eos, 'y'}, /*skip_special_tokens=*/true);
  ASSERT_TRUE(text.ok());
  EXPECT_EQ(*text, "xy");
  // No config and no post-processor: add_special_tokens adds nothing.
  EXPECT_EQ(MustEncode(*tokenizer, "a", true), std::vector<int32_t>({'a'}));
}

TEST(TokenizerTest, ConfigAddsBosAndEos) {
  auto tokenizer = MustLoad(MakeTokenizerJson({}),
                            R"({"add_bos_token": true, "add_eos_token": true,
                                "bos_token": "<eos>", "eos_token": {"content": "<eos>"}})");
  ASSERT_NE(tokenizer, nullptr);
  EXPECT_EQ(MustEncode(*tokenizer, "a", true), std::vector<int32_t>({256, 'a', 256}));
  EXPECT_EQ(MustEncode(*tokenizer, "a", false), std::vector<int32_t>({'a'}));
}

TEST(TokenizerTest, CacheHoldsEachWordOnce) {
  auto tokenizer = MustLoad(MakeTokenizerJson({{"a", "b"}}));
  ASSERT_NE(tokenizer, nullptr);
  EXPECT_EQ(tokenizer->CachedWords(), 0u);
  const std::vector<int32_t> once = MustEncode(*tokenizer, "abab");
  EXPECT_EQ(tokenizer->CachedWords(), 1u);
  EXPECT_EQ(MustEncode(*tokenizer, "abab"), once);  // from the cache
  MustEncode(*tokenizer, "abab abab xyz");          // " abab" and " xyz" are new words
  EXPECT_EQ(tokenizer->CachedWords(), 3u);
}

TEST(TokenizerTest, RejectsInvalidInputAndIds) {
  auto tokenizer = MustLoad(MakeTokenizerJson({}));
  ASSERT_NE(tokenizer, nullptr);
  EXPECT_EQ(tokenizer->Encode("ok\xC0\xAF", false).status().code(),
            absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(tokenizer->Decode({1, 9999}, false).status().code(),
            absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(tokenizer->Decode({-1}, false).status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_TRUE(tokenizer->TokenBytes(9999).empty());
}

// Each malformed or unsupported file must fail with a message naming the field.
struct BadFile {
  const char* name;
  std::function<void(nlohmann::json*)> edit;
  absl::StatusCode code;
  const char* message;
};

TEST(TokenizerTest, MalformedOrUnsupportedFilesFailClearly) {
  const std::vector<BadFile> cases = {
      {"wordpiece", [](auto* j) { (*j)["model"]["type"] = "WordPiece"; },
       absl::StatusCode::kUnimplemented, "tokenizer.json.model.type"},
      {"nfc",
       [](auto* j) {
         (*j)["normalizer"] = {{"type", "NFC"}};
       },
       absl::StatusCode::kUnimplemented, "normalizer type 'NFC'"},
      {"metaspace",
       [](auto* j) {
         (*j)["pre_tokenizer"] = {{"type", "Metaspace"}};
       },
       absl::StatusCode::kUnimplemented, "pre-tokenizer type 'Metaspace'"},
      {"no_byte_level",
       [](auto* j) {
         (*j)["pre_tokenizer"] = {
             {"type", "Split"}, {"pattern", {{"Regex", "a"}}}, {"behavior", "Isolated"}};
       },
       absl::StatusCode::kUnimplemented, "must end with ByteLevel"},
      {"bad_behavior",
       [](auto* j) {
         (*j)["pre_tokenizer"] = {
             {"type", "Sequence"},
             {"pretokenizers",
              {{{"type", "Split"}, {"pattern", {{"Regex", "a"}}}, {"behavior", "Sideways"}},
               {{"type", "ByteLevel"}}}}};
       },
       absl::StatusCode::kUnimplemented, "pretokenizers[0].behavior"},
      {"bad_regex",
       [](auto* j) {
         (*j)["pre_tokenizer"] = {
             {"type", "Sequence"},
             {"pretokenizers",
              {{{"type", "Split"}, {"pattern", {{"Regex", "(a"}}}, {"behavior", "Isolated"}},
               {{"type", "ByteLevel"}}}}};
       },
       absl::StatusCode::kInvalidArgument, "pretokenizers[0].pattern"},
      {"decoder",
       [](auto* j) {
         (*j)["decoder"] = {{"type", "WordPiece"}};
       },
       absl::StatusCode::kUnimplemented, "decoder 'WordPiece'"},
      {"merge_oov", [](auto* j) { (*j)["model"]["merges"].push_back("zz q"); },
       absl::StatusCode::kInvalidArgument, "model.merges[0]"},
      {"merge_shape", [](auto* j) { (*j)["model"]["merges"].push_back(42); },
       absl::StatusCode::kInvalidArgument, "model.merges[0]"},
      {"no_vocab", [](auto* j) { (*j)["model"].erase("vocab"); },
       absl::StatusCode::kInvalidArgument, "model.vocab"},
      {"dropout", [](auto* j) { (*j)["model"]["dropout"] = 0.1; }, absl::StatusCode::kUnimplemented,
       "model.dropout"},
      {"added_no_content", [](auto* j) { (*j)["added_tokens"][0].erase("content"); },
       absl::StatusCode::kInvalidArgument, "added_tokens[0].content"},
      {"post_processor",
       [](auto* j) {
         (*j)["post_processor"] = {{"type", "BertProcessing"}};
       },
       absl::StatusCode::kUnimplemented, "post-processor 'BertProcessing'"},
  };
  for (const BadFile& c : cases) {
    SCOPED_TRACE(c.name);
    nlohmann::json json = MakeTokenizerJson({});
    c.edit(&json);
    auto tokenizer = Tokenizer::FromJson(json.dump());
    ASSERT_FALSE(tokenizer.ok());
    EXPECT_EQ(tokenizer.status().code(), c.code) << tokenizer.status();
    EXPECT_THAT(tokenizer.status().message(), HasSubstr(c.message));
  }
  EXPECT_THAT(Tokenizer::FromJson("{not json").status().message(), HasSubstr("not valid JSON"));
  auto bad_config = Tokenizer::FromJson(MakeTokenizerJson({}).dump(), R"({"bos_token": "<s>"})",
                                        "t.json", "cfg.json");
  EXPECT_THAT(bad_config.status().message(), HasSubstr("cfg.json.bos_token"));
}

TEST(TokenizerTest, LoadReadsPlainAndXzFilesAndNamesMissingOnes) {
  const std::string path = ::testing::TempDir() + "/tiny_tokenizer.json";
  {
    std::ofstream out(path);
    out << MakeTokenizerJson({{"a", "b"}}).dump();
  }
  auto plain = Tokenizer::Load(path);
  ASSERT_TRUE(plain.ok()) << plain.status();
  EXPECT_EQ(MustEncode(**plain, "ab"), std::vector<int32_t>({256}));
  std::remove(path.c_str());

  auto missing = Tokenizer::Load("/nonexistent/tokenizer.json");
  EXPECT_EQ(missing.status().code(), absl::StatusCode::kNotFound);
  EXPECT_THAT(missing.status().message(), HasSubstr("/nonexistent/tokenizer.json"));

  const std::string bad_xz = ::testing::TempDir() + "/corrupt.json.xz";
  {
    std::ofstream out(bad_xz);
    out << "definitely not xz";
  }
  EXPECT_THAT(Tokenizer::Load(bad_xz).status().message(), HasSubstr("not a valid xz file"));
  std::remove(bad_xz.c_str());
}

// Random code points from every plane (no surrogates, no U+0000 to keep C strings simple).
std::string RandomUnicode(std::mt19937* rng, int length) {
  std::uniform_int_distribution<int> plane(0, 9);
  std::string out;
  for (int i = 0; i < length; ++i) {
    char32_t c;
    const int p = plane(*rng);
    if (p < 4) {
      c = std::uniform_int_distribution<char32_t>(1, 0x7F)(*rng);
    } else if (p < 8) {
      c = std::uniform_int_distribution<char32_t>(0x80, 0xFFFD)(*rng);
      if (c >= 0xD800 && c <= 0xDFFF) c = 0x4E00;
    } else {
      c = std::uniform_int_distribution<char32_t>(0x10000, 0x10FFFF)(*rng);
    }
    AppendCodePoint(c, &out);
  }
  return out;
}

TEST(DeepSeekV3Test, DecodeOfEncodeIsIdentityOnRandomUnicode) {
  const Tokenizer& tokenizer = DeepSeekV3();
  std::mt19937 rng(7);
  for (int i = 0; i < 300; ++i) {
    const std::string text = RandomUnicode(&rng, 1 + i % 60);
    auto ids = tokenizer.Encode(text, /*add_special_tokens=*/true);
    ASSERT_TRUE(ids.ok()) << ids.status();
    ASSERT_EQ((*ids)[0], tokenizer.bos_token_id());
    auto decoded = tokenizer.Decode(*ids, /*skip_special_tokens=*/true);
    ASSERT_TRUE(decoded.ok()) << decoded.status();
    ASSERT_EQ(*decoded, text) << "case " << i;
  }
}

TEST(DeepSeekV3Test, ConcurrentEncodesAgreeWithSequentialOnes) {
  const Tokenizer& tokenizer = DeepSeekV3();
  std::vector<std::string> texts;
  std::mt19937 rng(11);
  for (int i = 0; i < 64; ++i) texts.push_back(RandomUnicode(&rng, 40) + " the same words");
  std::vector<std::vector<int32_t>> expected;
  for (const std::string& t : texts) expected.push_back(MustEncode(tokenizer, t));
  std::vector<int> mismatches(4, 0);
  std::vector<std::thread> threads;
  for (int t = 0; t < 4; ++t) {
    threads.emplace_back([&, t] {
      for (int round = 0; round < 5; ++round) {
        for (size_t i = 0; i < texts.size(); ++i) {
          auto ids = tokenizer.Encode(texts[(i + t) % texts.size()], false);
          if (!ids.ok() || *ids != expected[(i + t) % texts.size()]) ++mismatches[t];
        }
      }
    });
  }
  for (std::thread& thread : threads) thread.join();
  EXPECT_EQ(mismatches, std::vector<int>(4, 0));
}

}  // namespace
}  // namespace mla
