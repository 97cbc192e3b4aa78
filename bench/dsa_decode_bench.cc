// Decode time per token of one attention layer at DeepSeek-V3.2 shapes on the CPU:
// dense absorbed MLA against DeepSeek Sparse Attention (the lightning indexer over every
// cached token, then MLA over its top index_topk), by context length.
// Usage: dsa_decode_bench [--threads=N] [--contexts=4096,...,65536] [--reps=N] [--topk=2048]
//
// Shapes: 128 heads, latent 512 + RoPE 64 (bf16 cache, 1,152 bytes per token); indexer
// 64 heads x 128 (bf16 keys, 256 bytes per token), one query row, 64-token blocks. The
// indexer reads 256 bytes and does 64·128·2 FLOPs per cached token; the sparse attention
// touches topk keys whatever the context, so it stays flat past topk while the indexer
// grows linearly. The cache is random; timing does not depend on the values. The last
// column is the indexer again over the same keys stored in FP8 (codes and a scale per key,
// 132 bytes per token: --indexer_key_dtype=fp8), in the same run.
#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <numeric>
#include <random>
#include <string>
#include <vector>

#include "engine/backend/cpu/indexer.h"
#include "engine/backend/cpu/mla_attention.h"
#include "engine/backend/cpu/sparse_mla_attention.h"
#include "engine/backend/cpu/thread_pool.h"
#include "engine/kv_cache/index_key_row.h"

namespace mla::bench {
namespace {

constexpr int kHeads = 128, kLatent = 512, kRope = 64, kWidth = kLatent + kRope;
constexpr int kIndexHeads = 64, kIndexDim = 128, kBlock = 64;

std::vector<bf16_t> RandomBf16(size_t n, std::mt19937& rng) {
  std::uniform_real_distribution<float> unit(-1.0f, 1.0f);
  std::vector<bf16_t> v(n);
  for (bf16_t& x : v) x = FloatToBf16(unit(rng));
  return v;
}

std::vector<float> RandomF32(size_t n, std::mt19937& rng, float amplitude) {
  std::uniform_real_distribution<float> unit(-amplitude, amplitude);
  std::vector<float> v(n);
  for (float& x : v) x = unit(rng);
  return v;
}

// The fastest of `reps` runs of fn, in milliseconds.
template <typename Fn>
double BestMs(int reps, Fn fn) {
  double best = 1e30;
  for (int r = 0; r < reps; ++r) {
    const auto t0 = std::chrono::steady_clock::now();
    fn();
    const auto t1 = std::chrono::steady_clock::now();
    best = std::min(best, std::chrono::duration<double, std::milli>(t1 - t0).count());
  }
  return best;
}

void Check(const absl::Status& s) {
  if (!s.ok()) {
    std::fprintf(stderr, "%s\n", s.ToString().c_str());
    std::exit(1);
  }
}

void Run(int context, int topk, int reps, cpu::ThreadPool& pool) {
  std::mt19937 rng(context);
  const int blocks = (context + kBlock - 1) / kBlock;
  const std::vector<bf16_t> cache = RandomBf16(static_cast<size_t>(blocks) * kBlock * kWidth, rng);
  const std::vector<bf16_t> keys =
      RandomBf16(static_cast<size_t>(blocks) * kBlock * kIndexDim, rng);
  std::vector<int32_t> table(blocks);
  std::iota(table.begin(), table.end(), 0);
  std::shuffle(table.begin(), table.end(), rng);
  const int32_t seq_len = context, pos0 = context - 1, cu[2] = {0, 1};
  const std::vector<float> q = RandomF32(size_t{kHeads} * kWidth, rng, 3.0f);
  const std::vector<float> iq = RandomF32(size_t{kIndexHeads} * kIndexDim, rng, 1.0f);
  const std::vector<float> iw = RandomF32(kIndexHeads, rng, 1.0f);
  std::vector<float> out(size_t{kHeads} * kLatent), lse(kHeads);
  std::vector<int32_t> selected(topk);

  cpu::MlaAttentionParams p{1,
                            kHeads,
                            kLatent,
                            kRope,
                            kBlock,
                            blocks,
                            blocks,
                            1.0f / std::sqrt(float(kWidth)),
                            CacheDType::kBF16,
                            cache.data(),
                            table.data(),
                            &seq_len,
                            &pos0,
                            cu,
                            q.data(),
                            out.data(),
                            lse.data()};
  cpu::IndexerParams ip{1,
                        kIndexHeads,
                        kIndexDim,
                        kBlock,
                        blocks,
                        blocks,
                        topk,
                        1.0f / std::sqrt(float(kIndexDim)),
                        1.0f / std::sqrt(float(kIndexHeads)),
                        keys.data(),
                        table.data(),
                        &seq_len,
                        &pos0,
                        cu,
                        iq.data(),
                        iw.data(),
                        selected.data()};
  // The same keys as FP8 indexer keys.
  const int64_t slots = int64_t{blocks} * kBlock;
  std::vector<float> keys_f32(keys.size());
  for (size_t i = 0; i < keys.size(); ++i) keys_f32[i] = Bf16ToFloat(keys[i]);
  std::vector<uint8_t> fp8_keys(
      static_cast<size_t>(slots * IndexKeyBytes(CacheDType::kFp8E4M3, kIndexDim)));
  EncodeIndexKeys(CacheDType::kFp8E4M3, kIndexDim, kBlock, keys_f32.data(), slots, fp8_keys.data());
  cpu::IndexerParams ip8 = ip;
  ip8.key_cache = fp8_keys.data();
  ip8.key_dtype = CacheDType::kFp8E4M3;
  cpu::MlaAttentionWorkspace ws;
  cpu::SparseMlaWorkspace sws;
  const double dense = BestMs(reps, [&] { Check(cpu::MlaAttention(p, &pool, &ws)); });
  const double indexer = BestMs(reps, [&] { Check(cpu::IndexerTopK(ip, &pool)); });
  const cpu::SparseMlaParams sp{p, topk, selected.data()};
  const double sparse = BestMs(reps, [&] { Check(cpu::SparseMlaAttention(sp, &pool, &sws)); });
  const double indexer_fp8 = BestMs(reps, [&] { Check(cpu::IndexerTopK(ip8, &pool)); });
  std::printf("%8d %12.3f %12.3f %12.3f %12.3f %8.2fx %12.3f\n", context, dense, indexer, sparse,
              indexer + sparse, dense / (indexer + sparse), indexer_fp8);
}

}  // namespace
}  // namespace mla::bench

