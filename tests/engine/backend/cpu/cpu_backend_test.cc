// The CPU backend behind the seam: tensor views, timing by named operation, sticky errors
// naming the operation, and each composite operation against a naive reference (random
// inputs, odd sizes, strided views, NaN-poisoned cache slots left untouched).
#include "engine/backend/cpu/cpu_backend.h"

#include <gtest/gtest.h>

#include <cmath>
#include <random>
#include <vector>

#include "engine/backend/cpu/cpu_features.h"
#include "engine/backend/cpu/pointwise.h"
#include "engine/sampling/logprobs.h"

namespace mla::cpu {
namespace {

std::vector<float> Random(size_t n, std::mt19937& rng, float scale = 1.0f) {
  std::normal_distribution<float> normal(0.0f, scale);
  std::vector<float> v(n);
  for (float& x : v) x = normal(rng);
  return v;
}

Tensor HostTensor(std::vector<float>& v, int64_t rows, int64_t cols) {
  return Tensor{v.data(), DType::kF32, rows, cols, cols};
}

Matrix RandomBf16(int64_t rows, int64_t cols, std::mt19937& rng) {
  Matrix m = Matrix::Allocate(rows, cols, DType::kBF16);
  const std::vector<float> v = Random(static_cast<size_t>(rows * cols), rng, 0.3f);
  for (size_t i = 0; i < v.size(); ++i) m.bf16()[i] = FloatToBf16(v[i]);
  return m;
}

// y[i, r] = Σ_c x[i, c] · w[r, c], in double.
std::vector<float> NaiveGemm(const float* x, int64_t x_stride, int64_t n, const Matrix& w) {
  std::vector<float> y(static_cast<size_t>(n * w.rows));
  for (int64_t i = 0; i < n; ++i) {
    for (int64_t r = 0; r < w.rows; ++r) {
      double acc = 0;
      for (int64_t c = 0; c < w.cols; ++c) acc += double(x[i * x_stride + c]) * w.At(r, c);
      y[i * w.rows + r] = static_cast<float>(acc);
    }
  }
  return y;
}

TEST(TensorTest, RowsAndColsViewTheSameMemory) {
  std::vector<float> v(6 * 10);
  const Tensor t = HostTensor(v, 6, 10);
  const Tensor rows = t.Rows(2, 3);
  EXPECT_EQ(rows.data, v.data() + 20);
  EXPECT_EQ(rows.rows, 3);
  EXPECT_EQ(rows.stride, 10);
  const Tensor cols = t.Cols(4, 5);
  EXPECT_EQ(cols.data, v.data() + 4);
  EXPECT_EQ(cols.cols, 5);
  EXPECT_EQ(cols.stride, 10);
  EXPECT_EQ(cols.Rows(1, 1).data, v.data() + 14);
}

// The log line names the active instruction set and, where the CPU has a faster opt-in
// level than the one running, how to turn it on.
TEST(CpuBackendTest, DescribeNamesTheIsaAndTheOptInLevel) {
  CpuBackend backend(2);
  {
    ScopedIsaOverride exact(CpuIsa::kScalar);
    const std::string text = backend.Describe();
    EXPECT_NE(text.find("2 threads, scalar"), std::string::npos) << text;
    const bool faster = DetectedIsa() > CpuIsa::kScalar;
    EXPECT_EQ(text.find("opt in with MLA_CPU_ISA=") != std::string::npos, faster) << text;
  }
  ScopedIsaOverride best(DetectedIsa());
  EXPECT_EQ(backend.Describe().find("opt in"), std::string::npos) << backend.Describe();
}

TEST(CpuBackendTest, GemmOnStridedViewsMatchesNaive) {
  std::mt19937 rng(3);
  CpuBackend be(2);
  // A column slice of x (one "head") into a column slice of y: odd sizes throughout.
  const int64_t n = 5, k = 37, out = 19;
  std::vector<float> x = Random(n * 50, rng);
  const Matrix w = RandomBf16(out, k, rng);
  absl::StatusOr<Tensor> wt = be.AddWeight("w", w.View());
  ASSERT_TRUE(wt.ok()) << wt.status();
  std::vector<float> y(n * 40, std::nanf(""));
  const Tensor xv = HostTensor(x, n, 50).Cols(7, k);
  const Tensor yv = HostTensor(y, n, 40).Cols(3, out);
  be.Gemm(xv, *wt, yv, {"test_gemm"});
  ASSERT_TRUE(be.TakeError().ok());
  const std::vector<float> want = NaiveGemm(x.data() + 7, 50, n, w);
  for (int64_t i = 0; i < n; ++i) {
    for (int64_t r = 0; r < out; ++r) {
      EXPECT_NEAR(y[i * 40 + 3 + r], want[i * out + r], 1e-4) << i << "," << r;
    }
    EXPECT_TRUE(std::isnan(y[i * 40 + 2])) << "wrote left of the view";
    EXPECT_TRUE(std::isnan(y[i * 40 + 3 + out])) << "wrote right of the view";
  }
}

TEST(CpuBackendTest, ShapeErrorsAreStickyAndNameTheOperation) {
  CpuBackend be(1);
  std::vector<float> x(4 * 3), y(4 * 5);
  Matrix w = Matrix::Allocate(5, 4, DType::kF32);  // in = 4, but x has 3 columns
  const Tensor wt = *be.AddWeight("w", w.View());
  be.Gemm(HostTensor(x, 4, 3), wt, HostTensor(y, 4, 5), {"attn_q_b", 7});
  be.Add(HostTensor(y, 4, 5), HostTensor(y, 4, 5), {"later"});  // Runs; the first error stays.
  const absl::Status s = be.TakeError();
  EXPECT_EQ(s.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_NE(s.message().find("attn_q_b (layer 7)"), std::string::npos) << s;
  EXPECT_TRUE(be.TakeError().ok()) << "TakeError clears";
}

TEST(CpuBackendTest, ProfilerTimesEachNamedOperationOnlyWhenOn) {
  CpuBackend be(1);
  std::vector<float> a(8, 1.0f), b(8, 2.0f);
  be.Add(HostTensor(a, 2, 4), HostTensor(b, 2, 4), {"off"});
  EXPECT_TRUE(be.profiler().Take().empty());
  be.profiler().set_enabled(true);
  for (int l = 0; l < 3; ++l) be.Add(HostTensor(a, 2, 4), HostTensor(b, 2, 4), {"ffn_residual", l});
  be.Fill(HostTensor(a, 2, 4), 0.5f, {"ffn_zero"});
  const std::vector<OpTiming> t = be.profiler().Take();
  ASSERT_EQ(t.size(), 2u);
  EXPECT_EQ(t[0].name, "ffn_residual");
  EXPECT_EQ(t[0].calls, 3);
  EXPECT_GE(t[0].seconds, 0.0);
  EXPECT_EQ(t[1].name, "ffn_zero");
  EXPECT_EQ(b[0], 6.0f);  // 2 + 4 · 1: the untimed Add ran too
  EXPECT_EQ(a[7], 0.5f);
  EXPECT_TRUE(be.profiler().Take().empty());
}

TEST(CpuBackendTest, WriteCacheStoresAtSlotsAndRefusesBadSlotsWithoutWriting) {
  CpuBackend be(1);
  const CacheLayout layout = *CacheLayout::Create({CacheDType::kBF16, 4, 2, 3, 1});
  ASSERT_TRUE(be.AllocateCache(layout, 4).ok());
  be.latent_cache()->PoisonWithNaN();
  std::mt19937 rng(5);
  std::vector<float> rows = Random(2 * 6, rng);
  StepBatch step;
  step.num_tokens = 2;
  step.slots = {7, 2};  // block 2 offset 1, block 0 offset 2
  be.BeginStep(step);
  const Tensor t = HostTensor(rows, 2, 6);
  be.WriteCache(0, t.Cols(0, 4), t.Cols(4, 2), {"attn_cache_write"});
  ASSERT_TRUE(be.TakeError().ok());
  const bf16_t* base = be.latent_cache()->LayerData(0);
  for (int i = 0; i < 6; ++i) {
    EXPECT_EQ(Bf16ToFloat(base[7 * 6 + i]), Bf16ToFloat(FloatToBf16(rows[i])));
    EXPECT_EQ(Bf16ToFloat(base[2 * 6 + i]), Bf16ToFloat(FloatToBf16(rows[6 + i])));
    EXPECT_TRUE(std::isnan(Bf16ToFloat(base[3 * 6 + i]))) << "an unwritten slot changed";
  }
  step.slots = {5, 12};  // 12 = 4 blocks × 3 slots: one past the end
  be.BeginStep(step);
  be.WriteCache(0, t.Cols(0, 4), t.Cols(4, 2), {"attn_cache_write"});
  EXPECT_EQ(be.TakeError().code(), absl::StatusCode::kOutOfRange);
  EXPECT_TRUE(std::isnan(Bf16ToFloat(base[5 * 6]))) << "a refused step wrote a valid slot";
}

// The disk tier's copies: one block of every layer, in and out, in the fp8 layout; other
// blocks untouched; a wrong size or block refused.
TEST(CpuBackendTest, CacheBlockCopiesMoveOneBlockOfEveryLayer) {
  CpuBackend be(1);
  const CacheLayout layout = *CacheLayout::Create({CacheDType::kFp8E4M3, 32, 8, 4, 3});
  ASSERT_TRUE(be.AllocateCache(layout, 5).ok());
  be.latent_cache()->PoisonWithNaN();
  std::vector<uint8_t> in(static_cast<size_t>(layout.bytes_per_block()));
  for (size_t i = 0; i < in.size(); ++i) in[i] = static_cast<uint8_t>(i * 7 + 1);
  ASSERT_TRUE(be.WriteCacheBlock(3, in).ok());
  std::vector<uint8_t> out(in.size());
  ASSERT_TRUE(be.ReadCacheBlock(3, out).ok());
  EXPECT_EQ(out, in);
  const int64_t per_block = layout.bytes_per_block_per_layer();
  for (int l = 0; l < 3; ++l) {  // layer l's share sits at block 3 of layer l
    const uint8_t* base = be.latent_cache()->LayerBytes(l);
    EXPECT_EQ(base[3 * per_block], in[l * per_block]) << l;
    EXPECT_EQ(base[2 * per_block + per_block - 1], 0xff) << "block 2 changed in layer " << l;
    EXPECT_EQ(base[4 * per_block], 0xff) << "block 4 changed in layer " << l;
  }
  EXPECT_EQ(be.ReadCacheBlock(5, out).code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(be.WriteCacheBlock(-1, in).code(), absl::StatusCode::kInvalidArgument);
  out.pop_back();
  EXPECT_EQ(be.ReadCacheBlock(0, out).code(), absl::StatusCode::kInvalidArgument);
}

// DeepSeek-V3.2: the indexer keys travel with their block (after every layer's latent),
// so a block restored from the disk tier has its indexer keys too, bf16 or FP8 (codes and
// scales).
TEST(CpuBackendTest, CacheBlockCopiesCarryTheIndexerKeys) {
  for (const CacheDType index_dtype : {CacheDType::kBF16, CacheDType::kFp8E4M3}) {
    SCOPED_TRACE(CacheDTypeName(index_dtype));
    CpuBackend be(1);
    CacheLayoutConfig config{CacheDType::kBF16, 32, 8, 4, 3};
    config.index_key_dim = 6;
    config.index_dtype = index_dtype;
    const CacheLayout layout = *CacheLayout::Create(config);
    ASSERT_TRUE(be.AllocateCache(layout, 5).ok());
    be.latent_cache()->PoisonWithNaN();
    const int64_t per_index = index_dtype == CacheDType::kBF16 ? 4 * 6 * 2 : 4 * (6 + 4);
    std::vector<uint8_t> in(static_cast<size_t>(layout.bytes_per_block()));
    ASSERT_EQ(in.size(), 3u * (4 * (32 + 8) * 2 + per_index));
    for (size_t i = 0; i < in.size(); ++i) in[i] = static_cast<uint8_t>(i * 5 + 3);
    ASSERT_TRUE(be.WriteCacheBlock(1, in).ok());
    std::vector<uint8_t> out(in.size());
    ASSERT_TRUE(be.ReadCacheBlock(1, out).ok());
    EXPECT_EQ(out, in);
    const int64_t latent_part = 3 * layout.bytes_per_block_per_layer();
    for (int l = 0; l < 3; ++l) {
      const uint8_t* keys = be.latent_cache()->IndexKeyBytes(l);
      EXPECT_EQ(std::vector<uint8_t>(keys + per_index, keys + 2 * per_index),
                std::vector<uint8_t>(in.begin() + latent_part + l * per_index,
                                     in.begin() + latent_part + (l + 1) * per_index))
          << "layer " << l;
      EXPECT_EQ(keys[per_index - 1], 0xff) << "block 0's keys changed in layer " << l;
      EXPECT_EQ(keys[2 * per_index], 0xff) << "block 2's keys changed in layer " << l;
    }
  }
}

TEST(CpuBackendTest, MoeExpertsMatchesNaiveRouting) {
  std::mt19937 rng(11);
  CpuBackend be(2);
  const int experts = 6, hidden = 9, inter = 5, n = 7;
  MoeRoutingPolicy policy;
  policy.num_experts = experts;
  policy.top_k = 2;
  policy.normalize = true;
  policy.scaling = 1.5f;
  std::vector<Matrix> gate, up, down;
  std::vector<ExpertTensors> tensors;
  for (int e = 0; e < experts; ++e) {
    gate.push_back(RandomBf16(inter, hidden, rng));
    up.push_back(RandomBf16(inter, hidden, rng));
    down.push_back(RandomBf16(hidden, inter, rng));
    tensors.push_back({*be.AddWeight("g", gate.back().View()), *be.AddWeight("u", up.back().View()),
                       *be.AddWeight("d", down.back().View())});
  }
  std::vector<float> x = Random(n * hidden, rng), logits = Random(n * experts, rng);
  std::vector<float> out(n * hidden, 0.25f);  // MoeExperts adds into out
  be.MoeExperts(policy, HostTensor(logits, n, experts), Tensor(), tensors, HostTensor(x, n, hidden),
                HostTensor(out, n, hidden), {"moe_experts"});
  ASSERT_TRUE(be.TakeError().ok());
  for (int t = 0; t < n; ++t) {
    const ExpertChoice c = RouteToken(logits.data() + t * experts, policy, {});
    std::vector<double> want(hidden, 0.25);
    for (size_t k = 0; k < c.experts.size(); ++k) {
      const int e = c.experts[k];
      const std::vector<float> g = NaiveGemm(x.data() + t * hidden, hidden, 1, gate[e]);
      const std::vector<float> u = NaiveGemm(x.data() + t * hidden, hidden, 1, up[e]);
      std::vector<float> act(inter);
      for (int i = 0; i < inter; ++i) act[i] = g[i] / (1 + std::exp(-g[i])) * u[i];
      const std::vector<float> d = NaiveGemm(act.data(), inter, 1, down[e]);
      for (int j = 0; j < hidden; ++j) want[j] += c.weights[k] * d[j];
    }
    for (int j = 0; j < hidden; ++j) EXPECT_NEAR(out[t * hidden + j], want[j], 1e-4) << t;
  }
}

TEST(CpuBackendTest, SampleScoresAndSamplesRows) {
  CpuBackend be(1);
  std::vector<float> logits = {0.1f, 2.0f, -1.0f, 0.5f,   // row 0: argmax 1
                               3.0f, 0.0f, 0.0f,  3.5f};  // row 1: argmax 3
  SamplingParams greedy;
  greedy.temperature = 0.0f;
  Rng rng(1);
  std::vector<RowSampling> rows(2);
  rows[0].row = 0;
  rows[0].score_token = 2;
  rows[0].top_logprobs = 1;
  rows[1].row = 1;
  rows[1].params = &greedy;
  rows[1].rng = &rng;
  std::vector<RowSample> out(2);
  be.Sample(HostTensor(logits, 2, 4), rows, out, {"sample"});
  ASSERT_TRUE(out[0].status.ok());
  EXPECT_EQ(out[0].token, 2);
  const std::vector<float> lp = LogSoftmax(std::span<const float>(logits.data(), 4));
  EXPECT_FLOAT_EQ(out[0].logprobs.logprob, lp[2]);
  ASSERT_EQ(out[0].logprobs.top.size(), 1u);
  EXPECT_EQ(out[0].logprobs.top[0].token_id, 1);
  ASSERT_TRUE(out[1].status.ok());
  EXPECT_EQ(out[1].token, 3);
  EXPECT_FALSE(out[1].has_logprobs);
}

TEST(CpuBackendTest, SampleReportsABadRowWithoutFailingOthers) {
  CpuBackend be(1);
  const float nan = std::nanf("");
  std::vector<float> logits = {nan, nan, 1.0f, 0.0f};
  SamplingParams greedy;
  greedy.temperature = 0.0f;
  Rng rng(1);
  std::vector<RowSampling> rows(2);
  rows[0] = {0, &greedy, &rng};
  rows[1] = {1, &greedy, &rng};
  std::vector<RowSample> out(2);
  be.Sample(HostTensor(logits, 2, 2), rows, out, {"sample"});
  EXPECT_EQ(out[0].status.code(), absl::StatusCode::kInvalidArgument);
  ASSERT_TRUE(out[1].status.ok());
  EXPECT_EQ(out[1].token, 0);
}

}  // namespace
}  // namespace mla::cpu
