// The forward pass against golden logits from Hugging Face transformers' own DeepSeek-V2,
// DeepSeek-V3 and DeepSeek-V3.2 modeling code (fp32, CPU; tools/reference/make_goldens.py),
// for the committed tiny models: whole prefill, chunked prefill with several chunk sizes,
// decode after prefill, and a batch of all prompts in one step. tiny-v32 has index_topk
// 16, so its prompts past 16 tokens run sparse attention (its bf16-kv goldens also round
// the indexer keys); dsa_golden_test.cc checks it in layers.
//
// Two sets of goldens. `<model>.bf16-kv` is the reference with the cached latent c and the
// rotated k_pe rounded to bf16, exactly what the engine's bf16 cache stores; everything
// else is fp32 in both. The engine must match it to summation-order noise: what remains
// is an occasional cached value that lands one bf16 ulp (2^-8 relative) apart because our
// fp32 latent differs from torch's in the last bits before rounding. Measured worst case
// over all rows: 1 - cosine 1e-7, max-abs error 2.6e-4 of the row's logit range. We
// require 1 - cosine <= 1e-6 and max-abs <= 1e-3 of the range (4-10x headroom). A wrong
// RoPE pairing, mscale or head offset moves logits by tens of percent.
//
// `<model>` (plain fp32 reference, k/v never rounded) differs from the engine by the bf16
// cache rounding itself (2^-9 relative per cached value). For tiny-v2-lite that keeps
// logits within cosine 0.9999 and 2% of the range, checked below. tiny-v3's router has
// margins of 2e-4 between chosen and rejected experts, so the rounding legitimately
// flips a few tokens' expert choice there; that model is checked against bf16-kv only.
//
// `<model>.fp8-kv-sim` (tools/reference/fp8_cache_sim.py) is an independent float64
// forward pass with an exact e4m3 latent cache (per-128 amax/448 scales, round to nearest
// even), with its measured drift against a bf16 cache in the metadata. The engine's fp8
// cache must compute that function, and its own fp8-vs-bf16 drift must stay within the
// simulation's (see Fp8GoldenTest below for the bounds).
#include <gtest/gtest.h>

#include <cmath>
#include <cstdio>
#include <map>
#include <numeric>
#include <string>
#include <vector>

#include "engine/backend/cpu/cpu_backend.h"
#include "engine/backend/cpu/cpu_features.h"
#include "engine/kv_cache/block_pool.h"
#include "engine/model/attention_path.h"
#include "engine/model/deepseek_model.h"
#include "engine/model/safetensors.h"
#include "tests/engine/model/golden_util.h"

namespace mla {
namespace {

class GoldenTest : public ::testing::TestWithParam<std::string> {
 protected:
  void SetUp() override {
    auto model = DeepseekModel::Load(std::string(MLA_MODELS_DIR) + "/" + GetParam(), &backend_);
    ASSERT_TRUE(model.ok()) << model.status();
    model_ = std::move(*model);
    goldens_ = LoadGoldens(GetParam() + ".bf16-kv.safetensors");
    ASSERT_FALSE(goldens_.empty());
  }

  // A NaN-poisoned cache with small blocks, so that prompts cross many block boundaries
  // and any read of an unwritten slot turns the logits into NaN.
  void ResetCache(BlockPool** pool_out, CacheDType dtype = CacheDType::kBF16) {
    const ModelConfig& c = model_->config();
    CacheLayoutConfig lc{dtype, c.kv_lora_rank,      c.qk_rope_head_dim,
                         16,    c.num_hidden_layers, c.index_head_dim};
    auto layout = CacheLayout::Create(lc);
    EXPECT_TRUE(layout.ok());
    ASSERT_TRUE(backend_.AllocateCache(*layout, 256).ok());
    backend_.latent_cache()->PoisonWithNaN();
    blocks_ = std::make_unique<BlockPool>(256);
    *pool_out = blocks_.get();
  }

  // Reserves blocks in reverse order, so the table is not the identity mapping.
  BlockTable MakeTable(BlockPool& pool, int64_t tokens) {
    BlockTable scratch(16), table(16);
    EXPECT_TRUE(scratch.Append(tokens, pool).ok());
    EXPECT_TRUE(table.Append(tokens, pool).ok());
    EXPECT_TRUE(scratch.Release(pool).ok());
    return table;
  }

