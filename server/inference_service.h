// The mla.v1.Inference gRPC service (callback API). It validates requests, converts
// between proto messages and engine types, and never blocks inside a reaction.
#ifndef MLA_SERVER_INFERENCE_SERVICE_H_
#define MLA_SERVER_INFERENCE_SERVICE_H_

#include <atomic>
#include <memory>

#include "absl/base/thread_annotations.h"
#include "absl/synchronization/mutex.h"
#include "engine/engine.h"
#include "mla/v1/inference.grpc.pb.h"
#include "server/generate_reactor.h"
#include "server/text_support.h"

namespace mla {

class InferenceService final : public v1::Inference::CallbackService {
 public:
  InferenceService() = default;

  // Called once the model is loaded; until then every RPC answers UNAVAILABLE. Also
  // parses the tokenizer's chat template (logging a warning when it is unsupported).
  void SetReady(std::shared_ptr<Engine> engine);
  // From now on Generate answers UNAVAILABLE (the server is draining); streams already
  // running go on. The other RPCs keep working.
  void SetDraining() { draining_.store(true); }
  // Generate streams not yet done (their last message may still be on its way).
  int active_streams() const { return active_streams_.load(); }
  // Server-wide cap on active_streams(); Generate beyond it is refused with
  // RESOURCE_EXHAUSTED and a retry hint. 0 (the default) = no cap.
  void SetMaxConcurrentStreams(int n) { max_streams_.store(n); }
  // Suggested client back-off when the cap or the engine's waiting queue refuses a stream.
  static constexpr int kStreamsFullRetryMs = 1000;
  // A client that leaves more generated tokens than this unread has its request aborted.
  void SetMaxUnreadTokens(int n) { max_unread_tokens_.store(n); }

  grpc::ServerWriteReactor<v1::GenerateResponse>* Generate(
      grpc::CallbackServerContext* ctx, const v1::GenerateRequest* request) override;
  grpc::ServerUnaryReactor* Abort(grpc::CallbackServerContext* ctx,
                                  const v1::AbortRequest* request,
                                  v1::AbortResponse* response) override;
  grpc::ServerUnaryReactor* Tokenize(grpc::CallbackServerContext* ctx,
                                     const v1::TokenizeRequest* request,
                                     v1::TokenizeResponse* response) override;
  grpc::ServerUnaryReactor* Detokenize(grpc::CallbackServerContext* ctx,
                                       const v1::DetokenizeRequest* request,
                                       v1::DetokenizeResponse* response) override;
  grpc::ServerUnaryReactor* GetModelInfo(grpc::CallbackServerContext* ctx,
                                         const v1::GetModelInfoRequest* request,
                                         v1::ModelInfo* response) override;
  grpc::ServerUnaryReactor* GetLoad(grpc::CallbackServerContext* ctx,
                                    const v1::GetLoadRequest* request,
                                    v1::Load* response) override;

 private:
  std::shared_ptr<Engine> engine() const;
  std::shared_ptr<const TextSupport> text() const;  // Non-null once engine() is.

  mutable absl::Mutex mu_;
  std::shared_ptr<Engine> engine_ ABSL_GUARDED_BY(mu_);
  std::shared_ptr<const TextSupport> text_ ABSL_GUARDED_BY(mu_);
  std::atomic<bool> draining_{false};
  std::atomic<int> active_streams_{0};
  std::atomic<int> max_streams_{0};
  std::atomic<int> max_unread_tokens_{GenerateReactor::kDefaultMaxUnreadTokens};
};

}  // namespace mla

#endif  // MLA_SERVER_INFERENCE_SERVICE_H_
