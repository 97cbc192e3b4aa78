// Text in, text out over gRPC: a tiny random model with DeepSeek-V3's vocabulary size,
// served with the real V3 tokenizer files. Tokenize / Detokenize against the committed
// goldens, text and chat prompts, streamed text deltas, stop strings, and a model
// directory without a tokenizer.
#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <signal.h>
#include <unistd.h>

#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>
#include <sstream>
#include <thread>

#include "client/mla_client.h"
#include "tests/integration/server_process.h"

namespace mla {
namespace {

namespace fs = std::filesystem;
using ::testing::HasSubstr;
using testing::ServerProcess;

const fs::path kTokenizerDir = fs::path(MLA_TEST_DATA_DIR) / "tokenizer" / "deepseek-v3";
constexpr int kV3VocabSize = 129280;  // config.json of DeepSeek-V3; the tokenizer has fewer.

// Writes the tiny model once per build directory (a temporary directory renamed into
// place, so test processes running at once never see half a model). `with_tokenizer`
// adds the V3 tokenizer files; the model without one links to the same weights.
fs::path ModelDir(bool with_tokenizer) {
  const fs::path base = fs::path(MLA_TEXT_TEST_WORK_DIR);
  const fs::path model = base / "tiny-v3-text";
  if (!fs::exists(model / "config.json")) {
    fs::create_directories(base);
    const fs::path tmp = base / ("tmp-" + std::to_string(getpid()));
    const std::string command =
        std::string(MLA_PYTHON3) + " " + MLA_SOURCE_DIR +
        "/tools/make_tiny_model.py --variant v3 --out " + tmp.string() + " --vocab-size " +
        std::to_string(kV3VocabSize) +
        " --hidden-size 32 --num-layers 1 --first-k-dense-replace 1 --mtp-layers 0"
        " --bos-token-id 0 --eos-token-id 1 > /dev/null";
    EXPECT_EQ(std::system(command.c_str()), 0) << command;
    fs::copy_file(kTokenizerDir / "tokenizer.json.xz", tmp / "tokenizer.json.xz");
    fs::copy_file(kTokenizerDir / "tokenizer_config.json", tmp / "tokenizer_config.json");
    std::error_code ec;
    fs::rename(tmp, model, ec);  // Another process may have won the race: fine.
    if (ec) fs::remove_all(tmp);
  }
  if (with_tokenizer) return model;
  const fs::path bare = base / "tiny-v3-no-tokenizer";
  if (!fs::exists(bare / "config.json")) {
    const fs::path tmp = base / ("tmp-bare-" + std::to_string(getpid()));
    fs::create_directories(tmp);
    for (const fs::directory_entry& e : fs::directory_iterator(model)) {
      if (e.path().filename().string().rfind("tokenizer", 0) == 0) continue;
      fs::create_symlink(e.path(), tmp / e.path().filename());
    }
    std::error_code ec;
    fs::rename(tmp, bare, ec);
    if (ec) fs::remove_all(tmp);
  }
  return bare;
}

nlohmann::json GoldenCases() {
  std::ifstream file(fs::path(MLA_TEST_DATA_DIR) / "tokenizer" / "goldens.json");
  std::stringstream text;
  text << file.rdbuf();
  return nlohmann::json::parse(text.str())["deepseek_v3"]["cases"];
}

bool IsValidUtf8(const std::string& s) {
  for (size_t i = 0; i < s.size();) {
    const auto c = static_cast<unsigned char>(s[i]);
    const size_t n = c < 0x80 ? 1 : (c >> 5) == 6 ? 2 : (c >> 4) == 14 ? 3 : (c >> 3) == 30 ? 4 : 0;
    if (n == 0 || i + n > s.size()) return false;
    for (size_t k = 1; k < n; ++k) {
      if ((static_cast<unsigned char>(s[i + k]) >> 6) != 2) return false;
    }
    i += n;
  }
  return true;
}

struct Streamed {
  absl::Status status;
  std::vector<int32_t> ids;
  std::string text;
  int messages = 0;
  bool split_character = false;  // Some message's text was not whole UTF-8 characters.
  v1::Finished finished;
  std::vector<int32_t> prompt_ids_after_first;  // From prompt_logprobs.
};

class TextOverGrpcTest : public ::testing::Test {
 protected:
  void StartServer(bool with_tokenizer) {
    auto server =
        ServerProcess::Start({"--model_dir=" + ModelDir(with_tokenizer).string(), "--device=cpu",
                              "--kv_cache_mib=16", "--threads=2", "--metrics_address=127.0.0.1:0"});
    ASSERT_TRUE(server.ok()) << server.status();
    server_ = std::move(*server);
    ClientOptions options;
    options.target = server_->target();
    client_ = std::make_unique<MlaClient>(options);
    for (int i = 0; i < 600; ++i) {
      if (client_->GetModelInfo().ok()) return;
      std::this_thread::sleep_for(std::chrono::milliseconds(50));
    }
    FAIL() << "the server did not load the model\n" << server_->Log();
  }
  void TearDown() override {
    client_.reset();
    if (server_) {
      EXPECT_EQ(server_->Stop(SIGTERM, 20), 0) << server_->Log();
    }
  }

