// The DeepSeek-V3.2 sparse attention kernels (indexer.h, sparse_mla_attention.h) against
// their plain double-precision definitions: random inputs, odd head counts and widths,
// blocks of 1, 7 and 16 tokens, shuffled block tables, sequences of 1 token and across
// block boundaries, decode rows and prefill chunks, bf16 and FP8 latent caches and indexer
// keys, and NaN in
// every cache slot a sequence does not own, so that a read past a row's visible keys shows.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <limits>
#include <numeric>
#include <random>
#include <set>
#include <vector>

#include "engine/backend/cpu/indexer.h"
#include "engine/backend/cpu/mla_attention_reference.h"
#include "engine/backend/cpu/sparse_mla_attention.h"
#include "engine/kv_cache/cache_row.h"
#include "engine/kv_cache/index_key_row.h"

namespace mla::cpu {
namespace {

constexpr float kNaN = std::numeric_limits<float>::quiet_NaN();

struct Chunk {
  int n_q;      // Query rows.
  int q_pos0;   // Position of the first.
  int seq_len;  // Keys cached (q_pos0 + n_q for the step that wrote them).
};

// A batch's paged step layout and one layer's cache of `width` bf16 values per token:
// block ids shuffled, every slot no sequence owns left NaN.
struct PagedBatch {
  PagedBatch(std::vector<Chunk> chunks, int block_size, int width, uint32_t seed)
      : block_size(block_size), width(width), rng(seed) {
    int total = 2;  // Spare blocks that only padding points at.
    for (const Chunk& c : chunks) {
      total += Blocks(c.seq_len);
      max_blocks = std::max(max_blocks, Blocks(c.seq_len) + 1);
    }
    num_blocks = total;
    std::vector<int32_t> ids(num_blocks);
    std::iota(ids.begin(), ids.end(), 0);
    std::shuffle(ids.begin(), ids.end(), rng);
    cache.assign(static_cast<size_t>(num_blocks) * block_size * width, FloatToBf16(kNaN));
    std::uniform_real_distribution<float> unit(-1.0f, 1.0f);
    size_t next = 0;
    cu.push_back(0);
    for (const Chunk& c : chunks) {
      std::vector<int32_t> row(max_blocks, ids.back());
      for (int b = 0; b < Blocks(c.seq_len); ++b) row[b] = ids[next++];
      table.insert(table.end(), row.begin(), row.end());
      for (int t = 0; t < c.seq_len; ++t) {
        bf16_t* slot =
            cache.data() + (int64_t{row[t / block_size]} * block_size + t % block_size) * width;
        for (int d = 0; d < width; ++d) slot[d] = FloatToBf16(unit(rng));
      }
      seq_lens.push_back(c.seq_len);
      q_pos0.push_back(c.q_pos0);
      cu.push_back(cu.back() + c.n_q);
    }
  }
  int Blocks(int len) const { return (len + block_size - 1) / block_size; }
  int64_t rows() const { return cu.back(); }
  int64_t batch() const { return static_cast<int64_t>(seq_lens.size()); }
  int64_t Visible(int64_t j, int64_t row) const { return q_pos0[j] + row - cu[j] + 1; }
  std::vector<float> Random(int64_t n, float amplitude) {
    std::uniform_real_distribution<float> unit(-amplitude, amplitude);
    std::vector<float> v(static_cast<size_t>(n));
    for (float& x : v) x = unit(rng);
    return v;
  }

