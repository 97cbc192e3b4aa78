#include "client/bench/openai_generate.h"

#include <httplib.h>

#include <memory>
#include <nlohmann/json.hpp>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"

namespace mla::bench {
namespace {

using Json = nlohmann::json;

v1::FinishReason ReasonFromName(const std::string& name) {
  if (name == "length") return v1::FINISH_REASON_LENGTH;
  if (name == "stop") return v1::FINISH_REASON_STOP;
  return v1::FINISH_REASON_ABORT;
}

}  // namespace

bool SseParser::Feed(absl::string_view bytes) {
  buffer_.append(bytes.data(), bytes.size());
  size_t end;
  while ((end = buffer_.find("\n\n")) != std::string::npos) {
    const std::string event = buffer_.substr(0, end);
    buffer_.erase(0, end + 2);
    if (!absl::StartsWith(event, "data: ")) continue;  // Comments, other fields.
    if (!Event(absl::string_view(event).substr(6))) return false;
  }
  return true;
}

bool SseParser::Event(absl::string_view data) {
  if (data == "[DONE]") {
    done_ = true;
    return true;
  }
  const Json j = Json::parse(data.begin(), data.end(), nullptr, /*allow_exceptions=*/false);
  if (j.is_discarded() || !j.is_object()) {
    status_ = absl::DataLossError(absl::StrCat("a stream chunk is not JSON: ", data));
    return false;
  }
  if (j.contains("error")) {
    status_ = absl::UnknownError(absl::StrCat("error event: ", j["error"].dump()));
    return false;
  }
  v1::GenerateResponse message;
  if (j.contains("choices") && j["choices"].is_array() && !j["choices"].empty()) {
    const Json& choice = j["choices"][0];
    const Json lp = choice.value("logprobs", Json());
    if (lp.is_object() && lp.contains("tokens") && lp["tokens"].is_array()) {
      // The ids are not in the stream; the runner only counts them.
      for (size_t i = 0; i < lp["tokens"].size(); ++i) message.add_token_ids(0);
    }
    if (choice.contains("finish_reason") && choice["finish_reason"].is_string()) {
      finish_reason_ = choice["finish_reason"].get<std::string>();
    }
  }
  if (j.contains("usage") && j["usage"].is_object()) {
    const Json& u = j["usage"];
    v1::Finished* f = message.mutable_finished();
    f->set_reason(ReasonFromName(finish_reason_));
    f->mutable_usage()->set_prompt_tokens(u.value("prompt_tokens", 0));
    f->mutable_usage()->set_completion_tokens(u.value("completion_tokens", 0));
    if (u.contains("prompt_tokens_details") && u["prompt_tokens_details"].is_object()) {
      f->mutable_usage()->set_cached_prompt_tokens(
          u["prompt_tokens_details"].value("cached_tokens", 0));
    }
  }
  if (message.token_ids().empty() && !message.has_finished()) return true;
  return on_message_(message);
}

GenerateFn OpenAiGenerateFn(const OpenAiTarget& target) {
  return [target](const v1::GenerateRequest& request,
                  const std::function<bool(const v1::GenerateResponse&)>& on_message) {
    // One keep-alive connection per worker thread, as a gRPC channel is reused.
    thread_local std::unique_ptr<httplib::Client> client;
    thread_local std::string client_target;
    if (client == nullptr || client_target != target.host_port) {
      client = std::make_unique<httplib::Client>(absl::StrCat("http://", target.host_port));
      client->set_keep_alive(true);
      client->set_tcp_nodelay(true);  // The request's head and body are separate writes.
      client->set_read_timeout(target.timeout_s, 0);
      if (!target.token.empty()) client->set_bearer_token_auth(target.token);
      client_target = target.host_port;
    }
    const Json body = {{"model", target.model},
                       {"prompt", Json(std::vector<int32_t>(request.token_ids().ids().begin(),
                                                            request.token_ids().ids().end()))},
                       {"max_tokens", request.sampling().max_tokens()},
                       {"ignore_eos", request.sampling().ignore_eos()},
                       {"temperature", request.sampling().temperature()},
                       {"logprobs", std::max(0, request.logprobs())},
                       {"stream", true},
                       {"stream_options", {{"include_usage", true}}}};
    SseParser parser(on_message);
    std::string error_body;
    httplib::Request req;
    req.method = "POST";
    req.path = "/v1/completions";
    req.body = body.dump();
    req.set_header("Content-Type", "application/json");
    int status = 0;
    req.response_handler = [&status](const httplib::Response& r) {
      status = r.status;
      return true;
    };
    req.content_receiver = [&](const char* data, size_t n, uint64_t, uint64_t) {
      if (status != 200) {
        error_body.append(data, n);
        return true;
      }
      return parser.Feed(absl::string_view(data, n));
    };
    httplib::Response res;
    httplib::Error error = httplib::Error::Success;
    const bool sent = client->send(req, res, error);
    if (!parser.status().ok()) return parser.status();
    if (status != 0 && status != 200) {
      return absl::UnavailableError(absl::StrCat("HTTP ", status, ": ", error_body));
    }
    if (!sent) {
      client.reset();  // A broken connection is not reused.
      return absl::UnavailableError(
          absl::StrCat("POST /v1/completions: ", httplib::to_string(error)));
    }
    if (!parser.done()) return absl::DataLossError("the stream ended without [DONE]");
    return absl::OkStatus();
  };
}

}  // namespace mla::bench
