// A paged MLA attention problem for the kernel tests: one layer's cache (bf16 or FP8
// rows), shuffled block tables and absorbed queries for a batch, with NaN in every cache
// slot no sequence owns.
#ifndef MLA_TESTS_ENGINE_BACKEND_CPU_MLA_ATTENTION_PROBLEM_H_
#define MLA_TESTS_ENGINE_BACKEND_CPU_MLA_ATTENTION_PROBLEM_H_

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <numeric>
#include <random>
#include <vector>

#include "engine/backend/cpu/mla_attention.h"
#include "engine/kv_cache/cache_row.h"

namespace mla::cpu::testing_util {

struct SeqSpec {
  int n_q = 1;
  int q_pos0 = 0;
  int seq_len = 1;
};

inline SeqSpec Decode(int len) { return {1, len - 1, len}; }

// One layer's cache (bf16 or FP8 rows), block table and queries for a batch, with NaN in
// every cache slot a sequence does not own and in spare blocks that no table lists (but a
// table's unused tail points at), so that any read past a sequence's end shows up as NaN.
class Problem {
 public:
  Problem(int heads, int latent, int rope, int block_size, std::vector<SeqSpec> seqs, uint32_t seed,
          CacheDType dtype = CacheDType::kBF16)
      : heads_(heads),
        latent_(latent),
        width_(latent + rope),
        block_size_(block_size),
        dtype_(dtype),
        row_bytes_(CacheRowBytes(dtype, latent, rope)),
        seqs_(std::move(seqs)) {
    std::mt19937 rng(seed);
    std::uniform_real_distribution<float> unit(-1.0f, 1.0f);
    int total_blocks = 3;  // spares
    for (const SeqSpec& s : seqs_) {
      max_blocks_ = std::max(max_blocks_, Blocks(s) + 1);
      total_blocks += Blocks(s);
    }
    num_blocks_ = total_blocks;
    cache_.assign(static_cast<size_t>(num_blocks_) * block_size_ * row_bytes_, kCacheNaNByte);
    std::vector<int32_t> ids(num_blocks_);
    std::iota(ids.begin(), ids.end(), 0);
    std::shuffle(ids.begin(), ids.end(), rng);
    const int32_t spare = ids.back();
    size_t next_id = 0;
    cu_.push_back(0);
    for (const SeqSpec& s : seqs_) {
      std::vector<int32_t> row(max_blocks_, spare);
      for (int b = 0; b < Blocks(s); ++b) row[b] = ids[next_id++];
      std::vector<float> values(width_);
      for (int t = 0; t < s.seq_len; ++t) {
        uint8_t* slot = cache_.data() + (static_cast<size_t>(row[t / block_size_]) * block_size_ +
                                         t % block_size_) *
                                            row_bytes_;
        for (float& v : values) v = unit(rng);
        // In an fp8 row every fourth latent value is tiny (a few 2^-15 of the group's
        // largest): e4m3 subnormal codes, which the kernels decode on their own path.
        for (int d = 0; dtype_ == CacheDType::kFp8E4M3 && d < latent_; d += 4) {
          values[d] *= 0x1p-14f;
        }
        EncodeCacheRow(dtype_, latent_, width_ - latent_, values.data(), values.data() + latent_,
                       slot);
      }
      table_.insert(table_.end(), row.begin(), row.end());
      seq_lens_.push_back(s.seq_len);
      q_pos0_.push_back(s.q_pos0);
      cu_.push_back(cu_.back() + s.n_q);
    }
    // Queries of amplitude 3 and scale 1/sqrt(width): scores have a standard deviation
    // of about 1, so the softmax is neither flat nor one-hot.
    q_.resize(static_cast<size_t>(cu_.back()) * heads_ * width_);
    for (float& v : q_) v = 3.0f * unit(rng);
  }

  int64_t total_q() const { return cu_.back(); }
  int64_t out_size() const { return total_q() * heads_ * latent_; }

  MlaAttentionParams Params(float* out, float* lse) const {
    MlaAttentionParams p;
    p.batch = static_cast<int64_t>(seqs_.size());
    p.num_heads = heads_;
    p.kv_lora_rank = latent_;
    p.rope_dim = width_ - latent_;
    p.block_size = block_size_;
    p.num_blocks = num_blocks_;
    p.max_blocks_per_seq = max_blocks_;
    p.softmax_scale = 1.0f / std::sqrt(static_cast<float>(width_));
    p.kv_dtype = dtype_;
    p.kv_cache = cache_.data();
    p.block_table = table_.data();
    p.seq_lens = seq_lens_.data();
    p.q_pos0 = q_pos0_.data();
    p.cu_seqlens_q = cu_.data();
    p.q = q_.data();
    p.out = out;
    p.lse = lse;
    return p;
  }

  int heads() const { return heads_; }
  int latent() const { return latent_; }

 private:
  int Blocks(const SeqSpec& s) const { return (s.seq_len + block_size_ - 1) / block_size_; }

  int heads_, latent_, width_, block_size_;
  CacheDType dtype_;
  int64_t row_bytes_;
  std::vector<SeqSpec> seqs_;
  int max_blocks_ = 1;
  int num_blocks_ = 0;
  std::vector<uint8_t> cache_;
  std::vector<int32_t> table_, seq_lens_, q_pos0_, cu_;
  std::vector<float> q_;
};

}  // namespace mla::cpu::testing_util

#endif  // MLA_TESTS_ENGINE_BACKEND_CPU_MLA_ATTENTION_PROBLEM_H_
