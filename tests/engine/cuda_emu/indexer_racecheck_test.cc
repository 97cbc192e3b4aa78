// The indexer's kernels (engine/backend/cuda/kernels/indexer.cu) on the emulated device,
// built with ThreadSanitizer (see CMakeLists.txt): the tensor-core scores' shared q, keys,
// warp sums and FP8 key scales (also in row tiles and multi-chunk CTAs), and the selection's shared
// histogram, threshold and warp counts must be ordered by their barriers, or the race
// check fails the test.
// The values are small integers (q, keys and weights) and powers of two (the scales), so
// that every score is exact whatever the summation order and the device's top-k must equal
// the CPU backend's bit for bit, ties (frequent with integer scores) to the lower position.
#include <gtest/gtest.h>

#include <cstdint>
#include <random>
#include <vector>

#include "engine/backend/cpu/indexer.h"
#include "engine/backend/cuda/device_buffer.h"
#include "engine/backend/cuda/kernels/indexer.h"
#include "engine/common/bf16.h"
#include "engine/kv_cache/index_key_row.h"

namespace mla {
namespace {

using cuda::DeviceBuffer;

template <typename T>
DeviceBuffer Upload(const std::vector<T>& host) {
  absl::StatusOr<DeviceBuffer> b = DeviceBuffer::FromHost(host);
  EXPECT_TRUE(b.ok()) << b.status();
  return b.ok() ? std::move(*b) : DeviceBuffer();
}

// Index keys of kDim values: 40 takes the CUDA-core scores, 32 the tensor-core ones (small
// integers are exact in bf16, so rounding q there changes nothing). FP8 keys: the codes of
// −3..3 over a scale of 3/448 are integers (0, ±144, ±288, ±448), so their dot products are
// exact too, and each score's one multiply by its key's scale rounds alike on both.
void ExpectTopKEqualsTheCpus(const int kDim, bool fp8 = false) {
  SCOPED_TRACE(::testing::Message() << "index_key_dim " << kDim << (fp8 ? ", fp8 keys" : ""));
  constexpr int kHeads = 4, kBlock = 16, kTopK = 8;
  // Sequence 0: 3 decode-like rows at the end of 40 keys; sequence 1: a 7-row prefill
  // (rows seeing fewer keys than top-k, and more); sequence 2: one row over 70 keys.
  const std::vector<int32_t> seq_lens = {40, 7, 70}, q_pos0 = {37, 0, 69};
  const std::vector<int32_t> cu_seqlens_q = {0, 3, 10, 11};
  const int64_t rows = cu_seqlens_q.back(), batch = 3, max_blocks = 5, num_blocks = 12;
  std::vector<int32_t> row_seq;
  for (int32_t s = 0; s < batch; ++s) {
    for (int32_t r = cu_seqlens_q[s]; r < cu_seqlens_q[s + 1]; ++r) row_seq.push_back(s);
  }
  // Shuffled block ids; unused table entries point at block 0.
  std::vector<int32_t> ids(num_blocks);
  for (int32_t i = 0; i < num_blocks; ++i) ids[i] = i;
  std::mt19937 rng(5);
  std::shuffle(ids.begin(), ids.end(), rng);
  std::vector<int32_t> table(batch * max_blocks, 0);
  int next = 0;
  for (int64_t s = 0; s < batch; ++s) {
    for (int64_t b = 0; b * kBlock < seq_lens[s]; ++b) table[s * max_blocks + b] = ids[next++];
  }
  std::uniform_int_distribution<int> small(-3, 3);
  std::vector<bf16_t> keys(num_blocks * kBlock * kDim);
  for (bf16_t& k : keys) k = FloatToBf16(static_cast<float>(small(rng)));
  // The same keys as FP8 (index_key_row.h): block regions of codes, then scales.
  std::vector<float> keys_f32(keys.size());
  for (size_t i = 0; i < keys.size(); ++i) keys_f32[i] = Bf16ToFloat(keys[i]);
  std::vector<uint8_t> fp8_keys(num_blocks * kBlock * IndexKeyBytes(CacheDType::kFp8E4M3, kDim));
  EncodeIndexKeys(CacheDType::kFp8E4M3, kDim, kBlock, keys_f32.data(), num_blocks * kBlock,
                  fp8_keys.data());
  std::vector<float> q(rows * kHeads * kDim), w(rows * kHeads);
  for (float& x : q) x = static_cast<float>(small(rng));
  for (float& x : w) x = static_cast<float>(small(rng));

  cpu::IndexerParams host;
  host.batch = batch;
  host.num_heads = kHeads;
  host.head_dim = kDim;
  host.block_size = kBlock;
  host.num_blocks = num_blocks;
  host.max_blocks_per_seq = max_blocks;
  host.topk = kTopK;
  host.scale = 0.25f;
  host.weight_scale = 0.5f;
  host.key_cache = fp8 ? static_cast<const void*>(fp8_keys.data()) : keys.data();
  host.key_dtype = fp8 ? CacheDType::kFp8E4M3 : CacheDType::kBF16;
  host.block_table = table.data();
  host.seq_lens = seq_lens.data();
  host.q_pos0 = q_pos0.data();
  host.cu_seqlens_q = cu_seqlens_q.data();
  host.q = q.data();
  host.weights = w.data();
  std::vector<int32_t> want(rows * kTopK, 7777);
  host.selected = want.data();
  ASSERT_TRUE(cpu::IndexerTopK(host, nullptr).ok());

  DeviceBuffer d_keys = fp8 ? Upload(fp8_keys) : Upload(keys), d_table = Upload(table),
               d_pos0 = Upload(q_pos0);
  DeviceBuffer d_cu = Upload(cu_seqlens_q), d_row_seq = Upload(row_seq), d_q = Upload(q);
  DeviceBuffer d_w = Upload(w);
  DeviceBuffer d_scores = Upload(std::vector<float>(rows * 70, 0.0f));
  DeviceBuffer d_selected = Upload(std::vector<int32_t>(rows * kTopK, 7777));
  cuda::IndexerF32Params p;
  p.heads = kHeads;
  p.dim = kDim;
  p.block_size = kBlock;
  p.max_blocks = max_blocks;
  p.topk = kTopK;
  p.scale = host.scale;
  p.weight_scale = host.weight_scale;
  p.keys = d_keys.data();
  p.keys_fp8 = fp8;
  p.block_table = d_table.as<int32_t>();
  p.q_pos0 = d_pos0.as<int32_t>();
  p.cu_seqlens_q = d_cu.as<int32_t>();
  p.row_seq = d_row_seq.as<int32_t>();
  p.q = d_q.as<float>();
  p.w = d_w.as<float>();
  p.scores = d_scores.as<float>();
  p.scores_stride = 70;
  p.selected = d_selected.as<int32_t>();
  EXPECT_EQ(cuda::IndexerUsesTensorCores(p), kDim % 16 == 0);
  // One row and one chunk per CTA, then (tensor cores) tiles of rows that share key loads,
  // across sequences, with two chunks per CTA.
  for (const int tile : {1, 4}) {
    SCOPED_TRACE(::testing::Message() << "row tile " << tile);
    p.row_tile = tile;
    p.key_chunks_per_cta = tile == 1 ? 0 : 2;
    ASSERT_TRUE(d_selected.Fill(0xff).ok());
    // Two groups of rows, as the backend launches when the scratch is short.
    for (const auto& [first, n] : {std::pair<int64_t, int64_t>{0, 6}, {6, rows - 6}}) {
      p.first_row = first;
      p.num_rows = n;
      ASSERT_TRUE(cuda::LaunchIndexerTopK(p, nullptr).ok());
    }
    std::vector<int32_t> got(rows * kTopK);
    ASSERT_TRUE(d_selected.CopyToHost(got.data(), got.size() * sizeof(int32_t)).ok());
    for (int64_t r = 0; r < rows; ++r) {
      for (int k = 0; k < kTopK; ++k) {
        ASSERT_EQ(got[r * kTopK + k], want[r * kTopK + k]) << "row " << r << " entry " << k;
      }
    }
  }
}

TEST(IndexerRacecheck, TopKEqualsTheCpusOnExactScores) {
  ExpectTopKEqualsTheCpus(40);
  ExpectTopKEqualsTheCpus(32);
}

TEST(IndexerRacecheck, Fp8KeysTopKEqualsTheCpusOnExactScores) {
  ExpectTopKEqualsTheCpus(40, /*fp8=*/true);
  ExpectTopKEqualsTheCpus(32, /*fp8=*/true);
}

}  // namespace
}  // namespace mla
