#include "engine/backend/cpu/decompressed_attention.h"

#include <cmath>
#include <cstdio>
#include <limits>
#include <optional>
#include <random>
#include <string>
#include <vector>

#include "engine/backend/cpu/cpu_features.h"
#include "engine/backend/cpu/thread_pool.h"
#include "engine/common/bf16.h"
#include "gtest/gtest.h"
#include "tests/engine/backend/cpu/mla_attention_problem.h"

namespace mla::cpu {
namespace {

using testing_util::Problem;
using testing_util::SeqSpec;

constexpr float kNaN = std::numeric_limits<float>::quiet_NaN();

// A decompressed-attention call over a Problem's cache and tables: random kv_b (bf16 or
// f32, values ~ 1/√L so that k_nope and v are O(1)) and queries [total_q, heads, nope + R].
class Decompressed {
 public:
  Decompressed(const Problem& pr, int nope, int vdim, uint32_t seed, DType w_dtype = DType::kBF16)
      : pr_(pr), nope_(nope), vdim_(vdim) {
    std::mt19937 rng(seed);
    std::uniform_real_distribution<float> unit(-1.0f, 1.0f);
    const MlaAttentionParams paged = pr.Params(nullptr, nullptr);
    const int64_t rows = paged.num_heads * (nope + vdim), cols = paged.kv_lora_rank;
    w_ = Matrix::Allocate(rows, cols, w_dtype);
    const float amp = 2.0f / std::sqrt(static_cast<float>(cols));
    for (int64_t i = 0; i < rows * cols; ++i) {
      const float v = amp * unit(rng);
      if (w_dtype == DType::kBF16) {
        w_.bf16()[i] = FloatToBf16(v);
      } else {
        w_.f32()[i] = v;
      }
    }
    // Scores of standard deviation about 1 at the softmax scale 1/√(L + R) the Problem uses.
    q_.resize(static_cast<size_t>(pr.total_q() * paged.num_heads * (nope + paged.rope_dim)));
    for (float& v : q_) v = 2.0f * unit(rng);
  }

  DecompressedAttentionParams Params(float* out, const std::vector<uint8_t>* take) const {
    DecompressedAttentionParams p;
    p.paged = pr_.Params(nullptr, nullptr);
    p.nope_dim = nope_;
    p.v_dim = vdim_;
    p.kv_b = w_.View();
    p.take = take == nullptr ? nullptr : take->data();
    p.q = q_.data();
    p.out = out;
    return p;
  }

  int64_t out_size() const { return pr_.total_q() * pr_.heads() * vdim_; }
  int vdim() const { return vdim_; }

 private:
  const Problem& pr_;
  int nope_, vdim_;
  Matrix w_;
  std::vector<float> q_;
};

// The kernel sums in fp32 blocks where the reference uses double; outputs are averages of
// O(1) values, so relative errors stay near 1e-6 (see mla_attention_test.cc's bound,
// which this one shares). A key dropped or counted twice, or a mask off by one, moves a
// (row, head) vector by ~1/√keys relative: 3e-2 at 1,000 keys.
constexpr double kRelTol = 1e-5;
// The bf16 GEMM level also multiplies the scores (q · k) and the weighted sum (p · v) in
// bf16: q, k, p and v each carry a relative rounding error up to 2^-9 (about 2e-3), so a
// score of magnitude |s| moves by ~2^-8·|s| and the output by a few 1e-3 relative
// (measured: up to 2.2e-3 on these problems). 1e-2 leaves room and still catches a key
// dropped or counted twice at the key counts used here (≤ 640 keys: ≥ 4e-2).
constexpr double kBf16RelTol = 1e-2;

double LevelTol(CpuIsa isa) { return !IsaIsExact(isa) ? kBf16RelTol : kRelTol; }

void ExpectClose(const std::vector<float>& got, const std::vector<float>& want, int64_t vdim,
                 double tol) {
  ASSERT_EQ(got.size(), want.size());
  for (size_t v = 0; v < got.size() / vdim; ++v) {
    double diff = 0, norm = 0;
    for (int64_t d = 0; d < vdim; ++d) {
      const double g = got[v * vdim + d], w = want[v * vdim + d];
      if (std::isnan(w)) {  // A row the call was told to leave alone.
        ASSERT_TRUE(std::isnan(g)) << "vector " << v << " was written";
        continue;
      }
      ASSERT_TRUE(std::isfinite(g)) << "vector " << v << " d " << d;
      diff += (g - w) * (g - w);
      norm += w * w;
    }
    ASSERT_LE(std::sqrt(diff), tol * std::sqrt(norm) + 1e-30) << "output vector " << v;
  }
}

class DecompressedAttentionIsaTest : public testing::TestWithParam<CpuIsa> {
 protected:
  void SetUp() override {
    const std::string name(CpuIsaName(GetParam()));
    const std::string features(CpuIsaFeatures(GetParam()));
    // Printed as well as reported, so that a log shows which paths a machine covered.
    if (!IsaSupported(GetParam())) {
      std::printf("Decompressed attention isa path %s: SKIPPED, this CPU lacks %s\n", name.c_str(),
                  features.c_str());
      GTEST_SKIP() << "CPU lacks " << name << " (" << features << ")";
    }
    std::printf("Decompressed attention isa path %s: running (needs %s)\n", name.c_str(),
                features.c_str());
    isa_.emplace(GetParam());
  }

