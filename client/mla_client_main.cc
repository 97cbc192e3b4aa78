// mla-client: a command-line client for mla-server.
//   mla-client [--target=HOST:PORT] health | info | load | abort ID
//   mla-client generate --prompt_ids=1,2,3 [--max_tokens=16] [--temperature=0] ...
//   mla-client generate --text="Once upon a time" [--stop=STR,STR] [--print_ids]
//   mla-client generate --chat 'system:You are terse.' 'user:Hi'
#include <cstdio>
#include <iostream>
#include <string>
#include <vector>

#include "absl/flags/flag.h"
#include "absl/flags/parse.h"
#include "absl/flags/usage.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_split.h"
#include "client/mla_client.h"

ABSL_FLAG(std::string, target, "127.0.0.1:50051", "Server address host:port");
ABSL_FLAG(std::string, token, "", "Bearer token for servers started with auth");
ABSL_FLAG(int, timeout_ms, 0, "Per-call deadline in milliseconds (0 = none)");
ABSL_FLAG(bool, tls, false, "Use TLS (implied by the --tls_* file flags)");
ABSL_FLAG(std::string, tls_ca_file, "", "PEM CA certificates that verify the server");
ABSL_FLAG(std::string, tls_cert_file, "", "PEM client certificate chain (mutual TLS)");
ABSL_FLAG(std::string, tls_key_file, "", "PEM private key of --tls_cert_file");
ABSL_FLAG(std::string, tls_server_name, "",
          "Name to verify in the server certificate instead of the --target host");
ABSL_FLAG(std::string, prompt_ids, "", "generate: prompt as comma-separated token ids");
ABSL_FLAG(std::string, text, "", "generate: prompt as text (needs a tokenizer on the server)");
ABSL_FLAG(bool, chat, false,
          "generate: the prompt is the chat messages given as the arguments after "
          "'generate', each ROLE:CONTENT (role up to the first ':'), rendered with the "
          "server's chat template");
ABSL_FLAG(bool, add_generation_prompt, true,
          "generate --chat: end the prompt with the assistant's turn prefix");
ABSL_FLAG(std::vector<std::string>, stop, {},
          "generate: comma-separated stop strings (needs a tokenizer on the server)");
ABSL_FLAG(bool, print_ids, false,
          "generate: also print the generated token ids (the only output when the server "
          "has no tokenizer)");
ABSL_FLAG(int, max_tokens, 16, "generate: most tokens to generate");
ABSL_FLAG(double, temperature, 0.0, "generate: sampling temperature (0 = greedy)");
ABSL_FLAG(int, top_k, 0, "generate: top-k (0 = off)");
ABSL_FLAG(double, top_p, 1.0, "generate: top-p in (0, 1]");
ABSL_FLAG(double, min_p, 0.0, "generate: min-p in [0, 1]");
ABSL_FLAG(int64_t, seed, -1, "generate: sampling seed (-1 = server's choice)");
ABSL_FLAG(double, presence_penalty, 0.0, "generate: presence penalty in [-2, 2]");
ABSL_FLAG(double, frequency_penalty, 0.0, "generate: frequency penalty in [-2, 2]");
ABSL_FLAG(double, repetition_penalty, 1.0, "generate: repetition penalty > 0 (1 = off)");
ABSL_FLAG(int, min_tokens, 0, "generate: tokens before EOS or a stop token may end it");
ABSL_FLAG(std::vector<std::string>, logit_bias, {},
          "generate: comma-separated id:bias pairs, e.g. 5:-100,9:2.5");
ABSL_FLAG(int, logprobs, 0, "generate: top logprobs per generated token");
ABSL_FLAG(bool, ignore_eos, false, "generate: keep generating past end-of-sequence");
ABSL_FLAG(std::string, request_id, "", "generate: request id (server assigns one if empty)");