  Streamed Generate(const v1::GenerateRequest& r) {
    Streamed out;
    out.status = client_->Generate(r, [&](const v1::GenerateResponse& m) {
      ++out.messages;
      out.ids.insert(out.ids.end(), m.token_ids().begin(), m.token_ids().end());
      out.text += m.text();
      out.split_character = out.split_character || !IsValidUtf8(m.text());
      for (const v1::TokenLogprob& p : m.prompt_logprobs()) {
        out.prompt_ids_after_first.push_back(p.token_id());
      }
      if (m.has_finished()) out.finished = m.finished();
      return true;
    });
    return out;
  }
  static v1::GenerateRequest TextRequest(const std::string& text, int max_tokens) {
    v1::GenerateRequest r;
    r.set_text(text);
    r.mutable_sampling()->set_max_tokens(max_tokens);
    r.mutable_sampling()->set_ignore_eos(true);
    return r;
  }
  std::vector<int32_t> Tokenize(const std::string& text, bool add_special_tokens) {
    v1::TokenizeRequest r;
    r.set_text(text);
    r.set_add_special_tokens(add_special_tokens);
    auto response = client_->Tokenize(r);
    EXPECT_TRUE(response.ok()) << response.status();
    if (!response.ok()) return {};
    return {response->token_ids().begin(), response->token_ids().end()};
  }
  absl::StatusOr<std::string> Detokenize(const std::vector<int32_t>& ids, bool skip_special) {
    v1::DetokenizeRequest r;
    r.mutable_token_ids()->Add(ids.begin(), ids.end());
    r.set_skip_special_tokens(skip_special);
    auto response = client_->Detokenize(r);
    if (!response.ok()) return response.status();
    return response->text();
  }
  // The generated ids that name a token (the model's vocabulary is padded past the
  // tokenizer's; such ids have no text).
  std::vector<int32_t> KnownIds(const std::vector<int32_t>& ids) {
    std::vector<int32_t> known;
    for (int32_t id : ids) {
      if (Detokenize({id}, false).ok()) known.push_back(id);
    }
    return known;
  }
  int64_t BlocksUsed() {
    auto load = client_->GetLoad();
    EXPECT_TRUE(load.ok()) << load.status();
    return load.ok() ? load->kv_blocks_used() : -1;
  }