  int block_size, width;
  int max_blocks = 1, num_blocks = 0;
  std::mt19937 rng;
  std::vector<bf16_t> cache;
  std::vector<int32_t> table, seq_lens, q_pos0, cu;
};

const std::vector<std::vector<Chunk>> kBatches = {
    {{1, 0, 1}},                             // one token
    {{1, 16, 17}, {1, 6, 7}},                // decode across a boundary and below topk
    {{5, 12, 17}, {1, 99, 100}, {3, 0, 3}},  // prefill chunks and a long decode
    {{40, 0, 40}},                           // a whole prefill
};

struct IndexerCase {
  int heads, dim, block_size, topk;
};

class IndexerTest : public ::testing::TestWithParam<IndexerCase> {};

// The batch's keys as FP8 indexer keys (index_key_row.h): each block's codes, then its
// scales; the slots no sequence owns stay NaN (codes and scales).
std::vector<uint8_t> Fp8IndexKeys(const PagedBatch& pb) {
  const int64_t region = int64_t{pb.block_size} * (pb.width + 4);
  std::vector<uint8_t> out(static_cast<size_t>(pb.num_blocks * region), kCacheNaNByte);
  std::vector<float> key(static_cast<size_t>(pb.width));
  for (int64_t slot = 0; slot < int64_t{pb.num_blocks} * pb.block_size; ++slot) {
    const bf16_t* src = pb.cache.data() + slot * pb.width;
    if (std::isnan(Bf16ToFloat(src[0]))) continue;
    for (int d = 0; d < pb.width; ++d) key[d] = Bf16ToFloat(src[d]);
    EncodeIndexKey(CacheDType::kFp8E4M3, pb.width, pb.block_size, key.data(),
                   out.data() + slot / pb.block_size * region, slot % pb.block_size);
  }
  return out;
}

TEST_P(IndexerTest, ScoresAndSelectionMatchReference) {
  const IndexerCase k = GetParam();
  ThreadPool pool(2);
  for (size_t b = 0; b < 2 * kBatches.size(); ++b) {
    // Each batch with bf16 keys, then with FP8 keys (codes and a scale per key).
    const bool fp8 = b >= kBatches.size();
    SCOPED_TRACE(fp8 ? "fp8 keys" : "bf16 keys");
    PagedBatch pb(kBatches[b % kBatches.size()], k.block_size, k.dim, 7 + static_cast<uint32_t>(b));
    const std::vector<uint8_t> fp8_keys = fp8 ? Fp8IndexKeys(pb) : std::vector<uint8_t>();
    const std::vector<float> q = pb.Random(pb.rows() * k.heads * k.dim, 2.0f);
    const std::vector<float> w = pb.Random(pb.rows() * k.heads, 1.0f);
    std::vector<int32_t> selected(static_cast<size_t>(pb.rows() * k.topk), -7);
    IndexerParams p{pb.batch(),
                    k.heads,
                    k.dim,
                    k.block_size,
                    pb.num_blocks,
                    pb.max_blocks,
                    k.topk,
                    1.0f / std::sqrt(float(k.dim)),
                    1.0f / std::sqrt(float(k.heads)),
                    pb.cache.data(),
                    pb.table.data(),
                    pb.seq_lens.data(),
                    pb.q_pos0.data(),
                    pb.cu.data(),
                    q.data(),
                    w.data(),
                    selected.data()};
    if (fp8) {
      p.key_cache = fp8_keys.data();
      p.key_dtype = CacheDType::kFp8E4M3;
    }
    for (ThreadPool* tp : {static_cast<ThreadPool*>(nullptr), &pool}) {
      ASSERT_TRUE(IndexerTopK(p, tp).ok());
      for (int64_t j = 0; j < pb.batch(); ++j) {
        for (int64_t row = pb.cu[j]; row < pb.cu[j + 1]; ++row) {
          const std::vector<float> got = IndexerRowScores(p, j, row);
          const std::vector<double> want = IndexerRowScoresReference(p, j, row);
          ASSERT_EQ(got.size(), static_cast<size_t>(pb.Visible(j, row)));
          // fp32 rounding scales with the terms' magnitudes, not with a cancelled sum:
          // |keys| ≤ 1 here, so Σ_h |w_h| · scale · Σ_i |q_hi| bounds every term.
          double terms = 0;
          for (int h = 0; h < k.heads; ++h) {
            double q_abs = 0;
            for (int i = 0; i < k.dim; ++i) q_abs += std::fabs(q[(row * k.heads + h) * k.dim + i]);
            terms += std::fabs(p.weight_scale * w[row * k.heads + h]) * p.scale * q_abs;
          }
          double scale = std::max(1e-3, 0.01 * terms);
          for (double v : want) scale = std::max(scale, std::fabs(v));
          for (size_t s = 0; s < got.size(); ++s) {
            ASSERT_NEAR(got[s], want[s], 2e-6 * scale) << "batch " << b << " row " << row;
          }
          // The selection: where the k-th and (k+1)-th reference scores are clearly apart
          // it must be the reference's set exactly.
          std::vector<double> sorted = want;
          std::sort(sorted.begin(), sorted.end(), std::greater<>());
          const int32_t* sel = selected.data() + row * k.topk;
          const int64_t n = std::min<int64_t>(k.topk, sorted.size());
          EXPECT_TRUE(std::is_sorted(sel, sel + n));
          EXPECT_TRUE(std::all_of(sel + n, sel + k.topk, [](int32_t v) { return v == -1; }));
          if (static_cast<int64_t>(sorted.size()) > k.topk &&
              sorted[k.topk - 1] - sorted[k.topk] < 1e-4 * scale) {
            continue;
          }
          for (int64_t i = 0; i < n; ++i) {
            ASSERT_GE(want[sel[i]], sorted[n - 1]) << "row " << row << " picks " << sel[i];
          }
        }
      }
    }
  }
}

INSTANTIATE_TEST_SUITE_P(Shapes, IndexerTest,
                         ::testing::Values(IndexerCase{1, 16, 16, 4}, IndexerCase{3, 20, 7, 16},
                                           IndexerCase{8, 32, 1, 5}, IndexerCase{4, 24, 16, 64}));

TEST(SelectTopKTest, TiesGoToTheLowerPositionAndShortRowsTakeAll) {
  const std::vector<float> scores = {1, 3, 3, 0, 3, 2, 0, 0};
  std::vector<int32_t> out(4);
  SelectTopK(scores, 2, out.data());
  EXPECT_EQ(out[0], 1);
  EXPECT_EQ(out[1], 2);
  SelectTopK(scores, 4, out.data());
  EXPECT_EQ(out, (std::vector<int32_t>{1, 2, 4, 5}));
  const std::vector<float> zeros(6, 0.0f);
  SelectTopK(zeros, 3, out.data());
  EXPECT_EQ(std::vector<int32_t>(out.begin(), out.begin() + 3), (std::vector<int32_t>{0, 1, 2}));
  SelectTopK(std::span<const float>(scores.data(), 2), 4, out.data());
  EXPECT_EQ(out, (std::vector<int32_t>{0, 1, -1, -1}));
}

// Attention inputs over one PagedBatch: [L + R]-wide cache rows, absorbed queries.
struct SparseProblem {
  SparseProblem(std::vector<Chunk> chunks, int heads, int latent, int rope, int block_size,
                int topk, uint32_t seed)
      : pb(std::move(chunks), block_size, latent + rope, seed),
        heads(heads),
        latent(latent),
        topk(topk) {
    q = pb.Random(pb.rows() * heads * (latent + rope), 3.0f);
    out.assign(static_cast<size_t>(pb.rows() * heads * latent), kNaN);
    lse.assign(static_cast<size_t>(pb.rows() * heads), kNaN);
    selected.assign(static_cast<size_t>(pb.rows() * topk), -1);
  }
  // Each row keeps a random min(topk, visible) of its visible positions, ascending.
  void SelectRandom() {
    for (int64_t j = 0; j < pb.batch(); ++j) {
      for (int64_t row = pb.cu[j]; row < pb.cu[j + 1]; ++row) {
        std::vector<int32_t> all(static_cast<size_t>(pb.Visible(j, row)));
        std::iota(all.begin(), all.end(), 0);
        std::shuffle(all.begin(), all.end(), pb.rng);
        all.resize(std::min<size_t>(all.size(), topk));
        std::sort(all.begin(), all.end());
        std::copy(all.begin(), all.end(), selected.begin() + row * topk);
      }
    }
  }
  // The same cache in DeepSeek's FP8 layout: every row the bf16 cache holds, encoded
  // (codes and a scale per 128 latent values, k_pe in bf16); the NaN rows stay NaN.
  void UseFp8() {
    const int64_t rope = pb.width - latent;
    const int64_t row_bytes = CacheRowBytes(CacheDType::kFp8E4M3, latent, rope);
    const int64_t slots = int64_t{pb.num_blocks} * pb.block_size;
    fp8_cache.assign(static_cast<size_t>(slots * row_bytes), kCacheNaNByte);
    std::vector<float> row(static_cast<size_t>(pb.width));
    for (int64_t slot = 0; slot < slots; ++slot) {
      const bf16_t* src = pb.cache.data() + slot * pb.width;
      if (std::isnan(Bf16ToFloat(src[0]))) continue;
      for (int d = 0; d < pb.width; ++d) row[d] = Bf16ToFloat(src[d]);
      EncodeCacheRow(CacheDType::kFp8E4M3, latent, rope, row.data(), row.data() + latent,
                     fp8_cache.data() + slot * row_bytes);
    }
  }
  SparseMlaParams Params() {
    SparseMlaParams p;
    MlaAttentionParams& m = p.mla;
    const bool fp8 = !fp8_cache.empty();
    m = {pb.batch(),
         heads,
         latent,
         pb.width - latent,
         pb.block_size,
         pb.num_blocks,
         pb.max_blocks,
         1.0f / std::sqrt(float(pb.width)),
         fp8 ? CacheDType::kFp8E4M3 : CacheDType::kBF16,
         fp8 ? static_cast<const void*>(fp8_cache.data()) : pb.cache.data(),
         pb.table.data(),
         pb.seq_lens.data(),
         pb.q_pos0.data(),
         pb.cu.data(),
         q.data(),
         out.data(),
         lse.data()};
    p.topk = topk;
    p.selected = selected.data();
    return p;
  }

