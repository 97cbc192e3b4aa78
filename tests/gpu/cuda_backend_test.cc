// CudaBackend against the CPU backend and the transformers goldens: the attention
// operation on random paged caches, and the whole forward pass of both tiny models (all
// positions, chunked prefill, batches). Skips without a usable CUDA device. Built twice:
// against the CUDA libraries (cuda_backend_test, label gpu) and against the CPU emulator
// and its stand-ins for cuBLAS and cuBLASLt (tests/engine/cuda_emu:
// cuda_backend_emulated_test, every CI run).
//
// Tolerance, derived from a measurement rather than guessed: the device GEMMs round their
// fp32 inputs to bf16 (cuBLASLt bf16 × bf16 with fp32 accumulation), as the CPU's opt-in
// avx512_bf16 kernels do. Measured on the CPU with that rounding (golden_test.cc,
// Bf16ActivationTest), most rows stay within 1 − cosine 1e-4 of the goldens, but on
// tiny-v3, whose router has margins of 2e-4, a few tokens choose another expert and later
// rows drift (up to 0.27). Whole-model comparisons against the goldens or the CPU use those
// bounds (Bf16RowAgreement, golden_util.h): at most 10% of rows above 1e-2 and 5% of
// greedy tokens changed where the reference's top-2 margin exceeds 0.05, and a median row
// within 1e-4. A wrong head offset, RoPE pairing or causal limit moves every row by tens
// of percent.
//
// Chunking, batching and block placement change only summation order and cuBLASLt's choice
// of algorithm (per m), which bf16 rounding can amplify by an ulp: 1 − cosine ≤ 1e-3.
#include "engine/backend/cuda/cuda_backend.h"

#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <cstring>
#include <numeric>
#include <random>
#include <span>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "engine/backend/cpu/cpu_backend.h"
#include "engine/backend/cuda/device_buffer.h"
#include "engine/backend/cuda/kernels/sampling.h"
#include "engine/common/bf16.h"
#include "engine/kv_cache/block_pool.h"
#include "engine/kv_cache/cache_row.h"
#include "engine/model/deepseek_model.h"
#include "engine/sampling/rng.h"
#include "engine/sampling/sampler.h"
#include "engine/sampling/sampling_params.h"
#include "engine/sampling/top_k.h"
#include "tests/engine/model/golden_util.h"
#include "tests/gpu/cuda_backend_test_util.h"
#include "tests/gpu/cuda_test_util.h"

