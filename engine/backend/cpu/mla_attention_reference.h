// The plain definition of MlaAttention (mla_attention.h): dense loops over every visible
// key in double precision, no blocking, no splits. Slow; for tests and benchmark checks.
#ifndef MLA_ENGINE_BACKEND_CPU_MLA_ATTENTION_REFERENCE_H_
#define MLA_ENGINE_BACKEND_CPU_MLA_ATTENTION_REFERENCE_H_

#include "absl/status/status.h"
#include "engine/backend/cpu/mla_attention.h"

namespace mla::cpu {

// Same contract and validation as MlaAttention; writes params.out and params.lse.
absl::Status MlaAttentionReference(const MlaAttentionParams& params);

}  // namespace mla::cpu

#endif  // MLA_ENGINE_BACKEND_CPU_MLA_ATTENTION_REFERENCE_H_
