// Runs mla-server as a child process on port 0 for integration tests over real sockets.
#ifndef MLA_TESTS_INTEGRATION_SERVER_PROCESS_H_
#define MLA_TESTS_INTEGRATION_SERVER_PROCESS_H_

#include <sys/types.h>

#include <string>
#include <vector>

#include "absl/status/statusor.h"

namespace mla::testing {

class ServerProcess {
 public:
  // Starts the server with `args` (plus --listen=127.0.0.1:0 and --port_file) and waits
  // until it listens. The server's stderr goes to a log file printed on failure.
  static absl::StatusOr<std::unique_ptr<ServerProcess>> Start(std::vector<std::string> args);
  ~ServerProcess();

  int port() const { return port_; }
  pid_t pid() const { return pid_; }
  std::string target() const { return "127.0.0.1:" + std::to_string(port_); }
  // Sends `signal` and waits up to `timeout_s`; returns the exit status (or -1 on timeout,
  // after which the process is killed).
  int Stop(int signal, double timeout_s);
  // Whether the server has exited (without waiting); Stop then returns its exit status.
  bool Exited();
  std::string Log() const;

 private:
  ServerProcess(pid_t pid, int port, std::string dir) : pid_(pid), port_(port), dir_(dir) {}
  static int ExitStatus(int wait_status);
  pid_t pid_;
  int exit_status_ = -1;  // Once the process is reaped.
  int port_;
  std::string dir_;
};

}  // namespace mla::testing

#endif  // MLA_TESTS_INTEGRATION_SERVER_PROCESS_H_
