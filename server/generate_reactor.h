// The server-streaming reactor of Generate: submits the request to the engine and
// streams its outputs with one write in flight. Cancellation aborts the request.
#ifndef MLA_SERVER_GENERATE_REACTOR_H_
#define MLA_SERVER_GENERATE_REACTOR_H_

#include <grpcpp/grpcpp.h>

#include <atomic>
#include <deque>
#include <memory>

#include "absl/base/thread_annotations.h"
#include "absl/synchronization/mutex.h"
#include "engine/engine.h"
#include "mla/v1/inference.pb.h"

namespace mla {

class GenerateReactor final : public grpc::ServerWriteReactor<v1::GenerateResponse> {
 public:
  // A client that leaves this many generated tokens unread has its request aborted.
  static constexpr int kMaxUnreadTokens = 65536;

  // Starts the request; on a validation error the stream finishes at once with it.
  // `active_streams` counts reactors not yet done (the drain waits for it to reach 0).
  GenerateReactor(Engine* engine, const v1::GenerateRequest& request,
                  std::atomic<int>* active_streams);

  void OnWriteDone(bool ok) override;
  void OnCancel() override;
  void OnDone() override;

 private:
  // Shared with the engine's callback, which may outlive the reactor.
  struct State {
    absl::Mutex mu;
    GenerateReactor* reactor ABSL_GUARDED_BY(mu) = nullptr;
  };
  void Enqueue(GenerationOutput output);  // Engine thread.
  void WriteNextLocked() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);

  Engine* engine_;
  std::atomic<int>* active_streams_;
  std::shared_ptr<State> state_;
  std::string request_id_;
  absl::Mutex mu_;
  std::deque<v1::GenerateResponse> queue_ ABSL_GUARDED_BY(mu_);
  bool writing_ ABSL_GUARDED_BY(mu_) = false;
  bool finished_ ABSL_GUARDED_BY(mu_) = false;  // The engine sent its last output.
  bool done_ ABSL_GUARDED_BY(mu_) = false;      // Finish() was called.
  grpc::Status final_status_ ABSL_GUARDED_BY(mu_);
};

}  // namespace mla

#endif  // MLA_SERVER_GENERATE_REACTOR_H_
