// Helpers shared by the CUDA backend's GPU tests (cuda_backend_test.cc, cuda_sparse_test.cc):
// a backend on device 0, random vectors, and steps over shuffled block tables.
#ifndef MLA_TESTS_GPU_CUDA_BACKEND_TEST_UTIL_H_
#define MLA_TESTS_GPU_CUDA_BACKEND_TEST_UTIL_H_

#include <gtest/gtest.h>

#include <algorithm>
#include <memory>
#include <numeric>
#include <random>
#include <vector>

#include "absl/status/status.h"
#include "engine/backend/backend.h"
#include "engine/backend/cuda/cuda_backend.h"

namespace mla::testing {

// An assertion on a Status that prints it when it is not OK.
inline ::testing::AssertionResult StatusIsOk(const absl::Status& s) {
  if (s.ok()) return ::testing::AssertionSuccess();
  return ::testing::AssertionFailure() << s;
}

// A CUDA backend on device 0 (null, with a test failure, when it cannot be made).
inline std::unique_ptr<cuda::CudaBackend> MakeCuda() {
  absl::StatusOr<std::unique_ptr<cuda::CudaBackend>> be = cuda::CudaBackend::Create(0);
  EXPECT_TRUE(be.ok()) << be.status();
  return be.ok() ? std::move(*be) : nullptr;
}

// The shape of a random attention case: per sequence, tokens already cached and new rows.
struct AttnCase {
  int heads, latent, rope, block_size;
  std::vector<int> cached;    // Tokens already in the cache per sequence.
  std::vector<int> new_rows;  // Rows of this step per sequence.
};

// The two steps of a case: every sequence's cached prefix, then its new rows, through
// block tables of shuffled block ids (a kernel assuming the identity mapping fails).
inline std::vector<StepBatch> MakeSteps(const AttnCase& c, int num_blocks, std::mt19937& rng) {
  std::vector<int32_t> free_blocks(num_blocks);
  std::iota(free_blocks.begin(), free_blocks.end(), 0);
  std::shuffle(free_blocks.begin(), free_blocks.end(), rng);
  const size_t batch = c.cached.size();
  std::vector<std::vector<int32_t>> tables(batch);
  int64_t max_blocks = 0;
  for (size_t s = 0; s < batch; ++s) {
    const int total = c.cached[s] + c.new_rows[s];
    for (int b = 0; b * c.block_size < total; ++b) {
      tables[s].push_back(free_blocks.back());
      free_blocks.pop_back();
    }
    max_blocks = std::max<int64_t>(max_blocks, static_cast<int64_t>(tables[s].size()));
  }
  std::vector<StepBatch> steps;
  for (int phase = 0; phase < 2; ++phase) {
    StepBatch step;
    step.max_blocks = max_blocks;
    step.cu_seqlens_q.push_back(0);
    for (size_t s = 0; s < batch; ++s) {
      const int first = phase == 0 ? 0 : c.cached[s];
      const int rows = phase == 0 ? c.cached[s] : c.new_rows[s];
      if (rows == 0) continue;
      std::vector<int32_t> row = tables[s];
      row.resize(static_cast<size_t>(max_blocks), 0);
      step.block_table.insert(step.block_table.end(), row.begin(), row.end());
      step.seq_lens.push_back(first + rows);
      step.q_pos0.push_back(first);
      step.cu_seqlens_q.push_back(step.cu_seqlens_q.back() + rows);
      for (int i = 0; i < rows; ++i) {
        const int pos = first + i;
        step.slots.push_back(int64_t{tables[s][pos / c.block_size]} * c.block_size +
                             pos % c.block_size);
      }
      ++step.batch;
    }
    step.num_tokens = static_cast<int64_t>(step.slots.size());
    steps.push_back(std::move(step));
  }
  return steps;
}

// n standard normal values.
inline std::vector<float> RandomVector(size_t n, std::mt19937& rng) {
  std::normal_distribution<float> normal(0.0f, 1.0f);
  std::vector<float> v(n);
  for (float& x : v) x = normal(rng);
  return v;
}

}  // namespace mla::testing

#endif  // MLA_TESTS_GPU_CUDA_BACKEND_TEST_UTIL_H_
