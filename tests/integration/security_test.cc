// TLS, mutual TLS, bearer tokens and the stream cap of mla-server over real sockets.
// Certificates are made at test time with the openssl command-line tool.
#include <gmock/gmock.h>
#include <grpcpp/generic/generic_stub.h>
#include <gtest/gtest.h>
#include <signal.h>
#include <unistd.h>

#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <future>
#include <thread>

#include "absl/strings/str_cat.h"
#include "client/mla_client.h"
#include "tests/integration/server_process.h"

namespace mla {
namespace {

using ::testing::HasSubstr;
using ::testing::Not;
using testing::ServerProcess;
using ServingStatus = grpc::health::v1::HealthCheckResponse::ServingStatus;

const std::string kModel = std::string(MLA_MODELS_DIR) + "/tiny-v2-lite";
constexpr char kToken[] = "s3cret-token-0123456789";

// A CA, a server certificate for localhost / 127.0.0.1 and a client certificate signed
// by it, and an unrelated CA; EC keys, which openssl makes in milliseconds.
class Certs {
 public:
  static absl::StatusOr<std::string> Make() {
    char tmpl[] = "/tmp/mla-certs-XXXXXX";
    if (mkdtemp(tmpl) == nullptr) return absl::InternalError("mkdtemp failed");
    const std::string d = tmpl;
    const std::string key = "-newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes";
    const std::string ca = absl::StrCat("openssl req -x509 ", key, " -days 2");
    const std::string csr = absl::StrCat("openssl req -new ", key);
    const std::string sign =
        "openssl x509 -req -days 2 -CA " + d + "/ca.pem -CAkey " + d + "/ca.key -set_serial ";
    const std::string script = absl::StrCat(
        "set -e; cd ", d, "\n", ca, " -keyout ca.key -out ca.pem -subj /CN=test-ca\n", ca,
        " -keyout other.key -out other.pem -subj /CN=other-ca\n",
        "printf 'subjectAltName=DNS:localhost,IP:127.0.0.1\\nextendedKeyUsage=serverAuth\\n'"
        " > server.ext\n",
        "printf 'extendedKeyUsage=clientAuth\\n' > client.ext\n", csr,
        " -keyout server.key -out server.csr -subj /CN=localhost\n", sign,
        "1 -in server.csr -extfile server.ext -out server.pem\n", csr,
        " -keyout client.key -out client.csr -subj /CN=test-client\n", sign,
        "2 -in client.csr -extfile client.ext -out client.pem\n",
        "printf '# test tokens\\n\\nother-token\\n", kToken, "\\n' > tokens.txt\n",
        ": > empty.txt\n");
    std::ofstream(d + "/make.sh") << script;
    if (std::system(("sh " + d + "/make.sh > " + d + "/make.log 2>&1").c_str()) != 0) {
      std::ifstream log(d + "/make.log");
      std::stringstream s;
      s << log.rdbuf();
      return absl::InternalError("openssl failed:\n" + s.str());
    }
    return d;
  }
};

class SecurityTest : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    absl::StatusOr<std::string> dir = Certs::Make();
    ASSERT_TRUE(dir.ok()) << dir.status();
    dir_ = new std::string(*dir);
  }
  static void TearDownTestSuite() {
    if (dir_ != nullptr) std::filesystem::remove_all(*dir_);
    delete dir_;
    dir_ = nullptr;
  }
  static std::string File(const std::string& name) { return *dir_ + "/" + name; }