  PagedBatch pb;
  int heads, latent, topk;
  std::vector<float> q, out, lse;
  std::vector<int32_t> selected;
  std::vector<uint8_t> fp8_cache;  // Non-empty: Params() reads it (UseFp8).
};

void ExpectClose(const std::vector<float>& got, const std::vector<float>& want, double tol) {
  ASSERT_EQ(got.size(), want.size());
  for (size_t i = 0; i < got.size(); ++i) {
    ASSERT_FALSE(std::isnan(got[i])) << i;
    ASSERT_NEAR(got[i], want[i], tol * (1.0 + std::fabs(want[i]))) << i;
  }
}

TEST(SparseMlaAttentionTest, MatchesReferenceOnRandomSelections) {
  ThreadPool pool(2);
  for (const bool fp8 : {false, true}) {
    SCOPED_TRACE(fp8 ? "FP8 cache" : "bf16 cache");
    for (const int heads : {1, 3, 16}) {
      for (const int block_size : {1, 7, 16}) {
        for (size_t b = 0; b < kBatches.size(); ++b) {
          // Latent 136: two FP8 scale groups, the second partial.
          SparseProblem pr(kBatches[b], heads, fp8 ? 136 : 40, 8, block_size, 6,
                           11 + heads + block_size);
          if (fp8) pr.UseFp8();
          pr.SelectRandom();
          ASSERT_TRUE(SparseMlaAttentionReference(pr.Params()).ok());
          const std::vector<float> want_out = pr.out, want_lse = pr.lse;
          std::fill(pr.out.begin(), pr.out.end(), kNaN);
          SparseMlaWorkspace ws;
          ASSERT_TRUE(SparseMlaAttention(pr.Params(), &pool, &ws).ok());
          ExpectClose(pr.out, want_out, 2e-5);
          ExpectClose(pr.lse, want_lse, 2e-5);
        }
      }
    }
  }
}

// Selecting every visible key is dense MLA: the sparse kernel against MlaAttention's
// own reference.
// With an FP8 cache both dequantize the same codes (the dense reference as every dense
// kernel does), and the outputs differ from the bf16 cache's: the FP8 rows are read.
TEST(SparseMlaAttentionTest, SelectingEveryKeyIsDenseMla) {
  for (size_t b = 0; b < kBatches.size(); ++b) {
    std::vector<float> bf16_out;
    for (const bool fp8 : {false, true}) {
      SCOPED_TRACE(fp8 ? "FP8 cache" : "bf16 cache");
      SparseProblem pr(kBatches[b], 4, 160, 8, 16, 128, 3 + static_cast<uint32_t>(b));
      if (fp8) pr.UseFp8();
      pr.SelectRandom();  // topk 128 exceeds every visible count: all keys.
      ASSERT_TRUE(SparseMlaAttention(pr.Params(), nullptr, nullptr).ok());
      const std::vector<float> out = pr.out, lse = pr.lse;
      ASSERT_TRUE(MlaAttentionReference(pr.Params().mla).ok());
      ExpectClose(out, pr.out, 2e-5);
      ExpectClose(lse, pr.lse, 2e-5);
      if (!fp8) {
        bf16_out = out;
        continue;
      }
      double max_diff = 0;
      for (size_t i = 0; i < out.size(); ++i) {
        max_diff = std::max(max_diff, double{std::fabs(out[i] - bf16_out[i])});
      }
      EXPECT_GT(max_diff, 1e-3) << "the FP8 cache's codes were not what was read";
    }
  }
}

TEST(SparseMlaAttentionTest, RefusesPositionsARowMayNotSee) {
  SparseProblem pr({{2, 3, 5}}, 2, 16, 8, 4, 4, 1);
  pr.SelectRandom();
  pr.selected[0] = 4;  // Row 0 sits at position 3.
  const absl::Status s = SparseMlaAttention(pr.Params(), nullptr, nullptr);
  EXPECT_EQ(s.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_NE(s.message().find("row 0 selects position 4"), std::string::npos) << s;
  EXPECT_TRUE(std::isnan(pr.out[0]));  // Nothing written.
}

}  // namespace
}  // namespace mla::cpu
