// The model's side of Backend::BeginGraphRegion (the seam of CUDA graphs), on the CPU
// with a backend that delegates to CpuBackend and answers the region calls from a script:
// which steps offer a region, which operations the model issues for each answer, that
// a failed recording's eager re-run (inputs again, then the region) gives the logits of a
// plain step, and that V3.2's dense and sparse decode steps are different variants. The CUDA
// backend's recording and replay are checked on a GPU (tests/gpu/cuda_backend_test.cc,
// GraphReplaysMatchEagerDecodeSteps).
#include <gtest/gtest.h>

#include <cstdint>
#include <memory>
#include <span>
#include <string>
#include <vector>

#include "engine/backend/cpu/cpu_backend.h"
#include "engine/kv_cache/block_pool.h"
#include "engine/kv_cache/cache_layout.h"
#include "engine/model/deepseek_model.h"

namespace mla {
namespace {

// CpuBackend with scripted region answers and a count of the operations the model issues.
class ScriptedBackend final : public Backend {
 public:
  GraphRegion answer = GraphRegion::kEager;  // what BeginGraphRegion returns
  bool rerun = false;                        // what EndGraphRegion returns
  bool fail_in_region = false;               // TakeError fails once inside a region
  int regions = 0, ends = 0, incomplete_ends = 0, gemms = 0, embeds = 0, topks = 0;
  std::vector<uint32_t> variants;  // every BeginGraphRegion's

  GraphRegion BeginGraphRegion(uint32_t variant) override {
    ++regions;
    variants.push_back(variant);
    in_region_ = answer == GraphRegion::kCapturing;
    return answer;
  }
  bool EndGraphRegion(bool complete) override {
    ++ends;
    if (!complete) ++incomplete_ends;
    in_region_ = false;
    return rerun || !complete;
  }
  absl::Status TakeError() override {
    absl::Status s = cpu_.TakeError();
    if (s.ok() && in_region_ && fail_in_region) {
      fail_in_region = false;
      return absl::InternalError("a launch that recording does not allow");
    }
    return s;
  }
  void Gemm(const Tensor& x, const Tensor& w, Tensor y, Op op) override {
    ++gemms;
    cpu_.Gemm(x, w, y, op);
  }
  void Embed(const Tensor& table, std::span<const int32_t> tokens, Tensor out, Op op) override {
    ++embeds;
    cpu_.Embed(table, tokens, out, op);
  }

