#include "engine/backend/cpu/gemm.h"

#include <algorithm>
#include <cassert>

#include "absl/strings/str_cat.h"
#include "engine/backend/cpu/cpu_features.h"
#include "engine/backend/cpu/gemm_kernels.h"

namespace mla::cpu {
namespace {

// Below this many multiply-adds a call runs on the calling thread: waking the pool costs
// more than it saves.
constexpr int64_t kMinParallelWork = 1 << 16;
// Tokens per work unit when a short, wide GEMM is also split over tokens.
constexpr int64_t kTokenBlock = 48;

template <typename T>
float DotScalar(const float* x, const T* w, int64_t cols) {
  // Four partial sums: shorter dependency chains and a smaller rounding error than one.
  float s[4] = {0, 0, 0, 0};
  int64_t c = 0;
  for (; c + 4 <= cols; c += 4) {
    for (int k = 0; k < 4; ++k) {
      if constexpr (sizeof(T) == 2) {
        s[k] += x[c + k] * Bf16ToFloat(w[c + k]);
      } else {
        s[k] += x[c + k] * w[c + k];
      }
    }
  }
  for (; c < cols; ++c) {
    if constexpr (sizeof(T) == 2) {
      s[0] += x[c] * Bf16ToFloat(w[c]);
    } else {
      s[0] += x[c] * w[c];
    }
  }
  return (s[0] + s[1]) + (s[2] + s[3]);
}

internal::GemmRowsFn SelectKernel(DType dtype) {
  const CpuIsa isa = ActiveIsa();
  // The bf16 kernels need bf16 weights; f32 weights stay on the exact kernels rather than
  // being rounded as well.
  if (isa >= CpuIsa::kAmxBf16 && dtype == DType::kBF16) {
    if (internal::GemmRowsFn fn = internal::GemmRowsAmxBf16Fn()) return fn;
  }
  if (isa >= CpuIsa::kAvx512Bf16 && dtype == DType::kBF16) {
    if (internal::GemmRowsFn fn = internal::GemmRowsAvx512Bf16Fn()) return fn;
  }
  if (isa >= CpuIsa::kAvx512) {
    if (internal::GemmRowsFn fn = internal::GemmRowsAvx512Fn()) return fn;
  }
  if (isa >= CpuIsa::kAvx2) {
    if (internal::GemmRowsFn fn = internal::GemmRowsAvx2Fn()) return fn;
  }
  return internal::GemmRowsScalar;
}

}  // namespace

namespace internal {

void GemmRowsScalar(const float* x, int64_t x_stride, int64_t n, const MatrixView& w,
                    int64_t r_begin, int64_t r_end, float* y, int64_t y_stride) {
  for (int64_t r = r_begin; r < r_end; ++r) {
    for (int64_t i = 0; i < n; ++i) {
      const float* xi = x + i * x_stride;
      float v;
      if (w.dtype == DType::kBF16) {
        v = DotScalar(xi, static_cast<const bf16_t*>(w.data) + r * w.row_stride, w.cols);
      } else {
        v = DotScalar(xi, static_cast<const float*>(w.data) + r * w.row_stride, w.cols);
      }
      y[i * y_stride + r] = v;
    }
  }
}

}  // namespace internal

absl::Status CheckGemmArgs(const float* x, int64_t x_stride, int64_t n, const MatrixView& w,
                           const float* y, int64_t y_stride) {
  if (w.dtype != DType::kBF16 && w.dtype != DType::kF32) {
    return absl::InvalidArgumentError(
        absl::StrCat("Gemm: weight dtype ", DTypeName(w.dtype), " (want BF16 or F32)"));
  }
  if (n < 0 || w.rows < 0 || w.cols < 0) {
    return absl::InvalidArgumentError(
        absl::StrCat("Gemm: negative size n=", n, " rows=", w.rows, " cols=", w.cols));
  }
  if (w.row_stride < w.cols || x_stride < w.cols || y_stride < w.rows) {
    return absl::InvalidArgumentError(absl::StrCat("Gemm: stride too small (w ", w.row_stride,
                                                   ", x ", x_stride, ", y ", y_stride, ")"));
  }
  if (n > 0 && w.rows > 0 && (x == nullptr || y == nullptr || w.data == nullptr)) {
    return absl::InvalidArgumentError("Gemm: null pointer");
  }
  return absl::OkStatus();
}

void Gemm(const float* x, int64_t x_stride, int64_t n, const MatrixView& w, float* y,
          int64_t y_stride, ThreadPool* pool) {
  assert(CheckGemmArgs(x, x_stride, n, w, y, y_stride).ok());
  if (n <= 0 || w.rows <= 0) return;
  const internal::GemmRowsFn fn = SelectKernel(w.dtype);
  const int threads = pool == nullptr ? 1 : pool->num_threads();
  if (threads == 1 || n * w.rows * w.cols < kMinParallelWork) {
    fn(x, x_stride, n, w, 0, w.rows, y, y_stride);
    return;
  }
  constexpr int64_t kTile = internal::kGemmPanelRows;
  const int64_t tiles = (w.rows + kTile - 1) / kTile;
  // Few weight rows but many tokens (e.g. a 576-row projection in prefill): also split
  // the tokens so that every thread gets work.
  int64_t token_blocks = 1;
  if (tiles < 4 * threads && n >= 2 * kTokenBlock) {
    token_blocks = std::min((n + kTokenBlock - 1) / kTokenBlock, (4 * threads + tiles - 1) / tiles);
  }
  if (token_blocks == 1) {
    pool->ParallelFor(tiles, [&](int64_t begin, int64_t end) {
      fn(x, x_stride, n, w, begin * kTile, std::min(end * kTile, w.rows), y, y_stride);
    });
    return;
  }
  pool->ParallelFor(tiles * token_blocks, [&](int64_t begin, int64_t end) {
    for (int64_t u = begin; u < end; ++u) {
      const int64_t tile = u / token_blocks;
      const int64_t block = u % token_blocks;
      const int64_t i0 = n * block / token_blocks;
      const int64_t i1 = n * (block + 1) / token_blocks;
      fn(x + i0 * x_stride, x_stride, i1 - i0, w, tile * kTile,
         std::min((tile + 1) * kTile, w.rows), y + i0 * y_stride, y_stride);
    }
  });
}

}  // namespace mla::cpu