  // All-position logits of `prompt` prefilled in chunks of `chunk_size` into a fresh cache
  // of `dtype` (fewer rows when a step fails, which the caller's size check catches).
  std::vector<float> ChunkedPrefill(const std::vector<int32_t>& prompt, int chunk_size,
                                    CacheDType dtype) {
    const int64_t T = prompt.size();
    BlockPool* bp;
    ResetCache(&bp, dtype);
    BlockTable table = MakeTable(*bp, T);
    std::vector<float> all;
    for (int64_t start = 0; start < T; start += chunk_size) {
      const int64_t m = std::min<int64_t>(chunk_size, T - start);
      SequenceChunk c{std::span<const int32_t>(prompt.data() + start, m), start, &table, true};
      auto logits = model_->ForwardToHost({&c, 1});
      EXPECT_TRUE(logits.ok()) << logits.status();
      if (!logits.ok()) break;
      all.insert(all.end(), logits->begin(), logits->end());
    }
    return all;
  }

  // Whole prefill then greedy decode, step by step.
  void CheckPrefillThenDecode() {
    for (const Golden& g : goldens_) {
      BlockPool* bp;
      ResetCache(&bp);
      const int64_t T = g.prompt.size(), G = g.greedy.size();
      BlockTable table = MakeTable(*bp, T + G);
      SequenceChunk chunk{g.prompt, 0, &table, true};
      auto logits = model_->ForwardToHost({&chunk, 1});
      ASSERT_TRUE(logits.ok()) << logits.status();
      ExpectRowsClose(logits->data(), g.logits.data(), T, vocab(),
                      "prefill T=" + std::to_string(T));
      // Decode: feed the greedy tokens one at a time and compare each step's logits.
      std::vector<float> last(logits->end() - vocab(), logits->end());
      for (int64_t s = 0; s < G; ++s) {
        ExpectRowsClose(last.data(), g.greedy_logits.data() + s * vocab(), 1, vocab(),
                        "decode step " + std::to_string(s));
        const int32_t argmax = std::max_element(last.begin(), last.end()) - last.begin();
        ASSERT_EQ(argmax, g.greedy[s]) << "greedy step " << s << " T=" << T;
        SequenceChunk step{std::span<const int32_t>(&g.greedy[s], 1), T + s, &table, false};
        auto next = model_->ForwardToHost({&step, 1});
        ASSERT_TRUE(next.ok()) << next.status();
        last = *next;
      }
    }
  }

  // Every prompt prefilled in chunks of 1, 7 and 64 tokens.
  void CheckChunkedPrefill() {
    for (int chunk_size : {1, 7, 64}) {
      for (const Golden& g : goldens_) {
        const int64_t T = g.prompt.size();
        if (chunk_size >= T && T > 1) continue;  // Same as whole prefill.
        const std::vector<float> all = ChunkedPrefill(g.prompt, chunk_size, CacheDType::kBF16);
        ASSERT_EQ(all.size(), static_cast<size_t>(T * vocab()));
        ExpectRowsClose(all.data(), g.logits.data(), T, vocab(),
                        "chunk " + std::to_string(chunk_size) + " T=" + std::to_string(T));
      }
    }
  }

  // All prompts in one step, every other one with all logits.
  void CheckBatchOfAllPrompts() {
    BlockPool* bp;
    ResetCache(&bp);
    std::vector<BlockTable> tables;
    tables.reserve(goldens_.size());
    std::vector<SequenceChunk> chunks;
    for (const Golden& g : goldens_) tables.push_back(MakeTable(*bp, g.prompt.size()));
    for (size_t i = 0; i < goldens_.size(); ++i) {
      chunks.push_back({goldens_[i].prompt, 0, &tables[i], i % 2 == 0});
    }
    auto logits = model_->ForwardToHost(chunks);
    ASSERT_TRUE(logits.ok()) << logits.status();
    int64_t row = 0;
    for (size_t i = 0; i < goldens_.size(); ++i) {
      const Golden& g = goldens_[i];
      const int64_t T = g.prompt.size();
      if (chunks[i].all_logits) {
        ExpectRowsClose(logits->data() + row * vocab(), g.logits.data(), T, vocab(), "batch all");
        row += T;
      } else {
        ExpectRowsClose(logits->data() + row * vocab(), g.logits.data() + (T - 1) * vocab(), 1,
                        vocab(), "batch last");
        row += 1;
      }
    }
  }

  int vocab() const { return model_->config().vocab_size; }

