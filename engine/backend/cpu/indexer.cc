#include "engine/backend/cpu/indexer.h"

#include <algorithm>
#include <array>
#include <cstring>
#include <numeric>

#include "absl/strings/str_cat.h"
#include "engine/backend/cpu/gemm.h"
#include "engine/kv_cache/index_key_row.h"

namespace mla::cpu {
namespace {

absl::Status Invalid(absl::string_view what) {
  return absl::InvalidArgumentError(absl::StrCat("IndexerTopK: ", what));
}

int64_t TotalRows(const IndexerParams& p) { return p.cu_seqlens_q[p.batch]; }

// Keys visible to `row` of sequence j (causal).
int64_t Visible(const IndexerParams& p, int64_t j, int64_t row) {
  return p.q_pos0[j] + (row - p.cu_seqlens_q[j]) + 1;
}

// Per-thread scratch of the scores.
struct ScoreScratch {
  std::vector<float> head_scores;  // [num_heads, block_size]
  std::vector<bf16_t> keys;        // One block's FP8 codes as bf16 [block_size, head_dim]
};

// e4m3 code → bf16 bits: exact, as bf16 has e4m3's exponent range and more mantissa.
const std::array<bf16_t, 256>& Fp8ToBf16Table() {
  static const std::array<bf16_t, 256> table = [] {
    std::array<bf16_t, 256> t;
    for (int c = 0; c < 256; ++c) t[c] = FloatToBf16(Fp8E4M3ToFloat(static_cast<uint8_t>(c)));
    return t;
  }();
  return table;
}

int64_t BlockRegionBytes(const IndexerParams& p) {
  return p.block_size * IndexKeyBytes(p.key_dtype, p.head_dim);
}

const uint8_t* BlockRegion(const IndexerParams& p, int64_t j, int64_t b) {
  const int32_t id = p.block_table[j * p.max_blocks_per_seq + b];
  return static_cast<const uint8_t*>(p.key_cache) + int64_t{id} * BlockRegionBytes(p);
}

// Scores of keys [b · block_size, end) of block-table entry b into scores (indexed by
// position). The block's keys are contiguous rows (FP8 codes widened to bf16 first, which
// is exact), so one small GEMM gives every head's dot products at once.
void ScoreBlock(const IndexerParams& p, int64_t j, int64_t row, int64_t b, int64_t end,
                ScoreScratch& scratch, float* scores) {
  const int64_t first = b * p.block_size, n = end - first, d = p.head_dim;
  const uint8_t* region = BlockRegion(p, j, b);
  const bool fp8 = p.key_dtype == CacheDType::kFp8E4M3;
  const void* key_rows = region;
  if (fp8) {
    const std::array<bf16_t, 256>& table = Fp8ToBf16Table();
    scratch.keys.resize(static_cast<size_t>(n * d));
    for (int64_t i = 0; i < n * d; ++i) scratch.keys[i] = table[region[i]];
    key_rows = scratch.keys.data();
  }
  float* head_scores = scratch.head_scores.data();
  const MatrixView keys{key_rows, DType::kBF16, n, d, d};
  Gemm(p.q + row * p.num_heads * d, d, p.num_heads, keys, head_scores, p.block_size, nullptr);
  // Heads outer, keys inner: the inner loop runs along a head's contiguous scores and
  // vectorizes (keys outer read them with a stride of block_size, scalar). Each key sums
  // its heads in order 0..H-1 either way: the same bits.
  const float* w = p.weights + row * p.num_heads;
  const float scale = p.scale;
  float* __restrict acc = scores + first;
  std::fill(acc, acc + n, 0.0f);
  for (int64_t h = 0; h < p.num_heads; ++h) {
    const float wh = p.weight_scale * w[h];
    const float* __restrict hs = head_scores + h * p.block_size;
    for (int64_t s = 0; s < n; ++s) acc[s] += wh * std::max(scale * hs[s], 0.0f);
  }
  if (fp8) {
    // Scales may be unaligned (odd widths and block sizes): read through memcpy.
    const uint8_t* key_scales = region + IndexKeyScaleOffset(d, p.block_size, 0);
    for (int64_t s = 0; s < n; ++s) {
      float key_scale;
      std::memcpy(&key_scale, key_scales + s * sizeof(float), sizeof(float));
      acc[s] *= key_scale;
    }
  }
}

// Scores of one row over blocks [b0, b1) of its visible keys.
void ScoreBlocks(const IndexerParams& p, int64_t j, int64_t row, int64_t b0, int64_t b1,
                 ScoreScratch& scratch, float* scores) {
  const int64_t visible = Visible(p, j, row);
  scratch.head_scores.resize(static_cast<size_t>(p.num_heads * p.block_size));
  for (int64_t b = b0; b < b1; ++b) {
    ScoreBlock(p, j, row, b, std::min(visible, (b + 1) * p.block_size), scratch, scores);
  }
}

int64_t BlocksOf(const IndexerParams& p, int64_t visible) {
  return (visible + p.block_size - 1) / p.block_size;
}

}  // namespace

absl::Status ValidateIndexerParams(const IndexerParams& p) {
  if (p.batch < 0 || p.num_heads < 1 || p.head_dim < 1 || p.block_size < 1 || p.topk < 1 ||
      p.num_blocks < 0 || p.max_blocks_per_seq < 0) {
    return Invalid("sizes must be positive (batch, blocks >= 0)");
  }
  if (p.batch == 0) return absl::OkStatus();
  if (!p.key_cache || !p.block_table || !p.seq_lens || !p.q_pos0 || !p.cu_seqlens_q || !p.q ||
      !p.weights || !p.selected) {
    return Invalid("null pointer");
  }
  if (p.cu_seqlens_q[0] != 0) return Invalid("cu_seqlens_q[0] must be 0");
  for (int64_t j = 0; j < p.batch; ++j) {
    const int64_t n_q = p.cu_seqlens_q[j + 1] - p.cu_seqlens_q[j];
    if (n_q < 0) return Invalid("cu_seqlens_q must not decrease");
    if (p.q_pos0[j] < 0 || p.q_pos0[j] + n_q > p.seq_lens[j]) {
      return Invalid(absl::StrCat("sequence ", j, ": rows past its ", p.seq_lens[j], " keys"));
    }
    if (BlocksOf(p, p.seq_lens[j]) > p.max_blocks_per_seq) {
      return Invalid(absl::StrCat("sequence ", j, ": block table too short"));
    }
    for (int64_t b = 0; b < BlocksOf(p, p.seq_lens[j]); ++b) {
      const int32_t id = p.block_table[j * p.max_blocks_per_seq + b];
      if (id < 0 || id >= p.num_blocks) {
        return Invalid(absl::StrCat("block id ", id, " outside [0, ", p.num_blocks, ")"));
      }
    }
  }
  return absl::OkStatus();
}

std::vector<float> IndexerRowScores(const IndexerParams& p, int64_t j, int64_t row) {
  std::vector<float> scores(static_cast<size_t>(Visible(p, j, row)));
  ScoreScratch scratch;
  ScoreBlocks(p, j, row, 0, BlocksOf(p, Visible(p, j, row)), scratch, scores.data());
  return scores;
}

std::vector<double> IndexerRowScoresReference(const IndexerParams& p, int64_t j, int64_t row) {
  const int64_t visible = Visible(p, j, row), d = p.head_dim;
  std::vector<double> scores(static_cast<size_t>(visible));
  std::vector<double> k(static_cast<size_t>(d));
  std::vector<float> stored(static_cast<size_t>(d));
  for (int64_t s = 0; s < visible; ++s) {
    // The key's exact values: stored values times the scale in double (DecodeIndexKey's
    // float product would round each).
    const double key_scale =
        ReadIndexKey(p.key_dtype, d, p.block_size, BlockRegion(p, j, s / p.block_size),
                     s % p.block_size, stored.data());
    for (int64_t i = 0; i < d; ++i) k[i] = stored[i] * key_scale;
    double acc = 0;
    for (int64_t h = 0; h < p.num_heads; ++h) {
      const float* q = p.q + (row * p.num_heads + h) * d;
      double dot = 0;
      for (int64_t i = 0; i < d; ++i) dot += q[i] * k[i];
      acc += double{p.weight_scale} * p.weights[row * p.num_heads + h] *
             std::max(double{p.scale} * dot, 0.0);
    }
    scores[s] = acc;
  }
  return scores;
}

void SelectTopK(std::span<const float> scores, int64_t k, int32_t* out) {
  const int64_t n = static_cast<int64_t>(scores.size());
  if (n <= k) {
    std::iota(out, out + n, 0);
    std::fill(out + n, out + k, -1);
    return;
  }
  std::vector<int32_t> idx(static_cast<size_t>(n));
  std::iota(idx.begin(), idx.end(), 0);
  const auto better = [&](int32_t a, int32_t b) {
    return scores[a] > scores[b] || (scores[a] == scores[b] && a < b);
  };
  std::nth_element(idx.begin(), idx.begin() + k, idx.end(), better);
  std::sort(idx.begin(), idx.begin() + k);
  std::copy(idx.begin(), idx.begin() + k, out);
}

absl::Status IndexerTopK(const IndexerParams& p, ThreadPool* pool) {
  if (absl::Status s = ValidateIndexerParams(p); !s.ok()) return s;
  if (p.batch == 0) return absl::OkStatus();
  const int64_t rows = TotalRows(p);
  const int threads = pool ? pool->num_threads() : 1;
  auto row_seq = [&](int64_t row) {
    return static_cast<int64_t>(
               std::upper_bound(p.cu_seqlens_q, p.cu_seqlens_q + p.batch + 1, row) -
               p.cu_seqlens_q) -
           1;
  };
  if (rows >= 2 * threads || pool == nullptr) {
    // Many rows (prefill): one row per work item, scored and selected on its thread.
    auto run = [&](int64_t r0, int64_t r1) {
      std::vector<float> scores;
      ScoreScratch scratch;
      for (int64_t row = r0; row < r1; ++row) {
        const int64_t j = row_seq(row), visible = Visible(p, j, row);
        scores.resize(static_cast<size_t>(visible));
        ScoreBlocks(p, j, row, 0, BlocksOf(p, visible), scratch, scores.data());
        SelectTopK(scores, p.topk, p.selected + row * p.topk);
      }
    };
    if (pool)
      pool->ParallelFor(rows, run);
    else
      run(0, rows);
    return absl::OkStatus();
  }
  // Few rows (decode): each row's blocks split over the threads, then one selection.
  std::vector<float> scores;
  for (int64_t row = 0; row < rows; ++row) {
    const int64_t j = row_seq(row), visible = Visible(p, j, row);
    scores.resize(static_cast<size_t>(visible));
    pool->ParallelFor(BlocksOf(p, visible), [&](int64_t b0, int64_t b1) {
      ScoreScratch scratch;
      ScoreBlocks(p, j, row, b0, b1, scratch, scores.data());
    });
    SelectTopK(scores, p.topk, p.selected + row * p.topk);
  }
  return absl::OkStatus();
}

}  // namespace mla::cpu
