// Golden logits from transformers (tools/reference/make_goldens.py) and the row comparison
// the forward-pass tests share (golden_test.cc on the CPU, tests/gpu on a device).
#ifndef MLA_TESTS_ENGINE_MODEL_GOLDEN_UTIL_H_
#define MLA_TESTS_ENGINE_MODEL_GOLDEN_UTIL_H_

#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstring>
#include <string>
#include <vector>

#include "engine/model/safetensors.h"

namespace mla {

struct Golden {
  std::vector<int32_t> prompt;
  std::vector<float> logits;  // [T, vocab]
  std::vector<int32_t> greedy;
  std::vector<float> greedy_logits;  // [G, vocab]
};

inline std::vector<float> ReadF32(const SafetensorsFile& f, const std::string& name) {
  auto t = f.Tensor(name);
  EXPECT_TRUE(t.ok()) << t.status();
  if (!t.ok()) return {};
  std::vector<float> out(t->NumElements());
  ConvertToFloat(t->dtype(), t->data, out.size(), out.data());
  return out;
}

inline std::vector<int32_t> ReadI32(const SafetensorsFile& f, const std::string& name) {
  auto t = f.Tensor(name);
  EXPECT_TRUE(t.ok()) << t.status();
  if (!t.ok()) return {};
  std::vector<int32_t> out(t->NumElements());
  std::memcpy(out.data(), t->data, out.size() * sizeof(int32_t));
  return out;
}

inline std::vector<Golden> LoadGoldens(const std::string& file) {
  auto f = SafetensorsFile::Open(std::string(MLA_TEST_DATA_DIR) + "/goldens/" + file);
  EXPECT_TRUE(f.ok()) << f.status();
  std::vector<Golden> goldens;
  if (!f.ok()) return goldens;
  for (int i = 0; (*f)->Contains("p" + std::to_string(i) + ".prompt"); ++i) {
    const std::string p = "p" + std::to_string(i);
    goldens.push_back({ReadI32(**f, p + ".prompt"), ReadF32(**f, p + ".logits"),
                       ReadI32(**f, p + ".greedy"), ReadF32(**f, p + ".greedy_logits")});
  }
  return goldens;
}

// Compares rows of logits; returns the worst cosine and relative max-abs error.
struct Tolerance {
  double min_cosine;
  double max_err_of_range;
};
constexpr Tolerance kBf16Kv{1.0 - 1e-6, 1e-3};
constexpr Tolerance kFp32Ref{0.9999, 0.02};

inline void ExpectRowsClose(const float* got, const float* want, int64_t rows, int vocab,
                            const std::string& what, Tolerance tol = kBf16Kv) {
  for (int64_t r = 0; r < rows; ++r) {
    const float* g = got + r * vocab;
    const float* w = want + r * vocab;
    double dot = 0, gg = 0, ww = 0, max_err = 0;
    float lo = w[0], hi = w[0];
    for (int i = 0; i < vocab; ++i) {
      dot += double(g[i]) * w[i];
      gg += double(g[i]) * g[i];
      ww += double(w[i]) * w[i];
      max_err = std::max(max_err, std::fabs(double(g[i]) - w[i]));
      lo = std::min(lo, w[i]);
      hi = std::max(hi, w[i]);
    }
    const double cosine = dot / std::sqrt(gg * ww);
    ASSERT_GE(cosine, tol.min_cosine) << what << " row " << r;
    ASSERT_LE(max_err, tol.max_err_of_range * (hi - lo)) << what << " row " << r;
  }
}

// Logits drift between two runs of the same prompts (an fp8 cache against a bf16 one).
struct Drift {
  int64_t tokens = 0;
  double median = 0, p90 = 0, max = 0;
  double argmax_agreement = 0;
};

inline std::vector<double> LogSoftmaxRow(const float* row, int vocab) {
  double m = row[0];
  for (int i = 1; i < vocab; ++i) m = std::max(m, double{row[i]});
  double z = 0;
  for (int i = 0; i < vocab; ++i) z += std::exp(row[i] - m);
  std::vector<double> out(vocab);
  for (int i = 0; i < vocab; ++i) out[i] = row[i] - m - std::log(z);
  return out;
}

// What tools/reference/fp8_cache_sim.py's drift() computes: |Δ logprob| of each next
// prompt token between two runs (quantiles as numpy's linear interpolation), and the
// share of positions whose argmax agrees.
inline Drift MeasureDrift(const std::vector<std::vector<int32_t>>& prompts,
                   const std::vector<std::vector<float>>& a,
                   const std::vector<std::vector<float>>& b, int vocab) {
  std::vector<double> deltas;
  int64_t agree = 0, total = 0;
  for (size_t p = 0; p < prompts.size(); ++p) {
    const int64_t T = prompts[p].size();
    for (int64_t t = 0; t < T; ++t) {
      const float* ra = a[p].data() + t * vocab;
      const float* rb = b[p].data() + t * vocab;
      agree += std::max_element(ra, ra + vocab) - ra == std::max_element(rb, rb + vocab) - rb;
      ++total;
      if (t + 1 < T) {
        const int32_t next = prompts[p][t + 1];
        deltas.push_back(
            std::fabs(LogSoftmaxRow(rb, vocab)[next] - LogSoftmaxRow(ra, vocab)[next]));
      }
    }
  }
  std::sort(deltas.begin(), deltas.end());
  auto quantile = [&](double q) {
    const double pos = q * (deltas.size() - 1);
    const size_t lo = static_cast<size_t>(pos);
    const size_t hi = std::min(lo + 1, deltas.size() - 1);
    return deltas[lo] + (pos - lo) * (deltas[hi] - deltas[lo]);
  };
  return {static_cast<int64_t>(deltas.size()), quantile(0.5), quantile(0.9), deltas.back(),
          static_cast<double>(agree) / total};
}

}  // namespace mla

#endif  // MLA_TESTS_ENGINE_MODEL_GOLDEN_UTIL_H_
