// Owned, aligned storage for weights and the Matrix type the kernels consume.
#ifndef MLA_ENGINE_COMMON_TENSOR_H_
#define MLA_ENGINE_COMMON_TENSOR_H_

#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <memory>
#include <new>
#include <string_view>

#include "engine/common/bf16.h"

namespace mla {

// Element types found in checkpoints. Weights are served as kBF16 or kF32 only.
enum class DType { kF32, kBF16, kF16, kF8E4M3, kI32, kI64 };

inline size_t DTypeSize(DType t) {
  switch (t) {
    case DType::kF32: return 4;
    case DType::kBF16: return 2;
    case DType::kF16: return 2;
    case DType::kF8E4M3: return 1;
    case DType::kI32: return 4;
    case DType::kI64: return 8;
  }
  return 0;
}

inline const char* DTypeName(DType t) {
  switch (t) {
    case DType::kF32: return "F32";
    case DType::kBF16: return "BF16";
    case DType::kF16: return "F16";
    case DType::kF8E4M3: return "F8_E4M3";
    case DType::kI32: return "I32";
    case DType::kI64: return "I64";
  }
  return "?";
}

// A 64-byte aligned heap buffer (cache-line and AVX-512 aligned).
class AlignedBuffer {
 public:
  static constexpr size_t kAlignment = 64;
  AlignedBuffer() = default;
  explicit AlignedBuffer(size_t bytes)
      : data_(static_cast<std::byte*>(
            ::operator new[]((bytes + kAlignment - 1) / kAlignment * kAlignment + kAlignment,
                             std::align_val_t(kAlignment)))),
        size_(bytes) {}
  size_t size() const { return size_; }
  std::byte* data() { return data_.get(); }
  const std::byte* data() const { return data_.get(); }
  template <typename T>
  T* as() { return reinterpret_cast<T*>(data_.get()); }
  template <typename T>
  const T* as() const { return reinterpret_cast<const T*>(data_.get()); }

 private:
  struct Deleter {
    void operator()(std::byte* p) const { ::operator delete[](p, std::align_val_t(kAlignment)); }
  };
  std::unique_ptr<std::byte[], Deleter> data_;
  size_t size_ = 0;
};

// A non-owning view of a row-major matrix [rows, cols] whose rows are `row_stride`
// elements apart (row_stride >= cols). What the GEMM kernels take, so that a slice of a
// weight (one head's rows, one expert) needs no copy.
struct MatrixView {
  const void* data = nullptr;
  DType dtype = DType::kBF16;
  int64_t rows = 0;
  int64_t cols = 0;
  int64_t row_stride = 0;
};

// A row-major weight matrix [rows, cols] used as y = x · Wᵀ (Hugging Face's [out, in]).
// dtype is kBF16 (bf16 and dequantized fp8 checkpoints) or kF32 (f32 and f16 ones).
struct Matrix {
  int64_t rows = 0;
  int64_t cols = 0;
  DType dtype = DType::kBF16;
  AlignedBuffer data;

  static Matrix Allocate(int64_t rows, int64_t cols, DType dtype) {
    Matrix m;
    m.rows = rows;
    m.cols = cols;
    m.dtype = dtype;
    m.data = AlignedBuffer(static_cast<size_t>(rows * cols) * DTypeSize(dtype));
    return m;
  }
  bool empty() const { return rows == 0 || cols == 0; }
  const bf16_t* bf16() const { return data.as<bf16_t>(); }
  bf16_t* bf16() { return data.as<bf16_t>(); }
  const float* f32() const { return data.as<float>(); }
  float* f32() { return data.as<float>(); }
  MatrixView View() const { return RowsView(0, rows); }
  // Rows [begin, end); requires 0 <= begin <= end <= rows.
  MatrixView RowsView(int64_t begin, int64_t end) const {
    const size_t offset = static_cast<size_t>(begin * cols) * DTypeSize(dtype);
    return MatrixView{data.data() + offset, dtype, end - begin, cols, cols};
  }
  // Element (r, c) as float, for references and tests (slow).
  float At(int64_t r, int64_t c) const {
    return dtype == DType::kBF16 ? Bf16ToFloat(bf16()[r * cols + c]) : f32()[r * cols + c];
  }
};

}  // namespace mla

#endif  // MLA_ENGINE_COMMON_TENSOR_H_
