// Which form of MLA a chunk's attention takes, and how that is chosen.
//
// Absorbed (Backend::MlaAttention): q_nope·W_UK per row, attention in the latent space
// (scores over L + R, values over L), then W_UV per row. Per head, row and visible key
// 2·(L + R) + 2·L FLOP (2,176 for DeepSeek), plus 2·L·(nope + v) per head and row.
// Decompressed (Backend::DecompressedAttention): every key the chunk sees is up-projected
// once per head to k_nope and v (2·L·(nope + v) per head and key, 262,144 for DeepSeek),
// then plain attention: 2·(nope + R) + 2·v FLOP per head, row and key (640).
// The chunk's rows share the up-projection, so decompressing pays when a chunk has many
// rows: at a long prefix (keys ≫ rows) the break-even is m = L·(nope + v) / (2L − nope − v)
// rows, 171 for DeepSeek's dims; a chunk at the start of a prompt also saves the
// per-row absorption, so it breaks even sooner. Decode steps (one row) stay absorbed.
#ifndef MLA_ENGINE_MODEL_ATTENTION_PATH_H_
#define MLA_ENGINE_MODEL_ATTENTION_PATH_H_

#include <cstdint>
#include <optional>
#include <string_view>

#include "engine/model/config.h"

namespace mla {

enum class AttentionPath {
  kAuto,          // By cost, chunk by chunk (PreferDecompressed).
  kAbsorbed,      // Every chunk absorbed.
  kDecompressed,  // Every chunk decompressed, decode rows too (tests, benchmarks).
};

std::string_view AttentionPathName(AttentionPath path);
// "auto", "absorbed" or "decompressed".
std::optional<AttentionPath> ParseAttentionPath(std::string_view name);
// MLA_ATTENTION_PATH from the environment, read once (kAuto when unset; an unknown name
// is reported on stderr and ignored). The model starts with it.
AttentionPath DefaultAttentionPath();

// The FLOP of each form for one head over a chunk of `rows` new tokens after `start_pos`
// cached ones (causal: row i sees start_pos + i + 1 keys).
struct AttentionCost {
  double absorbed = 0;
  double decompressed = 0;
};
AttentionCost EstimateAttentionCost(const ModelConfig& config, int64_t rows, int64_t start_pos);

// Whether such a chunk takes the decompressed form under kAuto: when its FLOP count is
// lower. Both forms run at similar rates on the CPU (GEMM-shaped inner loops), so FLOP
// are the whole model; a backend without the decompressed op never gets here.
bool PreferDecompressed(const ModelConfig& config, int64_t rows, int64_t start_pos);

}  // namespace mla

#endif  // MLA_ENGINE_MODEL_ATTENTION_PATH_H_
