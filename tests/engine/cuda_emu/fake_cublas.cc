// The cuBLAS and cuBLASLt functions the CUDA backend calls, on the emulator: column-major
// products D = alpha·op(A)·op(B) + beta·C in fp32 on the host, bf16 or fp32 operands as the
// layouts say, run on the call's stream (so graphs capture them too). A binary links this
// instead of libcublas and libcublasLt.
#include <cublasLt.h>
#include <cublas_v2.h>

#include <cstdint>
#include <cstring>
#include <vector>

#include "tests/engine/cuda_emu/emu_runtime.h"

namespace {

namespace emu = ::mla::cuda::emu;

struct Handle {
  cudaStream_t stream = nullptr;
};
struct Layout {
  cudaDataType type;
  uint64_t rows;
  uint64_t cols;
  int64_t ld;
};
struct Desc {
  cublasOperation_t trans_a = CUBLAS_OP_N;
  cublasOperation_t trans_b = CUBLAS_OP_N;
};
struct Preference {};

// Element (i, j) of a column-major matrix of `type` with leading dimension ld.
float Load(const void* base, cudaDataType type, int64_t ld, int64_t i, int64_t j) {
  const int64_t at = i + j * ld;
  if (type == CUDA_R_32F) return static_cast<const float*>(base)[at];
  const uint32_t bits = uint32_t{static_cast<const uint16_t*>(base)[at]} << 16;
  return emu::BitCast<float>(bits);
}

void Store(void* base, cudaDataType type, int64_t ld, int64_t i, int64_t j, float v) {
  const int64_t at = i + j * ld;
  if (type == CUDA_R_32F) {
    static_cast<float*>(base)[at] = v;
    return;
  }
  // Round to nearest even, as the device's conversion (NaN stays NaN).
  uint32_t bits = emu::BitCast<uint32_t>(v);
  if ((bits & 0x7fffffffu) > 0x7f800000u) {
    bits |= 0x00400000u;
  } else {
    bits += 0x7fffu + ((bits >> 16) & 1u);
  }
  static_cast<uint16_t*>(base)[at] = static_cast<uint16_t>(bits >> 16);
}

struct Product {
  int64_t m, n, k;
  cublasOperation_t trans_a, trans_b;
  const void* a;
  cudaDataType a_type;
  int64_t lda;
  const void* b;
  cudaDataType b_type;
  int64_t ldb;
  float alpha, beta;
  const void* c;
  cudaDataType c_type;
  int64_t ldc;
  void* d;
  cudaDataType d_type;
  int64_t ldd;
};

void Run(const Product& p) {
  // op(A) as m rows and op(B) as n columns of k floats each, then contiguous dot products
  // (eight partial sums, as a GPU's tiles also sum in pieces).
  std::vector<float> a(static_cast<size_t>(p.m * p.k));
  std::vector<float> b(static_cast<size_t>(p.n * p.k));
  for (int64_t i = 0; i < p.m; ++i) {
    for (int64_t l = 0; l < p.k; ++l) {
      a[i * p.k + l] = p.trans_a == CUBLAS_OP_N ? Load(p.a, p.a_type, p.lda, i, l)
                                                : Load(p.a, p.a_type, p.lda, l, i);
    }
  }
  for (int64_t j = 0; j < p.n; ++j) {
    for (int64_t l = 0; l < p.k; ++l) {
      b[j * p.k + l] = p.trans_b == CUBLAS_OP_N ? Load(p.b, p.b_type, p.ldb, l, j)
                                                : Load(p.b, p.b_type, p.ldb, j, l);
    }
  }
  for (int64_t j = 0; j < p.n; ++j) {
    const float* bj = b.data() + j * p.k;
    for (int64_t i = 0; i < p.m; ++i) {
      const float* ai = a.data() + i * p.k;
      float part[8] = {0, 0, 0, 0, 0, 0, 0, 0};
      int64_t l = 0;
      for (; l + 8 <= p.k; l += 8) {
        for (int u = 0; u < 8; ++u) part[u] += ai[l + u] * bj[l + u];
      }
      for (; l < p.k; ++l) part[0] += ai[l] * bj[l];
      const float sum =
          ((part[0] + part[1]) + (part[2] + part[3])) + ((part[4] + part[5]) + (part[6] + part[7]));
      float out = p.alpha * sum;
      if (p.beta != 0.0f) out += p.beta * Load(p.c, p.c_type, p.ldc, i, j);
      Store(p.d, p.d_type, p.ldd, i, j, out);
    }
  }
}

cublasStatus_t Enqueue(cudaStream_t stream, const Product& p) {
  const absl::Status s = emu::OnStream(stream, [p] {
    Run(p);
    return absl::OkStatus();
  });
  return s.ok() ? CUBLAS_STATUS_SUCCESS : CUBLAS_STATUS_EXECUTION_FAILED;
}

}  // namespace

