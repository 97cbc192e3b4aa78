// Shared fixtures for the tokenizer tests: the DeepSeek-V3 tokenizer and the goldens made
// by tools/tokenizer/make_goldens.py, each loaded once per test process.
#ifndef MLA_TESTS_ENGINE_TOKENIZER_TEST_UTIL_H_
#define MLA_TESTS_ENGINE_TOKENIZER_TEST_UTIL_H_

#include <fstream>
#include <memory>
#include <nlohmann/json.hpp>
#include <sstream>
#include <string>

#include "engine/tokenizer/tokenizer.h"
#include "gtest/gtest.h"

namespace mla::testing_util {

inline std::string TokenizerDataPath(const std::string& relative) {
  return std::string(MLA_TEST_DATA_DIR) + "/tokenizer/" + relative;
}

// Aborts the test process when the tokenizer cannot load: every caller needs it.
inline const Tokenizer& DeepSeekV3() {
  static const Tokenizer* tokenizer = [] {
    auto loaded = Tokenizer::Load(TokenizerDataPath("deepseek-v3/tokenizer.json.xz"),
                                  TokenizerDataPath("deepseek-v3/tokenizer_config.json"));
    if (!loaded.ok()) {
      ADD_FAILURE() << loaded.status();
      std::abort();
    }
    return loaded->release();
  }();
  return *tokenizer;
}

inline const nlohmann::json& Goldens() {
  static const nlohmann::json* goldens = [] {
    std::ifstream file(TokenizerDataPath("goldens.json"));
    std::stringstream text;
    text << file.rdbuf();
    return new nlohmann::json(nlohmann::json::parse(text.str()));
  }();
  return *goldens;
}

inline std::vector<int32_t> Ids(const nlohmann::json& j) { return j.get<std::vector<int32_t>>(); }

}  // namespace mla::testing_util

#endif  // MLA_TESTS_ENGINE_TOKENIZER_TEST_UTIL_H_