  // The rest delegates.
  std::string DeviceName() const override { return cpu_.DeviceName(); }
  std::string Describe() const override { return cpu_.Describe(); }
  absl::StatusOr<Tensor> AddWeight(std::string_view name, const MatrixView& host) override {
    return cpu_.AddWeight(name, host);
  }
  absl::Status AllocateCache(const CacheLayout& layout, int32_t num_blocks) override {
    return cpu_.AllocateCache(layout, num_blocks);
  }
  const CacheLayout& cache_layout() const override { return cpu_.cache_layout(); }
  int32_t cache_num_blocks() const override { return cpu_.cache_num_blocks(); }
  absl::Status ReadCacheBlock(int32_t block, std::span<uint8_t> bytes) override {
    return cpu_.ReadCacheBlock(block, bytes);
  }
  absl::Status WriteCacheBlock(int32_t block, std::span<const uint8_t> bytes) override {
    return cpu_.WriteCacheBlock(block, bytes);
  }
  Tensor Activation(int slot, int64_t rows, int64_t cols) override {
    return cpu_.Activation(slot, rows, cols);
  }
  BackendMemory Memory() const override { return cpu_.Memory(); }
  void Upload(std::span<const float> host, Tensor dst, Op op) override {
    cpu_.Upload(host, dst, op);
  }
  void Download(const Tensor& src, std::span<float> host, Op op) override {
    cpu_.Download(src, host, op);
  }
  void BeginStep(const StepBatch& batch) override { cpu_.BeginStep(batch); }
  void RmsNorm(const Tensor& x, const Tensor& weight, float eps, Tensor out, Op op) override {
    cpu_.RmsNorm(x, weight, eps, out, op);
  }
  void Copy(const Tensor& src, Tensor dst, Op op) override { cpu_.Copy(src, dst, op); }
  void Fill(Tensor t, float value, Op op) override { cpu_.Fill(t, value, op); }
  void Add(const Tensor& x, Tensor y, Op op) override { cpu_.Add(x, y, op); }
  void SiluMul(const Tensor& gate, const Tensor& up, Tensor out, Op op) override {
    cpu_.SiluMul(gate, up, out, op);
  }
  void Rope(const Tensor& cos, const Tensor& sin, Tensor x, int heads, int64_t head_stride,
            Op op) override {
    cpu_.Rope(cos, sin, x, heads, head_stride, op);
  }
  void WriteCache(int layer, const Tensor& latent, const Tensor& k_pe, Op op) override {
    cpu_.WriteCache(layer, latent, k_pe, op);
  }
  void MlaAttention(int layer, int heads, float softmax_scale, const Tensor& q, Tensor out,
                    Tensor lse, Op op) override {
    cpu_.MlaAttention(layer, heads, softmax_scale, q, out, lse, op);
  }
  bool SupportsDecompressedAttention() const override {
    return cpu_.SupportsDecompressedAttention();
  }
  void DecompressedAttention(int layer, int heads, float softmax_scale, const Tensor& q,
                             const Tensor& kv_b, Tensor out, Op op) override {
    cpu_.DecompressedAttention(layer, heads, softmax_scale, q, kv_b, out, op);
  }
  void MoeExperts(const MoeRoutingPolicy& policy, const Tensor& router_logits, const Tensor& bias,
                  std::span<const ExpertTensors> experts, const Tensor& x, Tensor out,
                  Op op) override {
    cpu_.MoeExperts(policy, router_logits, bias, experts, x, out, op);
  }
  void LayerNorm(const Tensor& x, const Tensor& weight, const Tensor& bias, float eps, Tensor out,
                 Op op) override {
    cpu_.LayerNorm(x, weight, bias, eps, out, op);
  }
  void RopeHalves(const Tensor& cos, const Tensor& sin, Tensor x, int heads, int64_t head_stride,
                  Op op) override {
    cpu_.RopeHalves(cos, sin, x, heads, head_stride, op);
  }
  void WriteIndexKeys(int layer, const Tensor& keys, Op op) override {
    cpu_.WriteIndexKeys(layer, keys, op);
  }
  void IndexerTopK(int layer, int heads, float scale, float weight_scale, const Tensor& q,
                   const Tensor& w, Tensor selected, Op op) override {
    ++topks;
    cpu_.IndexerTopK(layer, heads, scale, weight_scale, q, w, selected, op);
  }
  void SparseMlaAttention(int layer, int heads, float softmax_scale, const Tensor& q,
                          const Tensor& selected, Tensor out, Tensor lse, Op op) override {
    cpu_.SparseMlaAttention(layer, heads, softmax_scale, q, selected, out, lse, op);
  }
  absl::StatusOr<AttentionSharpness> ProbeAttention(int layer, int64_t seq, int64_t num_keys,
                                                    const Tensor& q_row, int heads,
                                                    float softmax_scale, Op op) override {
    return cpu_.ProbeAttention(layer, seq, num_keys, q_row, heads, softmax_scale, op);
  }
  void Sample(const Tensor& logits, std::span<const RowSampling> rows, std::span<RowSample> out,
              Op op) override {
    cpu_.Sample(logits, rows, out, op);
  }