namespace mla {
namespace {

using cuda::CudaBackend;
using cuda::DeviceBuffer;
using cuda::kDeviceTopKMax;
using cuda::LaunchTopK;
using cuda::TopKParams;
using testing::AttnCase;
using testing::MakeCuda;
using testing::MakeSteps;
using testing::RandomVector;
using testing::StatusIsOk;

struct RowStats {
  std::vector<double> one_minus_cosine;
  double Median() {
    if (one_minus_cosine.empty()) return 0.0;
    std::vector<double> v = one_minus_cosine;
    std::nth_element(v.begin(), v.begin() + v.size() / 2, v.end());
    return v[v.size() / 2];
  }
};

// 1 − cosine of every row; fails when any row is beyond `max_one_minus_cosine`.
void CompareRows(const std::vector<float>& got, const std::vector<float>& want, int vocab,
                 double max_one_minus_cosine, const std::string& what, RowStats* stats) {
  ASSERT_EQ(got.size(), want.size()) << what;
  int64_t over = 0, first_over = -1, worst_row = -1;
  double worst = 0;
  for (size_t r = 0; r * vocab < got.size(); ++r) {
    const double d = OneMinusCosine(got.data() + r * vocab, want.data() + r * vocab, vocab);
    ASSERT_TRUE(std::isfinite(d)) << what << " row " << r;
    if (d > max_one_minus_cosine) {
      // Every row is measured before failing: how many rows, the first and the worst tell
      // a drift that starts at one token (an expert chosen differently, whose effect the
      // later rows inherit through attention) from an error in every row.
      ++over;
      if (first_over < 0) first_over = static_cast<int64_t>(r);
      if (d > worst) {
        worst = d;
        worst_row = static_cast<int64_t>(r);
      }
    }
    if (stats != nullptr) stats->one_minus_cosine.push_back(d);
  }
  EXPECT_EQ(over, 0) << what << ": " << over << " of " << got.size() / vocab
                     << " rows above 1 - cosine " << max_one_minus_cosine << ", the first row "
                     << first_over << ", the worst row " << worst_row << " (" << worst << ")";
}

// --- The attention operation on random data --------------------------------------------

// Runs one WriteCache + MlaAttention step on `be` and returns out and lse.
void RunAttention(Backend& be, const AttnCase& c, const StepBatch& step,
                  const std::vector<float>& latent, const std::vector<float>& k_pe,
                  const std::vector<float>& q, std::vector<float>* out, std::vector<float>* lse) {
  const int64_t t = step.num_tokens, width = c.latent + c.rope;
  be.BeginStep(step);
  const Tensor lat = be.Activation(0, t, c.latent), kpe = be.Activation(1, t, c.rope);
  const Tensor qt = be.Activation(2, t, c.heads * width);
  const Tensor o = be.Activation(3, t, int64_t{c.heads} * c.latent);
  const Tensor l = be.Activation(4, t, c.heads);
  be.Upload(latent, lat, {"up"});
  be.Upload(k_pe, kpe, {"up"});
  be.Upload(q, qt, {"up"});
  be.WriteCache(0, lat, kpe, {"write"});
  be.MlaAttention(0, c.heads, 0.125f, qt, o, l, {"attn"});
  out->resize(static_cast<size_t>(o.rows * o.cols));
  lse->resize(static_cast<size_t>(l.rows * l.cols));
  be.Download(o, *out, {"down"});
  be.Download(l, *lse, {"down"});
  ASSERT_TRUE(StatusIsOk(be.TakeError()));
}

// Which part of a cache row byte `in_row` lies in: the latent (bf16 values or e4m3 codes),
// the FP8 scales, or k_pe.
const char* CacheRowPart(const CacheLayout& layout, int64_t in_row) {
  const int64_t lat = layout.latent_dim();
  if (layout.dtype() != CacheDType::kFp8E4M3) return in_row < 2 * lat ? "latent" : "k_pe";
  return in_row < lat ? "latent" : in_row < lat + 4 * Fp8ScaleGroups(lat) ? "scales" : "k_pe";
}

// Every cache block byte for byte: the device writes rows exactly as the host encodes them
// (bf16 rounding; FP8 scales and e4m3 codes), and both keep the NaN poison elsewhere.
void ExpectSameCacheBytes(Backend& cpu_be, Backend& gpu, int num_blocks) {
  const size_t bytes = static_cast<size_t>(cpu_be.cache_layout().bytes_per_block());
  std::vector<uint8_t> want(bytes), got(bytes);
  for (int32_t b = 0; b < num_blocks; ++b) {
    ASSERT_TRUE(cpu_be.ReadCacheBlock(b, want).ok());
    ASSERT_TRUE(gpu.ReadCacheBlock(b, got).ok());
    if (got == want) continue;
    // Where, not the whole block: the row, the byte and which part of the row it is in.
    const int64_t row_bytes = cpu_be.cache_layout().bytes_per_token_per_layer();
    size_t first = 0, differing = 0;
    for (size_t i = bytes; i-- > 0;) {
      if (got[i] != want[i]) {
        first = i;
        ++differing;
      }
    }
    const int64_t in_row = static_cast<int64_t>(first) % row_bytes;
    FAIL() << "cache block " << b << ": " << differing << " of " << bytes
           << " bytes differ; the first at row " << static_cast<int64_t>(first) / row_bytes
           << ", byte " << in_row << " of " << row_bytes << " ("
           << CacheRowPart(cpu_be.cache_layout(), in_row) << "): got 0x" << std::hex
           << int{got[first]} << ", want 0x" << int{want[first]};
  }
}

// The device's cache write against the host's encoding, row by row, with what a
// mismatch was made from: FP8 rows at several widths (groups of 128 and a partial last
// group) and magnitudes, bf16 rows as the control.
TEST(CudaBackendAttention, CacheWriteIsTheHostsEncoding) {
  MLA_SKIP_WITHOUT_CUDA();
  std::mt19937 rng(5);
  for (const CacheDType dtype : {CacheDType::kBF16, CacheDType::kFp8E4M3})
    for (const int latent : {64, 96, 200, 512}) {
      const int rope = latent == 512 ? 64 : 16, block_size = 16, num_blocks = 8;
      SCOPED_TRACE(::testing::Message() << CacheDTypeName(dtype) << " L " << latent);
      auto layout = CacheLayout::Create({dtype, latent, rope, block_size, 1});
      ASSERT_TRUE(layout.ok());
      cpu::CpuBackend cpu_be(2);
      std::unique_ptr<CudaBackend> gpu = MakeCuda();
      ASSERT_NE(gpu, nullptr);
      ASSERT_TRUE(cpu_be.AllocateCache(*layout, num_blocks).ok());
      ASSERT_TRUE(gpu->AllocateCache(*layout, num_blocks).ok());
      cpu_be.latent_cache()->PoisonWithNaN();
      ASSERT_TRUE(gpu->PoisonCacheWithNaN().ok());
      const int t = 37;
      const AttnCase c{1, latent, rope, block_size, {0}, {t}};
      const StepBatch step = MakeSteps(c, num_blocks, rng)[1];
      ASSERT_EQ(step.num_tokens, t);
      std::vector<float> lat = RandomVector(static_cast<size_t>(t) * latent, rng);
      const std::vector<float> k_pe = RandomVector(static_cast<size_t>(t) * rope, rng);
      // Rows of very different sizes, and a few exact ties and zeros.
      for (int i = 0; i < t; ++i) {
        const float m = i % 3 == 0 ? 1e-3f : i % 3 == 1 ? 1.0f : 300.0f;
        for (int d = 0; d < latent; ++d) lat[static_cast<size_t>(i) * latent + d] *= m;
      }
      lat[5] = 0.0f;
      lat[static_cast<size_t>(latent) + 3] = lat[static_cast<size_t>(latent) + 4];
      std::vector<std::vector<uint8_t>> blocks_cpu(num_blocks), blocks_gpu(num_blocks);
      for (Backend* be : {static_cast<Backend*>(&cpu_be), static_cast<Backend*>(gpu.get())}) {
        be->BeginStep(step);
        const Tensor lt = be->Activation(0, t, latent), kt = be->Activation(1, t, rope);
        be->Upload(lat, lt, {"up"});
        be->Upload(k_pe, kt, {"up"});
        be->WriteCache(0, lt, kt, {"write"});
        ASSERT_TRUE(StatusIsOk(be->TakeError()));
        auto& blocks = be == &cpu_be ? blocks_cpu : blocks_gpu;
        for (int b = 0; b < num_blocks; ++b) {
          blocks[b].resize(static_cast<size_t>(layout->bytes_per_block()));
          ASSERT_TRUE(be->ReadCacheBlock(b, blocks[b]).ok());
        }
      }
      const int64_t row_bytes = layout->bytes_per_token_per_layer();
      int reported = 0, bad_rows = 0;
      for (int i = 0; i < t; ++i) {
        const int64_t slot = step.slots[static_cast<size_t>(i)];
        const uint8_t* want = blocks_cpu[slot / block_size].data() + slot % block_size * row_bytes;
        const uint8_t* got = blocks_gpu[slot / block_size].data() + slot % block_size * row_bytes;
        if (std::equal(got, got + row_bytes, want)) continue;
        ++bad_rows;
        for (int64_t k = 0; k < row_bytes && reported < 12; ++k) {
          if (got[k] == want[k]) continue;
          ++reported;
          std::string what = CacheRowPart(*layout, k);
          if (dtype == CacheDType::kFp8E4M3 && k < latent) {  // A code: what it encodes.
            const float x = lat[static_cast<size_t>(i) * latent + k];
            float scale;
            std::memcpy(&scale, want + latent + 4 * (k / kFp8ScaleGroup), 4);
            what = absl::StrCat("code of x = ", x, ", x / scale = ", x / scale, ": got ",
                                Fp8E4M3ToFloat(got[k]), ", want ", Fp8E4M3ToFloat(want[k]));
          }
          ADD_FAILURE() << "token " << i << " byte " << k << " of " << row_bytes << " (" << what
                        << "): got 0x" << std::hex << int{got[k]} << ", want 0x" << int{want[k]};
        }
      }
      EXPECT_EQ(bad_rows, 0) << bad_rows << " of " << t << " rows differ";
    }
}

TEST(CudaBackendAttention, MatchesCpuOnShuffledPoisonedCaches) {
  MLA_SKIP_WITHOUT_CUDA();
  const std::vector<AttnCase> cases = {
      {3, 64, 16, 16, {0, 16, 33}, {1, 1, 1}},  // Decode at block boundaries.
      {2, 96, 32, 8, {0, 7, 20}, {9, 1, 17}},   // Prefill chunks over cached prefixes.
      {16, 512, 64, 64, {0, 130}, {70, 1}},     // DeepSeek shapes.
      {1, 32, 2, 4, {5}, {1}},                  // Tiny blocks, one head.
      // Decode only with 64-token blocks: the split-KV decode kernel's step, lengths 1, 64,
      // 65 and 201 (block boundaries, a sequence long enough to be split).
      {16, 512, 64, 64, {0, 63, 64, 200}, {1, 1, 1, 1}},
      {128, 512, 64, 64, {0, 130}, {1, 1}},
  };
  std::mt19937 rng(7);
  for (const CacheDType dtype : {CacheDType::kBF16, CacheDType::kFp8E4M3})
    for (const AttnCase& c : cases) {
      SCOPED_TRACE(::testing::Message()
                   << CacheDTypeName(dtype) << " heads " << c.heads << " L " << c.latent);
      const int num_blocks = 96;
      auto layout = CacheLayout::Create({dtype, c.latent, c.rope, c.block_size, 1});
      ASSERT_TRUE(layout.ok());
      cpu::CpuBackend cpu_be(2);
      std::unique_ptr<CudaBackend> gpu = MakeCuda(), generic = MakeCuda();
      ASSERT_NE(gpu, nullptr);
      ASSERT_NE(generic, nullptr);
      generic->set_split_kv_decode(false);
      ASSERT_TRUE(generic->AllocateCache(*layout, num_blocks).ok());
      ASSERT_TRUE(generic->PoisonCacheWithNaN().ok());
      ASSERT_TRUE(cpu_be.AllocateCache(*layout, num_blocks).ok());
      ASSERT_TRUE(gpu->AllocateCache(*layout, num_blocks).ok());
      cpu_be.latent_cache()->PoisonWithNaN();
      ASSERT_TRUE(gpu->PoisonCacheWithNaN().ok());
      const std::vector<StepBatch> steps = MakeSteps(c, num_blocks, rng);
      for (size_t phase = 0; phase < steps.size(); ++phase) {
        const StepBatch& step = steps[phase];
        if (step.num_tokens == 0) continue;
        const int64_t t = step.num_tokens;
        // Decode steps with 64-token blocks take the split-KV kernel, which reads q and the
        // keys in bf16 (tensor cores) and stores out in bf16.
        const bool split =
            phase == 1 && c.block_size == 64 &&
            std::all_of(c.new_rows.begin(), c.new_rows.end(), [](int r) { return r == 1; });
        const std::vector<float> latent = RandomVector(t * c.latent, rng);
        const std::vector<float> k_pe = RandomVector(t * c.rope, rng);
        std::vector<float> q = RandomVector(t * c.heads * (c.latent + c.rope), rng);
        // q made bf16-exact there, so that its rounding, which moves a score by
        // 0.125 · √576 · 2^-9 · E|q·k| ≈ 5e-3 (σ) at DeepSeek's widths, is not measured: the
        // CPU then sees what the kernel sees.
        if (split) {
          for (float& x : q) x = Bf16ToFloat(FloatToBf16(x));
        }
        std::vector<float> out_cpu, lse_cpu, out_gpu, lse_gpu, out_gen, lse_gen;
        RunAttention(cpu_be, c, step, latent, k_pe, q, &out_cpu, &lse_cpu);
        RunAttention(*gpu, c, step, latent, k_pe, q, &out_gpu, &lse_gpu);
        RunAttention(*generic, c, step, latent, k_pe, q, &out_gen, &lse_gen);
        ExpectSameCacheBytes(cpu_be, *gpu, num_blocks);
        // The generic kernel is fp32 throughout: summation order only. The split-KV kernel,
        // given bf16 q and bf16 cache rows, sums exact products in fp32 and rounds out to
        // bf16 (2^-9 of its size): 1e-2 absolute + relative. From an FP8 cache it rounds
        // each dequantized key (e4m3 code × fp32 scale) to bf16 where the CPU keeps fp32,
        // which moves a score by about 5e-3 (σ, as for q above) and a single key's lse by
        // as much; the worst of 256 lse values is ~3σ: 3e-2. A wrong key, head or causal
        // limit moves outputs by O(1).
        const float tol = !split ? 1e-4f : dtype == CacheDType::kFp8E4M3 ? 3e-2f : 1e-2f;
        for (size_t i = 0; i < out_cpu.size(); ++i) {
          ASSERT_TRUE(std::isfinite(out_gpu[i])) << "out " << i;
          ASSERT_NEAR(out_gpu[i], out_cpu[i], tol + tol * std::fabs(out_cpu[i])) << "out " << i;
          ASSERT_NEAR(out_gen[i], out_cpu[i], 1e-4f + 1e-4f * std::fabs(out_cpu[i])) << "out " << i;
        }
        for (size_t i = 0; i < lse_cpu.size(); ++i) {
          ASSERT_NEAR(lse_gpu[i], lse_cpu[i], tol + 1e-5f * std::fabs(lse_cpu[i])) << "lse " << i;
          ASSERT_NEAR(lse_gen[i], lse_cpu[i], 1e-4f + 1e-5f * std::fabs(lse_cpu[i])) << "lse " << i;
        }
      }
    }
}

// Writes the step's rows into the cache, then runs DecompressedAttention on the marked
// sequences; out starts as a sentinel so that rows of unmarked sequences show any write.
constexpr float kUntouched = 12345.0f;
std::vector<float> RunDecompressed(Backend& be, const AttnCase& c, int nope, int v,
                                   const Tensor& kv_b, const StepBatch& step,
                                   const std::vector<float>& latent, const std::vector<float>& k_pe,
                                   const std::vector<float>& q) {
  const int64_t t = step.num_tokens;
  be.BeginStep(step);
  const Tensor lat = be.Activation(0, t, c.latent), kpe = be.Activation(1, t, c.rope);
  const Tensor qt = be.Activation(2, t, int64_t{c.heads} * (nope + c.rope));
  const Tensor o = be.Activation(3, t, int64_t{c.heads} * v);
  be.Upload(latent, lat, {"up"});
  be.Upload(k_pe, kpe, {"up"});
  be.Upload(q, qt, {"up"});
  be.Fill(o, kUntouched, {"fill"});
  be.WriteCache(0, lat, kpe, {"write"});
  be.DecompressedAttention(0, c.heads, 0.125f, qt, kv_b, o, {"decompressed"});
  std::vector<float> out(static_cast<size_t>(o.rows * o.cols));
  be.Download(o, out, {"down"});
  EXPECT_TRUE(StatusIsOk(be.TakeError()));
  return out;
}

// MlaAttention in a step with marked sequences: their rows stay as they were, the others
// are computed. Runs after RunDecompressed has written the step's cache rows.
void ExpectAbsorbedSkipsMarked(Backend& be, const AttnCase& c, const StepBatch& step,
                               std::mt19937& rng) {
  const int64_t t = step.num_tokens, width = c.latent + c.rope;
  be.BeginStep(step);
  const Tensor qt = be.Activation(2, t, c.heads * width);
  const Tensor o = be.Activation(3, t, int64_t{c.heads} * c.latent);
  const Tensor l = be.Activation(4, t, c.heads);
  be.Upload(RandomVector(static_cast<size_t>(t * c.heads * width), rng), qt, {"up"});
  be.Fill(o, kUntouched, {"fill"});
  be.MlaAttention(0, c.heads, 0.125f, qt, o, l, {"attn"});
  std::vector<float> out(static_cast<size_t>(o.rows * o.cols));
  be.Download(o, out, {"down"});
  ASSERT_TRUE(StatusIsOk(be.TakeError()));
  for (int64_t s = 0; s < step.batch; ++s) {
    const bool marked = step.decompress[static_cast<size_t>(s)] != 0;
    for (int32_t r = step.cu_seqlens_q[s]; r < step.cu_seqlens_q[s + 1]; ++r) {
      for (int64_t i = 0; i < o.cols; ++i) {
        const float x = out[static_cast<size_t>(r * o.cols + i)];
        if (marked) {
          ASSERT_EQ(x, kUntouched) << "marked row " << r;
        } else {
          ASSERT_TRUE(std::isfinite(x) && x != kUntouched) << "row " << r << " col " << i;
        }
      }
    }
  }
}

// Against the CPU backend's decompressed attention (itself tested against a float64
// reference), with chunk budgets that cut the keys into many chunks, at and off block
// boundaries, and one that takes every key at once.
// What the device's decompressed path computes on from an FP8 cache row of these latents:
// each token's row quantized as the cache stores it (EncodeCacheRow), dequantized (code ×
// its group's scale, in fp32) and rounded to bf16 for the up-projection GEMM.
std::vector<float> Fp8LatentsAsBf16(const std::vector<float>& latent, int latent_dim,
                                    int rope_dim) {
  std::vector<float> out(latent.size());
  std::vector<uint8_t> row(
      static_cast<size_t>(CacheRowBytes(CacheDType::kFp8E4M3, latent_dim, rope_dim)));
  const std::vector<float> zeros(static_cast<size_t>(rope_dim), 0.0f);
  std::vector<float> k_pe(static_cast<size_t>(rope_dim));
  for (size_t first = 0; first < latent.size(); first += static_cast<size_t>(latent_dim)) {
    EncodeCacheRow(CacheDType::kFp8E4M3, latent_dim, rope_dim, latent.data() + first, zeros.data(),
                   row.data());
    DecodeCacheRow(CacheDType::kFp8E4M3, latent_dim, rope_dim, row.data(), out.data() + first,
                   k_pe.data());
  }
  for (float& x : out) x = Bf16ToFloat(FloatToBf16(x));
  return out;
}

TEST(CudaBackendAttention, DecompressedMatchesCpu) {
  MLA_SKIP_WITHOUT_CUDA();
  struct Case {
    AttnCase shape;
    int nope, v;
  };
  const std::vector<Case> cases = {
      {{2, 96, 32, 8, {0, 7, 20, 40}, {9, 1, 17, 33}}, 32, 48},
      {{3, 64, 16, 16, {0, 130}, {70, 5}}, 24, 40},
      {{16, 512, 64, 64, {0, 200}, {130, 64}}, 128, 128},  // DeepSeek's head shapes.
      {{1, 32, 2, 4, {5}, {1}}, 8, 8},                     // One head, one row.
  };
  std::mt19937 rng(11);
  for (const CacheDType dtype : {CacheDType::kBF16, CacheDType::kFp8E4M3})
    for (const Case& cs : cases) {
      const AttnCase& c = cs.shape;
      const int64_t per_key = 4 * (int64_t{c.heads} * (cs.nope + cs.v) + c.latent);
      for (const int64_t chunk_keys : {int64_t{7}, int64_t{64}, int64_t{1} << 20}) {
        SCOPED_TRACE(::testing::Message() << CacheDTypeName(dtype) << " heads " << c.heads << " L "
                                          << c.latent << " chunk " << chunk_keys);
        const int num_blocks = 128;
        auto layout = CacheLayout::Create({dtype, c.latent, c.rope, c.block_size, 1});
        ASSERT_TRUE(layout.ok());
        // The CPU reference keeps a bf16 cache in either case: for an FP8 device cache it is
        // given the values the device's up-projection reads (e4m3 code × scale rounded to
        // bf16, below), so that both sides compute on the same numbers.
        auto cpu_layout =
            CacheLayout::Create({CacheDType::kBF16, c.latent, c.rope, c.block_size, 1});
        ASSERT_TRUE(cpu_layout.ok());
        cpu::CpuBackend cpu_be(2);
        std::unique_ptr<CudaBackend> gpu = MakeCuda();
        ASSERT_NE(gpu, nullptr);
        gpu->set_decompress_chunk_bytes(per_key * chunk_keys);
        ASSERT_TRUE(cpu_be.AllocateCache(*cpu_layout, num_blocks).ok());
        ASSERT_TRUE(gpu->AllocateCache(*layout, num_blocks).ok());
        cpu_be.latent_cache()->PoisonWithNaN();
        ASSERT_TRUE(gpu->PoisonCacheWithNaN().ok());
        Matrix kv_b = Matrix::Allocate(int64_t{c.heads} * (cs.nope + cs.v), c.latent, DType::kBF16);
        const std::vector<float> w = RandomVector(static_cast<size_t>(kv_b.rows * kv_b.cols), rng);
        for (size_t i = 0; i < w.size(); ++i) kv_b.bf16()[i] = FloatToBf16(0.1f * w[i]);
        absl::StatusOr<Tensor> kv_cpu = cpu_be.AddWeight("kv_b", kv_b.View());
        absl::StatusOr<Tensor> kv_gpu = gpu->AddWeight("kv_b", kv_b.View());
        ASSERT_TRUE(kv_cpu.ok() && kv_gpu.ok());
        std::vector<StepBatch> steps = MakeSteps(c, num_blocks, rng);
        for (StepBatch& step : steps) {
          if (step.num_tokens == 0) continue;
          // Every other sequence decompressed: the others' rows must stay as they were.
          step.decompress.assign(static_cast<size_t>(step.batch), 0);
          for (size_t s = 0; s < step.decompress.size(); s += 2) step.decompress[s] = 1;
          const int64_t t = step.num_tokens;
          const std::vector<float> latent = RandomVector(t * c.latent, rng);
          const std::vector<float> k_pe = RandomVector(t * c.rope, rng);
          const std::vector<float> q = RandomVector(t * c.heads * (cs.nope + c.rope), rng);
          const std::vector<float> want = RunDecompressed(
              cpu_be, c, cs.nope, cs.v, *kv_cpu, step,
              dtype == CacheDType::kFp8E4M3 ? Fp8LatentsAsBf16(latent, c.latent, c.rope) : latent,
              k_pe, q);
          const std::vector<float> got =
              RunDecompressed(*gpu, c, cs.nope, cs.v, *kv_gpu, step, latent, k_pe, q);
          ASSERT_EQ(got.size(), want.size());
          ExpectAbsorbedSkipsMarked(*gpu, c, step, rng);
          const int64_t width = int64_t{c.heads} * cs.v;
          for (int64_t s = 0; s < step.batch; ++s) {
            for (int32_t r = step.cu_seqlens_q[s]; r < step.cu_seqlens_q[s + 1]; ++r) {
              for (int64_t i = 0; i < width; ++i) {
                const size_t k = static_cast<size_t>(r * width + i);
                if (step.decompress[static_cast<size_t>(s)] == 0) {
                  ASSERT_EQ(got[k], kUntouched) << "unmarked row " << r;
                  continue;
                }
                // The same bf16 latents and weights on both sides, the up-projection a
                // bf16 × bf16 GEMM with fp32 sums on either: summation order only. (Against
                // the CPU's own FP8 cache, whose dequantized latents are not rounded to
                // bf16, outputs moved by up to 5.6e-2 at DeepSeek's widths: noise of σ ~ 1e-2
                // over ~4·10^5 outputs, which bounded nothing.)
                const float tol = 1e-4f;
                ASSERT_TRUE(std::isfinite(got[k])) << "row " << r << " col " << i;
                ASSERT_NEAR(got[k], want[k], tol + tol * std::fabs(want[k]))
                    << "row " << r << " col " << i;
              }
            }
          }
        }
      }
    }
}

// --- Sampling ---------------------------------------------------------------------------

// Every kind of row against the CPU backend, token for token: greedy rows without
// logprobs take the device argmax (ties, an all-NaN row refused with the host's message);
// top-k rows the device top-k (k of 1, 50 and 256; ties across the k-th place, -0 against
// +0, NaN among the logits; top-p and min-p on top), whose draw must equal the full row's;
// the others the host sampler on downloaded rows (top-p alone, top_k at the vocabulary
// size). Logprobs (greedy, top-k and scored rows) come from the device's statistics and
// candidates: the same top ids, values within 1e-5 (the sums' order differs); rows whose
// max is not finite (all NaN, +inf) go to the host with their own rules. Each row has
// its own seeded generator. Rows with penalties or a logit bias go to the host, which
// adjusts a copy of the row and reports the model's logprobs.
TEST(CudaBackendSampling, MatchesCpuOnEveryKindOfRow) {
  MLA_SKIP_WITHOUT_CUDA();
  const int64_t rows = 17, vocab = 1003;
  std::mt19937 rng(5);
  std::vector<float> logits = RandomVector(static_cast<size_t>(rows * vocab), rng);
  auto row = [&](int r) { return logits.data() + r * vocab; };
  for (int64_t i = 0; i < vocab; ++i) row(2)[i] = std::nanf("");
  row(5)[700] = row(5)[300] = 9.0f;                        // A tie: 300 wins.
  for (int64_t i = 0; i < 400; ++i) row(7)[i * 2] = 3.0f;  // 400 ties across the 256th place.
  for (int64_t i = 0; i < vocab; ++i) row(8)[i] = (i % 3 == 0) ? -0.0f : 0.0f;  // All "equal".
  for (int64_t i = 0; i < vocab; i += 5) row(9)[i] = std::nanf("");
  row(12)[40] = row(12)[900] = INFINITY;
  SamplingParams greedy;
  greedy.temperature = 0.0f;
  SamplingParams k50, k1, k256, top_p, k_vocab;
  k50.temperature = 0.8f;
  k50.top_k = 50;
  k1.temperature = 1.0f;
  k1.top_k = 1;
  k256.temperature = 1.5f;
  k256.top_k = 256;
  k256.top_p = 0.9f;
  k256.min_p = 0.05f;
  top_p.temperature = 0.7f;
  top_p.top_p = 0.8f;
  k_vocab.temperature = 1.0f;
  k_vocab.top_k = static_cast<int32_t>(vocab);
  SamplingParams greedy_penalized = greedy, k50_penalized = k50;
  greedy_penalized.presence_penalty = 1.5f;
  greedy_penalized.logit_bias = {{11, 2.0f}, {600, -100.0f}};
  k50_penalized.repetition_penalty = 1.3f;
  k50_penalized.frequency_penalty = 0.5f;
  TokenHistory history;
  history.SetPrompt(std::vector<int32_t>{3, 11, 600, 999});
  for (int32_t t : {5, 5, 11, 42}) history.AddOutput(t);
  // Row 15's best token is in the output: its presence penalty (8 − 1.5) hands greedy
  // decoding to the second best (7), which is not.
  row(15)[5] = 8.0f;
  row(15)[7] = 7.0f;
  cpu::CpuBackend cpu_be(1);
  std::unique_ptr<CudaBackend> gpu = MakeCuda();
  ASSERT_NE(gpu, nullptr);
  std::vector<std::vector<RowSample>> results;
  for (Backend* be : {static_cast<Backend*>(&cpu_be), static_cast<Backend*>(gpu.get())}) {
    std::vector<Rng> gens;
    for (uint64_t seed = 0; seed < static_cast<uint64_t>(rows); ++seed)
      gens.emplace_back(77 + seed);
    const std::vector<RowSampling> want = {
        {0, &greedy, &gens[0], -1, -1},
        {1, &greedy, &gens[1], -1, 3},
        {2, &greedy, &gens[2], -1, 2},
        {3, &k50, &gens[3], -1, -1},
        {4, nullptr, nullptr, 17, 0},
        {5, &greedy, &gens[5], -1, -1},
        {6, &k1, &gens[6], -1, -1},
        {7, &k256, &gens[7], -1, -1},
        {8, &k50, &gens[8], -1, -1},
        {9, &k50, &gens[9], -1, -1},
        {10, &top_p, &gens[10], -1, -1},
        {11, &k_vocab, &gens[11], -1, -1},
        {12, &greedy, &gens[12], -1, 3},
        {13, &k50, &gens[13], -1, 5},
        {14, nullptr, nullptr, 100, 4},
        {15, &greedy_penalized, &gens[15], -1, 3, &history},
        {16, &k50_penalized, &gens[16], -1, -1, &history},
    };
    const Tensor t = be->Activation(0, rows, vocab);
    be->Upload(logits, t, {"up"});
    results.emplace_back(want.size());
    be->Sample(t, want, results.back(), {"sample"});
    ASSERT_TRUE(StatusIsOk(be->TakeError()));
  }
  const std::vector<RowSample>& cpu = results[0];
  const std::vector<RowSample>& dev = results[1];
  EXPECT_FALSE(dev[2].status.ok());
  EXPECT_EQ(dev[5].token, 300);
  EXPECT_EQ(dev[15].token, 7);
  ASSERT_FALSE(dev[15].logprobs.top.empty());
  EXPECT_EQ(dev[15].logprobs.top[0].token_id, 5);  // The model's logprobs, unpenalized.
  for (size_t i = 0; i < cpu.size(); ++i) {
    SCOPED_TRACE(::testing::Message() << "row " << i);
    EXPECT_EQ(dev[i].status, cpu[i].status);
    EXPECT_EQ(dev[i].token, cpu[i].token);
    ASSERT_EQ(dev[i].has_logprobs, cpu[i].has_logprobs);
    if (!cpu[i].has_logprobs) continue;
    EXPECT_EQ(dev[i].logprobs.token_id, cpu[i].logprobs.token_id);
    const auto near = [](float a, float b) {
      return (std::isnan(a) && std::isnan(b)) || a == b || std::fabs(a - b) <= 1e-5f;
    };
    EXPECT_TRUE(near(dev[i].logprobs.logprob, cpu[i].logprobs.logprob))
        << dev[i].logprobs.logprob << " vs " << cpu[i].logprobs.logprob;
    ASSERT_EQ(dev[i].logprobs.top.size(), cpu[i].logprobs.top.size());
    for (size_t k = 0; k < cpu[i].logprobs.top.size(); ++k) {
      EXPECT_EQ(dev[i].logprobs.top[k].token_id, cpu[i].logprobs.top[k].token_id);
      EXPECT_TRUE(near(dev[i].logprobs.top[k].logprob, cpu[i].logprobs.top[k].logprob));
    }
  }
}

// The device top-k against the host's TopKIndices on random rows with many ties: the same
// set of ids for k = 1 .. kDeviceTopKMax.
TEST(CudaBackendSampling, DeviceTopKPicksTheHostsSet) {
  MLA_SKIP_WITHOUT_CUDA();
  const int64_t rows = 6, vocab = 5000;
  std::mt19937 rng(9);
  std::uniform_int_distribution<int> level(0, 40);  // Few distinct values: many ties.
  std::vector<float> logits(static_cast<size_t>(rows * vocab));
  for (float& x : logits) x = 0.25f * static_cast<float>(level(rng)) - 5.0f;
  logits[3] = std::nanf("");
  logits[vocab + 7] = INFINITY;
  const std::vector<int32_t> ks = {1, 2, 17, 64, 255, 256};
  DeviceBuffer d_logits = *DeviceBuffer::FromHost(logits);
  DeviceBuffer d_k = *DeviceBuffer::FromHost(ks);
  DeviceBuffer d_ids = *DeviceBuffer::Allocate(rows * kDeviceTopKMax * sizeof(int32_t));
  DeviceBuffer d_values = *DeviceBuffer::Allocate(rows * kDeviceTopKMax * sizeof(float));
  TopKParams p;
  p.num_rows = rows;
  p.vocab_size = vocab;
  p.logits = d_logits.as<float>();
  p.logits_stride = vocab;
  p.k = d_k.as<int32_t>();
  p.k_cap = kDeviceTopKMax;
  p.ids = d_ids.as<int32_t>();
  p.values = d_values.as<float>();
  ASSERT_TRUE(LaunchTopK(p, nullptr).ok());
  std::vector<int32_t> ids(static_cast<size_t>(rows * kDeviceTopKMax));
  ASSERT_TRUE(d_ids.CopyToHost(ids.data(), ids.size() * sizeof(int32_t), 0).ok());
  for (int64_t r = 0; r < rows; ++r) {
    const int k = ks[static_cast<size_t>(r)];
    std::vector<int32_t> want =
        TopKIndices(std::span<const float>(logits.data() + r * vocab, vocab), k);
    std::vector<int32_t> got(ids.begin() + r * kDeviceTopKMax,
                             ids.begin() + r * kDeviceTopKMax + k);
    std::sort(want.begin(), want.end());
    std::sort(got.begin(), got.end());
    EXPECT_EQ(got, want) << "row " << r << ", k " << k;
  }
}

// Full-vocabulary rows (top-k off: temperature, top-p, min-p) drawn on the device against
// the CPU backend's sampler, seed for seed: the same token, the same logprobs, and one
// generator output taken per row on both. Exactly the rows whose top-p prefix reaches past
// their best 256 tokens fall back to the host (a flat row; 300 tied leaders with top-p
// 0.9), and most rows stay on the device. Rows: peaked heads over a noisy tail (like a
// language model's), ties across the 256th place, NaN-poisoned logits, -0 against +0 at
// the top, a flat row.
TEST(CudaBackendSampling, DeviceDrawMatchesTheHostSampler) {
  MLA_SKIP_WITHOUT_CUDA();
  const int64_t rows = 8, vocab = 32003;
  std::mt19937 rng(13);
  std::normal_distribution<float> normal(0.0f, 2.0f);
  std::vector<float> logits(static_cast<size_t>(rows * vocab));
  for (float& x : logits) x = normal(rng);
  auto row = [&](int r) { return logits.data() + r * vocab; };
  std::uniform_int_distribution<int64_t> any_id(0, vocab - 1);
  for (int r = 0; r < 6; ++r) {
    for (int i = 0; i < 6; ++i) row(r)[any_id(rng)] += 14.0f + static_cast<float>(i);
  }
  for (int i = 0; i < 300; ++i) row(3)[i * 7] = 25.0f;  // Ties across the 256th place.
  for (int64_t i = 0; i < vocab; i += 7) row(4)[i] = std::nanf("");
  for (int64_t i = 0; i < vocab; ++i) row(5)[i] = -std::fabs(row(5)[i]) - 0.5f;
  row(5)[11] = -0.0f;
  row(5)[12] = 0.0f;
  for (int64_t i = 0; i < vocab; ++i) row(7)[i] = 0.001f * static_cast<float>(i % 5);
  auto params = [](float t, float top_p, float min_p, int32_t top_k = 0) {
    SamplingParams p;
    p.temperature = t;
    p.top_p = top_p;
    p.min_p = min_p;
    p.top_k = top_k;
    return p;
  };
  const std::vector<SamplingParams> settings = {
      params(1.0f, 1.0f, 0.0f),  params(0.7f, 0.9f, 0.0f),
      params(1.3f, 1.0f, 0.05f), params(0.5f, 0.8f, 0.1f),
      params(2.0f, 0.5f, 0.0f),  params(1.0f, 0.95f, 0.0f, static_cast<int32_t>(vocab))};
  cpu::CpuBackend cpu_be(1);
  std::unique_ptr<CudaBackend> gpu = MakeCuda();
  ASSERT_NE(gpu, nullptr);
  const Tensor t_cpu = cpu_be.Activation(0, rows, vocab);
  cpu_be.Upload(logits, t_cpu, {"up"});
  const Tensor t_gpu = gpu->Activation(0, rows, vocab);
  gpu->Upload(logits, t_gpu, {"up"});
  int64_t device_rows = 0;
  for (size_t s = 0; s < settings.size(); ++s) {
    const SamplingParams& p = settings[s];
    // The rows the candidates cannot decide, by the host's own rule on the host's sums.
    int64_t undecided = 0;
    for (int r = 0; r < rows && p.top_p < 1.0f; ++r) {
      const std::span<const float> x(row(r), static_cast<size_t>(vocab));
      float max = -INFINITY;
      for (float v : x) max = std::max(max, SortKey(v));
      double total = 0.0;
      for (float v : x) total += std::exp((SortKey(v) - max) / p.temperature);
      const std::vector<int32_t> ids = TopKIndices(x, kDeviceTopKMax);
      std::vector<float> values;
      for (int32_t id : ids) values.push_back(x[static_cast<size_t>(id)]);
      undecided += !TopPBoundaryOfCandidates(ids, values, vocab, max, total, p).has_value();
    }
    for (uint64_t seed = 0; seed < 6; ++seed) {
      SCOPED_TRACE(::testing::Message() << "setting " << s << " seed " << seed);
      std::vector<Rng> cpu_gens, gpu_gens;
      for (int r = 0; r < rows; ++r) {
        cpu_gens.emplace_back(seed * 100 + static_cast<uint64_t>(r));
        gpu_gens.emplace_back(seed * 100 + static_cast<uint64_t>(r));
      }
      std::vector<RowSampling> cpu_rows, gpu_rows;
      for (int r = 0; r < rows; ++r) {
        const int top_logprobs = r == 0 ? 5 : -1;  // Logprobs on a drawn row too.
        cpu_rows.push_back({r, &p, &cpu_gens[static_cast<size_t>(r)], -1, top_logprobs});
        gpu_rows.push_back({r, &p, &gpu_gens[static_cast<size_t>(r)], -1, top_logprobs});
      }
      std::vector<RowSample> want(rows), got(rows);
      cpu_be.Sample(t_cpu, cpu_rows, want, {"sample"});
      const int64_t host_before = gpu->host_sampled_rows();
      gpu->Sample(t_gpu, gpu_rows, got, {"sample"});
      ASSERT_TRUE(StatusIsOk(cpu_be.TakeError()));
      ASSERT_TRUE(StatusIsOk(gpu->TakeError()));
      for (int r = 0; r < rows; ++r) {
        SCOPED_TRACE(::testing::Message() << "row " << r);
        ASSERT_EQ(got[r].status, want[r].status);
        EXPECT_EQ(got[r].token, want[r].token);
        EXPECT_EQ(gpu_gens[r].state(), cpu_gens[r].state());
        ASSERT_EQ(got[r].has_logprobs, want[r].has_logprobs);
        if (!want[r].has_logprobs) continue;
        EXPECT_NEAR(got[r].logprobs.logprob, want[r].logprobs.logprob, 1e-5f);
        ASSERT_EQ(got[r].logprobs.top.size(), want[r].logprobs.top.size());
        for (size_t k = 0; k < want[r].logprobs.top.size(); ++k) {
          EXPECT_EQ(got[r].logprobs.top[k].token_id, want[r].logprobs.top[k].token_id);
        }
      }
      const int64_t host_rows = gpu->host_sampled_rows() - host_before;
      EXPECT_EQ(host_rows, undecided);
      device_rows += rows - host_rows;
    }
  }
  EXPECT_GE(device_rows, 6 * rows * 3);  // Most rows: the device path really ran.
}

// --- The whole model --------------------------------------------------------------------

class CudaModelTest : public ::testing::TestWithParam<std::string> {
 protected:
  void SetUp() override {
    MLA_SKIP_WITHOUT_CUDA();
    gpu_ = MakeCuda();
    ASSERT_NE(gpu_, nullptr);
    const std::string dir = std::string(MLA_MODELS_DIR) + "/" + GetParam();
    auto gpu_model = DeepseekModel::Load(dir, gpu_.get());
    ASSERT_TRUE(gpu_model.ok()) << gpu_model.status();
    gpu_model_ = std::move(*gpu_model);
    auto cpu_model = DeepseekModel::Load(dir, &cpu_);
    ASSERT_TRUE(cpu_model.ok()) << cpu_model.status();
    cpu_model_ = std::move(*cpu_model);
    goldens_ = LoadGoldens(GetParam() + ".bf16-kv.safetensors");
    ASSERT_FALSE(goldens_.empty());
  }

