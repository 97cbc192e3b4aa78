// The OpenAI-compatible HTTP API against a live server over raw sockets: the same tokens
// as gRPC for the same request, a client that disconnects mid-stream (its request is
// aborted and every block freed), backpressure (429) and the drain (503) with
// Retry-After, bearer tokens, the body limit in OpenAI's error shape, and load: 16
// concurrent clients, 200 requests, no failure.
#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <signal.h>
#include <sys/socket.h>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <fstream>
#include <nlohmann/json.hpp>
#include <sstream>
#include <thread>
#include <vector>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "client/mla_client.h"
#include "tests/integration/client_waits.h"
#include "tests/integration/server_process.h"
#include "tests/server/http/http_get.h"

namespace mla {
namespace {

using Json = nlohmann::json;
using ::testing::HasSubstr;
using testing::ServerProcess;

const std::string kModel = std::string(MLA_MODELS_DIR) + "/needle-v2-demo";
constexpr char kModelName[] = "needle-v2-demo";

std::string PostRequest(absl::string_view path, const std::string& body,
                        absl::string_view headers = "") {
  return absl::StrCat("POST ", path, " HTTP/1.1\r\nHost: x\r\nConnection: close\r\n",
                      "Content-Type: application/json\r\nContent-Length: ", body.size(), "\r\n",
                      headers, "\r\n", body);
}

// One request on its own connection; the whole answer.
absl::StatusOr<testing::HttpResult> Exchange(int port, const std::string& request) {
  absl::StatusOr<int> fd = testing::Connect(port);
  if (!fd.ok()) return fd.status();
  if (send(*fd, request.data(), request.size(), MSG_NOSIGNAL) !=
      static_cast<ssize_t>(request.size())) {
    close(*fd);
    return absl::UnavailableError("send failed");
  }
  std::string raw;
  char buffer[8192];
  ssize_t n;
  while ((n = recv(*fd, buffer, sizeof(buffer), 0)) > 0) raw.append(buffer, n);
  close(*fd);
  return testing::ParseResponse(raw);
}

absl::StatusOr<testing::HttpResult> Post(int port, absl::string_view path, const Json& body,
                                         absl::string_view headers = "") {
  return Exchange(port, PostRequest(path, body.dump(), headers));
}

Json Completion(int max_tokens, bool stream) {
  return Json{{"model", kModelName}, {"prompt", "The pass key is 12345. The pass key is "},
              {"temperature", 0},    {"max_tokens", max_tokens},
              {"ignore_eos", true},  {"stream", stream}};
}

// A streamed request whose first event has arrived; the socket stays open.
int OpenStream(int port, const Json& body) {
  absl::StatusOr<int> fd = testing::Connect(port);
  EXPECT_TRUE(fd.ok()) << fd.status();
  if (!fd.ok()) return -1;
  const std::string request = PostRequest("/v1/completions", body.dump());
  EXPECT_EQ(send(*fd, request.data(), request.size(), MSG_NOSIGNAL),
            static_cast<ssize_t>(request.size()));
  std::string raw;
  char buffer[4096];
  ssize_t n;
  while (raw.find("data: ") == std::string::npos &&
         (n = recv(*fd, buffer, sizeof(buffer), 0)) > 0) {
    raw.append(buffer, n);
  }
  EXPECT_THAT(raw, HasSubstr("HTTP/1.1 200 OK"));
  EXPECT_THAT(raw, HasSubstr("Content-Type: text/event-stream"));
  return *fd;
}

class OpenAiHttpTest : public ::testing::Test {
 protected:
  // `token`: the bearer token the gRPC client sends (for a server started with tokens).
  void Start(std::vector<std::string> flags, const std::string& token = "") {
    const std::string port_file =
        ::testing::TempDir() + "/mla-http-port-" + std::to_string(getpid());
    const std::string metrics_file = port_file + "-metrics";
    std::remove(port_file.c_str());
    std::remove(metrics_file.c_str());
    flags.push_back("--model_dir=" + kModel);
    flags.push_back("--device=cpu");
    flags.push_back("--threads=2");
    flags.push_back("--kv_cache_mib=16");
    flags.push_back("--metrics_address=127.0.0.1:0");
    flags.push_back("--metrics_port_file=" + metrics_file);
    flags.push_back("--http_address=127.0.0.1:0");
    flags.push_back("--http_port_file=" + port_file);
    auto server = ServerProcess::Start(flags);
    ASSERT_TRUE(server.ok()) << server.status();
    server_ = std::move(*server);
    std::ifstream file(port_file);
    ASSERT_TRUE(file >> http_port_) << server_->Log();
    std::ifstream metrics(metrics_file);
    ASSERT_TRUE(metrics >> metrics_port_) << server_->Log();
    ClientOptions options;
    options.target = server_->target();
    options.bearer_token = token;
    client_ = std::make_unique<MlaClient>(options);
    ASSERT_TRUE(testing::WaitUntilServing(*client_, *server_)) << server_->Log();
  }
  void TearDown() override {
    client_.reset();
    if (server_ && !stopped_) {
      EXPECT_EQ(server_->Stop(SIGTERM, 30), 0) << server_->Log();
    }
  }
  void ExpectIdle() {
    const absl::Status idle = testing::IdleWithin(*client_);
    EXPECT_TRUE(idle.ok()) << idle;
  }
  // Polls GetLoad (the load the engine publishes after each step, which the waiting
  // queue's bound is computed from) until `running` run and `waiting` wait.
  void WaitForLoad(int running, int waiting) {
    for (int i = 0; i < 1000; ++i) {
      absl::StatusOr<v1::Load> load = client_->GetLoad();
      if (load.ok() && load->num_requests_running() == running &&
          load->num_requests_waiting() == waiting) {
        return;
      }
      std::this_thread::sleep_for(std::chrono::milliseconds(20));
    }
    FAIL() << "never " << running << " running and " << waiting << " waiting";
  }

