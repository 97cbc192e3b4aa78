// Absorbed MLA restricted to a per-row set of cached positions (DeepSeek-V3.2 sparse
// attention): the same function as MlaAttention (mla_attention.h) with the softmax taken
// over the row's selected keys only:
//   score_s = (q_lat·c_s + q_pe·k_pe_s) · softmax_scale      s ∈ selected[row]
//   out     = Σ_s softmax(score)_s · c_s,  lse = log Σ_s exp(score_s)
// selected[row] holds up to `topk` positions (IndexerTopK's output: ascending, -1 after
// the last); every position must be one the row may see (causal).
//
// Per row the selected keys are gathered once into fp32 (K [n, L + R] and the latent
// transposed, [L, n]) and both products run as GEMMs over all heads, so each selected key
// is read once per row whatever the head count, as in FlashMLA's sparse decode.
#ifndef MLA_ENGINE_BACKEND_CPU_SPARSE_MLA_ATTENTION_H_
#define MLA_ENGINE_BACKEND_CPU_SPARSE_MLA_ATTENTION_H_

#include <cstdint>
#include <vector>

#include "absl/status/status.h"
#include "engine/backend/cpu/mla_attention.h"
#include "engine/backend/cpu/thread_pool.h"

namespace mla::cpu {

struct SparseMlaParams {
  MlaAttentionParams mla;             // Shapes, cache, step layout, q, out, lse.
  int64_t topk = 0;                   // Row length of selected.
  const int32_t* selected = nullptr;  // [total_q, topk]
};

// Scratch reused across calls (gathered keys and scores). Not thread-safe.
struct SparseMlaWorkspace {
  std::vector<float> keys, latent_t, scores;
  size_t bytes() const {
    return (keys.capacity() + latent_t.capacity() + scores.capacity()) * sizeof(float);
  }
};

// ValidateMlaAttentionParams plus: topk >= 1, selected present, every selected position
// in [0, row position] (INVALID_ARGUMENT naming the row).
absl::Status ValidateSparseMlaParams(const SparseMlaParams& params);

// Computes out and lse. Validates first and writes nothing on error. `pool` may be null.
absl::Status SparseMlaAttention(const SparseMlaParams& params, ThreadPool* pool,
                                SparseMlaWorkspace* workspace);

// The plain definition in double precision (tests).
absl::Status SparseMlaAttentionReference(const SparseMlaParams& params);

}  // namespace mla::cpu

#endif  // MLA_ENGINE_BACKEND_CPU_SPARSE_MLA_ATTENTION_H_
