// The one place where engine types and proto messages meet.
#ifndef MLA_SERVER_PROTO_CONVERT_H_
#define MLA_SERVER_PROTO_CONVERT_H_

#include "absl/status/statusor.h"
#include "engine/engine.h"
#include "engine/engine_info.h"
#include "engine/request.h"
#include "mla/v1/inference.pb.h"

namespace mla {

void FillModelInfo(const EngineInfo& info, v1::ModelInfo* out);
void FillLoad(const EngineLoad& load, v1::Load* out);

// Checks the request's fields that do not need the model (INVALID_ARGUMENT naming the
// field) and converts it. Text and chat prompts need a tokenizer: FAILED_PRECONDITION.
absl::StatusOr<GenerationRequest> ToGenerationRequest(const v1::GenerateRequest& request);

// One stream message from one engine output.
v1::GenerateResponse ToGenerateResponse(const GenerationOutput& output);

}  // namespace mla

#endif  // MLA_SERVER_PROTO_CONVERT_H_