  // The text a gRPC Generate of `request` streams.
  std::string GrpcText(const v1::GenerateRequest& request) {
    std::string text;
    const absl::Status s = client_->Generate(request, [&](const v1::GenerateResponse& m) {
      text += m.text();
      return true;
    });
    EXPECT_TRUE(s.ok()) << s;
    return text;
  }

  std::unique_ptr<ServerProcess> server_;
  std::unique_ptr<MlaClient> client_;
  int http_port_ = 0;
  int metrics_port_ = 0;
  bool stopped_ = false;
};

TEST_F(OpenAiHttpTest, SameGreedyTextAsGrpcForTextAndChat) {
  Start({});
  v1::GenerateRequest grpc_request;
  grpc_request.set_text("The pass key is 12345. The pass key is ");
  grpc_request.mutable_sampling()->set_max_tokens(12);
  grpc_request.mutable_sampling()->set_ignore_eos(true);
  const std::string grpc_text = GrpcText(grpc_request);
  absl::StatusOr<testing::HttpResult> r =
      Post(http_port_, "/v1/completions", Completion(12, false));
  ASSERT_TRUE(r.ok()) << r.status();
  ASSERT_EQ(r->status, 200) << r->body;
  const Json j = Json::parse(r->body);
  EXPECT_EQ(j["choices"][0]["text"], grpc_text);
  EXPECT_EQ(j["choices"][0]["finish_reason"], "length");
  EXPECT_EQ(j["usage"]["completion_tokens"], 12);

  v1::GenerateRequest chat;
  v1::ChatMessage* m = chat.mutable_messages()->add_messages();
  m->set_role("user");
  m->set_content("What is the value of key ABCD? The value of key ABCD is ");
  chat.mutable_messages()->set_add_generation_prompt(true);
  chat.mutable_sampling()->set_max_tokens(6);
  const std::string grpc_chat = GrpcText(chat);
  r = Post(http_port_, "/v1/chat/completions",
           Json{{"model", kModelName},
                {"messages", {{{"role", "user"}, {"content", m->content()}}}},
                {"temperature", 0},
                {"max_tokens", 6}});
  ASSERT_TRUE(r.ok()) << r.status();
  ASSERT_EQ(r->status, 200) << r->body;
  EXPECT_EQ(Json::parse(r->body)["choices"][0]["message"]["content"], grpc_chat);
  ExpectIdle();
}

// Penalties and logit bias reach the engine as over gRPC: the same text for the same
// settings, and a bias on a token outside the vocabulary is a 400 naming the field.
TEST_F(OpenAiHttpTest, PenaltiesAndLogitBiasGiveTheGrpcText) {
  Start({});
  v1::GenerateRequest grpc_request;
  grpc_request.set_text("The pass key is 12345. The pass key is ");
  v1::SamplingParams* s = grpc_request.mutable_sampling();
  s->set_max_tokens(10);
  s->set_ignore_eos(true);
  s->set_presence_penalty(1.0f);
  s->set_frequency_penalty(0.5f);
  s->set_repetition_penalty(1.3f);
  (*s->mutable_logit_bias())[9] = 5.0f;
  const std::string grpc_text = GrpcText(grpc_request);
  Json body = Completion(10, false);
  body["presence_penalty"] = 1.0;
  body["frequency_penalty"] = 0.5;
  body["repetition_penalty"] = 1.3;
  body["logit_bias"] = Json{{"9", 5}};
  absl::StatusOr<testing::HttpResult> r = Post(http_port_, "/v1/completions", body);
  ASSERT_TRUE(r.ok()) << r.status();
  ASSERT_EQ(r->status, 200) << r->body;
  EXPECT_EQ(Json::parse(r->body)["choices"][0]["text"], grpc_text);
  // Without the penalties the text is the plain greedy one, which they changed.
  r = Post(http_port_, "/v1/completions", Completion(10, false));
  ASSERT_TRUE(r.ok()) << r.status();
  EXPECT_NE(Json::parse(r->body)["choices"][0]["text"], grpc_text);
  body["logit_bias"] = Json{{"99999999", 5}};
  r = Post(http_port_, "/v1/completions", body);
  ASSERT_TRUE(r.ok()) << r.status();
  EXPECT_EQ(r->status, 400) << r->body;
  const Json error = Json::parse(r->body)["error"];
  EXPECT_EQ(error["param"], "logit_bias");
  EXPECT_THAT(error["message"].get<std::string>(), HasSubstr("outside the vocabulary"));
  ExpectIdle();
}

// The JSON payloads of a streamed body's events before [DONE] (each event is written as
// one HTTP chunk, so none is split).
std::vector<Json> StreamedEvents(const std::string& body) {
  std::vector<Json> events;
  for (size_t at = body.find("data: "); at != std::string::npos; at = body.find("data: ", at + 1)) {
    const size_t end = body.find("\n\n", at);
    const std::string payload = body.substr(at + 6, end - at - 6);
    if (payload == "[DONE]") break;
    events.push_back(Json::parse(payload));
  }
  return events;
}

// n choices, each its own engine request on the prompt: n choices in order with usage
// summing their tokens; with a seed they sample apart and the same request gives the
// same choices; streamed, every chunk names its choice and each choice ends once with its
// reason; greedy choices are all the greedy text; n beyond the stream cap is refused.
TEST_F(OpenAiHttpTest, SeveralChoicesRunAsSeveralEngineRequests) {
  Start({"--max_concurrent_streams=4"});
  Json body = Completion(8, false);
  body["n"] = 3;
  body["temperature"] = 1.0;
  body["seed"] = 11;
  auto texts_of = [](const Json& response) {
    std::vector<std::string> texts;
    for (size_t i = 0; i < response["choices"].size(); ++i) {
      EXPECT_EQ(response["choices"][i]["index"], i);
      EXPECT_EQ(response["choices"][i]["finish_reason"], "length");
      texts.push_back(response["choices"][i]["text"]);
    }
    return texts;
  };
  absl::StatusOr<testing::HttpResult> r = Post(http_port_, "/v1/completions", body);
  ASSERT_TRUE(r.ok()) << r.status();
  ASSERT_EQ(r->status, 200) << r->body;
  const Json whole = Json::parse(r->body);
  const std::vector<std::string> texts = texts_of(whole);
  ASSERT_EQ(texts.size(), 3u);
  EXPECT_EQ(whole["usage"]["completion_tokens"], 24);
  EXPECT_FALSE(texts[0] == texts[1] && texts[1] == texts[2]);
  r = Post(http_port_, "/v1/completions", body);
  ASSERT_TRUE(r.ok()) << r.status();
  EXPECT_EQ(texts_of(Json::parse(r->body)), texts);  // Seeded: the same choices.
  // Streamed: the same choices, chunk by chunk.
  body["stream"] = true;
  body["stream_options"] = {{"include_usage", true}};
  r = Post(http_port_, "/v1/completions", body);
  ASSERT_TRUE(r.ok()) << r.status();
  ASSERT_EQ(r->status, 200) << r->body;
  std::vector<std::string> streamed(3);
  std::vector<int> endings(3, 0);
  const std::vector<Json> events = StreamedEvents(r->body);
  ASSERT_FALSE(events.empty());
  for (const Json& e : events) {
    if (e["choices"].empty()) continue;  // The usage chunk.
    const int index = e["choices"][0]["index"];
    ASSERT_TRUE(index >= 0 && index < 3) << e.dump();
    streamed[index] += e["choices"][0]["text"].get<std::string>();
    if (!e["choices"][0]["finish_reason"].is_null()) ++endings[index];
  }
  EXPECT_EQ(streamed, texts);
  EXPECT_EQ(endings, std::vector<int>(3, 1));
  EXPECT_EQ(events.back()["usage"]["completion_tokens"], 24);
  // Greedy: every choice is the one greedy text.
  r = Post(http_port_, "/v1/completions", Completion(8, false));
  ASSERT_TRUE(r.ok()) << r.status();
  const std::string greedy = Json::parse(r->body)["choices"][0]["text"];
  Json greedy_body = Completion(8, false);
  greedy_body["n"] = 2;
  r = Post(http_port_, "/v1/completions", greedy_body);
  ASSERT_TRUE(r.ok()) << r.status();
  EXPECT_EQ(texts_of(Json::parse(r->body)), (std::vector<std::string>{greedy, greedy}));
  // Five choices need five of the four stream slots.
  greedy_body["n"] = 5;
  r = Post(http_port_, "/v1/completions", greedy_body);
  ASSERT_TRUE(r.ok()) << r.status();
  EXPECT_EQ(r->status, 429) << r->body;
  ExpectIdle();
}

// A request whose n choices the waiting queue cannot all hold is refused whole, as one
// request would be (429 with Retry-After), and the choices already submitted are aborted:
// nothing stays behind, and the next request runs.
TEST_F(OpenAiHttpTest, ChoicesBeyondTheWaitingQueueRefuseTheWholeRequest) {
  Start({"--max_running=1", "--max_waiting=1"});
  Json body = Completion(2000, false);
  body["n"] = 3;
  absl::StatusOr<testing::HttpResult> r = Post(http_port_, "/v1/completions", body);
  ASSERT_TRUE(r.ok()) << r.status();
  EXPECT_EQ(r->status, 429) << r->body;
  EXPECT_EQ(r->headers["retry-after"], "1");
  EXPECT_THAT(r->body, HasSubstr("waiting queue is full"));
  // The aborted choices hold their places until the engine's next step ends them: the
  // next request is admitted once it has (a choice left behind would refuse it forever).
  for (int i = 0; i < 250; ++i) {
    r = Post(http_port_, "/v1/completions", Completion(4, false));
    ASSERT_TRUE(r.ok()) << r.status();
    if (r->status != 429) break;
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
  }
  EXPECT_EQ(r->status, 200) << r->body;
  ExpectIdle();
}

TEST_F(OpenAiHttpTest, DisconnectMidStreamAbortsAndFreesEveryBlock) {
  Start({});
  const int fd = OpenStream(http_port_, Completion(4000, true));
  // The load is published after each step; the first token may arrive before it.
  WaitForLoad(1, 0);
  absl::StatusOr<v1::Load> load = client_->GetLoad();
  ASSERT_TRUE(load.ok()) << load.status();
  EXPECT_GT(load->kv_blocks_used(), 0);
  close(fd);
  ExpectIdle();
  // Counted as an aborted request of the HTTP front end.
  const std::string aborted =
      "mla_requests_finished_total{finished_reason=\"abort\",api=\"openai\"} 1";
  std::string scraped;
  for (int i = 0; i < 250 && scraped.find(aborted) == std::string::npos; ++i) {
    absl::StatusOr<testing::HttpResult> metrics = testing::HttpGet(metrics_port_, "/metrics");
    ASSERT_TRUE(metrics.ok()) << metrics.status();
    scraped = metrics->body;
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
  }
  EXPECT_THAT(scraped, HasSubstr(aborted));
  EXPECT_THAT(scraped,
              HasSubstr("mla_http_requests_total{path=\"/v1/completions\",code=\"200\"} 1"));
}

// A client that hangs up on a request of n choices aborts every one of them.
TEST_F(OpenAiHttpTest, DisconnectAbortsEveryChoice) {
  Start({});
  Json body = Completion(4000, true);
  body["n"] = 3;
  const int fd = OpenStream(http_port_, body);
  WaitForLoad(3, 0);
  close(fd);
  ExpectIdle();
}

TEST_F(OpenAiHttpTest, BackpressureAndDrainAnswerWithRetryAfter) {
  Start({"--max_running=1", "--max_waiting=1", "--drain_timeout_s=30"});
  const int running = OpenStream(http_port_, Completion(4000, true));
  WaitForLoad(1, 0);
  // The second waits behind the first; the third finds the queue full.
  std::thread waiting([this] {
    absl::StatusOr<testing::HttpResult> r =
        Post(http_port_, "/v1/completions", Completion(2, false));
    ASSERT_TRUE(r.ok()) << r.status();
    EXPECT_EQ(r->status, 200) << r->body;
  });
  WaitForLoad(1, 1);
  absl::StatusOr<testing::HttpResult> r = Post(http_port_, "/v1/completions", Completion(2, false));
  ASSERT_TRUE(r.ok()) << r.status();
  EXPECT_EQ(r->status, 429) << r->body;
  EXPECT_EQ(r->headers["retry-after"], "1");
  EXPECT_EQ(Json::parse(r->body)["error"]["type"], "rate_limit_error");

  ASSERT_EQ(kill(server_->pid(), SIGTERM), 0);
  bool draining = false;
  for (int i = 0; i < 200 && !draining; ++i) {
    r = Post(http_port_, "/v1/chat/completions",
             Json{{"model", kModelName}, {"messages", {{{"role", "user"}, {"content", "x"}}}}});
    ASSERT_TRUE(r.ok()) << r.status();
    draining = r->status == 503;
    if (!draining) std::this_thread::sleep_for(std::chrono::milliseconds(20));
  }
  ASSERT_TRUE(draining) << server_->Log();
  EXPECT_EQ(r->headers["retry-after"], "1");
  EXPECT_THAT(Json::parse(r->body)["error"]["message"].get<std::string>(), HasSubstr("draining"));
  // Other routes keep answering while the drain waits for the stream.
  r = Exchange(http_port_, "GET /v1/models HTTP/1.1\r\nConnection: close\r\n\r\n");
  ASSERT_TRUE(r.ok()) << r.status();
  EXPECT_EQ(r->status, 200);
  close(running);  // The last live stream goes; the drain ends.
  waiting.join();
  // Signal 0: the SIGTERM above is draining it; a second would stop it at once.
  EXPECT_EQ(server_->Stop(0, 30), 0) << server_->Log();
  stopped_ = true;
}

TEST_F(OpenAiHttpTest, BearerTokensAndErrorShapes) {
  const std::string tokens = ::testing::TempDir() + "/mla-http-tokens-" + std::to_string(getpid());
  std::ofstream(tokens) << "# test token\nsecret-token\n";
  Start({"--auth_tokens_file=" + tokens, "--http_max_body_bytes=2000"}, "secret-token");
  const std::string get = "GET /v1/models HTTP/1.1\r\nConnection: close\r\n";
  absl::StatusOr<testing::HttpResult> r = Exchange(http_port_, get + "\r\n");
  ASSERT_TRUE(r.ok()) << r.status();
  EXPECT_EQ(r->status, 401);
  EXPECT_EQ(r->headers["www-authenticate"], "Bearer");
  EXPECT_EQ(Json::parse(r->body)["error"]["code"], "invalid_api_key");
  r = Exchange(http_port_, get + "Authorization: Bearer wrong\r\n\r\n");
  ASSERT_TRUE(r.ok());
  EXPECT_EQ(r->status, 401);
  const std::string auth = "Authorization: Bearer secret-token\r\n";
  r = Exchange(http_port_, get + auth + "\r\n");
  ASSERT_TRUE(r.ok());
  ASSERT_EQ(r->status, 200) << r->body;
  const Json models = Json::parse(r->body);
  EXPECT_EQ(models["data"][0]["id"], kModelName);
  EXPECT_EQ(models["data"][0]["max_model_len"], 8192);
  // The body limit, answered by the HTTP server itself, in OpenAI's shape.
  Json big = Completion(2, false);
  big["prompt"] = std::string(3000, 'a');
  r = Post(http_port_, "/v1/completions", big, auth);
  ASSERT_TRUE(r.ok());
  EXPECT_EQ(r->status, 413);
  EXPECT_THAT(Json::parse(r->body)["error"]["message"].get<std::string>(), HasSubstr("2000"));
  // Malformed JSON, an unknown model, an out-of-range value.
  r = Exchange(http_port_, PostRequest("/v1/completions", "{\"model\": ", auth));
  ASSERT_TRUE(r.ok());
  EXPECT_EQ(r->status, 400);
  Json wrong = Completion(2, false);
  wrong["model"] = "gpt-4";
  r = Post(http_port_, "/v1/completions", wrong, auth);
  ASSERT_TRUE(r.ok());
  EXPECT_EQ(r->status, 404);
  EXPECT_EQ(Json::parse(r->body)["error"]["code"], "model_not_found");
  Json high = Completion(9000, false);
  r = Post(http_port_, "/v1/completions", high, auth);
  ASSERT_TRUE(r.ok());
  EXPECT_EQ(r->status, 400);
  EXPECT_EQ(Json::parse(r->body)["error"]["code"], "context_length_exceeded");
  ExpectIdle();
}

TEST_F(OpenAiHttpTest, TokensOnANonLoopbackAddressRefuseToStart) {
  const std::string tokens = ::testing::TempDir() + "/mla-http-tokens2-" + std::to_string(getpid());
  std::ofstream(tokens) << "secret-token\n";
  auto server = ServerProcess::Start({"--model_dir=" + kModel, "--device=cpu", "--metrics_address=",
                                      "--auth_tokens_file=" + tokens, "--http_address=0.0.0.0:0"});
  ASSERT_FALSE(server.ok());
  EXPECT_THAT(server.status().message(), HasSubstr("plaintext HTTP"));
}

TEST_F(OpenAiHttpTest, SixteenConcurrentClientsTwoHundredRequestsNoFailure) {
  Start({});
  constexpr int kClients = 16, kRequests = 200;
  std::atomic<int> next{0}, ok{0};
  std::vector<std::string> failures;
  absl::Mutex mu;
  std::vector<std::thread> clients;
  for (int c = 0; c < kClients; ++c) {
    clients.emplace_back([&] {
      for (int i = next.fetch_add(1); i < kRequests; i = next.fetch_add(1)) {
        const bool stream = i % 2 == 0;
        Json body = Completion(8, stream);
        body["prompt"] = absl::StrCat("Request ", i, ": the value of key ABCD is ");
        if (stream) body["stream_options"] = {{"include_usage", true}};
        absl::StatusOr<testing::HttpResult> r = Post(http_port_, "/v1/completions", body);
        const bool good = r.ok() && r->status == 200 &&
                          (stream ? r->body.find("\"completion_tokens\":8") != std::string::npos &&
                                        absl::EndsWith(r->body, "data: [DONE]\n\n\r\n0\r\n\r\n")
                                  : Json::parse(r->body)["usage"]["completion_tokens"] == 8);
        if (good) {
          ok.fetch_add(1);
        } else {
          absl::MutexLock lock(&mu);
          failures.push_back(r.ok() ? r->body : std::string(r.status().message()));
        }
      }
    });
  }
  for (std::thread& t : clients) t.join();
  EXPECT_EQ(ok.load(), kRequests);
  EXPECT_THAT(failures, ::testing::IsEmpty());
  ExpectIdle();
}

}  // namespace
}  // namespace mla