namespace mla {
namespace {

int PrintError(const absl::Status& s) {
  std::fprintf(stderr, "error: %s: %s\n", absl::StatusCodeToString(s.code()).c_str(),
               std::string(s.message()).c_str());
  return 1;
}

// Chat messages from the "ROLE:CONTENT" arguments that follow "generate".
absl::Status AddChatMessages(const std::vector<char*>& args, v1::ChatMessages* chat) {
  for (size_t i = 2; i < args.size(); ++i) {
    const absl::string_view arg = args[i];
    const size_t colon = arg.find(':');
    if (colon == absl::string_view::npos || colon == 0) {
      return absl::InvalidArgumentError(
          absl::StrCat("--chat: argument '", std::string(arg), "' is not ROLE:CONTENT"));
    }
    v1::ChatMessage* m = chat->add_messages();
    m->set_role(std::string(arg.substr(0, colon)));
    m->set_content(std::string(arg.substr(colon + 1)));
  }
  if (chat->messages().empty()) {
    return absl::InvalidArgumentError("--chat needs ROLE:CONTENT arguments, e.g. 'user:Hi'");
  }
  chat->set_add_generation_prompt(absl::GetFlag(FLAGS_add_generation_prompt));
  return absl::OkStatus();
}

absl::StatusOr<v1::GenerateRequest> BuildGenerateRequest(const std::vector<char*>& args) {
  v1::GenerateRequest request;
  request.set_request_id(absl::GetFlag(FLAGS_request_id));
  const std::string ids = absl::GetFlag(FLAGS_prompt_ids);
  if (!ids.empty()) {
    for (absl::string_view part : absl::StrSplit(ids, ',', absl::SkipWhitespace())) {
      int id = 0;
      if (!absl::SimpleAtoi(part, &id)) {
        return absl::InvalidArgumentError("--prompt_ids must be comma-separated integers");
      }
      request.mutable_token_ids()->add_ids(id);
    }
  } else if (!absl::GetFlag(FLAGS_text).empty()) {
    request.set_text(absl::GetFlag(FLAGS_text));
  } else if (absl::GetFlag(FLAGS_chat)) {
    absl::Status s = AddChatMessages(args, request.mutable_messages());
    if (!s.ok()) return s;
  } else {
    return absl::InvalidArgumentError("generate needs --prompt_ids, --text or --chat");
  }
  for (const std::string& stop : absl::GetFlag(FLAGS_stop)) {
    request.mutable_sampling()->add_stop(stop);
  }
  v1::SamplingParams* s = request.mutable_sampling();
  s->set_max_tokens(absl::GetFlag(FLAGS_max_tokens));
  s->set_temperature(static_cast<float>(absl::GetFlag(FLAGS_temperature)));
  s->set_top_k(absl::GetFlag(FLAGS_top_k));
  s->set_top_p(static_cast<float>(absl::GetFlag(FLAGS_top_p)));
  s->set_min_p(static_cast<float>(absl::GetFlag(FLAGS_min_p)));
  s->set_ignore_eos(absl::GetFlag(FLAGS_ignore_eos));
  s->set_presence_penalty(static_cast<float>(absl::GetFlag(FLAGS_presence_penalty)));
  s->set_frequency_penalty(static_cast<float>(absl::GetFlag(FLAGS_frequency_penalty)));
  s->set_repetition_penalty(static_cast<float>(absl::GetFlag(FLAGS_repetition_penalty)));
  s->set_min_tokens(absl::GetFlag(FLAGS_min_tokens));
  for (const std::string& pair : absl::GetFlag(FLAGS_logit_bias)) {
    const std::vector<std::string> parts = absl::StrSplit(pair, ':');
    int32_t id = 0;
    float bias = 0.0f;
    if (parts.size() != 2 || !absl::SimpleAtoi(parts[0], &id) ||
        !absl::SimpleAtof(parts[1], &bias)) {
      return absl::InvalidArgumentError(
          absl::StrCat("--logit_bias: \"", pair, "\" is not id:bias"));
    }
    (*s->mutable_logit_bias())[id] = bias;
  }
  if (absl::GetFlag(FLAGS_seed) >= 0) {
    s->set_seed(static_cast<uint64_t>(absl::GetFlag(FLAGS_seed)));
    s->set_has_seed(true);
  }
  request.set_logprobs(absl::GetFlag(FLAGS_logprobs));
  return request;
}

const char* FinishName(v1::FinishReason r) {
  switch (r) {
    case v1::FINISH_REASON_STOP:
      return "stop";
    case v1::FINISH_REASON_LENGTH:
      return "length";
    case v1::FINISH_REASON_STOP_SEQUENCE:
      return "stop_sequence";
    case v1::FINISH_REASON_ABORT:
      return "abort";
    default:
      return "unspecified";
  }
}

int RunGenerate(MlaClient& client, const std::vector<char*>& args) {
  auto request = BuildGenerateRequest(args);
  if (!request.ok()) return PrintError(request.status());
  const bool print_ids = absl::GetFlag(FLAGS_print_ids);
  std::vector<int32_t> ids;
  bool wrote_text = false;
  absl::Status s = client.Generate(*request, [&](const v1::GenerateResponse& m) {
    // Text as it streams; the server never splits a UTF-8 character between messages.
    std::fwrite(m.text().data(), 1, m.text().size(), stdout);
    std::fflush(stdout);
    wrote_text = wrote_text || !m.text().empty();
    ids.insert(ids.end(), m.token_ids().begin(), m.token_ids().end());
    if (m.has_finished()) {
      const v1::Finished& f = m.finished();
      if (wrote_text) std::printf("\n");
      if (print_ids) std::printf("[ids: %s]\n", absl::StrJoin(ids, " ").c_str());
      const std::string stop =
          f.stop_sequence().empty() ? "" : absl::StrCat(" stop=\"", f.stop_sequence(), "\"");
      std::printf("[finish=%s%s prompt=%d cached=%d completion=%d ttft=%.3fs total=%.3fs]\n",
                  FinishName(f.reason()), stop.c_str(), f.usage().prompt_tokens(),
                  f.usage().cached_prompt_tokens(), f.usage().completion_tokens(),
                  f.timings().time_to_first_token_seconds(), f.timings().total_seconds());
    }
    return true;
  });
  return s.ok() ? 0 : PrintError(s);
}

int Run(const std::vector<char*>& args) {
  if (args.size() < 2) {
    std::fprintf(stderr, "usage: mla-client [flags] health|info|load|generate|abort ID\n");
    return 2;
  }
  ClientOptions options;
  options.target = absl::GetFlag(FLAGS_target);
  options.bearer_token = absl::GetFlag(FLAGS_token);
  options.timeout = std::chrono::milliseconds(absl::GetFlag(FLAGS_timeout_ms));
  options.tls = absl::GetFlag(FLAGS_tls);
  options.tls_ca_file = absl::GetFlag(FLAGS_tls_ca_file);
  options.tls_cert_file = absl::GetFlag(FLAGS_tls_cert_file);
  options.tls_key_file = absl::GetFlag(FLAGS_tls_key_file);
  options.tls_server_name = absl::GetFlag(FLAGS_tls_server_name);
  absl::StatusOr<std::unique_ptr<MlaClient>> created = MlaClient::Create(options);
  if (!created.ok()) return PrintError(created.status());
  MlaClient& client = **created;
  const std::string command = args[1];
  if (command == "health") {
    auto h = client.Health();
    if (!h.ok()) return PrintError(h.status());
    std::printf("%s\n", grpc::health::v1::HealthCheckResponse::ServingStatus_Name(*h).c_str());
    return *h == grpc::health::v1::HealthCheckResponse::SERVING ? 0 : 3;
  }
  if (command == "info") {
    auto info = client.GetModelInfo();
    if (!info.ok()) return PrintError(info.status());
    std::cout << info->DebugString();
    return 0;
  }
  if (command == "load") {
    auto load = client.GetLoad();
    if (!load.ok()) return PrintError(load.status());
    std::cout << load->DebugString();
    return 0;
  }
  if (command == "abort" && args.size() == 3) {
    absl::Status s = client.Abort(args[2]);
    return s.ok() ? 0 : PrintError(s);
  }
  if (command == "generate") return RunGenerate(client, args);
  std::fprintf(stderr, "unknown command '%s'\n", command.c_str());
  return 2;
}

}  // namespace
}  // namespace mla

int main(int argc, char** argv) {
  absl::SetProgramUsageMessage(
      "mla-client [flags] health|info|load|abort ID|generate [ROLE:CONTENT ...]\n"
      "  generate --prompt_ids=1,2,3 | --text=TEXT | --chat 'system:Be terse.' 'user:Hi'\n"
      "  prints the generated text as it streams (--print_ids adds the token ids)");
  std::vector<char*> args = absl::ParseCommandLine(argc, argv);
  return mla::Run(args);
}