  // NaN-poisoned caches on both backends; 16-token blocks unless said (64 lets decode
  // steps take the split-KV kernel).
  void ResetCaches(int block_size = 16, CacheDType dtype = CacheDType::kBF16) {
    block_size_ = block_size;
    const ModelConfig& c = gpu_model_->config();
    auto layout = CacheLayout::Create(
        {dtype, c.kv_lora_rank, c.qk_rope_head_dim, block_size, c.num_hidden_layers});
    ASSERT_TRUE(layout.ok());
    ASSERT_TRUE(gpu_->AllocateCache(*layout, 256).ok());
    ASSERT_TRUE(gpu_->PoisonCacheWithNaN().ok());
    ASSERT_TRUE(cpu_.AllocateCache(*layout, 256).ok());
    cpu_.latent_cache()->PoisonWithNaN();
    pool_ = std::make_unique<BlockPool>(256);
  }

  // Reserved in reverse order, so that the table is not the identity mapping.
  BlockTable MakeTable(int64_t tokens) {
    BlockTable scratch(block_size_), table(block_size_);
    EXPECT_TRUE(scratch.Append(tokens, *pool_).ok());
    EXPECT_TRUE(table.Append(tokens, *pool_).ok());
    EXPECT_TRUE(scratch.Release(*pool_).ok());
    return table;
  }

