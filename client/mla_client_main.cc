// mla-client: a command-line client for mla-server.
//   mla-client [--target=HOST:PORT] health | info | load | abort ID
//   mla-client generate --prompt_ids=1,2,3 [--max_tokens=16] [--temperature=0] ...
#include <cstdio>
#include <iostream>
#include <string>
#include <vector>

#include "absl/flags/flag.h"
#include "absl/flags/parse.h"
#include "absl/flags/usage.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_split.h"
#include "client/mla_client.h"

ABSL_FLAG(std::string, target, "127.0.0.1:50051", "Server address host:port");
ABSL_FLAG(std::string, token, "", "Bearer token for servers started with auth");
ABSL_FLAG(int, timeout_ms, 0, "Per-call deadline in milliseconds (0 = none)");
ABSL_FLAG(std::string, prompt_ids, "", "generate: prompt as comma-separated token ids");
ABSL_FLAG(std::string, text, "", "generate: prompt as text (needs a tokenizer on the server)");
ABSL_FLAG(int, max_tokens, 16, "generate: most tokens to generate");
ABSL_FLAG(double, temperature, 0.0, "generate: sampling temperature (0 = greedy)");
ABSL_FLAG(int, top_k, 0, "generate: top-k (0 = off)");
ABSL_FLAG(double, top_p, 1.0, "generate: top-p in (0, 1]");
ABSL_FLAG(double, min_p, 0.0, "generate: min-p in [0, 1]");
ABSL_FLAG(int64_t, seed, -1, "generate: sampling seed (-1 = server's choice)");
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

absl::StatusOr<v1::GenerateRequest> BuildGenerateRequest() {
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
  } else {
    return absl::InvalidArgumentError("generate needs --prompt_ids or --text");
  }
  v1::SamplingParams* s = request.mutable_sampling();
  s->set_max_tokens(absl::GetFlag(FLAGS_max_tokens));
  s->set_temperature(static_cast<float>(absl::GetFlag(FLAGS_temperature)));
  s->set_top_k(absl::GetFlag(FLAGS_top_k));
  s->set_top_p(static_cast<float>(absl::GetFlag(FLAGS_top_p)));
  s->set_min_p(static_cast<float>(absl::GetFlag(FLAGS_min_p)));
  s->set_ignore_eos(absl::GetFlag(FLAGS_ignore_eos));
  if (absl::GetFlag(FLAGS_seed) >= 0) {
    s->set_seed(static_cast<uint64_t>(absl::GetFlag(FLAGS_seed)));
    s->set_has_seed(true);
  }
  request.set_logprobs(absl::GetFlag(FLAGS_logprobs));
  return request;
}

const char* FinishName(v1::FinishReason r) {
  switch (r) {
    case v1::FINISH_REASON_STOP: return "stop";
    case v1::FINISH_REASON_LENGTH: return "length";
    case v1::FINISH_REASON_STOP_SEQUENCE: return "stop_sequence";
    case v1::FINISH_REASON_ABORT: return "abort";
    default: return "unspecified";
  }
}

int RunGenerate(MlaClient& client) {
  auto request = BuildGenerateRequest();
  if (!request.ok()) return PrintError(request.status());
  absl::Status s = client.Generate(*request, [](const v1::GenerateResponse& m) {
    for (int i = 0; i < m.token_ids_size(); ++i) {
      if (!m.text().empty()) continue;
      std::printf("%d ", m.token_ids(i));
    }
    if (!m.text().empty()) std::printf("%s", m.text().c_str());
    std::fflush(stdout);
    if (m.has_finished()) {
      const v1::Finished& f = m.finished();
      std::printf("\n[finish=%s prompt=%d cached=%d completion=%d ttft=%.3fs total=%.3fs]\n",
                  FinishName(f.reason()), f.usage().prompt_tokens(),
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
  MlaClient client(options);
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
  if (command == "generate") return RunGenerate(client);
  std::fprintf(stderr, "unknown command '%s'\n", command.c_str());
  return 2;
}

}  // namespace
}  // namespace mla

int main(int argc, char** argv) {
  absl::SetProgramUsageMessage("mla-client [flags] health|info|load|generate|abort ID");
  std::vector<char*> args = absl::ParseCommandLine(argc, argv);
  return mla::Run(args);
}
