#include "engine/backend/cpu/gemm.h"

#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <limits>
#include <random>
#include <vector>

#include "engine/backend/cpu/cpu_features.h"
#include "engine/backend/cpu/thread_pool.h"
#include "engine/common/tensor.h"
#include "gtest/gtest.h"

namespace mla::cpu {
namespace {

constexpr float kSentinel = 1234.5f;

Matrix RandomMatrix(int64_t rows, int64_t cols, DType dtype, std::mt19937& rng) {
  std::uniform_real_distribution<float> dist(-1.0f, 1.0f);
  Matrix m = Matrix::Allocate(rows, cols, dtype);
  for (int64_t i = 0; i < rows * cols; ++i) {
    if (dtype == DType::kBF16) {
      m.bf16()[i] = FloatToBf16(dist(rng));
    } else {
      m.f32()[i] = dist(rng);
    }
  }
  return m;
}

// Runs Gemm on strided x / y and checks every output against a double reference.
// `round_x`: the kernel rounds the activations to bf16 (the bf16 levels on bf16 weights), so
// the reference does too.
//
// Tolerance: the reference uses the same (bf16-rounded) weights in double, so the only
// error is fp32 rounding (products of two bf16 values are exact in fp32). Each product x·w carries
// a relative error <= u = 2^-24 and a sum of k terms in any order adds at most (k-1)·u·Σ|terms|
// (Higham, Accuracy and Stability, §3.1), so |y - ref| <= (cols + 1)·u·Σ_c |x_c||w_c|. A wrong
// index or a missed term is off by a whole |x·w| term, ~ Σ|x||w| / cols, far above this bound.
//
// `pad` fills x's padding between rows (past cols) with that value: NaN checks that no
// kernel reads it.
void CheckGemmView(int64_t n, const MatrixView& w, ThreadPool* pool, std::mt19937& rng, float pad) {
  const int64_t rows = w.rows, cols = w.cols;
  const DType dtype = w.dtype;
  const bool round_x = !IsaIsExact(ActiveIsa()) && dtype == DType::kBF16;
  SCOPED_TRACE(testing::Message() << "n=" << n << " rows=" << rows << " cols=" << cols
                                  << " dtype=" << DTypeName(dtype));
  auto weight = [&](int64_t r, int64_t c) -> double {
    const int64_t i = r * w.row_stride + c;
    return dtype == DType::kBF16 ? Bf16ToFloat(static_cast<const bf16_t*>(w.data)[i])
                                 : static_cast<const float*>(w.data)[i];
  };
  const int64_t x_stride = cols + 3;
  const int64_t y_stride = rows + 5;
  std::uniform_real_distribution<float> dist(-2.0f, 2.0f);
  std::vector<float> x(n * x_stride, pad);
  for (int64_t i = 0; i < n; ++i) {
    for (int64_t c = 0; c < cols; ++c) x[i * x_stride + c] = dist(rng);
  }
  std::vector<float> y(n * y_stride, kSentinel);
  Gemm(x.data(), x_stride, n, w, y.data(), y_stride, pool);
  const double u = std::ldexp(1.0, -24);
  for (int64_t i = 0; i < n; ++i) {
    for (int64_t r = 0; r < rows; ++r) {
      double ref = 0;
      double abs_sum = 0;
      for (int64_t c = 0; c < cols; ++c) {
        const float xc = x[i * x_stride + c];
        const double p =
            static_cast<double>(round_x ? Bf16ToFloat(FloatToBf16(xc)) : xc) * weight(r, c);
        ref += p;
        abs_sum += std::fabs(p);
      }
      const double tol = (cols + 1) * u * abs_sum + 1e-30;
      ASSERT_NEAR(y[i * y_stride + r], ref, tol) << "i=" << i << " r=" << r;
    }
    for (int64_t r = rows; r < y_stride; ++r) {
      ASSERT_EQ(y[i * y_stride + r], kSentinel) << "wrote past the row end, i=" << i;
    }
  }
}

void CheckGemm(int64_t n, int64_t rows, int64_t cols, DType dtype, ThreadPool* pool,
               std::mt19937& rng) {
  const Matrix w = RandomMatrix(rows, cols, dtype, rng);
  CheckGemmView(n, w.View(), pool, rng, 0.0f);
}

class GemmIsaTest : public testing::TestWithParam<CpuIsa> {
 protected:
  void SetUp() override {
    const std::string name(CpuIsaName(GetParam()));
    const std::string features(CpuIsaFeatures(GetParam()));
    // Printed as well as reported, so that a log shows which paths a machine covered.
    if (!IsaSupported(GetParam())) {
      std::printf("GEMM isa path %s: SKIPPED, this CPU lacks %s\n", name.c_str(), features.c_str());
      GTEST_SKIP() << "CPU lacks " << name << " (" << features << ")";
    }
    std::printf("GEMM isa path %s: running (needs %s)\n", name.c_str(), features.c_str());
  }
};

TEST_P(GemmIsaTest, MatchesReferenceOnOddShapes) {
  ScopedIsaOverride isa(GetParam());
  std::mt19937 rng(42);
  const int64_t sizes[] = {1, 3, 17, 63, 65, 513};
  for (DType dtype : {DType::kBF16, DType::kF32}) {
    // n up to 32 takes the dot-product tiles (4 × 4 or 4 × 2 with token tails), above it the
    // packed panels.
    for (int64_t n : {1, 2, 4, 5, 13, 32, 33, 64}) {
      for (int64_t rows : sizes) {
        for (int64_t cols : sizes) {
          if (n >= 32 && rows * cols > 65 * 513) continue;  // Keep the runtime small.
          CheckGemm(n, rows, cols, dtype, nullptr, rng);
        }
      }
    }
  }
}

TEST_P(GemmIsaTest, ParallelSplitsMatchReference) {
  ScopedIsaOverride isa(GetParam());
  std::mt19937 rng(7);
  for (int threads : {2, 3}) {
    ThreadPool pool(threads);
    for (DType dtype : {DType::kBF16, DType::kF32}) {
      CheckGemm(1, 513, 300, dtype, &pool, rng);  // GEMV split over row tiles
      CheckGemm(3, 200, 129, dtype, &pool, rng);
      CheckGemm(16, 200, 129, dtype, &pool, rng);  // dot tiles on each thread's rows
      CheckGemm(70, 130, 257, dtype, &pool, rng);  // packed, K split across 2 panels
      CheckGemm(200, 17, 65, dtype, &pool, rng);   // few rows: also split over tokens
    }
  }
}

TEST_P(GemmIsaTest, EdgeSizesMatchReference) {
  ScopedIsaOverride isa(GetParam());
  std::mt19937 rng(11);
  for (DType dtype : {DType::kBF16, DType::kF32}) {
    CheckGemm(0, 7, 9, dtype, nullptr, rng);      // no tokens: nothing written
    CheckGemm(4, 1, 1, dtype, nullptr, rng);      // one row, one column
    CheckGemm(193, 33, 31, dtype, nullptr, rng);  // a full token block and a 1-token rest
    // Past the AMX level's 512-token and the avx512 level's 576-token blocks.
    CheckGemm(600, 40, 70, dtype, nullptr, rng);
    CheckGemm(12, 16, 600, dtype, nullptr, rng);  // a whole register tile, K past 2 panels
    CheckGemm(3, 9, 1, dtype, nullptr, rng);
    // Dot tiles: two 32-row blocks plus a rest (the next block is prefetched), columns past
    // one 4096-column pass with a tail that is not a multiple of 16 or 32.
    CheckGemm(7, 67, 4096 + 16 + 5, dtype, nullptr, rng);
    CheckGemm(1, 27, 4096 + 40, dtype, nullptr, rng);  // 8-row GEMV tiles, the next prefetched
  }
}

// The weight view sits inside a larger matrix whose other rows and columns are NaN, and
// x's row padding is NaN: a kernel that reads past the view or x's columns (a tile edge,
// a token or row tail, the AMX level's full 16 × 32 tiles) turns outputs into NaN.
TEST_P(GemmIsaTest, NeverReadsPastTheOperands) {
  ScopedIsaOverride isa(GetParam());
  std::mt19937 rng(23);
  const float nan = std::numeric_limits<float>::quiet_NaN();
  for (DType dtype : {DType::kBF16, DType::kF32}) {
    for (int64_t rows : {1, 37, 64}) {
      for (int64_t cols : {45, 64}) {
        Matrix big = Matrix::Allocate(rows + 2, cols + 7, dtype);
        for (int64_t i = 0; i < big.rows * big.cols; ++i) {
          if (dtype == DType::kBF16) {
            big.bf16()[i] = FloatToBf16(nan);
          } else {
            big.f32()[i] = nan;
          }
        }
        const Matrix inner = RandomMatrix(rows, cols, dtype, rng);
        const size_t elem = DTypeSize(dtype);
        for (int64_t r = 0; r < rows; ++r) {
          std::memcpy(reinterpret_cast<char*>(big.data.data()) + ((r + 1) * big.cols + 2) * elem,
                      reinterpret_cast<const char*>(inner.data.data()) + r * cols * elem,
                      cols * elem);
        }
        const MatrixView view{
            reinterpret_cast<const char*>(big.data.data()) + (big.cols + 2) * elem, dtype, rows,
            cols, big.cols};
        // Below, at and above the AMX level's 8-token threshold, its one-pass 33-48 tokens,
        // one 512-token block and a rest of 18.
        for (int64_t n : {1, 7, 8, 17, 33, 48, 530}) CheckGemmView(n, view, nullptr, rng, nan);
      }
    }
  }
}

TEST_P(GemmIsaTest, ZeroColumnsGiveZeros) {
  ScopedIsaOverride isa(GetParam());
  for (int64_t n : {1, 8}) {
    Matrix w = Matrix::Allocate(5, 0, DType::kBF16);
    std::vector<float> x(n, 1.0f);
    std::vector<float> y(n * 5, kSentinel);
    Gemm(x.data(), 0, n, w.View(), y.data(), 5, nullptr);
    for (float v : y) EXPECT_EQ(v, 0.0f);
  }
}

INSTANTIATE_TEST_SUITE_P(Isa, GemmIsaTest,
                         testing::Values(CpuIsa::kScalar, CpuIsa::kAvx2, CpuIsa::kAvx512,
                                         CpuIsa::kAvx512Bf16, CpuIsa::kAmxBf16),
                         [](const testing::TestParamInfo<CpuIsa>& info) {
                           return std::string(CpuIsaName(info.param));
                         });

TEST(GemmTest, RowsViewComputesASliceOfTheRows) {
  std::mt19937 rng(3);
  const Matrix w = RandomMatrix(40, 33, DType::kBF16, rng);
  std::vector<float> x(2 * 33);
  for (float& v : x) v = std::uniform_real_distribution<float>(-1, 1)(rng);
  std::vector<float> full(2 * 40);
  std::vector<float> part(2 * 10);
  Gemm(x.data(), 33, 2, w.View(), full.data(), 40, nullptr);
  Gemm(x.data(), 33, 2, w.RowsView(17, 27), part.data(), 10, nullptr);
  for (int i = 0; i < 2; ++i) {
    for (int r = 0; r < 10; ++r) EXPECT_EQ(part[i * 10 + r], full[i * 40 + 17 + r]);
  }
}

// Rounding activations to bf16 is opt-in: without MLA_CPU_ISA the default stays exact.
TEST(GemmTest, DefaultIsaIsExact) {
  if (std::getenv("MLA_CPU_ISA") != nullptr) GTEST_SKIP() << "MLA_CPU_ISA is set";
  EXPECT_TRUE(IsaIsExact(DefaultIsa()));
  EXPECT_TRUE(IsaSupported(DefaultIsa()));
  for (CpuIsa isa :
       {CpuIsa::kScalar, CpuIsa::kAvx2, CpuIsa::kAvx512, CpuIsa::kAvx512Bf16, CpuIsa::kAmxBf16}) {
    EXPECT_EQ(ParseCpuIsa(CpuIsaName(isa)), isa);
  }
  EXPECT_FALSE(ParseCpuIsa("avx9").has_value());
}

TEST(GemmTest, CheckGemmArgsRejectsBadShapes) {
  Matrix w = Matrix::Allocate(4, 8, DType::kBF16);
  std::vector<float> x(16), y(16);
  EXPECT_TRUE(CheckGemmArgs(x.data(), 8, 2, w.View(), y.data(), 4).ok());
  EXPECT_FALSE(CheckGemmArgs(x.data(), 7, 2, w.View(), y.data(), 4).ok());
  EXPECT_FALSE(CheckGemmArgs(x.data(), 8, 2, w.View(), y.data(), 3).ok());
  EXPECT_FALSE(CheckGemmArgs(x.data(), 8, -1, w.View(), y.data(), 4).ok());
  EXPECT_FALSE(CheckGemmArgs(nullptr, 8, 2, w.View(), y.data(), 4).ok());
  MatrixView f16 = w.View();
  f16.dtype = DType::kF16;
  EXPECT_FALSE(CheckGemmArgs(x.data(), 8, 2, f16, y.data(), 4).ok());
}

}  // namespace
}  // namespace mla::cpu