  std::vector<float> Run(DeepseekModel& model, std::span<const SequenceChunk> chunks) {
    auto logits = model.ForwardToHost(chunks);
    EXPECT_TRUE(logits.ok()) << logits.status();
    return logits.ok() ? std::move(*logits) : std::vector<float>();
  }

  int vocab() const { return gpu_model_->config().vocab_size; }

  int block_size_ = 16;
  cpu::CpuBackend cpu_{2};
  std::unique_ptr<CudaBackend> gpu_;
  std::unique_ptr<DeepseekModel> gpu_model_, cpu_model_;
  std::unique_ptr<BlockPool> pool_;
  std::vector<Golden> goldens_;
};

TEST_P(CudaModelTest, AllPositionsMatchCpuAndGoldens) {
  Bf16RowAgreement vs_golden, vs_cpu;
  for (const Golden& g : goldens_) {
    ResetCaches();
    const int64_t T = static_cast<int64_t>(g.prompt.size());
    BlockTable table = MakeTable(T);
    SequenceChunk chunk{g.prompt, 0, &table, true};
    const std::vector<float> gpu = Run(*gpu_model_, {&chunk, 1});
    const std::vector<float> cpu = Run(*cpu_model_, {&chunk, 1});
    vs_golden.Add(gpu, g.logits, vocab());
    vs_cpu.Add(gpu, cpu, vocab());
  }
  std::printf("[ %s ] vs goldens: %s\n[ %s ] vs cpu: %s\n", GetParam().c_str(),
              vs_golden.Summary().c_str(), GetParam().c_str(), vs_cpu.Summary().c_str());
  vs_golden.ExpectWithinBounds("vs goldens");
  vs_cpu.ExpectWithinBounds("vs cpu");
}

// An FP8 latent cache costs on the device what it costs on the CPU. The device writes the
// same bytes for the same latents (CudaBackendAttention compares the cache blocks), but in
// the model its latents come out of bf16-rounded GEMMs, ~1e-3 from the CPU's, and e4m3
// codes lie 2^-3 apart: here and there the two caches hold a neighbouring code, which a
// tiny model's near-tied router can turn into a different expert (golden_test.cc,
// Fp8RobustRouterTest), so rows are not compared one by one across backends. Instead each
// backend's drift, its fp8-cache logits against its own bf16-cache logits over the goldens'
// prompts (whole, and in 7-token chunks over cached prefixes), must agree as golden_test
// asks of the CPU against the simulation: median and p90 within 1.25× + 0.005 nats, max
// within 1.5× + 0.05, argmax agreement within 2 points; and at least a quarter of the
// CPU's median and p90, so that a device cache that stayed bf16 fails.
TEST_P(CudaModelTest, Fp8CacheDriftMatchesCpuFp8Drift) {
  for (const int64_t chunk : {int64_t{0}, int64_t{7}}) {  // 0: whole prompts
    std::vector<std::vector<int32_t>> prompts;
    std::vector<std::vector<float>> logits[2][2];  // [gpu?][fp8?]
    for (const Golden& g : goldens_) {
      const int64_t T = static_cast<int64_t>(g.prompt.size());
      const int64_t chunk_size = chunk == 0 ? T : chunk;
      prompts.push_back(g.prompt);
      for (const CacheDType dtype : {CacheDType::kBF16, CacheDType::kFp8E4M3}) {
        ResetCaches(64, dtype);
        BlockTable table = MakeTable(T);
        std::vector<float> gpu, cpu;
        for (int64_t start = 0; start < T; start += chunk_size) {
          const int64_t m = std::min<int64_t>(chunk_size, T - start);
          SequenceChunk ch{std::span<const int32_t>(g.prompt.data() + start, m), start, &table,
                           true};
          const std::vector<float> part_gpu = Run(*gpu_model_, {&ch, 1});
          const std::vector<float> part_cpu = Run(*cpu_model_, {&ch, 1});
          gpu.insert(gpu.end(), part_gpu.begin(), part_gpu.end());
          cpu.insert(cpu.end(), part_cpu.begin(), part_cpu.end());
        }
        const bool fp8 = dtype == CacheDType::kFp8E4M3;
        logits[1][fp8].push_back(std::move(gpu));
        logits[0][fp8].push_back(std::move(cpu));
      }
    }
    const Drift cpu = MeasureDrift(prompts, logits[0][0], logits[0][1], vocab());
    const Drift gpu = MeasureDrift(prompts, logits[1][0], logits[1][1], vocab());
    std::printf(
        "[ %s ] fp8 vs bf16 cache, %s, |delta logprob| over %lld tokens: device median %.4f "
        "p90 %.4f max %.4f argmax %.4f; cpu %.4f %.4f %.4f %.4f\n",
        GetParam().c_str(), chunk == 0 ? "whole prompts" : "7-token chunks",
        static_cast<long long>(gpu.tokens), gpu.median, gpu.p90, gpu.max, gpu.argmax_agreement,
        cpu.median, cpu.p90, cpu.max, cpu.argmax_agreement);
    ExpectDriftWithin(gpu, cpu, chunk == 0 ? "device, whole prompts" : "device, 7-token chunks");
  }
}

// Prefill, then the goldens' greedy tokens one decode step at a time with 64-token blocks:
// every decode step runs the split-KV kernel.
TEST_P(CudaModelTest, SplitKvDecodeStepsMatchGoldens) {
  for (const Golden& g : goldens_) {
    ResetCaches(64);
    const int64_t T = static_cast<int64_t>(g.prompt.size());
    const int64_t G = static_cast<int64_t>(g.greedy.size());
    BlockTable table = MakeTable(T + G);
    SequenceChunk chunk{g.prompt, 0, &table, false};
    std::vector<float> last = Run(*gpu_model_, {&chunk, 1});
    for (int64_t s = 0; s < G; ++s) {
      const std::vector<float> want(g.greedy_logits.begin() + s * vocab(),
                                    g.greedy_logits.begin() + (s + 1) * vocab());
      CompareRows(last, want, vocab(), 1e-2, "decode step " + std::to_string(s), nullptr);
      SequenceChunk step{std::span<const int32_t>(&g.greedy[s], 1), T + s, &table, false};
      last = Run(*gpu_model_, {&step, 1});
    }
  }
}

// With the attention path and the expert path pinned, each in turn: left to choose, a
// chunk's size picks absorbed or decompressed attention (attention_path.h) and its number
// of token-expert pairs the grouped kernel or cuBLASLt (moe_plan.h), whose roundings differ
// by bf16 ulps, enough to flip an expert at a tiny model's near-tied router; those paths
// are compared with each other by their own tests.
TEST_P(CudaModelTest, ChunkedPrefillEqualsWholePrefill) {
  gpu_->set_grouped_experts(cuda::GroupedExperts::kAlways);
  for (const AttentionPath path : {AttentionPath::kAbsorbed, AttentionPath::kDecompressed}) {
    gpu_model_->set_attention_path(path);
    const std::string path_name = path == AttentionPath::kAbsorbed ? "absorbed" : "decompressed";
    for (const Golden& g : goldens_) {
      const int64_t T = static_cast<int64_t>(g.prompt.size());
      ResetCaches();
      BlockTable whole_table = MakeTable(T);
      SequenceChunk whole{g.prompt, 0, &whole_table, true};
      const std::vector<float> want = Run(*gpu_model_, {&whole, 1});
      for (int chunk_size : {1, 7, 64}) {
        if (chunk_size >= T && T > 1) continue;
        ResetCaches();
        BlockTable table = MakeTable(T);
        std::vector<float> got;
        for (int64_t start = 0; start < T; start += chunk_size) {
          const int64_t m = std::min<int64_t>(chunk_size, T - start);
          SequenceChunk c{std::span<const int32_t>(g.prompt.data() + start, m), start, &table,
                          true};
          const std::vector<float> part = Run(*gpu_model_, {&c, 1});
          got.insert(got.end(), part.begin(), part.end());
        }
        CompareRows(got, want, vocab(), 1e-3,
                    path_name + " chunk " + std::to_string(chunk_size) + " T=" + std::to_string(T),
                    nullptr);
      }
    }
  }
  gpu_model_->set_attention_path(AttentionPath::kAuto);
  gpu_->set_grouped_experts(cuda::GroupedExperts::kAuto);
}

// Every chunk decompressed on the device (decode-sized chunks too), with a chunk budget of
// five keys so that every prompt spans several key chunks: the goldens' tolerances, for
// whole prompts and for chunks of 7 rows over cached prefixes.
TEST_P(CudaModelTest, DecompressedPathMatchesGoldens) {
  const ModelConfig& c = gpu_model_->config();
  gpu_model_->set_attention_path(AttentionPath::kDecompressed);
  gpu_->set_decompress_chunk_bytes(
      4 * (int64_t{c.num_attention_heads} * (c.qk_nope_head_dim + c.v_head_dim) + c.kv_lora_rank) *
      5);
  Bf16RowAgreement vs_golden;
  for (const Golden& g : goldens_) {
    const int64_t T = static_cast<int64_t>(g.prompt.size());
    for (const int64_t chunk_size : {T, int64_t{7}}) {
      ResetCaches();
      BlockTable table = MakeTable(T);
      std::vector<float> got;
      for (int64_t start = 0; start < T; start += chunk_size) {
        const int64_t m = std::min<int64_t>(chunk_size, T - start);
        SequenceChunk ch{std::span<const int32_t>(g.prompt.data() + start, m), start, &table, true};
        const std::vector<float> part = Run(*gpu_model_, {&ch, 1});
        got.insert(got.end(), part.begin(), part.end());
      }
      vs_golden.Add(got, g.logits, vocab());
    }
  }
  std::printf("[ %s ] decompressed vs goldens: %s\n", GetParam().c_str(),
              vs_golden.Summary().c_str());
  vs_golden.ExpectWithinBounds("decompressed vs goldens");
}

// The experts' path pinned: the batch's token-expert pairs would take cuBLASLt where a
// solo prompt's take the grouped kernel (see ChunkedPrefillEqualsWholePrefill).
TEST_P(CudaModelTest, BatchEqualsSoloRuns) {
  gpu_->set_grouped_experts(cuda::GroupedExperts::kAlways);
  ResetCaches();
  std::vector<BlockTable> tables;
  tables.reserve(goldens_.size());
  std::vector<SequenceChunk> chunks;
  for (const Golden& g : goldens_) tables.push_back(MakeTable(g.prompt.size()));
  for (size_t i = 0; i < goldens_.size(); ++i)
    chunks.push_back({goldens_[i].prompt, 0, &tables[i], true});
  const std::vector<float> batch = Run(*gpu_model_, chunks);
  int64_t row = 0;
  for (size_t i = 0; i < goldens_.size(); ++i) {
    const int64_t T = static_cast<int64_t>(goldens_[i].prompt.size());
    ResetCaches();
    BlockTable table = MakeTable(T);
    SequenceChunk solo{goldens_[i].prompt, 0, &table, true};
    const std::vector<float> want = Run(*gpu_model_, {&solo, 1});
    const std::vector<float> got(batch.begin() + row * vocab(),
                                 batch.begin() + (row + T) * vocab());
    CompareRows(got, want, vocab(), 1e-3, "prompt " + std::to_string(i), nullptr);
    row += T;
  }
}

// The grouped expert kernel (kernels/grouped_gemm.h) against the per-expert cuBLASLt GEMMs
// on every golden prompt: whole prompts (many rows per expert, several 8-row passes) and
// decode steps (a row or two per expert). The grouped kernel keeps fp32 activations where
// cuBLASLt rounds them to bf16, so the two differ by that rounding: the bf16 tolerance.
TEST_P(CudaModelTest, GroupedExpertsMatchPerExpertGemms) {
  RowStats diff;
  for (const Golden& g : goldens_) {
    const int64_t T = static_cast<int64_t>(g.prompt.size());
    const int64_t G = std::min<int64_t>(4, static_cast<int64_t>(g.greedy.size()));
    std::vector<float> rows[2];
    for (const cuda::GroupedExperts mode :
         {cuda::GroupedExperts::kAlways, cuda::GroupedExperts::kNever}) {
      gpu_->set_grouped_experts(mode);
      const int64_t grouped_before = gpu_->moe_grouped_calls();
      ResetCaches();
      BlockTable table = MakeTable(T + G);
      SequenceChunk chunk{g.prompt, 0, &table, true};
      std::vector<float>& out = rows[mode == cuda::GroupedExperts::kNever];
      out = Run(*gpu_model_, {&chunk, 1});
      for (int64_t s = 0; s < G; ++s) {
        SequenceChunk step{std::span<const int32_t>(&g.greedy[s], 1), T + s, &table, true};
        const std::vector<float> next = Run(*gpu_model_, {&step, 1});
        out.insert(out.end(), next.begin(), next.end());
      }
      const int64_t grouped = gpu_->moe_grouped_calls() - grouped_before;
      if (mode == cuda::GroupedExperts::kNever) {
        EXPECT_EQ(grouped, 0);
      } else {
        EXPECT_GT(grouped, 0) << "the model has MoE layers";
      }
    }
    gpu_->set_grouped_experts(cuda::GroupedExperts::kAuto);
    CompareRows(rows[0], rows[1], vocab(), 1e-2, "grouped vs per-expert T=" + std::to_string(T),
                &diff);
  }
  std::printf("[ %s ] grouped vs per-expert experts: 1 - cosine per row, median %.3g (%zu rows)\n",
              GetParam().c_str(), diff.Median(), diff.one_minus_cosine.size());
  EXPECT_LE(diff.Median(), 1e-4);
}

// CUDA graphs: every golden prompt's decode steps, one sequence and all of them batched,
// with 64-token blocks (split-KV kernel, its plan uploaded by BeginStep) and 16-token
// blocks (the generic kernel), recorded and replayed against the same steps run eagerly.
// A replay runs the recorded launches on the new step's inputs, so it must give the eager
// logits (the same kernels on the same data; 1e-6 allows for nothing but a different
// cuBLASLt algorithm), and keys must actually be recorded and replayed.
TEST_P(CudaModelTest, GraphReplaysMatchEagerDecodeSteps) {
  for (const int block_size : {64, 16}) {
    for (const bool batched : {false, true}) {
      std::vector<float> logits[2];
      for (const bool graphs : {false, true}) {
        gpu_->set_graphs(graphs);
        const int64_t replays_before = gpu_->graph_replays();
        ResetCaches(block_size);
        std::vector<BlockTable> tables;
        tables.reserve(goldens_.size());
        std::vector<int64_t> pos;
        const size_t count = batched ? goldens_.size() : 1;
        int64_t steps = 0;
        for (size_t i = 0; i < count; ++i) {
          const Golden& g = goldens_[i];
          steps = std::max<int64_t>(steps, static_cast<int64_t>(g.greedy.size()));
          tables.push_back(MakeTable(g.prompt.size() + g.greedy.size()));
          SequenceChunk prompt{g.prompt, 0, &tables.back(), false};
          Run(*gpu_model_, {&prompt, 1});
          pos.push_back(static_cast<int64_t>(g.prompt.size()));
        }
        for (int64_t s = 0; s < steps; ++s) {
          std::vector<SequenceChunk> chunks;
          for (size_t i = 0; i < count; ++i) {
            if (s >= static_cast<int64_t>(goldens_[i].greedy.size())) continue;
            chunks.push_back({std::span<const int32_t>(&goldens_[i].greedy[s], 1), pos[i] + s,
                              &tables[i], false});
          }
          const std::vector<float> step = Run(*gpu_model_, chunks);
          logits[graphs].insert(logits[graphs].end(), step.begin(), step.end());
        }
        if (graphs) {
          // Every step after the first two (eager, then recorded) replays: no sequence
          // outgrows its block-table bucket here and the batch keeps its size, so the key
          // must not change from step to step.
          EXPECT_GE(gpu_->graph_replays() - replays_before, steps - 2)
              << "block " << block_size << (batched ? " batched" : " alone");
        }
      }
      gpu_->set_graphs(false);
      CompareRows(logits[1], logits[0], vocab(), 1e-6,
                  "graphs, block " + std::to_string(block_size) + (batched ? " batched" : ""),
                  nullptr);
    }
  }
  EXPECT_GT(gpu_->graph_captures(), 0);
}

INSTANTIATE_TEST_SUITE_P(TinyModels, CudaModelTest, ::testing::Values("tiny-v2-lite", "tiny-v3"),
                         [](const auto& info) {
                           std::string n = info.param;
                           std::replace(n.begin(), n.end(), '-', '_');
                           return n;
                         });

}  // namespace
}  // namespace mla
