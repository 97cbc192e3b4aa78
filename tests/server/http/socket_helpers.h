// Raw-socket steps for the HTTP server's tests, with gtest's failure reporting: connect,
// send all, read until a marker or until the server closes.
#ifndef MLA_TESTS_SERVER_HTTP_SOCKET_HELPERS_H_
#define MLA_TESTS_SERVER_HTTP_SOCKET_HELPERS_H_

#include <gtest/gtest.h>
#include <sys/socket.h>

#include <string>

#include "tests/server/http/http_get.h"

namespace mla::testing {

inline int ConnectOrDie(int port) {
  absl::StatusOr<int> fd = Connect(port);
  EXPECT_TRUE(fd.ok()) << fd.status();
  return fd.ok() ? *fd : -1;
}

// Reads until `marker` has arrived, or (empty marker) until the server closes; either
// way at most until the socket's 10 s read timeout.
inline std::string ReadUntil(int fd, const std::string& marker) {
  std::string raw;
  char buffer[4096];
  ssize_t n;
  while ((marker.empty() || raw.find(marker) == std::string::npos) &&
         (n = recv(fd, buffer, sizeof(buffer), 0)) > 0) {
    raw.append(buffer, static_cast<size_t>(n));
  }
  return raw;
}

inline std::string ReadToClose(int fd) { return ReadUntil(fd, ""); }

inline void Send(int fd, const std::string& bytes) {
  ASSERT_EQ(send(fd, bytes.data(), bytes.size(), MSG_NOSIGNAL), static_cast<ssize_t>(bytes.size()));
}

}  // namespace mla::testing

#endif  // MLA_TESTS_SERVER_HTTP_SOCKET_HELPERS_H_
