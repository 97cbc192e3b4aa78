// The one place where engine types and proto messages meet.
#ifndef MLA_SERVER_PROTO_CONVERT_H_
#define MLA_SERVER_PROTO_CONVERT_H_

#include "absl/status/statusor.h"
#include "engine/engine.h"
#include "engine/engine_info.h"
#include "engine/request.h"
#include "mla/v1/inference.pb.h"
#include "server/text_support.h"

namespace mla {

void FillModelInfo(const EngineInfo& info, const TextSupport& text, v1::ModelInfo* out);
void FillLoad(const EngineLoad& load, v1::Load* out);

// Most stop strings a request may carry, and their longest length in bytes.
inline constexpr int kMaxStopStrings = 16;
inline constexpr size_t kMaxStopStringBytes = 256;

// Checks the request's fields that do not need the model (INVALID_ARGUMENT naming the
// field) and converts it; text and chat prompts become token ids through `text`. Text,
// chat prompts and stop strings without a tokenizer: FAILED_PRECONDITION.
absl::StatusOr<GenerationRequest> ToGenerationRequest(const v1::GenerateRequest& request,
                                                      const TextSupport& text);

// One stream message from one engine output.
v1::GenerateResponse ToGenerateResponse(const GenerationOutput& output);

}  // namespace mla

#endif  // MLA_SERVER_PROTO_CONVERT_H_
