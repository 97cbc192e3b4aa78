#include "engine/backend/cpu/mla_attention.h"

#include <algorithm>
#include <cmath>
#include <limits>
#include <numeric>
#include <random>
#include <vector>

#include "engine/backend/cpu/cpu_features.h"
#include "engine/backend/cpu/mla_attention_reference.h"
#include "engine/backend/cpu/thread_pool.h"
#include "engine/kv_cache/cache_row.h"
#include "gtest/gtest.h"
#include "tests/engine/backend/cpu/mla_attention_problem.h"

namespace mla::cpu {
namespace {

constexpr float kNaN = std::numeric_limits<float>::quiet_NaN();

using testing_util::Decode;
using testing_util::Problem;
using testing_util::SeqSpec;

struct Result {
  std::vector<float> out, lse;
};

Result RunReference(const Problem& pr) {
  Result r{std::vector<float>(pr.out_size(), kNaN),
           std::vector<float>(pr.total_q() * pr.heads(), kNaN)};
  EXPECT_TRUE(MlaAttentionReference(pr.Params(r.out.data(), r.lse.data())).ok());
  return r;
}

Result RunKernel(const Problem& pr, ThreadPool* pool, const MlaAttentionOptions& options = {},
                 MlaAttentionWorkspace* ws = nullptr) {
  Result r{std::vector<float>(pr.out_size(), kNaN),
           std::vector<float>(pr.total_q() * pr.heads(), kNaN)};
  const absl::Status status =
      MlaAttention(pr.Params(r.out.data(), r.lse.data()), pool, ws, options);
  EXPECT_TRUE(status.ok()) << status;
  return r;
}

// Tolerance. Kernel and reference read the same bf16 keys and fp32 queries; the kernel
// rounds in fp32 (u = 6e-8) where the reference uses double. Scores are dot products of
// up to 576 terms summed in blocks of 8-lane partials, with a typical relative error of
// ~√576·u ≈ 1.5e-6; exp adds ~2e-7; the weighted sum over n keys adds ~√(n/48 + 48)·u.
// Softmax weights move by about the score error, so the output vector (and the lse)
// carry relative errors around 1e-6. We allow 1e-5 per (row, head) vector, in the
// Euclidean norm. A single key dropped or counted twice out of n moves the output by
// ~1/√n relative (1.6e-2 at n = 4097) and the lse by ~1/n (2.4e-4), far above it.
constexpr double kRelTol = 1e-5;
// The opt-in bf16 level (cpu_features.h) rounds the queries, the softmax weights and
// (FP8 caches) the dequantized keys to bf16 for vdpbf16ps: relative error up to 2^-9 =
// 2e-3 per value. Those errors are independent across the terms of a score and the keys
// of a sum, so the output moves by a few 1e-3 relative; most with few latent columns to
// average over (measured on these problems: up to 4.4e-3 with a bf16 cache, 7.4e-3 with
// FP8 at L = 20; deterministic, the inputs are seeded). 1e-2 still catches a dropped or
// doubled key among up to ~4K keys (1/√n) and any wrong lane.
constexpr double kBf16RelTol = 1e-2;

// `tol`, or the bf16 bound where the active level computes in bf16. The bound holds for
// FP8 caches too: the dequantized keys' rounding to bf16 adds 2^-9 relative per value.
double LevelTol(double tol) { return !IsaIsExact(ActiveIsa()) ? kBf16RelTol : tol; }

void ExpectClose(const Problem& pr, const Result& got, const Result& want, double tol = kRelTol) {
  tol = LevelTol(tol);
  const int64_t latent = pr.latent();
  const int64_t vectors = pr.total_q() * pr.heads();
  for (int64_t v = 0; v < vectors; ++v) {
    double diff = 0, norm = 0;
    for (int64_t d = 0; d < latent; ++d) {
      const double g = got.out[v * latent + d];
      const double w = want.out[v * latent + d];
      ASSERT_TRUE(std::isfinite(g)) << "vector " << v << " d " << d;
      diff += (g - w) * (g - w);
      norm += w * w;
    }
    ASSERT_LE(std::sqrt(diff), tol * std::sqrt(norm)) << "output vector " << v;
    ASSERT_TRUE(std::isfinite(got.lse[v])) << "lse " << v;
    ASSERT_NEAR(got.lse[v], want.lse[v], tol * std::max(1.0, std::fabs(double{want.lse[v]})))
        << "lse " << v;
  }
}

void CheckAgainstReference(const Problem& pr, ThreadPool* pool) {
  const Result want = RunReference(pr);
  ExpectClose(pr, RunKernel(pr, pool), want);
}

class MlaAttentionIsaTest : public testing::TestWithParam<CpuIsa> {
 protected:
  void SetUp() override {
    if (!IsaSupported(GetParam())) GTEST_SKIP() << "CPU lacks " << CpuIsaName(GetParam());
  }
  ScopedIsaOverride isa_{GetParam()};
  ThreadPool pool_{2};
};

TEST_P(MlaAttentionIsaTest, DeepSeekShapeDecode) {
  for (int heads : {1, 3, 16}) {
    for (int block_size : {64, 16}) {
      SCOPED_TRACE(testing::Message() << "heads " << heads << " block " << block_size);
      const std::vector<SeqSpec> seqs = {Decode(1),  Decode(63), Decode(64),
                                         Decode(65), {0, 0, 0},  Decode(4097)};
      CheckAgainstReference(Problem(heads, 512, 64, block_size, seqs, 11), &pool_);
    }
  }
}

TEST_P(MlaAttentionIsaTest, SmallOddShapesWithSeveralQueryRows) {
  // 32 + 16 takes the direct path for up to 3 query vectors (widths multiple of 16).
  for (auto [latent, rope] : {std::pair{32, 8}, std::pair{20, 6}, std::pair{32, 16}}) {
    for (int heads : {1, 3, 16}) {
      for (int block_size : {16, 64}) {
        for (int n_q : {1, 2, 4}) {
          SCOPED_TRACE(testing::Message() << "L " << latent << " R " << rope << " heads " << heads
                                          << " block " << block_size << " s_q " << n_q);
          std::vector<SeqSpec> seqs;
          for (int len : {1, 63, 64, 65, 200}) {
            if (len >= n_q) seqs.push_back({n_q, len - n_q, len});
          }
          CheckAgainstReference(Problem(heads, latent, rope, block_size, seqs, 7 + n_q), &pool_);
        }
      }
    }
  }
}

TEST_P(MlaAttentionIsaTest, ChunkInTheMiddleOfASequence) {
  // 7 query rows at positions 100..106. In the second sequence more keys are cached than
  // the chunk may see (a later chunk was already written): causality must hide them.
  const std::vector<SeqSpec> seqs = {{7, 100, 107}, {7, 100, 150}};
  for (int heads : {1, 16}) {
    CheckAgainstReference(Problem(heads, 512, 64, 64, seqs, 3), &pool_);
    CheckAgainstReference(Problem(heads, 20, 6, 16, seqs, 4), &pool_);
  }
}

TEST_P(MlaAttentionIsaTest, MixedBatch) {
  const std::vector<SeqSpec> seqs = {Decode(41),  {0, 0, 0},  {7, 30, 37}, {2, 128, 130},
                                     {4, 0, 4},   Decode(1),  {0, 0, 33},  Decode(2049),
                                     {64, 0, 64}, {3, 60, 70}};
  for (int block_size : {16, 64}) {
    CheckAgainstReference(Problem(3, 512, 64, block_size, seqs, 21), &pool_);
    CheckAgainstReference(Problem(16, 32, 8, block_size, seqs, 22), &pool_);
  }
}

TEST_P(MlaAttentionIsaTest, SplitKvOnAndOffAgree) {
  const Problem pr(8, 512, 64, 64, {Decode(4097), {4, 3000, 3004}, Decode(700)}, 31);
  MlaAttentionWorkspace ws;
  MlaAttentionOptions on;
  on.min_keys_per_split = 256;
  on.items_per_worker = 4;  // small items: the decode and the chunk's rows get split
  const Result split = RunKernel(pr, &pool_, on, &ws);
  EXPECT_FALSE(ws.plan().combines.empty()) << "the test should exercise split-KV";
  MlaAttentionOptions off;
  off.split_kv = false;
  const Result whole = RunKernel(pr, &pool_, off, &ws);
  EXPECT_TRUE(ws.plan().combines.empty());
  // Both are fp32 computations of the same function in a different order.
  ExpectClose(pr, split, whole, 2e-6);
  ExpectClose(pr, split, RunReference(pr));
}

TEST_P(MlaAttentionIsaTest, ThreadCountsAndWorkspaceReuseDoNotChangeResults) {
  const Problem big(4, 64, 16, 16, {Decode(3000), {5, 10, 15}, Decode(900)}, 41);
  const Problem small(2, 20, 6, 16, {Decode(70)}, 42);
  const Result want_big = RunReference(big);
  const Result want_small = RunReference(small);
  MlaAttentionWorkspace ws;
  for (int threads : {1, 2, 3}) {
    ThreadPool pool(threads);
    ExpectClose(big, RunKernel(big, &pool, {}, &ws), want_big);
    ExpectClose(small, RunKernel(small, &pool, {}, &ws), want_small);
  }
  ExpectClose(big, RunKernel(big, nullptr), want_big);
}

// FP8 cache (DeepSeek's layout): the kernels dequantize as they read, the reference
// decodes every row (cache_row.h) and computes in fp64 on those values, so the bound is
// the bf16 one: both see the same keys. Latent widths cover whole and short scale groups
// (200 = 128 + 72; 20 and 32, one short group, the tiny models' shapes); rope widths and
// lengths are odd, blocks are crossed, unused slots are NaN (the NaN code and NaN
// scales), and the fp8 path never takes the bf16-only direct path.
TEST_P(MlaAttentionIsaTest, Fp8CacheMatchesReferenceOnDequantizedValues) {
  const std::vector<SeqSpec> seqs = {Decode(1),   {0, 0, 0},    Decode(63),  Decode(64),
                                     Decode(65),  {7, 30, 37},  {3, 60, 70}, Decode(1031),
                                     {64, 0, 64}, {2, 128, 130}};
  for (auto [latent, rope] :
       {std::pair{512, 64}, std::pair{200, 7}, std::pair{20, 1}, std::pair{32, 8}}) {
    for (int heads : {1, 3, 16}) {
      for (int block_size : {64, 13}) {
        SCOPED_TRACE(testing::Message() << "L " << latent << " R " << rope << " heads " << heads
                                        << " block " << block_size);
        CheckAgainstReference(
            Problem(heads, latent, rope, block_size, seqs, 91, CacheDType::kFp8E4M3), &pool_);
      }
    }
  }
}

TEST_P(MlaAttentionIsaTest, Fp8SplitKvAndOneTokenAgree) {
  const Problem pr(8, 512, 64, 64, {Decode(4097), {4, 3000, 3004}, Decode(1)}, 93,
                   CacheDType::kFp8E4M3);
  MlaAttentionWorkspace ws;
  MlaAttentionOptions on;
  on.min_keys_per_split = 256;
  on.items_per_worker = 4;
  const Result split = RunKernel(pr, &pool_, on, &ws);
  EXPECT_FALSE(ws.plan().combines.empty()) << "the test should exercise split-KV";
  ExpectClose(pr, split, RunReference(pr));
}

INSTANTIATE_TEST_SUITE_P(Isa, MlaAttentionIsaTest,
                         testing::Values(CpuIsa::kScalar, CpuIsa::kAvx2, CpuIsa::kAvx512,
                                         CpuIsa::kAvx512Bf16, CpuIsa::kAmxBf16),
                         [](const testing::TestParamInfo<CpuIsa>& info) {
                           return std::string(CpuIsaName(info.param));
                         });

TEST(MlaAttentionTest, DeepSeekShape128HeadsLongSequence) {
  // The full DeepSeek decode shape once, on the fastest kernel this CPU has.
  ThreadPool pool(2);
  CheckAgainstReference(Problem(128, 512, 64, 64, {Decode(4097)}, 51), &pool);
}

TEST(MlaAttentionTest, NoQueryRowsIsANoOp) {
  const Problem pr(2, 20, 6, 16, {{0, 0, 0}, {0, 0, 40}}, 61);
  float sentinel = 7.0f;
  MlaAttentionParams p = pr.Params(&sentinel, &sentinel);
  EXPECT_TRUE(MlaAttention(p, nullptr).ok());
  p.batch = 0;
  EXPECT_TRUE(MlaAttention(p, nullptr).ok());
  EXPECT_EQ(sentinel, 7.0f);
}

TEST(MlaAttentionTest, RejectsBadParams) {
  const Problem pr(2, 20, 6, 16, {{2, 30, 32}, Decode(17)}, 71);
  std::vector<float> out(pr.out_size()), lse(pr.total_q() * 2);
  const MlaAttentionParams good = pr.Params(out.data(), lse.data());
  ASSERT_TRUE(ValidateMlaAttentionParams(good).ok());
  auto expect_invalid = [&](auto mutate, const char* what) {
    MlaAttentionParams p = good;
    mutate(p);
    const absl::Status status = MlaAttention(p, nullptr);
    EXPECT_EQ(status.code(), absl::StatusCode::kInvalidArgument) << what;
    EXPECT_EQ(MlaAttentionReference(p).code(), absl::StatusCode::kInvalidArgument) << what;
  };
  expect_invalid([](MlaAttentionParams& p) { p.q = nullptr; }, "null q");
  expect_invalid([](MlaAttentionParams& p) { p.kv_cache = nullptr; }, "null cache");
  expect_invalid([](MlaAttentionParams& p) { p.block_table = nullptr; }, "null table");
  expect_invalid([](MlaAttentionParams& p) { p.seq_lens = nullptr; }, "null seq_lens");
  expect_invalid([](MlaAttentionParams& p) { p.batch = -1; }, "negative batch");
  expect_invalid([](MlaAttentionParams& p) { p.num_heads = 0; }, "no heads");
  expect_invalid([](MlaAttentionParams& p) { p.kv_lora_rank = 0; }, "L = 0");
  expect_invalid([](MlaAttentionParams& p) { p.rope_dim = -1; }, "negative R");
  expect_invalid([](MlaAttentionParams& p) { p.block_size = 0; }, "block size 0");
  expect_invalid([](MlaAttentionParams& p) { p.softmax_scale = NAN; }, "NaN scale");
  expect_invalid([](MlaAttentionParams& p) { p.max_blocks_per_seq = 1; }, "table too short");
  expect_invalid([](MlaAttentionParams& p) { p.num_blocks = 1; }, "block id out of range");
  // Table row of sequence 1 with a negative id.
  std::vector<int32_t> table(good.block_table, good.block_table + 2 * good.max_blocks_per_seq);
  table[good.max_blocks_per_seq] = -3;
  expect_invalid([&](MlaAttentionParams& p) { p.block_table = table.data(); }, "negative id");
  const int32_t too_short[] = {31, 17};  // sequence 0's rows reach position 32
  expect_invalid([&](MlaAttentionParams& p) { p.seq_lens = too_short; }, "rows past seq_len");
  const int32_t decreasing[] = {0, 2, 1};
  expect_invalid([&](MlaAttentionParams& p) { p.cu_seqlens_q = decreasing; }, "cu decreasing");
  const int32_t bad_start[] = {1, 3, 4};
  expect_invalid([&](MlaAttentionParams& p) { p.cu_seqlens_q = bad_start; }, "cu[0] != 0");
  const int32_t negative_pos[] = {-1, 16};
  expect_invalid([&](MlaAttentionParams& p) { p.q_pos0 = negative_pos; }, "negative q_pos0");
}

}  // namespace
}  // namespace mla::cpu