  cpu::CpuBackend backend_{2};
  std::unique_ptr<BlockPool> blocks_;
  std::unique_ptr<DeepseekModel> model_;
  std::vector<Golden> goldens_;
};

// Every test below runs three times per model: with the model's default path (kAuto,
// unless MLA_ATTENTION_PATH says otherwise: chunks choose by cost), and with each path
// forced (attention_path.h), so both must match the goldens on their own. Forced
// decompressed also covers decode steps; tiny-v32 declines it (sparse attention stays
// absorbed), which checks the fall-back.
TEST_P(GoldenTest, PrefillThenDecodeMatchesReference) { CheckPrefillThenDecode(); }
TEST_P(GoldenTest, ChunkedPrefillMatchesReference) { CheckChunkedPrefill(); }
TEST_P(GoldenTest, BatchOfAllPromptsMatchesReference) { CheckBatchOfAllPrompts(); }

template <AttentionPath kPath>
class ForcedPathGoldenTest : public GoldenTest {
 protected:
  void SetUp() override {
    GoldenTest::SetUp();
    if (model_ != nullptr) model_->set_attention_path(kPath);
  }
};
using AbsorbedGoldenTest = ForcedPathGoldenTest<AttentionPath::kAbsorbed>;
using DecompressedGoldenTest = ForcedPathGoldenTest<AttentionPath::kDecompressed>;

TEST_P(AbsorbedGoldenTest, PrefillThenDecodeMatchesReference) { CheckPrefillThenDecode(); }
TEST_P(AbsorbedGoldenTest, ChunkedPrefillMatchesReference) { CheckChunkedPrefill(); }
TEST_P(AbsorbedGoldenTest, BatchOfAllPromptsMatchesReference) { CheckBatchOfAllPrompts(); }
TEST_P(DecompressedGoldenTest, PrefillThenDecodeMatchesReference) { CheckPrefillThenDecode(); }
TEST_P(DecompressedGoldenTest, ChunkedPrefillMatchesReference) { CheckChunkedPrefill(); }
TEST_P(DecompressedGoldenTest, BatchOfAllPromptsMatchesReference) { CheckBatchOfAllPrompts(); }

// A step that mixes the paths: the first prompts prefilled absorbed, then one step with a
// decode row (absorbed) beside a long chunk (decompressed), as the scheduler batches them.
TEST_P(GoldenTest, MixedPathsInOneStepMatchReference) {
  const Golden& a = goldens_.front();  // the shortest prompt: decodes
  const Golden& b = goldens_.back();   // the longest: its second half is one chunk
  const int64_t ta = a.prompt.size(), tb = b.prompt.size(), half = tb / 2;
  ASSERT_GE(a.greedy.size(), 2u);
  BlockPool* bp;
  ResetCache(&bp);
  BlockTable table_a = MakeTable(*bp, ta + 1), table_b = MakeTable(*bp, tb);
  model_->set_attention_path(AttentionPath::kAbsorbed);
  std::vector<SequenceChunk> first = {
      {a.prompt, 0, &table_a, false},
      {std::span<const int32_t>(b.prompt.data(), half), 0, &table_b, false}};
  ASSERT_TRUE(model_->ForwardToHost(first).ok());
  // kAuto would pick by cost; this step must mix, so the chunk's choice is made here.
  model_->set_attention_path(AttentionPath::kAuto);
  const ModelConfig& c = model_->config();
  const bool long_chunk_decompresses = PreferDecompressed(c, tb - half, half);
  const bool decode_decompresses = PreferDecompressed(c, 1, ta);
  EXPECT_TRUE(c.has_indexer() || long_chunk_decompresses) << "chunk of " << tb - half;
  EXPECT_FALSE(decode_decompresses);
  std::vector<SequenceChunk> second = {
      {std::span<const int32_t>(&a.greedy[0], 1), ta, &table_a, false},
      {std::span<const int32_t>(b.prompt.data() + half, tb - half), half, &table_b, true}};
  auto logits = model_->ForwardToHost(second);
  ASSERT_TRUE(logits.ok()) << logits.status();
  // Feeding greedy token 0 gives the logits of greedy step 1.
  ExpectRowsClose(logits->data(), a.greedy_logits.data() + vocab(), 1, vocab(),
                  "mixed: decode row");
  ExpectRowsClose(logits->data() + vocab(), b.logits.data() + half * vocab(), tb - half, vocab(),
                  "mixed: chunk");
}

// Only for models whose router margins exceed the bf16 cache's rounding (see the top).
class Fp32GoldenTest : public GoldenTest {};

TEST_P(Fp32GoldenTest, PlainFp32ReferenceWithinCacheRounding) {
  for (const Golden& g : LoadGoldens(GetParam() + ".safetensors")) {
    BlockPool* bp;
    ResetCache(&bp);
    BlockTable table = MakeTable(*bp, g.prompt.size());
    SequenceChunk chunk{g.prompt, 0, &table, true};
    auto logits = model_->ForwardToHost({&chunk, 1});
    ASSERT_TRUE(logits.ok()) << logits.status();
    ExpectRowsClose(logits->data(), g.logits.data(), g.prompt.size(), vocab(), "fp32 ref",
                    kFp32Ref);
  }
}

// ---- FP8 latent cache --------------------------------------------------------------

// The engine with an fp8 cache against the simulation. Bounds, and why:
// - fp8 logits vs the simulation's: both quantize the same latent with the same fp32
//   scale arithmetic; the simulation's latent comes from a float64 forward, so a value
//   within ~1e-7 of an e4m3 rounding boundary could land one code (2^-3 of the value)
//   apart. Measured worst rows over both models: 1 - cosine 5e-8, max-abs 1.8e-4 of the
//   row's logit range. We require 1 - cosine <= 1e-5 and max-abs <= 5e-3 of the range;
//   the fp8 drift itself (bf16 cache vs fp8 cache) is 10-100x that.
// - the engine's drift fp8 vs bf16 (both its own caches) against the simulation's drift
//   fp8 vs bf16 (in the file's metadata): median and p90 within 1.25x + 0.005 nats, max
//   within 1.5x + 0.05, argmax agreement within 2 points below; and at least a quarter of
//   the simulation's median and p90, so that a cache that silently stayed bf16 fails.
class Fp8GoldenTest : public GoldenTest {};

TEST_P(Fp8GoldenTest, Fp8CacheMatchesTheSimulationAndItsDrift) {
  auto f = SafetensorsFile::Open(std::string(MLA_TEST_DATA_DIR) + "/goldens/" + GetParam() +
                                 ".fp8-kv-sim.safetensors");
  ASSERT_TRUE(f.ok()) << f.status();
  const std::map<std::string, std::string>& meta = (*f)->metadata();
  const Drift sim{std::stoll(meta.at("tokens")), std::stod(meta.at("median")),
                  std::stod(meta.at("p90")), std::stod(meta.at("max")),
                  std::stod(meta.at("argmax_agreement"))};
  std::vector<std::vector<int32_t>> prompts;
  std::vector<std::vector<float>> bf16, fp8;
  for (int i = 0; (*f)->Contains("p" + std::to_string(i) + ".prompt"); ++i) {
    const std::string p = "p" + std::to_string(i);
    prompts.push_back(ReadI32(**f, p + ".prompt"));
    const std::vector<float> want = ReadF32(**f, p + ".fp8_logits");
    for (const CacheDType dtype : {CacheDType::kBF16, CacheDType::kFp8E4M3}) {
      BlockPool* bp;
      ResetCache(&bp, dtype);
      BlockTable table = MakeTable(*bp, prompts.back().size());
      SequenceChunk chunk{prompts.back(), 0, &table, true};
      auto logits = model_->ForwardToHost({&chunk, 1});
      ASSERT_TRUE(logits.ok()) << logits.status();
      (dtype == CacheDType::kBF16 ? bf16 : fp8).push_back(*logits);
    }
    ExpectRowsClose(fp8.back().data(), want.data(), prompts.back().size(), vocab(), "fp8 " + p,
                    {1.0 - 1e-5, 5e-3});
  }
  const Drift got = MeasureDrift(prompts, bf16, fp8, vocab());
  std::printf(
      "%s: fp8 vs bf16 cache over %lld prompt tokens: |delta logprob| median %.4f "
      "p90 %.4f max %.4f, argmax agreement %.4f (simulation: %.4f %.4f %.4f %.4f)\n",
      GetParam().c_str(), static_cast<long long>(got.tokens), got.median, got.p90, got.max,
      got.argmax_agreement, sim.median, sim.p90, sim.max, sim.argmax_agreement);
  ExpectDriftWithin(got, sim, GetParam() + " against the simulation");
}

// Chunked prefill over an fp8 cache computes what whole prefill does: every token is
// quantized on its own when written, so chunking changes only the order of fp32 sums
// (measured: 1 - cosine 5e-13 on tiny-v2-lite; the bf16 tolerance applies). Only for the
// model with robust router margins: on tiny-v3 the summation order moves a latent by
// ~1e-7 in places (as it does with a bf16 cache, within 1e-7 in cosine), which can move an
// e4m3 code by 2^-3 of its value where bf16 moves 2^-8; from there a 2e-4 router margin
// flips an expert and the rows after it drift apart (1 - cosine 3e-2 by row 150).
class Fp8RobustRouterTest : public GoldenTest {};

TEST_P(Fp8RobustRouterTest, Fp8ChunkedPrefillMatchesWholePrefill) {
  const Golden& g = goldens_.back();  // 150 tokens: crosses blocks of 16
  const int64_t T = g.prompt.size();
  auto run = [&](int chunk_size) {
    return ChunkedPrefill(g.prompt, chunk_size, CacheDType::kFp8E4M3);
  };
  model_->set_attention_path(AttentionPath::kAbsorbed);
  const std::vector<float> whole = run(static_cast<int>(T));
  ASSERT_EQ(whole.size(), static_cast<size_t>(T * vocab()));
  for (int chunk_size : {1, 7, 64}) {
    ExpectRowsClose(run(chunk_size).data(), whole.data(), T, vocab(),
                    "fp8 chunk " + std::to_string(chunk_size));
    // The decompressed path reads the same fp8 rows: again only the order of sums moves.
    model_->set_attention_path(AttentionPath::kDecompressed);
    ExpectRowsClose(run(chunk_size).data(), whole.data(), T, vocab(),
                    "fp8 decompressed chunk " + std::to_string(chunk_size));
    model_->set_attention_path(AttentionPath::kAbsorbed);
  }
}

// The CPU's opt-in bf16 kernels (x rounded to bf16 in every GEMM, as the CUDA backend's
// cuBLASLt GEMMs do) against the bf16-kv goldens, whole prompts and 7-token chunks: the
// measurement behind Bf16RowAgreement's bounds (golden_util.h), which the GPU tests apply
// to the device, and a check that they still hold.
class Bf16ActivationTest : public GoldenTest {};

TEST_P(Bf16ActivationTest, RoundedActivationsStayWithinTheDeviceBounds) {
  int ran = 0;
  for (const cpu::CpuIsa isa : {cpu::CpuIsa::kAvx512Bf16, cpu::CpuIsa::kAmxBf16}) {
    const std::string name(cpu::CpuIsaName(isa));
    if (!cpu::IsaSupported(isa)) {
      std::printf("[ %s ] %s: skipped for lack of the instruction set (%s)\n", GetParam().c_str(),
                  name.c_str(), std::string(cpu::CpuIsaFeatures(isa)).c_str());
      continue;
    }
    cpu::ScopedIsaOverride scoped(isa);
    Bf16RowAgreement agreement;
    for (const int chunk : {0, 7}) {
      for (const Golden& g : goldens_) {
        const int size = chunk == 0 ? static_cast<int>(g.prompt.size()) : chunk;
        const std::vector<float> all = ChunkedPrefill(g.prompt, size, CacheDType::kBF16);
        agreement.Add(all, g.logits, vocab());
      }
    }
    std::printf("[ %s ] %s activations vs goldens: %s\n", GetParam().c_str(), name.c_str(),
                agreement.Summary().c_str());
    agreement.ExpectWithinBounds(name);
    ++ran;
  }
  if (ran == 0) GTEST_SKIP() << "CPU lacks avx512_bf16 and amx_bf16";
}

std::string ModelParamName(const ::testing::TestParamInfo<std::string>& info) {
  std::string n = info.param;
  std::replace(n.begin(), n.end(), '-', '_');
  return n;
}

INSTANTIATE_TEST_SUITE_P(TinyModels, GoldenTest,
                         ::testing::Values("tiny-v2-lite", "tiny-v3", "tiny-v32"), ModelParamName);

INSTANTIATE_TEST_SUITE_P(TinyModels, AbsorbedGoldenTest,
                         ::testing::Values("tiny-v2-lite", "tiny-v3", "tiny-v32"), ModelParamName);

INSTANTIATE_TEST_SUITE_P(TinyModels, DecompressedGoldenTest,
                         ::testing::Values("tiny-v2-lite", "tiny-v3", "tiny-v32"), ModelParamName);

INSTANTIATE_TEST_SUITE_P(RobustRouter, Fp32GoldenTest, ::testing::Values("tiny-v2-lite"),
                         [](const auto&) { return std::string("tiny_v2_lite"); });

INSTANTIATE_TEST_SUITE_P(RobustRouter, Fp8RobustRouterTest, ::testing::Values("tiny-v2-lite"),
                         [](const auto&) { return std::string("tiny_v2_lite"); });

INSTANTIATE_TEST_SUITE_P(TinyModels, Fp8GoldenTest, ::testing::Values("tiny-v2-lite", "tiny-v3"),
                         ModelParamName);

INSTANTIATE_TEST_SUITE_P(TinyModels, Bf16ActivationTest,
                         ::testing::Values("tiny-v2-lite", "tiny-v3"), ModelParamName);

}  // namespace
}  // namespace mla