 private:
  cpu::CpuBackend cpu_{1};
  bool in_region_ = false;
};

class GraphRegionTest : public ::testing::Test {
 protected:
  void SetUp() override {
    const std::string dir = std::string(MLA_MODELS_DIR) + "/tiny-v2-lite";
    auto model = DeepseekModel::Load(dir, &be_);
    ASSERT_TRUE(model.ok()) << model.status();
    model_ = std::move(*model);
    auto plain = DeepseekModel::Load(dir, &plain_be_);
    ASSERT_TRUE(plain.ok()) << plain.status();
    plain_ = std::move(*plain);
    const ModelConfig& c = model_->config();
    auto layout = CacheLayout::Create(
        {CacheDType::kBF16, c.kv_lora_rank, c.qk_rope_head_dim, 16, c.num_hidden_layers});
    ASSERT_TRUE(layout.ok());
    ASSERT_TRUE(be_.AllocateCache(*layout, 64).ok());
    ASSERT_TRUE(plain_be_.AllocateCache(*layout, 64).ok());
    ASSERT_TRUE(table_.Append(40, pool_).ok());
    // The same 12-token prompt in both caches.
    SequenceChunk chunk{prompt_, 0, &table_, false};
    ASSERT_TRUE(model_->ForwardToHost({&chunk, 1}).ok());
    ASSERT_TRUE(plain_->ForwardToHost({&chunk, 1}).ok());
  }

  // One decode step at `pos` on both models: the scripted one's logits and the plain one's.
  void Decode(int64_t pos, std::vector<float>* got, std::vector<float>* want, bool probe = false) {
    const int32_t token = static_cast<int32_t>(pos % 50 + 3);
    SequenceChunk chunk{{&token, 1}, pos, &table_, false};
    chunk.probe_attention = probe;
    auto a = model_->ForwardToHost({&chunk, 1});
    ASSERT_TRUE(a.ok()) << a.status();
    auto b = plain_->ForwardToHost({&chunk, 1});
    ASSERT_TRUE(b.ok()) << b.status();
    *got = std::move(*a);
    *want = std::move(*b);
  }

  // Gemm calls of one eager decode step's region: 1 lm_head plus every layer's.
  int RegionGemms() {
    std::vector<float> got, want;
    be_.answer = GraphRegion::kEager;
    const int before = be_.gemms;
    Decode(12, &got, &want);
    return be_.gemms - before;
  }