  std::unique_ptr<ServerProcess> server_;
  std::unique_ptr<MlaClient> client_;
};

TEST_F(TextOverGrpcTest, TokenizeAndDetokenizeMatchTheGoldens) {
  StartServer(true);
  auto info = client_->GetModelInfo();
  ASSERT_TRUE(info.ok()) << info.status();
  EXPECT_TRUE(info->has_tokenizer());
  EXPECT_TRUE(info->has_chat_template());
  int checked = 0;
  for (const nlohmann::json& c : GoldenCases()) {
    const std::string text = c["text"];
    if (text.empty() || ++checked > 40) continue;
    const auto ids = c["ids"].get<std::vector<int32_t>>();
    const auto with_special = c["ids_with_special"].get<std::vector<int32_t>>();
    EXPECT_EQ(Tokenize(text, false), ids) << text;
    EXPECT_EQ(Tokenize(text, true), with_special) << text;
    EXPECT_EQ(Detokenize(with_special, false).value_or("<error>"), c["decoded"]) << text;
    EXPECT_EQ(Detokenize(with_special, true).value_or("<error>"), c["decoded_skip_special"]);
  }
  EXPECT_GT(checked, 40);
  absl::StatusOr<std::string> bad = Detokenize({5, kV3VocabSize - 1}, false);
  EXPECT_EQ(bad.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(bad.status().message(), HasSubstr("token_ids[1]"));
}

TEST_F(TextOverGrpcTest, TextPromptStreamsTextThatJoinsToDetokenize) {
  StartServer(true);
  const std::string prompt = "The capital of France is";
  Streamed s = Generate(TextRequest(prompt, 24));
  ASSERT_TRUE(s.status.ok()) << s.status;
  EXPECT_EQ(s.finished.reason(), v1::FINISH_REASON_LENGTH);
  EXPECT_EQ(s.ids.size(), 24u);
  EXPECT_GT(s.messages, 1);
  EXPECT_FALSE(s.split_character);
  // The text prompt was encoded with the BOS, as Tokenize with special tokens.
  EXPECT_EQ(s.finished.usage().prompt_tokens(), static_cast<int>(Tokenize(prompt, true).size()));
  EXPECT_FALSE(s.text.empty());
  EXPECT_EQ(s.text, Detokenize(KnownIds(s.ids), true).value_or("<error>"));
}

TEST_F(TextOverGrpcTest, ChatPromptIsTheRenderedTemplateTokenized) {
  StartServer(true);
  v1::GenerateRequest r;
  v1::ChatMessages* chat = r.mutable_messages();
  v1::ChatMessage* system = chat->add_messages();
  system->set_role("system");
  system->set_content("You are terse.");
  v1::ChatMessage* user = chat->add_messages();
  user->set_role("user");
  user->set_content("Name a colour. 你好");
  chat->set_add_generation_prompt(true);
  r.mutable_sampling()->set_max_tokens(8);
  r.set_prompt_logprobs(0);
  Streamed s = Generate(r);
  ASSERT_TRUE(s.status.ok()) << s.status;
  // DeepSeek-V3's template: BOS, the system prompt, then the turns with their tags.
  const std::string rendered =
      "<｜begin▁of▁sentence｜>You are terse.<｜User｜>Name a colour. 你好<｜Assistant｜>";
  const std::vector<int32_t> expected = Tokenize(rendered, /*add_special_tokens=*/false);
  ASSERT_FALSE(expected.empty());
  EXPECT_EQ(expected[0], 0);  // One BOS, written by the template.
  EXPECT_EQ(s.finished.usage().prompt_tokens(), static_cast<int>(expected.size()));
  EXPECT_EQ(s.prompt_ids_after_first, std::vector<int32_t>(expected.begin() + 1, expected.end()));
  EXPECT_FALSE(s.ids.empty());
  EXPECT_EQ(s.text, Detokenize(KnownIds(s.ids), true).value_or("<error>"));
}

TEST_F(TextOverGrpcTest, StopStringEndsTheStreamWithTheTextBeforeIt) {
  StartServer(true);
  const std::string prompt = "Once upon a time";
  Streamed full = Generate(TextRequest(prompt, 24));
  ASSERT_TRUE(full.status.ok()) << full.status;
  // A stop string from the middle of the greedy continuation: two whole characters.
  std::vector<size_t> starts;
  for (size_t i = 0; i < full.text.size(); ++i) {
    if ((static_cast<unsigned char>(full.text[i]) >> 6) != 2) starts.push_back(i);
  }
  ASSERT_GE(starts.size(), 8u) << full.text;
  const size_t from = starts[starts.size() / 2];
  const std::string stop = full.text.substr(from, starts[starts.size() / 2 + 2] - from);
  const size_t first = full.text.find(stop);

  v1::GenerateRequest r = TextRequest(prompt, 24);
  r.mutable_sampling()->add_stop("a stop string that never appears");
  r.mutable_sampling()->add_stop(stop);
  Streamed s = Generate(r);
  ASSERT_TRUE(s.status.ok()) << s.status;
  EXPECT_EQ(s.finished.reason(), v1::FINISH_REASON_STOP_SEQUENCE);
  EXPECT_EQ(s.finished.stop_sequence(), stop);
  EXPECT_EQ(s.text, full.text.substr(0, first));
  EXPECT_FALSE(s.split_character);
  // The tokens streamed are a prefix of the full run, up to the one completing the stop.
  ASSERT_LT(s.ids.size(), full.ids.size());
  EXPECT_EQ(s.ids, std::vector<int32_t>(full.ids.begin(), full.ids.begin() + s.ids.size()));
  EXPECT_EQ(s.finished.usage().completion_tokens(), static_cast<int>(s.ids.size()));
  EXPECT_EQ(BlocksUsed(), 0);

  // Limits on stop strings name the field.
  v1::GenerateRequest many = TextRequest(prompt, 4);
  for (int i = 0; i < 17; ++i) many.mutable_sampling()->add_stop("x");
  Streamed refused = Generate(many);
  EXPECT_EQ(refused.status.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(refused.status.message(), HasSubstr("sampling.stop"));
  v1::GenerateRequest long_stop = TextRequest(prompt, 4);
  long_stop.mutable_sampling()->add_stop(std::string(257, 'x'));
  refused = Generate(long_stop);
  EXPECT_EQ(refused.status.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(refused.status.message(), HasSubstr("sampling.stop[0]"));
}

TEST_F(TextOverGrpcTest, WithoutATokenizerTextRequestsAreFailedPrecondition) {
  StartServer(false);
  auto info = client_->GetModelInfo();
  ASSERT_TRUE(info.ok()) << info.status();
  EXPECT_FALSE(info->has_tokenizer());
  EXPECT_FALSE(info->has_chat_template());
  EXPECT_EQ(Generate(TextRequest("hi", 4)).status.code(), absl::StatusCode::kFailedPrecondition);
  v1::GenerateRequest chat;
  chat.mutable_messages()->add_messages()->set_content("hi");
  EXPECT_EQ(Generate(chat).status.code(), absl::StatusCode::kFailedPrecondition);
  v1::GenerateRequest ids;
  ids.mutable_token_ids()->add_ids(5);
  ids.mutable_sampling()->set_max_tokens(3);
  ids.mutable_sampling()->add_stop("x");
  EXPECT_EQ(Generate(ids).status.code(), absl::StatusCode::kFailedPrecondition);
  ids.mutable_sampling()->clear_stop();
  Streamed s = Generate(ids);
  ASSERT_TRUE(s.status.ok()) << s.status;
  EXPECT_EQ(s.ids.size(), 3u);
  EXPECT_EQ(s.text, "");
  v1::TokenizeRequest t;
  t.set_text("hi");
  EXPECT_EQ(client_->Tokenize(t).status().code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_EQ(Detokenize({5}, false).status().code(), absl::StatusCode::kFailedPrecondition);
}

// A model directory linking to `model`'s weights and config (not its tokenizer) plus
// `files` (name, contents).
fs::path DirWith(const fs::path& model, const std::string& name,
                 const std::vector<std::pair<std::string, std::string>>& files) {
  const fs::path dir = fs::path(::testing::TempDir()) / (name + "-" + std::to_string(getpid()));
  fs::remove_all(dir);
  fs::create_directories(dir);
  for (const fs::directory_entry& e : fs::directory_iterator(model)) {
    if (e.path().filename().string().rfind("tokenizer", 0) == 0) continue;
    fs::create_symlink(fs::absolute(e.path()), dir / e.path().filename());
  }
  for (const auto& [file, contents] : files) std::ofstream(dir / file) << contents;
  return dir;
}

TEST(TextStartupTest, BadTokenizerFilesFailTheStartNamingTheProblem) {
  const fs::path malformed =
      DirWith(ModelDir(true), "malformed-tokenizer", {{"tokenizer.json", "{\"model\": 3"}});
  auto server = ServerProcess::Start(
      {"--model_dir=" + malformed.string(), "--device=cpu", "--metrics_address=127.0.0.1:0"});
  ASSERT_TRUE(server.ok()) << server.status();
  EXPECT_EQ((*server)->Stop(0, 20), 1);
  EXPECT_THAT((*server)->Log(), HasSubstr((malformed / "tokenizer.json").string()));

  // tiny-v2-lite has 512 ids: the V3 tokenizer's 128815 do not fit.
  std::ifstream config(kTokenizerDir / "tokenizer_config.json");
  std::stringstream config_text;
  config_text << config.rdbuf();
  const fs::path too_big = DirWith(fs::path(MLA_MODELS_DIR) / "tiny-v2-lite", "v3-on-v2",
                                   {{"tokenizer_config.json", config_text.str()}});
  fs::copy_file(kTokenizerDir / "tokenizer.json.xz", too_big / "tokenizer.json.xz");
  server = ServerProcess::Start(
      {"--model_dir=" + too_big.string(), "--device=cpu", "--metrics_address=127.0.0.1:0"});
  ASSERT_TRUE(server.ok()) << server.status();
  EXPECT_EQ((*server)->Stop(0, 30), 1);
  EXPECT_THAT((*server)->Log(), HasSubstr("128815"));
  EXPECT_THAT((*server)->Log(), HasSubstr("vocab_size (config.json) is 512"));
}

}  // namespace
}  // namespace mla
