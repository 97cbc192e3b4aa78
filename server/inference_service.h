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
#include "server/stream_registry.h"
#include "server/text_support.h"

namespace mla {

// Every method is registered raw (bytes in, bytes out) so that a request that does not
// parse still reaches the service, which answers INVALID_ARGUMENT naming the field (see
// request_codec.h) instead of gRPC's bare UNIMPLEMENTED.
using RawInferenceService = v1::Inference::WithRawCallbackMethod_Generate<
    v1::Inference::WithRawCallbackMethod_Abort<v1::Inference::WithRawCallbackMethod_Tokenize<
        v1::Inference::WithRawCallbackMethod_Detokenize<
            v1::Inference::WithRawCallbackMethod_GetModelInfo<
                v1::Inference::WithRawCallbackMethod_GetLoad<v1::Inference::Service>>>>>>;

class InferenceService final : public RawInferenceService {
 public:
  InferenceService() = default;

  // Called once the model is loaded; until then every RPC answers UNAVAILABLE. Also
  // parses the tokenizer's chat template (logging a warning when it is unsupported).
  void SetReady(std::shared_ptr<Engine> engine);
  // From now on Generate answers UNAVAILABLE (the server is draining); streams already
  // running go on. The other RPCs keep working.
  void SetDraining() { draining_.store(true); }
  // Generate streams not yet done (their last message may still be on its way), of both
  // front ends: the OpenAI HTTP API registers its requests here too, so that one cap and
  // one drain cover both.
  int active_streams() const { return streams_.active(); }
  StreamRegistry* stream_registry() { return &streams_; }
  int max_concurrent_streams() const { return max_streams_.load(); }
  // The text support built by SetReady (null before), for the other front end.
  std::shared_ptr<const TextSupport> text_support() const { return text(); }
  // Aborts the engine request of every running Generate stream (a drain past its
  // timeout): each stream still ends with its last message, FINISH_REASON_ABORT.
  void AbortAll();
  // Server-wide cap on active_streams(); Generate beyond it is refused with
  // RESOURCE_EXHAUSTED and a retry hint. 0 (the default) = no cap.
  void SetMaxConcurrentStreams(int n) { max_streams_.store(n); }
  // Suggested client back-off when the cap or the engine's waiting queue refuses a stream.
  static constexpr int kStreamsFullRetryMs = 1000;
  // A client that leaves more generated tokens than this unread has its request aborted.
  void SetMaxUnreadTokens(int n) { max_unread_tokens_.store(n); }

  grpc::ServerWriteReactor<grpc::ByteBuffer>* Generate(grpc::CallbackServerContext* ctx,
                                                       const grpc::ByteBuffer* request) override;
  grpc::ServerUnaryReactor* Abort(grpc::CallbackServerContext* ctx,
                                  const grpc::ByteBuffer* request,
                                  grpc::ByteBuffer* response) override;
  grpc::ServerUnaryReactor* Tokenize(grpc::CallbackServerContext* ctx,
                                     const grpc::ByteBuffer* request,
                                     grpc::ByteBuffer* response) override;
  grpc::ServerUnaryReactor* Detokenize(grpc::CallbackServerContext* ctx,
                                       const grpc::ByteBuffer* request,
                                       grpc::ByteBuffer* response) override;
  grpc::ServerUnaryReactor* GetModelInfo(grpc::CallbackServerContext* ctx,
                                         const grpc::ByteBuffer* request,
                                         grpc::ByteBuffer* response) override;
  grpc::ServerUnaryReactor* GetLoad(grpc::CallbackServerContext* ctx,
                                    const grpc::ByteBuffer* request,
                                    grpc::ByteBuffer* response) override;

 private:
  // The unary methods on parsed messages; the raw overrides parse and serialize.
  grpc::Status DoAbort(const v1::AbortRequest& request, v1::AbortResponse* response);
  grpc::Status DoTokenize(const v1::TokenizeRequest& request, v1::TokenizeResponse* response);
  grpc::Status DoDetokenize(const v1::DetokenizeRequest& request,
                            v1::DetokenizeResponse* response);
  grpc::Status DoGetModelInfo(const v1::GetModelInfoRequest& request, v1::ModelInfo* response);
  grpc::Status DoGetLoad(const v1::GetLoadRequest& request, v1::Load* response);

  std::shared_ptr<Engine> engine() const;
  std::shared_ptr<const TextSupport> text() const;  // Non-null once engine() is.

  mutable absl::Mutex mu_;
  std::shared_ptr<Engine> engine_ ABSL_GUARDED_BY(mu_);
  std::shared_ptr<const TextSupport> text_ ABSL_GUARDED_BY(mu_);
  std::atomic<bool> draining_{false};
  StreamRegistry streams_;
  std::atomic<int> max_streams_{0};
  std::atomic<int> max_unread_tokens_{GenerateReactor::kDefaultMaxUnreadTokens};
};

}  // namespace mla

#endif  // MLA_SERVER_INFERENCE_SERVICE_H_
