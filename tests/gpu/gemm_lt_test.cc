// GemmLt (cuBLASLt bf16, fp32 accumulation) against an fp64 reference of the same bf16
// inputs, on odd shapes: m = 1, 7, 64 with n and k that are not multiples of 8 (cuBLASLt
// then picks unvectorized algorithms; the preference promises only 2-byte alignment).
#include "engine/backend/cuda/gemm_lt.h"

#include <cmath>
#include <cstdint>
#include <memory>
#include <random>
#include <tuple>
#include <vector>

#include "tests/gpu/cuda_test_util.h"

namespace mla::cuda {
namespace {

using testing::Download;
using testing::Upload;

std::vector<bf16_t> RandomBf16(size_t n, uint32_t seed) {
  std::mt19937 rng(seed);
  std::uniform_real_distribution<float> dist(-1.0f, 1.0f);
  std::vector<bf16_t> v(n);
  for (bf16_t& x : v) x = FloatToBf16(dist(rng));
  return v;
}

// Y[i, j] = Σ_c X[i, c] · W[j, c] in double.
std::vector<double> Reference(const std::vector<bf16_t>& x, int64_t ldx,
                              const std::vector<bf16_t>& w, int64_t ldw, int64_t m, int64_t n,
                              int64_t k) {
  std::vector<double> y(m * n, 0.0);
  for (int64_t i = 0; i < m; ++i) {
    for (int64_t j = 0; j < n; ++j) {
      double acc = 0.0;
      for (int64_t c = 0; c < k; ++c) {
        acc += static_cast<double>(Bf16ToFloat(x[i * ldx + c])) * Bf16ToFloat(w[j * ldw + c]);
      }
      y[i * n + j] = acc;
    }
  }
  return y;
}

std::unique_ptr<GemmLt> MakeGemm() {
  absl::StatusOr<std::unique_ptr<GemmLt>> gemm = GemmLt::Create();
  EXPECT_TRUE(gemm.ok()) << gemm.status();
  return gemm.ok() ? std::move(*gemm) : nullptr;
}

TEST(GemmLtTest, Fp32OutputMatchesReferenceOnOddShapes) {
  MLA_SKIP_WITHOUT_CUDA();
  std::unique_ptr<GemmLt> gemm = MakeGemm();
  ASSERT_NE(gemm, nullptr);
  for (int64_t m : {1, 7, 64}) {
    for (const auto& [n, k] :
         std::vector<std::pair<int64_t, int64_t>>{{13, 29}, {64, 128}, {250, 77}, {1, 515}}) {
      const std::vector<bf16_t> x = RandomBf16(m * k, static_cast<uint32_t>(m * 31 + k));
      const std::vector<bf16_t> w = RandomBf16(n * k, static_cast<uint32_t>(n * 17 + k));
      DeviceBuffer dx = Upload(x);
      DeviceBuffer dw = Upload(w);
      DeviceBuffer dy = Upload(std::vector<float>(m * n, NAN));
      GemmLtParams p{m, n,         k, dx.as<bf16_t>(),   k,    dw.as<bf16_t>(),
                     k, dy.data(), n, GemmOutType::kF32, false};
      MLA_ASSERT_OK(gemm->Run(p, nullptr));
      MLA_ASSERT_OK(DeviceSynchronize());
      const std::vector<float> got = Download<float>(dy);
      const std::vector<double> want = Reference(x, k, w, k, m, n, k);
      for (size_t i = 0; i < want.size(); ++i) {
        // fp32 accumulation of k products of magnitude ≤ 1.
        ASSERT_NEAR(got[i], want[i], 1e-5 * static_cast<double>(k) + 1e-6)
            << "m=" << m << " n=" << n << " k=" << k << " i=" << i;
      }
    }
  }
  EXPECT_GE(gemm->cached_plans(), 1u);
}

TEST(GemmLtTest, Bf16OutputWithStridesAndAccumulate) {
  MLA_SKIP_WITHOUT_CUDA();
  std::unique_ptr<GemmLt> gemm = MakeGemm();
  ASSERT_NE(gemm, nullptr);
  const int64_t m = 7;
  const int64_t n = 45;
  const int64_t k = 100;
  const int64_t ldx = 103;  // X is a column slice of a wider activation buffer.
  const int64_t ldw = 100;
  const int64_t ldy = 50;
  const std::vector<bf16_t> x = RandomBf16(m * ldx, 1);
  const std::vector<bf16_t> w = RandomBf16(n * ldw, 2);
  const std::vector<bf16_t> y0 = RandomBf16(m * ldy, 3);
  DeviceBuffer dx = Upload(x);
  DeviceBuffer dw = Upload(w);
  DeviceBuffer dy = Upload(y0);
  GemmLtParams p{m,   n,         k,   dx.as<bf16_t>(),    ldx, dw.as<bf16_t>(),
                 ldw, dy.data(), ldy, GemmOutType::kBf16, true};
  MLA_ASSERT_OK(gemm->Run(p, nullptr));
  MLA_ASSERT_OK(gemm->Run(p, nullptr));  // the cached plan: Y = Y0 + 2·X·Wᵀ
  MLA_ASSERT_OK(DeviceSynchronize());
  EXPECT_EQ(gemm->cached_plans(), 1u);
  const std::vector<bf16_t> got = Download<bf16_t>(dy);
  const std::vector<double> xw = Reference(x, ldx, w, ldw, m, n, k);
  for (int64_t i = 0; i < m; ++i) {
    for (int64_t j = 0; j < ldy; ++j) {
      const bf16_t g = got[i * ldy + j];
      if (j >= n) {
        EXPECT_EQ(g, y0[i * ldy + j]) << "padding column " << j << " was written";
        continue;
      }
      // Two bf16 roundings of the running sum.
      const double want = Bf16ToFloat(y0[i * ldy + j]) + 2.0 * xw[i * n + j];
      EXPECT_NEAR(Bf16ToFloat(g), want, std::fabs(want) / 64.0 + 0.02) << i << "," << j;
    }
  }
}

TEST(GemmLtTest, RejectsBadShapesBeforeCallingCublas) {
  MLA_SKIP_WITHOUT_CUDA();
  std::unique_ptr<GemmLt> gemm = MakeGemm();
  ASSERT_NE(gemm, nullptr);
  GemmLtParams p;
  p.m = 4;
  p.n = 4;
  p.k = 0;
  EXPECT_EQ(gemm->Run(p, nullptr).code(), absl::StatusCode::kInvalidArgument);
  p.k = 4;
  p.ldx = p.ldw = p.ldy = 4;
  p.m = 0;  // empty product: nothing runs, no pointers needed
  MLA_ASSERT_OK(gemm->Run(p, nullptr));
  EXPECT_EQ(gemm->cached_plans(), 0u);
}

}  // namespace
}  // namespace mla::cuda
