#include "engine/backend/cpu/indexer.h"

#include <algorithm>
#include <numeric>

#include "absl/strings/str_cat.h"
#include "engine/backend/cpu/gemm.h"

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

// Scores of keys [b · block_size, end) of block-table entry b into scores (indexed by
// position). head_scores: [num_heads, block_size] scratch. The block's keys are contiguous
// bf16 rows, so one small GEMM gives every head's dot products at once.
void ScoreBlock(const IndexerParams& p, int64_t j, int64_t row, int64_t b, int64_t end,
                float* head_scores, float* scores) {
  const int64_t first = b * p.block_size, n = end - first, d = p.head_dim;
  const int32_t id = p.block_table[j * p.max_blocks_per_seq + b];
  const MatrixView keys{p.key_cache + int64_t{id} * p.block_size * d, DType::kBF16, n, d, d};
  Gemm(p.q + row * p.num_heads * d, d, p.num_heads, keys, head_scores, p.block_size, nullptr);
  const float* w = p.weights + row * p.num_heads;
  for (int64_t s = 0; s < n; ++s) {
    float acc = 0.0f;
    for (int64_t h = 0; h < p.num_heads; ++h) {
      acc += (p.weight_scale * w[h]) * std::max(p.scale * head_scores[h * p.block_size + s], 0.0f);
    }
    scores[first + s] = acc;
  }
}

// Scores of one row over blocks [b0, b1) of its visible keys.
void ScoreBlocks(const IndexerParams& p, int64_t j, int64_t row, int64_t b0, int64_t b1,
                 std::vector<float>& head_scores, float* scores) {
  const int64_t visible = Visible(p, j, row);
  head_scores.resize(static_cast<size_t>(p.num_heads * p.block_size));
  for (int64_t b = b0; b < b1; ++b) {
    ScoreBlock(p, j, row, b, std::min(visible, (b + 1) * p.block_size), head_scores.data(), scores);
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
  std::vector<float> head_scores;
  ScoreBlocks(p, j, row, 0, BlocksOf(p, Visible(p, j, row)), head_scores, scores.data());
  return scores;
}

std::vector<double> IndexerRowScoresReference(const IndexerParams& p, int64_t j, int64_t row) {
  const int64_t visible = Visible(p, j, row), d = p.head_dim;
  std::vector<double> scores(static_cast<size_t>(visible));
  for (int64_t s = 0; s < visible; ++s) {
    const int32_t id = p.block_table[j * p.max_blocks_per_seq + s / p.block_size];
    const bf16_t* k = p.key_cache + (int64_t{id} * p.block_size + s % p.block_size) * d;
    double acc = 0;
    for (int64_t h = 0; h < p.num_heads; ++h) {
      const float* q = p.q + (row * p.num_heads + h) * d;
      double dot = 0;
      for (int64_t i = 0; i < d; ++i) dot += double{q[i]} * Bf16ToFloat(k[i]);
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
      std::vector<float> scores, head_scores;
      for (int64_t row = r0; row < r1; ++row) {
        const int64_t j = row_seq(row), visible = Visible(p, j, row);
        scores.resize(static_cast<size_t>(visible));
        ScoreBlocks(p, j, row, 0, BlocksOf(p, visible), head_scores, scores.data());
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
      std::vector<float> head_scores;
      ScoreBlocks(p, j, row, b0, b1, head_scores, scores.data());
    });
    SelectTopK(scores, p.topk, p.selected + row * p.topk);
  }
  return absl::OkStatus();
}

}  // namespace mla::cpu
