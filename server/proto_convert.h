// The one place where engine types and proto messages meet.
#ifndef MLA_SERVER_PROTO_CONVERT_H_
#define MLA_SERVER_PROTO_CONVERT_H_

#include "engine/engine_info.h"
#include "mla/v1/inference.pb.h"

namespace mla {

void FillModelInfo(const EngineInfo& info, v1::ModelInfo* out);

}  // namespace mla

#endif  // MLA_SERVER_PROTO_CONVERT_H_