  ScriptedBackend be_;
  cpu::CpuBackend plain_be_{1};
  std::unique_ptr<DeepseekModel> model_, plain_;
  BlockPool pool_{64};
  BlockTable table_{16};
  std::vector<int32_t> prompt_ = {5, 17, 3, 99, 42, 8, 8, 61, 12, 7, 30, 2};
};

TEST_F(GraphRegionTest, OnlyPlainDecodeStepsOfferARegion) {
  EXPECT_EQ(be_.regions, 0) << "a prefill step";
  std::vector<float> got, want;
  Decode(12, &got, &want);
  EXPECT_EQ(be_.regions, 1);
  EXPECT_EQ(got, want);
  Decode(13, &got, &want, /*probe=*/true);
  EXPECT_EQ(be_.regions, 1) << "telemetry reads back mid-region";
  EXPECT_EQ(be_.ends, 0) << "eager regions are not ended";
}

TEST_F(GraphRegionTest, RecordingIssuesTheRegionOnceAndEndsIt) {
  const int region_gemms = RegionGemms();
  ASSERT_GT(region_gemms, 1);
  be_.answer = GraphRegion::kCapturing;
  const int gemms = be_.gemms, embeds = be_.embeds;
  std::vector<float> got, want;
  Decode(13, &got, &want);
  EXPECT_EQ(be_.gemms - gemms, region_gemms);
  EXPECT_EQ(be_.embeds - embeds, 1);
  EXPECT_EQ(be_.ends, 1);
  EXPECT_EQ(be_.incomplete_ends, 0);
  EXPECT_EQ(got, want);
}

TEST_F(GraphRegionTest, AFailedRecordingRunsInputsAndRegionAgain) {
  const int region_gemms = RegionGemms();
  be_.answer = GraphRegion::kCapturing;
  be_.rerun = true;
  const int gemms = be_.gemms, embeds = be_.embeds;
  std::vector<float> got, want;
  Decode(13, &got, &want);
  EXPECT_EQ(be_.gemms - gemms, 2 * region_gemms);
  EXPECT_EQ(be_.embeds - embeds, 2);
  EXPECT_EQ(got, want) << "the eager re-run computes the step";
}

TEST_F(GraphRegionTest, AnErrorWhileRecordingEndsItIncompleteAndTheReRunDecides) {
  RegionGemms();
  be_.answer = GraphRegion::kCapturing;
  be_.fail_in_region = true;
  std::vector<float> got, want;
  Decode(13, &got, &want);
  EXPECT_EQ(be_.incomplete_ends, 1);
  EXPECT_EQ(got, want) << "the re-run succeeded, so the step did";
}

TEST_F(GraphRegionTest, AReplayedRegionIssuesNoOperations) {
  RegionGemms();
  be_.answer = GraphRegion::kReplayed;
  const int gemms = be_.gemms, embeds = be_.embeds;
  std::vector<float> got, want;
  Decode(13, &got, &want);
  EXPECT_EQ(be_.gemms, gemms);
  EXPECT_EQ(be_.embeds - embeds, 1) << "the step's inputs still go up";
  EXPECT_EQ(be_.ends, 0);
  // Nothing recomputed the logits: the buffer still holds the previous step's, which a
  // real replay would have overwritten.
  EXPECT_NE(got, want);
}

// DeepSeek-V3.2: a decode step offers a region too, and says in its variant whether the
// layers select (some row sees more than index_topk keys) or attend densely: the two
// issue different operations for steps of the same shape, so a recording of one must
// never replay for the other. The decision is the step's, made once for all layers, and
// the logits stay those of a plain backend.
TEST(GraphRegionV32Test, DenseAndSparseDecodeStepsAreDifferentVariants) {
  const std::string dir = std::string(MLA_MODELS_DIR) + "/tiny-v32";
  ScriptedBackend be;
  cpu::CpuBackend plain_be(1);
  auto model = DeepseekModel::Load(dir, &be);
  ASSERT_TRUE(model.ok()) << model.status();
  auto plain = DeepseekModel::Load(dir, &plain_be);
  ASSERT_TRUE(plain.ok()) << plain.status();
  const ModelConfig& c = (*model)->config();
  ASSERT_EQ(c.index_topk, 16);
  CacheLayoutConfig lc{CacheDType::kBF16, c.kv_lora_rank, c.qk_rope_head_dim, 16,
                       c.num_hidden_layers};
  lc.index_key_dim = c.index_head_dim;
  auto layout = CacheLayout::Create(lc);
  ASSERT_TRUE(layout.ok()) << layout.status();
  ASSERT_TRUE(be.AllocateCache(*layout, 8).ok());
  ASSERT_TRUE(plain_be.AllocateCache(*layout, 8).ok());
  BlockPool pool(8);
  BlockTable table(16);
  ASSERT_TRUE(table.Append(24, pool).ok());
  const std::vector<int32_t> prompt = {5, 17, 3, 99, 42, 8, 8, 61, 12, 7, 30, 2};
  SequenceChunk chunk{prompt, 0, &table, false};
  ASSERT_TRUE((*model)->ForwardToHost({&chunk, 1}).ok());
  ASSERT_TRUE((*plain)->ForwardToHost({&chunk, 1}).ok());
  EXPECT_EQ(be.regions, 0) << "a prefill step";
  std::vector<uint32_t> want_variants;
  for (int64_t pos = 12; pos < 24; ++pos) {
    const int topks = be.topks;
    const int32_t token = static_cast<int32_t>(pos % 50 + 3);
    SequenceChunk step{{&token, 1}, pos, &table, false};
    auto got = (*model)->ForwardToHost({&step, 1});
    ASSERT_TRUE(got.ok()) << got.status();
    auto want = (*plain)->ForwardToHost({&step, 1});
    ASSERT_TRUE(want.ok()) << want.status();
    EXPECT_EQ(*got, *want) << "position " << pos;
    const bool sparse = pos + 1 > c.index_topk;
    want_variants.push_back(sparse ? 1 : 0);
    EXPECT_EQ(be.topks - topks, sparse ? c.num_hidden_layers : 0) << "position " << pos;
  }
  EXPECT_EQ(be.variants, want_variants);
}

}  // namespace
}  // namespace mla