int main(int argc, char** argv) {
  int threads = 0, reps = 5, topk = 2048;
  std::vector<int> contexts = {4096, 8192, 16384, 32768, 65536};
  for (int i = 1; i < argc; ++i) {
    const std::string a = argv[i];
    if (a.rfind("--threads=", 0) == 0)
      threads = std::atoi(a.c_str() + 10);
    else if (a.rfind("--reps=", 0) == 0)
      reps = std::atoi(a.c_str() + 7);
    else if (a.rfind("--topk=", 0) == 0)
      topk = std::atoi(a.c_str() + 7);
    else if (a.rfind("--contexts=", 0) == 0) {
      contexts.clear();
      for (const char* s = a.c_str() + 11; *s != '\0';) {
        char* end;
        contexts.push_back(static_cast<int>(std::strtol(s, &end, 10)));
        s = *end == ',' ? end + 1 : end;
      }
    } else {
      std::fprintf(stderr, "unknown flag %s\n", a.c_str());
      return 2;
    }
  }
  mla::cpu::ThreadPool pool(threads);
  std::printf("one decode row, one layer, %d threads, topk %d, best of %d (ms)\n",
              pool.num_threads(), topk, reps);
  std::printf("%8s %12s %12s %12s %12s %9s %12s\n", "context", "dense_mla", "indexer", "sparse_mla",
              "dsa_total", "speedup", "indexer_fp8");
  for (const int c : contexts) mla::bench::Run(c, topk, reps, pool);
  return 0;
}
