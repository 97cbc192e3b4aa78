// The server-streaming reactor of Generate: submits the request to the engine and
// streams its outputs with one write in flight. Cancellation aborts the request. With a
// tokenizer, every message also carries the text of its tokens, and a matched stop
// string aborts the engine request and ends the stream with FINISH_REASON_STOP_SEQUENCE.
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
#include "server/stream_registry.h"
#include "server/text_stream.h"
#include "server/text_support.h"

namespace mla {

// Writes serialized messages: the service's methods are raw (see request_codec.h).
class GenerateReactor final : public grpc::ServerWriteReactor<grpc::ByteBuffer> {
 public:
  static constexpr int kDefaultMaxUnreadTokens = 65536;
  struct Limits {
    // A client that leaves more generated tokens than this unread has its request aborted.
    int max_unread_tokens = kDefaultMaxUnreadTokens;
    // Back-off suggested (retry-after-ms trailer) when the engine's queue is full.
    int retry_after_ms = 1000;
  };

  // Starts the request; on a validation error the stream finishes at once with it.
  // `streams` counts reactors not yet done (the drain waits for it to reach 0): the
  // caller has entered this one already; the reactor adds its engine request and leaves
  // when done. `text` (must outlive the reactor) turns text and chat prompts into ids.
  GenerateReactor(Engine* engine, const TextSupport* text, grpc::CallbackServerContext* ctx,
                  const v1::GenerateRequest& request, StreamRegistry* streams,
                  const Limits& limits);

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
  void AbortLocked() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // The text of `output`'s tokens. On a stop string it drops the tokens after it, aborts
  // the engine request and, on the last output, sets the reason to kStopSequence.
  std::string ApplyText(GenerationOutput& output) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);

  Engine* engine_;
  StreamRegistry* streams_;
  const int max_unread_tokens_;
  std::shared_ptr<State> state_;
  std::string request_id_;
  uint64_t serial_ = 0;  // Engine::Submit's serial: aborts name this submission only.
  absl::Mutex mu_;
  std::deque<v1::GenerateResponse> queue_ ABSL_GUARDED_BY(mu_);
  grpc::ByteBuffer write_buffer_ ABSL_GUARDED_BY(mu_);  // queue_.front(), being written.
  std::unique_ptr<TextStream> text_stream_ ABSL_GUARDED_BY(mu_);  // Null without a tokenizer.
  bool writing_ ABSL_GUARDED_BY(mu_) = false;
  bool finished_ ABSL_GUARDED_BY(mu_) = false;  // The engine sent its last output.
  bool done_ ABSL_GUARDED_BY(mu_) = false;      // Finish() was called.
  bool aborted_ ABSL_GUARDED_BY(mu_) = false;   // The engine was asked to abort it.
  grpc::Status final_status_ ABSL_GUARDED_BY(mu_);
};

}  // namespace mla

#endif  // MLA_SERVER_GENERATE_REACTOR_H_
