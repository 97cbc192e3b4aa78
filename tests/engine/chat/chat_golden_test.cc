// Every golden case (tests/data/chat/goldens.json, written by tools/chat/make_chat_goldens.py
// with Python jinja2 configured as transformers does) must render byte for byte the same, or
// fail with the same raise_exception message.
#include <fstream>
#include <map>
#include <memory>
#include <sstream>
#include <string>
#include <vector>

#include "engine/chat/chat_template.h"
#include "gtest/gtest.h"
#include "nlohmann/json.hpp"

namespace mla {
namespace {

std::string ReadFile(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  std::stringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

const std::string kDataDir = std::string(MLA_TEST_DATA_DIR) + "/chat/";

TEST(ChatGoldenTest, EveryCaseMatchesJinja2) {
  const nlohmann::json goldens = nlohmann::json::parse(ReadFile(kDataDir + "goldens.json"));
  std::map<std::string, std::unique_ptr<ChatTemplate>> templates;
  int rendered = 0;
  int errors = 0;
  for (const nlohmann::json& c : goldens["cases"]) {
    const std::string name = c["template"].get<std::string>();
    SCOPED_TRACE(name + " / " + c["conversation"].get<std::string>() +
                 (c["add_generation_prompt"].get<bool>() ? " +gen" : ""));
    if (templates.count(name) == 0) {
      auto parsed = ChatTemplate::Parse(ReadFile(kDataDir + "templates/" + name + ".jinja"));
      ASSERT_TRUE(parsed.ok()) << parsed.status();
      templates[name] = *std::move(parsed);
    }
    std::vector<ChatTurn> messages;
    for (const nlohmann::json& m : c["messages"]) {
      messages.push_back({m["role"].get<std::string>(), m["content"].get<std::string>()});
    }
    ChatRenderOptions options;
    options.add_generation_prompt = c["add_generation_prompt"].get<bool>();
    options.bos_token = c["bos_token"].get<std::string>();
    options.eos_token = c["eos_token"].get<std::string>();
    auto out = templates[name]->Render(messages, options);
    if (c.contains("error")) {
      ASSERT_FALSE(out.ok()) << *out;
      EXPECT_EQ(out.status().code(), absl::StatusCode::kInvalidArgument);
      EXPECT_EQ(out.status().message(), c["error"].get<std::string>());
      ++errors;
    } else {
      ASSERT_TRUE(out.ok()) << out.status();
      EXPECT_EQ(*out, c["expected"].get<std::string>());
      ++rendered;
    }
  }
  EXPECT_EQ(templates.size(), 4u);
  EXPECT_GE(rendered, 100);
  EXPECT_GE(errors, 8);
}

// The template stored beside the tokenizer files is the one the server loads: it must be
// the same text as the golden template.
TEST(ChatGoldenTest, DeepSeekV3TemplateMatchesTokenizerConfig) {
  const nlohmann::json config = nlohmann::json::parse(
      ReadFile(std::string(MLA_TEST_DATA_DIR) + "/tokenizer/deepseek-v3/tokenizer_config.json"));
  EXPECT_EQ(config["chat_template"].get<std::string>(),
            ReadFile(kDataDir + "templates/deepseek_v3.jinja"));
}

}  // namespace
}  // namespace mla