extern "C" {

cublasStatus_t cublasCreate(cublasHandle_t* handle) {
  *handle = reinterpret_cast<cublasHandle_t>(new Handle());
  return CUBLAS_STATUS_SUCCESS;
}

cublasStatus_t cublasDestroy(cublasHandle_t handle) {
  delete reinterpret_cast<Handle*>(handle);
  return CUBLAS_STATUS_SUCCESS;
}

cublasStatus_t cublasGetVersion(cublasHandle_t, int* version) {
  *version = CUBLAS_VERSION;
  return CUBLAS_STATUS_SUCCESS;
}

cublasStatus_t cublasSetStream(cublasHandle_t handle, cudaStream_t stream) {
  reinterpret_cast<Handle*>(handle)->stream = stream;
  return CUBLAS_STATUS_SUCCESS;
}

cublasStatus_t cublasSetMathMode(cublasHandle_t, cublasMath_t) { return CUBLAS_STATUS_SUCCESS; }

const char* cublasGetStatusString(cublasStatus_t status) {
  return status == CUBLAS_STATUS_SUCCESS ? "CUBLAS_STATUS_SUCCESS" : "cuBLAS error (emulated)";
}

cublasStatus_t cublasSgemm(cublasHandle_t handle, cublasOperation_t transa,
                           cublasOperation_t transb, int m, int n, int k, const float* alpha,
                           const float* A, int lda, const float* B, int ldb, const float* beta,
                           float* C, int ldc) {
  const Product p{m,      n,     k, transa,     transb, A, CUDA_R_32F, lda, B, CUDA_R_32F, ldb,
                  *alpha, *beta, C, CUDA_R_32F, ldc,    C, CUDA_R_32F, ldc};
  return Enqueue(reinterpret_cast<Handle*>(handle)->stream, p);
}

cublasStatus_t cublasLtCreate(cublasLtHandle_t* handle) {
  *handle = reinterpret_cast<cublasLtHandle_t>(new Handle());
  return CUBLAS_STATUS_SUCCESS;
}

cublasStatus_t cublasLtDestroy(cublasLtHandle_t handle) {
  delete reinterpret_cast<Handle*>(handle);
  return CUBLAS_STATUS_SUCCESS;
}

cublasStatus_t cublasLtMatrixLayoutCreate(cublasLtMatrixLayout_t* layout, cudaDataType type,
                                          uint64_t rows, uint64_t cols, int64_t ld) {
  if (type != CUDA_R_32F && type != CUDA_R_16BF) return CUBLAS_STATUS_NOT_SUPPORTED;
  *layout = reinterpret_cast<cublasLtMatrixLayout_t>(new Layout{type, rows, cols, ld});
  return CUBLAS_STATUS_SUCCESS;
}

cublasStatus_t cublasLtMatrixLayoutDestroy(cublasLtMatrixLayout_t layout) {
  delete reinterpret_cast<Layout*>(layout);
  return CUBLAS_STATUS_SUCCESS;
}

cublasStatus_t cublasLtMatmulDescCreate(cublasLtMatmulDesc_t* desc, cublasComputeType_t compute,
                                        cudaDataType_t scale) {
  if (compute != CUBLAS_COMPUTE_32F || scale != CUDA_R_32F) return CUBLAS_STATUS_NOT_SUPPORTED;
  *desc = reinterpret_cast<cublasLtMatmulDesc_t>(new Desc());
  return CUBLAS_STATUS_SUCCESS;
}

cublasStatus_t cublasLtMatmulDescDestroy(cublasLtMatmulDesc_t desc) {
  delete reinterpret_cast<Desc*>(desc);
  return CUBLAS_STATUS_SUCCESS;
}

cublasStatus_t cublasLtMatmulDescSetAttribute(cublasLtMatmulDesc_t desc,
                                              cublasLtMatmulDescAttributes_t attr, const void* buf,
                                              size_t bytes) {
  auto* d = reinterpret_cast<Desc*>(desc);
  if (bytes != sizeof(int32_t)) return CUBLAS_STATUS_INVALID_VALUE;
  int32_t value;
  std::memcpy(&value, buf, sizeof(value));
  if (attr == CUBLASLT_MATMUL_DESC_TRANSA) {
    d->trans_a = static_cast<cublasOperation_t>(value);
  } else if (attr == CUBLASLT_MATMUL_DESC_TRANSB) {
    d->trans_b = static_cast<cublasOperation_t>(value);
  } else {
    return CUBLAS_STATUS_NOT_SUPPORTED;
  }
  return CUBLAS_STATUS_SUCCESS;
}

cublasStatus_t cublasLtMatmulPreferenceCreate(cublasLtMatmulPreference_t* pref) {
  *pref = reinterpret_cast<cublasLtMatmulPreference_t>(new Preference());
  return CUBLAS_STATUS_SUCCESS;
}

cublasStatus_t cublasLtMatmulPreferenceDestroy(cublasLtMatmulPreference_t pref) {
  delete reinterpret_cast<Preference*>(pref);
  return CUBLAS_STATUS_SUCCESS;
}

cublasStatus_t cublasLtMatmulPreferenceSetAttribute(cublasLtMatmulPreference_t,
                                                    cublasLtMatmulPreferenceAttributes_t,
                                                    const void*, size_t) {
  return CUBLAS_STATUS_SUCCESS;
}

cublasStatus_t cublasLtMatmulAlgoGetHeuristic(cublasLtHandle_t, cublasLtMatmulDesc_t,
                                              cublasLtMatrixLayout_t, cublasLtMatrixLayout_t,
                                              cublasLtMatrixLayout_t, cublasLtMatrixLayout_t,
                                              cublasLtMatmulPreference_t, int requested,
                                              cublasLtMatmulHeuristicResult_t results[],
                                              int* returned) {
  if (requested < 1) return CUBLAS_STATUS_INVALID_VALUE;
  std::memset(&results[0], 0, sizeof(results[0]));
  results[0].state = CUBLAS_STATUS_SUCCESS;
  results[0].wavesCount = 1.0f;
  *returned = 1;
  return CUBLAS_STATUS_SUCCESS;
}

cublasStatus_t cublasLtMatmul(cublasLtHandle_t, cublasLtMatmulDesc_t desc, const void* alpha,
                              const void* A, cublasLtMatrixLayout_t a_desc, const void* B,
                              cublasLtMatrixLayout_t b_desc, const void* beta, const void* C,
                              cublasLtMatrixLayout_t c_desc, void* D, cublasLtMatrixLayout_t d_desc,
                              const cublasLtMatmulAlgo_t*, void*, size_t, cudaStream_t stream) {
  const auto& d = *reinterpret_cast<const Desc*>(desc);
  const auto& a = *reinterpret_cast<const Layout*>(a_desc);
  const auto& b = *reinterpret_cast<const Layout*>(b_desc);
  const auto& c = *reinterpret_cast<const Layout*>(c_desc);
  const auto& o = *reinterpret_cast<const Layout*>(d_desc);
  const int64_t k = d.trans_a == CUBLAS_OP_N ? a.cols : a.rows;
  const int64_t b_k = d.trans_b == CUBLAS_OP_N ? b.rows : b.cols;
  const int64_t a_m = d.trans_a == CUBLAS_OP_N ? a.rows : a.cols;
  const int64_t b_n = d.trans_b == CUBLAS_OP_N ? b.cols : b.rows;
  if (k != b_k || a_m != static_cast<int64_t>(o.rows) || b_n != static_cast<int64_t>(o.cols) ||
      c.rows != o.rows || c.cols != o.cols) {
    return CUBLAS_STATUS_INVALID_VALUE;
  }
  const Product p{a_m,
                  b_n,
                  k,
                  d.trans_a,
                  d.trans_b,
                  A,
                  a.type,
                  a.ld,
                  B,
                  b.type,
                  b.ld,
                  *static_cast<const float*>(alpha),
                  *static_cast<const float*>(beta),
                  C,
                  c.type,
                  c.ld,
                  D,
                  o.type,
                  o.ld};
  return Enqueue(stream, p);
}

}  // extern "C"