  // Starts the server with `flags` and waits until Health answers SERVING through a
  // client made from `probe` (its target is filled in).
  void StartServer(std::vector<std::string> flags, ClientOptions probe) {
    flags.insert(flags.end(), {"--model_dir=" + kModel, "--device=cpu", "--kv_cache_mib=16",
                               "--threads=1", "--metrics_address="});
    auto server = ServerProcess::Start(flags);
    ASSERT_TRUE(server.ok()) << server.status();
    server_ = std::move(*server);
    auto client = Client(probe);
    ASSERT_TRUE(client.ok()) << client.status();
    absl::StatusOr<ServingStatus> status;
    for (int i = 0; i < 400; ++i) {
      status = (*client)->Health();
      if (status.ok() && *status == grpc::health::v1::HealthCheckResponse::SERVING) return;
      std::this_thread::sleep_for(std::chrono::milliseconds(25));
    }
    FAIL() << "not serving: " << status.status() << "\n" << server_->Log();
  }
  void TearDown() override {
    if (server_) {
      EXPECT_EQ(server_->Stop(SIGTERM, 20), 0) << server_->Log();
    }
  }
  absl::StatusOr<std::unique_ptr<MlaClient>> Client(ClientOptions options) {
    options.target = server_->target();
    options.timeout = std::chrono::milliseconds(5000);
    return MlaClient::Create(options);
  }
  // The status of GetModelInfo through a fresh client (and so a fresh connection).
  absl::Status Info(const ClientOptions& options) {
    auto client = Client(options);
    if (!client.ok()) return client.status();
    return (*client)->GetModelInfo().status();
  }
  static ClientOptions Tls(const std::string& ca, const std::string& token = "") {
    ClientOptions o;
    o.tls_ca_file = File(ca);
    o.tls_server_name = "localhost";
    o.bearer_token = token;
    return o;
  }

  static std::string* dir_;
  std::unique_ptr<ServerProcess> server_;
};
std::string* SecurityTest::dir_ = nullptr;

TEST_F(SecurityTest, TlsVerifiesServerAgainstTheRightCaOnly) {
  StartServer({"--tls_cert_file=" + File("server.pem"), "--tls_key_file=" + File("server.key")},
              Tls("ca.pem"));
  EXPECT_TRUE(Info(Tls("ca.pem")).ok());
  ClientOptions by_ip = Tls("ca.pem");
  by_ip.tls_server_name.clear();  // Verified against the IP address SAN.
  EXPECT_TRUE(Info(by_ip).ok()) << Info(by_ip);
  EXPECT_EQ(Info(Tls("other.pem")).code(), absl::StatusCode::kUnavailable);
  EXPECT_EQ(Info(ClientOptions()).code(), absl::StatusCode::kUnavailable);  // Plaintext.
  EXPECT_THAT(server_->Log(), HasSubstr("tls: enabled"));
}

TEST_F(SecurityTest, MutualTlsRequiresAClientCertificate) {
  ClientOptions with_cert = Tls("ca.pem");
  with_cert.tls_cert_file = File("client.pem");
  with_cert.tls_key_file = File("client.key");
  StartServer({"--tls_cert_file=" + File("server.pem"), "--tls_key_file=" + File("server.key"),
               "--tls_client_ca_file=" + File("ca.pem")},
              with_cert);
  EXPECT_TRUE(Info(with_cert).ok()) << Info(with_cert);
  EXPECT_EQ(Info(Tls("ca.pem")).code(), absl::StatusCode::kUnavailable);
}

// Calls `method` with an empty message through a generic stub: the auth check comes
// before method lookup, so it shows whether reflection would need a token.
grpc::Status GenericCall(const std::shared_ptr<grpc::Channel>& channel, const std::string& method,
                         const std::string& token) {
  grpc::GenericStub stub(channel);
  grpc::ClientContext ctx;
  if (!token.empty()) ctx.AddMetadata("authorization", "Bearer " + token);
  ctx.set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(5));
  grpc::Slice empty("");  // An empty message, valid for any request type.
  grpc::ByteBuffer request(&empty, 1), response;
  std::promise<grpc::Status> done;
  stub.UnaryCall(&ctx, method, grpc::StubOptions(), &request, &response,
                 [&done](grpc::Status s) { done.set_value(s); });
  return done.get_future().get();
}

TEST_F(SecurityTest, BearerTokensOverTls) {
  StartServer({"--tls_cert_file=" + File("server.pem"), "--tls_key_file=" + File("server.key"),
               "--auth_tokens_file=" + File("tokens.txt")},
              Tls("ca.pem"));  // Health needs no token.
  EXPECT_TRUE(Info(Tls("ca.pem", kToken)).ok());
  EXPECT_TRUE(Info(Tls("ca.pem", "other-token")).ok());
  const absl::Status missing = Info(Tls("ca.pem"));
  EXPECT_EQ(missing.code(), absl::StatusCode::kUnauthenticated);
  EXPECT_THAT(missing.message(), HasSubstr("missing bearer token"));
  const absl::Status wrong = Info(Tls("ca.pem", "s3cret-token-0123456788"));
  EXPECT_EQ(wrong.code(), absl::StatusCode::kUnauthenticated);
  EXPECT_THAT(wrong.message(), Not(HasSubstr("s3cret")));
  EXPECT_THAT(server_->Log(), Not(HasSubstr(kToken)));
}

