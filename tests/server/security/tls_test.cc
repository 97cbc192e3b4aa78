#include "server/security/tls.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <unistd.h>

#include <cstdio>
#include <fstream>
#include <string>

namespace mla::security {
namespace {

using ::testing::HasSubstr;

class TlsOptionsTest : public ::testing::Test {
 protected:
  void SetUp() override {
    char tmpl[] = "/tmp/mla-tls-test-XXXXXX";
    ASSERT_NE(mkdtemp(tmpl), nullptr);
    dir_ = tmpl;
  }
  void TearDown() override {
    for (const std::string& f : files_) std::remove(f.c_str());
    rmdir(dir_.c_str());
  }
  std::string Write(const std::string& name, const std::string& contents) {
    const std::string path = dir_ + "/" + name;
    std::ofstream(path) << contents;
    files_.push_back(path);
    return path;
  }
  std::string dir_;
  std::vector<std::string> files_;
};

// Shape-only PEM blocks: LoadServerTls reads and checks files, it does not parse keys.
const char kCert[] = "-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n";
const char kKey[] = "-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----\n";

TEST_F(TlsOptionsTest, NothingSetIsPlaintext) {
  auto tls = LoadServerTls({});
  ASSERT_TRUE(tls.ok()) << tls.status();
  EXPECT_FALSE(tls->has_value());
}

TEST_F(TlsOptionsTest, CertAndKeyWithOptionalClientCa) {
  TlsServerOptions options{Write("c.pem", kCert), Write("k.pem", kKey), ""};
  auto tls = LoadServerTls(options);
  ASSERT_TRUE(tls.ok()) << tls.status();
  ASSERT_TRUE(tls->has_value());
  EXPECT_EQ((*tls)->pem_key_cert_pairs.at(0).cert_chain, kCert);
  EXPECT_EQ((*tls)->client_certificate_request, GRPC_SSL_DONT_REQUEST_CLIENT_CERTIFICATE);

  options.client_ca_file = Write("ca.pem", kCert);
  tls = LoadServerTls(options);
  ASSERT_TRUE(tls.ok()) << tls.status();
  EXPECT_EQ((*tls)->pem_root_certs, kCert);
  EXPECT_EQ((*tls)->client_certificate_request,
            GRPC_SSL_REQUEST_AND_REQUIRE_CLIENT_CERTIFICATE_AND_VERIFY);
}

TEST_F(TlsOptionsTest, ErrorsNameFlagAndFile) {
  const std::string cert = Write("c.pem", kCert);
  const std::string key = Write("k.pem", kKey);
  struct Case {
    TlsServerOptions options;
    std::string flag;
    std::string file;
  };
  const Case cases[] = {
      {{cert, "", ""}, "--tls_key_file", cert},
      {{"", key, ""}, "--tls_cert_file", key},
      {{"", "", cert}, "--tls_client_ca_file", cert},
      {{dir_ + "/missing.pem", key, ""}, "--tls_cert_file", dir_ + "/missing.pem"},
      {{cert, cert, ""}, "--tls_key_file", cert},  // A certificate is no key.
      {{key, key, ""}, "--tls_cert_file", key},
      {{cert, key, dir_ + "/nope.pem"}, "--tls_client_ca_file", dir_ + "/nope.pem"},
  };
  for (const Case& c : cases) {
    auto tls = LoadServerTls(c.options);
    ASSERT_FALSE(tls.ok()) << c.flag;
    EXPECT_THAT(tls.status().message(), HasSubstr(c.flag));
    EXPECT_THAT(tls.status().message(), HasSubstr(c.file));
  }
}

TEST_F(TlsOptionsTest, UnreadableFileReportsTheReason) {
  auto contents = ReadFlagFile("--tls_key_file", dir_);  // A directory cannot be read.
  ASSERT_FALSE(contents.ok());
  EXPECT_THAT(contents.status().message(), HasSubstr("--tls_key_file=" + dir_));
  EXPECT_THAT(contents.status().message(), HasSubstr("directory"));
}

TEST(IsLoopbackAddressTest, Addresses) {
  EXPECT_TRUE(IsLoopbackAddress("127.0.0.1:50051"));
  EXPECT_TRUE(IsLoopbackAddress("127.8.9.10:1"));
  EXPECT_TRUE(IsLoopbackAddress("localhost:50051"));
  EXPECT_TRUE(IsLoopbackAddress("[::1]:50051"));
  EXPECT_TRUE(IsLoopbackAddress("unix:/run/mla.sock"));
  EXPECT_FALSE(IsLoopbackAddress("0.0.0.0:50051"));
  EXPECT_FALSE(IsLoopbackAddress("[::]:50051"));
  EXPECT_FALSE(IsLoopbackAddress("10.0.0.5:50051"));
  EXPECT_FALSE(IsLoopbackAddress("128.0.0.1:50051"));
  EXPECT_FALSE(IsLoopbackAddress("myhost:50051"));
}

}  // namespace
}  // namespace mla::security
