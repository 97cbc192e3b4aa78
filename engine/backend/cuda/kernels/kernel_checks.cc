// Host-side shape checks of every kernel's params (plain C++, built with or without CUDA).
#include <cstdint>
#include <string>

#include "absl/strings/str_cat.h"
#include "engine/backend/cuda/kernels/check_util.h"
#include "engine/backend/cuda/kernels/decompressed_attention.h"
#include "engine/backend/cuda/kernels/grouped_gemm.h"
#include "engine/backend/cuda/kernels/latent_cache.h"
#include "engine/backend/cuda/kernels/mla_decode.h"
#include "engine/backend/cuda/kernels/pointwise.h"
#include "engine/backend/cuda/kernels/sampling.h"

namespace mla::cuda {

using internal::Invalid;
using internal::NeedPointer;
using internal::NeedPointers;

absl::Status ValidateRmsNormParams(const RmsNormParams& p) {
  constexpr const char* k = "RmsNorm";
  if (p.num_rows < 0 || p.dim < 1) return Invalid(k, "num_rows must be >= 0 and dim >= 1");
  if (p.x_stride < p.dim || p.out_stride < p.dim) return Invalid(k, "strides must be >= dim");
  if (!(p.eps >= 0.0f)) return Invalid(k, "eps must be >= 0");
  const bool work = p.num_rows > 0;
  return NeedPointers(k, work, {{p.x, "x"}, {p.weight, "weight"}, {p.out, "out"}});
}

absl::Status ValidateRopeParams(const RopeParams& p) {
  constexpr const char* k = "Rope";
  if (p.num_tokens < 0 || p.num_vectors < 0) return Invalid(k, "counts must be >= 0");
  if (p.rope_dim < 2 || p.rope_dim % 2 != 0) return Invalid(k, "rope_dim must be even and >= 2");
  if (p.vector_stride < p.rope_dim && p.num_vectors > 1) {
    return Invalid(k, "vector_stride must be >= rope_dim");
  }
  if (p.token_stride < int64_t{p.num_vectors} * p.rope_dim && p.num_tokens > 1) {
    return Invalid(k, "token_stride must hold num_vectors rope vectors");
  }
  const bool work = p.num_tokens > 0 && p.num_vectors > 0;
  return NeedPointers(k, work, {{p.x, "x"}, {p.positions, "positions"}, {p.inv_freq, "inv_freq"}});
}

absl::Status ValidateEmbeddingParams(const EmbeddingParams& p) {
  constexpr const char* k = "Embedding";
  if (p.num_tokens < 0 || p.vocab_size < 1 || p.hidden < 1) {
    return Invalid(k, "num_tokens must be >= 0, vocab_size and hidden >= 1");
  }
  const bool work = p.num_tokens > 0;
  return NeedPointers(k, work, {{p.ids, "ids"}, {p.table, "table"}, {p.out, "out"}});
}

absl::Status ValidateSiluMulParams(const SiluMulParams& p) {
  constexpr const char* k = "SiluMul";
  if (p.num_rows < 0 || p.inter < 1) return Invalid(k, "num_rows must be >= 0 and inter >= 1");
  if (p.in_stride < p.inter) return Invalid(k, "in_stride must be >= inter");
  const bool work = p.num_rows > 0;
  return NeedPointers(k, work, {{p.gate, "gate"}, {p.up, "up"}, {p.out, "out"}});
}

absl::Status ValidateLatentCacheWriteParams(const LatentCacheWriteParams& p) {
  constexpr const char* k = "LatentCacheWrite";
  if (p.num_tokens < 0 || p.kv_lora_rank < 1 || p.rope_dim < 0 || p.block_size < 1 ||
      p.num_blocks < 0) {
    return Invalid(k, "need num_tokens, rope_dim, num_blocks >= 0; kv_lora_rank, block_size >= 1");
  }
  if (p.num_blocks * p.block_size > INT32_MAX) return Invalid(k, "slots must fit in int32");
  if (p.latent_stride < p.kv_lora_rank || (p.rope_dim > 0 && p.k_pe_stride < p.rope_dim)) {
    return Invalid(k, "strides must be >= the row widths");
  }
  const bool work = p.num_tokens > 0;
  if (absl::Status s = NeedPointer(k, p.latent, "latent", work); !s.ok()) return s;
  if (absl::Status s = NeedPointer(k, p.k_pe, "k_pe", work && p.rope_dim > 0); !s.ok()) return s;
  if (absl::Status s = NeedPointer(k, p.slots, "slots", work); !s.ok()) return s;
  return NeedPointer(k, p.kv_cache, "kv_cache", work && p.num_blocks > 0);
}

absl::Status ValidateMlaDecodeParams(const MlaDecodeParams& p) {
  constexpr const char* k = "MlaDecode";
  if (p.batch < 0 || p.q_rows_per_seq < 1 || p.num_heads < 1) {
    return Invalid(k, "need batch >= 0, q_rows_per_seq >= 1, num_heads >= 1");
  }
  if (p.kv_lora_rank < 2 || p.kv_lora_rank > kMlaMaxLatent || p.kv_lora_rank % 2 != 0) {
    return Invalid(k, absl::StrCat("kv_lora_rank must be even in [2, ", kMlaMaxLatent, "], got ",
                                   p.kv_lora_rank));
  }
  if (p.rope_dim < 0 || p.rope_dim > kMlaMaxRope || p.rope_dim % 2 != 0) {
    return Invalid(
        k, absl::StrCat("rope_dim must be even in [0, ", kMlaMaxRope, "], got ", p.rope_dim));
  }
  if (p.block_size != kMlaBlockSize) {
    return Invalid(k, absl::StrCat("block_size must be ", kMlaBlockSize, ", got ", p.block_size));
  }
  if (p.num_blocks < 0 || p.max_blocks_per_seq < 0) {
    return Invalid(k, "num_blocks and max_blocks_per_seq must be >= 0");
  }
  if (!(p.softmax_scale > 0.0f)) return Invalid(k, "softmax_scale must be > 0");
  if (p.selected != nullptr && (p.q_rows_per_seq != 1 || p.topk < 1)) {
    return Invalid(k, absl::StrCat("a selection needs q_rows_per_seq = 1 and topk >= 1, got ",
                                   p.q_rows_per_seq, " and ", p.topk));
  }
  if (p.seq_of != nullptr && p.selected == nullptr) {
    return Invalid(k, "seq_of is for a selection's query rows only");
  }
  if (int64_t{p.q_rows_per_seq} * p.num_heads > INT32_MAX / kMlaMaxLatent) {
    return Invalid(k, "too many query rows per sequence");
  }
  if (p.batch == 0) return absl::OkStatus();
  if (p.num_parts < 1 || p.num_partial_slots < 0) {
    return Invalid(k, "num_parts must be >= 1 (from the plan)");
  }
  const void* needed[] = {p.q,     p.kv_cache,      p.block_table, p.seq_lens,
                          p.parts, p.split_offsets, p.out,         p.lse};
  const char* names[] = {"q",     "kv_cache",      "block_table", "seq_lens",
                         "parts", "split_offsets", "out",         "lse"};
  for (int i = 0; i < 8; ++i) {
    if (absl::Status s = NeedPointer(k, needed[i], names[i], true); !s.ok()) return s;
  }
  if (!p.kv_fp8 && reinterpret_cast<uintptr_t>(p.kv_cache) % 4 != 0) {
    return Invalid(k, "kv_cache must be 4-byte aligned (the kernel loads bf16 pairs)");
  }
  const bool partials = p.num_partial_slots > 0;
  return NeedPointers(k, partials,
                      {{p.partial_out, "partial_out"}, {p.partial_lse, "partial_lse"}});
}

absl::Status ValidateArgmaxParams(const ArgmaxParams& p) {
  constexpr const char* k = "Argmax";
  if (p.num_rows < 0 || p.vocab_size < 1 || p.vocab_size > INT32_MAX) {
    return Invalid(k, "num_rows must be >= 0 and vocab_size in [1, 2^31)");
  }
  if (p.logits_stride < p.vocab_size) return Invalid(k, "logits_stride must be >= vocab_size");
  const bool work = p.num_rows > 0;
  return NeedPointers(k, work, {{p.logits, "logits"}, {p.ids, "ids"}});
}

absl::Status ValidateGatherLatentF32Params(const GatherLatentF32Params& p) {
  constexpr const char* k = "GatherLatentF32";
  if (p.block_size < 1 || p.latent < 1 || p.rope < 0 || p.first_key < 0) {
    return Invalid(k, "need block_size, latent >= 1 and rope, first_key >= 0");
  }
  if (p.out.rows < 0 || p.out.cols != p.latent || (p.out.rows > 1 && p.out.stride < p.latent)) {
    return Invalid(k, absl::StrCat("out must be [keys, ", p.latent, "] with stride >= ", p.latent));
  }
  return NeedPointers(k, p.out.rows > 0,
                      {{p.cache, "cache"}, {p.blocks, "blocks"}, {p.out.data, "out"}});
}

absl::Status ValidateDecompressedChunkF32Params(const DecompressedChunkF32Params& p) {
  constexpr const char* k = "DecompressedChunkF32";
  if (p.num_rows < 0 || p.num_rows > INT32_MAX || p.heads < 1 || p.heads > 65535) {
    return Invalid(k, "need num_rows in [0, 2^31) and heads in [1, 65535]");
  }
  if (p.nope < 1 || p.rope < 0 || p.nope + p.rope > kDecompressedMaxQk) {
    return Invalid(k, absl::StrCat("nope + rope must be in [1, ", kDecompressedMaxQk, "], got ",
                                   p.nope, " + ", p.rope));
  }
  if (p.v < 1 || p.v > kDecompressedMaxV) {
    return Invalid(k, absl::StrCat("v must be in [1, ", kDecompressedMaxV, "], got ", p.v));
  }
  if (p.latent < 1 || p.block_size < 1 || p.q_pos0 < 0 || p.first_key < 0 || p.num_keys < 0) {
    return Invalid(k, "need latent, block_size >= 1 and q_pos0, first_key, num_keys >= 0");
  }
  if (p.q_stride < int64_t{p.heads} * (p.nope + p.rope) || p.out_stride < int64_t{p.heads} * p.v) {
    return Invalid(k, "q_stride and out_stride must hold every head's row");
  }
  if (!(p.softmax_scale > 0.0f)) return Invalid(k, "softmax_scale must be > 0");
  const bool work = p.num_rows > 0;
  if (absl::Status s = NeedPointers(k, work, {{p.q, "q"}, {p.state, "state"}}); !s.ok()) return s;
  if (absl::Status s = NeedPointer(k, p.out, "out", work && p.last_chunk); !s.ok()) return s;
  return NeedPointers(k, work && p.num_keys > 0,
                      {{p.cache, "cache"}, {p.blocks, "blocks"}, {p.kv, "kv"}});
}

absl::Status ValidateLogSumExpParams(const LogSumExpParams& p) {
  constexpr const char* k = "LogSumExp";
  if (p.num_rows < 0 || p.vocab_size < 1) return Invalid(k, "num_rows >= 0, vocab_size >= 1");
  if (p.logits_stride < p.vocab_size) return Invalid(k, "logits_stride must be >= vocab_size");
  return NeedPointers(
      k, p.num_rows > 0,
      {{p.logits, "logits"}, {p.max, "max"}, {p.log_sum, "log_sum"}, {p.inf_count, "inf_count"}});
}

absl::Status ValidateGatherLogitsParams(const GatherLogitsParams& p) {
  constexpr const char* k = "GatherLogits";
  if (p.num < 0 || p.vocab_size < 1) return Invalid(k, "num >= 0, vocab_size >= 1");
  if (p.logits_stride < p.vocab_size) return Invalid(k, "logits_stride must be >= vocab_size");
  return NeedPointers(
      k, p.num > 0, {{p.logits, "logits"}, {p.rows, "rows"}, {p.tokens, "tokens"}, {p.out, "out"}});
}

absl::Status ValidateWeightSumParams(const WeightSumParams& p) {
  constexpr const char* k = "WeightSum";
  if (p.num < 0 || p.vocab_size < 1) return Invalid(k, "num >= 0, vocab_size >= 1");
  if (p.logits_stride < p.vocab_size) return Invalid(k, "logits_stride must be >= vocab_size");
  return NeedPointers(
      k, p.num > 0,
      {{p.logits, "logits"}, {p.draws, "draws"}, {p.max, "max"}, {p.weight_sum, "weight_sum"}});
}

absl::Status ValidateDrawParams(const DrawParams& p) {
  constexpr const char* k = "Draw";
  // Ids are int32_t, as everywhere in sampling.
  if (p.num < 0 || p.vocab_size < 1 || p.vocab_size > INT32_MAX) {
    return Invalid(k, "num must be >= 0 and vocab_size in [1, 2^31)");
  }
  if (p.logits_stride < p.vocab_size) return Invalid(k, "logits_stride must be >= vocab_size");
  return NeedPointers(
      k, p.num > 0,
      {{p.logits, "logits"}, {p.draws, "draws"}, {p.ids, "ids"}, {p.logits_out, "logits_out"}});
}

absl::Status ValidateGroupedGemmParams(const GroupedGemmParams& p) {
  constexpr const char* k = "GroupedGemm";
  if (p.num_experts < 1 || p.num_experts > 65535) {
    return Invalid(k, absl::StrCat("num_experts must be in [1, 65535], got ", p.num_experts));
  }
  if (p.rows < 0 || p.n < 1 || p.k < 1) return Invalid(k, "rows must be >= 0, n and k >= 1");
  if (p.x_stride < p.k && p.rows > 1) return Invalid(k, "x_stride must be >= k");
  if (p.y_stride < p.n && p.rows > 1) return Invalid(k, "y_stride must be >= n");
  return NeedPointers(k, p.rows > 0,
                      {{p.x, "x"}, {p.offsets, "offsets"}, {p.weights, "weights"}, {p.y, "y"}});
}

absl::Status ValidateTopKParams(const TopKParams& p) {
  constexpr const char* k = "TopK";
  if (p.num_rows < 0 || p.vocab_size < 1 || p.vocab_size > INT32_MAX) {
    return Invalid(k, "num_rows must be >= 0 and vocab_size in [1, 2^31)");
  }
  if (p.logits_stride < p.vocab_size) return Invalid(k, "logits_stride must be >= vocab_size");
  if (p.k_cap < 1 || p.k_cap > kDeviceTopKMax) {
    return Invalid(k, absl::StrCat("k_cap must be in [1, ", kDeviceTopKMax, "], got ", p.k_cap));
  }
  return NeedPointers(k, p.num_rows > 0,
                      {{p.logits, "logits"}, {p.k, "k"}, {p.ids, "ids"}, {p.values, "values"}});
}

}  // namespace mla::cuda