TEST_F(SecurityTest, BearerTokensOnPlaintextLoopback) {
  StartServer({"--auth_tokens_file=" + File("tokens.txt")}, ClientOptions());
  ClientOptions with_token;
  with_token.bearer_token = kToken;
  EXPECT_TRUE(Info(with_token).ok()) << Info(with_token);
  EXPECT_EQ(Info(ClientOptions()).code(), absl::StatusCode::kUnauthenticated);

  auto channel = grpc::CreateChannel(server_->target(), grpc::InsecureChannelCredentials());
  const std::string reflection = "/grpc.reflection.v1alpha.ServerReflection/ServerReflectionInfo";
  EXPECT_EQ(GenericCall(channel, reflection, "").error_code(), grpc::StatusCode::UNAUTHENTICATED);
  EXPECT_NE(GenericCall(channel, reflection, kToken).error_code(),
            grpc::StatusCode::UNAUTHENTICATED);
}

TEST_F(SecurityTest, StreamCapRefusesWithRetryHint) {
  StartServer({"--max_concurrent_streams=1"}, ClientOptions());
  auto channel = grpc::CreateChannel(server_->target(), grpc::InsecureChannelCredentials());
  auto stub = v1::Inference::NewStub(channel);
  v1::GenerateRequest request;
  for (int t : {5, 6, 7}) request.mutable_token_ids()->add_ids(t);
  request.mutable_sampling()->set_max_tokens(20000);
  request.mutable_sampling()->set_ignore_eos(true);

  grpc::ClientContext first_ctx;
  auto first = stub->Generate(&first_ctx, request);
  v1::GenerateResponse message;
  ASSERT_TRUE(first->Read(&message));  // The first stream is live now.

  grpc::ClientContext second_ctx;
  auto second = stub->Generate(&second_ctx, request);
  while (second->Read(&message)) {
  }
  const grpc::Status refused = second->Finish();
  EXPECT_EQ(refused.error_code(), grpc::StatusCode::RESOURCE_EXHAUSTED);
  EXPECT_THAT(refused.error_message(), HasSubstr("--max_concurrent_streams"));
  const auto& trailers = second_ctx.GetServerTrailingMetadata();
  const auto hint = trailers.find("retry-after-ms");
  ASSERT_NE(hint, trailers.end());
  EXPECT_EQ(std::string(hint->second.data(), hint->second.size()), "1000");
  EXPECT_EQ(trailers.count("grpc-retry-pushback-ms"), 1u);

  first_ctx.TryCancel();
  while (first->Read(&message)) {
  }
  EXPECT_EQ(first->Finish().error_code(), grpc::StatusCode::CANCELLED);
  // The slot frees once the first stream is done.
  request.mutable_sampling()->set_max_tokens(2);
  absl::Status again;
  auto client = Client(ClientOptions());
  ASSERT_TRUE(client.ok());
  for (int i = 0; i < 100; ++i) {
    again = (*client)->Generate(request, [](const v1::GenerateResponse&) { return true; });
    if (again.code() != absl::StatusCode::kResourceExhausted) break;
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
  }
  EXPECT_TRUE(again.ok()) << again;
}

TEST_F(SecurityTest, BadFlagsStopTheServerWithTheFlagNamed) {
  const std::pair<std::vector<std::string>, std::string> cases[] = {
      {{"--tls_cert_file=" + File("server.pem")}, "needs --tls_key_file"},
      {{"--tls_cert_file=" + File("server.pem"), "--tls_key_file=" + File("missing.key")},
       "--tls_key_file=" + File("missing.key")},
      {{"--auth_tokens_file=" + File("empty.txt")}, "--auth_tokens_file=" + File("empty.txt")},
  };
  for (const auto& [flags, expected] : cases) {
    auto server = ServerProcess::Start(flags);
    ASSERT_FALSE(server.ok()) << expected;
    EXPECT_THAT(server.status().message(), HasSubstr(expected));
  }
}

}  // namespace
}  // namespace mla