  // The kernel (on 2 threads and on none) against the reference; `take` selects sequences.
  void Check(const Problem& pr, const Decompressed& d, const std::vector<uint8_t>* take = nullptr) {
    const double tol = LevelTol(GetParam());
    std::vector<float> want(d.out_size(), kNaN), got(d.out_size(), kNaN);
    ASSERT_TRUE(DecompressedAttentionReference(d.Params(want.data(), take)).ok());
    const absl::Status status = DecompressedAttention(d.Params(got.data(), take), &pool_);
    ASSERT_TRUE(status.ok()) << status;
    ExpectClose(got, want, d.vdim(), tol);
    std::vector<float> serial(d.out_size(), kNaN);
    ASSERT_TRUE(DecompressedAttention(d.Params(serial.data(), take), nullptr).ok());
    ExpectClose(serial, want, d.vdim(), tol);
  }

  std::optional<ScopedIsaOverride> isa_;
  ThreadPool pool_{2};
};

TEST_P(DecompressedAttentionIsaTest, OddSizesAndOneToken) {
  for (int heads : {1, 3}) {
    SCOPED_TRACE(testing::Message() << "heads " << heads);
    // One token alone, a short prompt, a chunk after an odd prefix.
    const std::vector<SeqSpec> seqs = {{1, 0, 1}, {5, 0, 5}, {9, 13, 22}};
    const Problem pr(heads, 40, 8, 16, seqs, 3);
    Check(pr, Decompressed(pr, 24, 20, 4), nullptr);
    Check(pr, Decompressed(pr, 7, 5, 5, DType::kF32), nullptr);
  }
}

TEST_P(DecompressedAttentionIsaTest, ChunksOnAndAcrossBlockBoundaries) {
  // Block size 64: chunks starting exactly on a block (0, 64, 128), mid-block (100), and
  // one longer than a key block of the kernel (300 rows after 64 keys: 364 > 256).
  const std::vector<SeqSpec> seqs = {{64, 0, 64}, {64, 64, 128}, {37, 100, 137}, {300, 64, 364}};
  const Problem pr(4, 64, 16, 64, seqs, 7);
  Check(pr, Decompressed(pr, 32, 32, 8), nullptr);
}

TEST_P(DecompressedAttentionIsaTest, DeepSeekShapeLongPrefix) {
  // DeepSeek's dims (L 512, R 64, nope 128, v 128) with a chunk at 600 cached keys: the
  // causal mask lands inside the kernel's third key block.
  const std::vector<SeqSpec> seqs = {{40, 600, 640}};
  const Problem pr(2, 512, 64, 64, seqs, 9);
  Check(pr, Decompressed(pr, 128, 128, 10), nullptr);
}

TEST_P(DecompressedAttentionIsaTest, TakesOnlyTheChosenSequences) {
  // A decode row and a chunk in one step: only the chunk is computed; the decode row's
  // output must stay as it was (NaN here).
  const std::vector<SeqSpec> seqs = {testing_util::Decode(70), {20, 30, 50}, {3, 0, 3}};
  const Problem pr(3, 48, 16, 16, seqs, 11);
  const std::vector<uint8_t> take = {0, 1, 1};
  Check(pr, Decompressed(pr, 16, 16, 12), &take);
}

TEST_P(DecompressedAttentionIsaTest, Fp8Cache) {
  const std::vector<SeqSpec> seqs = {{33, 31, 64}, {70, 0, 70}};
  const Problem pr(2, 256, 64, 64, seqs, 13, CacheDType::kFp8E4M3);
  // The bf16 level also rounds the decoded fp8 latents (code · scale, not bf16 numbers) to
  // bf16 before the up-projection, within the same bound.
  Check(pr, Decompressed(pr, 64, 64, 14), nullptr);
}

TEST(DecompressedAttentionTest, RejectsAWrongKvB) {
  const std::vector<SeqSpec> seqs = {{4, 0, 4}};
  const Problem pr(2, 32, 8, 16, seqs, 15);
  const Decompressed d(pr, 8, 8, 16);
  std::vector<float> out(d.out_size());
  DecompressedAttentionParams p = d.Params(out.data(), nullptr);
  p.v_dim = 9;  // kv_b has 2 · (8 + 8) rows, not 2 · (8 + 9)
  const absl::Status status = DecompressedAttention(p, nullptr);
  EXPECT_EQ(status.code(), absl::StatusCode::kInvalidArgument) << status;
  EXPECT_NE(status.message().find("kv_b"), std::string::npos) << status;
}

INSTANTIATE_TEST_SUITE_P(Isa, DecompressedAttentionIsaTest,
                         testing::Values(CpuIsa::kScalar, CpuIsa::kAvx2, CpuIsa::kAvx512,
                                         CpuIsa::kAvx512Bf16, CpuIsa::kAmxBf16),
                         [](const testing::TestParamInfo<CpuIsa>& info) {
                           return std::string(CpuIsaName(info.param));
                         });

}  // namespace
}  // namespace mla::cpu
