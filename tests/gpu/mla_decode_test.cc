// The CUDA split-KV MLA decode against the CPU backend's reference (double precision),
// with FlashMLA's test pattern: NaN in every cache slot no sequence owns, shuffled block
// tables, zero-length and block-edge lengths, 16 and 128 heads, forced splits; every split
// kernel and opt-in variant, bf16 and FP8 caches; DeepSeek-V3.2's sparse attention over a
// selection of each sequence's positions, every position left out NaN. Built twice: against the
// CUDA runtime (cuda_mla_decode_test, label gpu) and against the CPU emulator
// (tests/engine/cuda_emu: cuda_mla_decode_emulated_test, every CI run).
#include "engine/backend/cuda/kernels/mla_decode.h"

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <limits>
#include <numeric>
#include <random>
#include <string>
#include <vector>

#include "engine/backend/cpu/mla_attention_reference.h"
#include "engine/backend/cuda/host/mla_decode_plan.h"
#include "engine/backend/cuda/kernels/mla_decode_mma.h"
#include "engine/kv_cache/cache_layout.h"
#include "engine/kv_cache/cache_row.h"
#include "tests/gpu/cuda_test_util.h"

namespace mla::cuda {
namespace {

using testing::CosineDiff;
using testing::Download;
using testing::Upload;
using testing::Zeros;

struct Shape {
  int heads = 16;
  int latent = 512;
  int rope = 64;
  int s_q = 1;
  std::vector<int32_t> lens;
  int num_sms = 0;  // 0: the device's multiprocessors
};

// One layer's cache and queries on the host, laid out for both backends.
struct Problem {
  int width = 0;
  int max_blocks = 0;
  int num_blocks = 0;
  std::vector<bf16_t> cache;  // [num_blocks, 64, width]; NaN where no sequence writes
  // The same rows in DeepSeek's FP8 layout (kCacheNaNByte where no sequence writes), and
  // what the kernels compute on from it: each value dequantized and rounded to bf16.
  std::vector<uint8_t> fp8_cache;
  std::vector<bf16_t> fp8_as_bf16;
  std::vector<int32_t> table;  // [batch, max_blocks]; unused entries point at a NaN block
  std::vector<bf16_t> q;       // [batch, s_q, heads, width]
};

Problem MakeProblem(const Shape& s, uint32_t seed) {
  std::mt19937 rng(seed);
  std::uniform_real_distribution<float> unit(-1.0f, 1.0f);
  Problem p;
  p.width = s.latent + s.rope;
  int used = 0;
  for (int32_t len : s.lens) {
    const int blocks = (len + kMlaBlockSize - 1) / kMlaBlockSize;
    p.max_blocks = std::max(p.max_blocks, blocks + 1);
    used += blocks;
  }
  p.num_blocks = used + 2;  // Spare blocks stay NaN.
  p.cache.assign(static_cast<size_t>(p.num_blocks) * kMlaBlockSize * p.width,
                 FloatToBf16(std::numeric_limits<float>::quiet_NaN()));
  std::vector<int32_t> ids(p.num_blocks);
  std::iota(ids.begin(), ids.end(), 0);
  std::shuffle(ids.begin(), ids.end(), rng);
  const int32_t spare = ids.back();
  p.table.assign(s.lens.size() * p.max_blocks, spare);
  size_t next = 0;
  for (size_t j = 0; j < s.lens.size(); ++j) {
    int32_t* row = p.table.data() + j * p.max_blocks;
    for (int b = 0; b * kMlaBlockSize < s.lens[j]; ++b) row[b] = ids[next++];
    for (int t = 0; t < s.lens[j]; ++t) {
      bf16_t* slot = p.cache.data() + (static_cast<size_t>(row[t / kMlaBlockSize]) * kMlaBlockSize +
                                       t % kMlaBlockSize) *
                                          p.width;
      for (int d = 0; d < p.width; ++d) slot[d] = FloatToBf16(unit(rng));
    }
  }
  p.q.resize(s.lens.size() * s.s_q * s.heads * p.width);
  for (bf16_t& v : p.q) v = FloatToBf16(unit(rng));
  const int64_t row_bytes = CacheRowBytes(CacheDType::kFp8E4M3, s.latent, s.rope);
  const size_t slots = static_cast<size_t>(p.num_blocks) * kMlaBlockSize;
  p.fp8_cache.assign(slots * row_bytes, kCacheNaNByte);
  p.fp8_as_bf16 = p.cache;  // NaN where no sequence writes, like the bf16 cache
  std::vector<float> latent(s.latent), k_pe(s.rope);
  for (size_t slot = 0; slot < slots; ++slot) {
    const bf16_t* row = p.cache.data() + slot * p.width;
    if (std::isnan(Bf16ToFloat(row[0]))) continue;  // not a sequence's slot
    for (int d = 0; d < s.latent; ++d) latent[d] = Bf16ToFloat(row[d]);
    for (int d = 0; d < s.rope; ++d) k_pe[d] = Bf16ToFloat(row[s.latent + d]);
    uint8_t* bytes = p.fp8_cache.data() + slot * row_bytes;
    EncodeCacheRow(CacheDType::kFp8E4M3, s.latent, s.rope, latent.data(), k_pe.data(), bytes);
    DecodeCacheRow(CacheDType::kFp8E4M3, s.latent, s.rope, bytes, latent.data(), k_pe.data());
    bf16_t* seen = p.fp8_as_bf16.data() + slot * p.width;
    for (int d = 0; d < s.latent; ++d) seen[d] = FloatToBf16(latent[d]);
    for (int d = 0; d < s.rope; ++d) seen[s.latent + d] = FloatToBf16(k_pe[d]);
  }
  return p;
}

struct Result {
  std::vector<float> out;  // [batch, s_q, heads, latent]
  std::vector<float> lse;  // [batch, s_q, heads]
};

// The CPU reference on the same data: sequence j's s_q rows sit at positions
// len − s_q .. len − 1; an empty sequence has no rows there (expected: zeros, -inf).
Result CpuReference(const Shape& s, const Problem& pr, const std::vector<bf16_t>& cache,
                    float scale) {
  const int batch = static_cast<int>(s.lens.size());
  const int rows = s.s_q * s.heads;
  std::vector<int32_t> q_pos0(batch);
  std::vector<int32_t> cu(batch + 1, 0);
  std::vector<float> q;
  for (int j = 0; j < batch; ++j) {
    const bool empty = s.lens[j] == 0;
    q_pos0[j] = empty ? 0 : s.lens[j] - s.s_q;
    cu[j + 1] = cu[j] + (empty ? 0 : s.s_q);
    if (empty) continue;
    for (int i = 0; i < rows * pr.width; ++i) {
      q.push_back(Bf16ToFloat(pr.q[static_cast<size_t>(j) * rows * pr.width + i]));
    }
  }
  std::vector<float> out(static_cast<size_t>(cu[batch]) * s.heads * s.latent);
  std::vector<float> lse(static_cast<size_t>(cu[batch]) * s.heads);
  cpu::MlaAttentionParams p;
  p.batch = batch;
  p.num_heads = s.heads;
  p.kv_lora_rank = s.latent;
  p.rope_dim = s.rope;
  p.block_size = kMlaBlockSize;
  p.num_blocks = pr.num_blocks;
  p.max_blocks_per_seq = pr.max_blocks;
  p.softmax_scale = scale;
  p.kv_cache = cache.data();
  p.block_table = pr.table.data();
  p.seq_lens = s.lens.data();
  p.q_pos0 = q_pos0.data();
  p.cu_seqlens_q = cu.data();
  p.q = q.data();
  p.out = out.data();
  p.lse = lse.data();
  const absl::Status status = cpu::MlaAttentionReference(p);
  EXPECT_TRUE(status.ok()) << status;
  // Expand to every sequence, empty ones included.
  Result r;
  r.out.assign(static_cast<size_t>(batch) * rows * s.latent, 0.0f);
  r.lse.assign(static_cast<size_t>(batch) * rows, -INFINITY);
  for (int j = 0; j < batch; ++j) {
    if (s.lens[j] == 0) continue;
    std::copy_n(out.begin() + static_cast<size_t>(cu[j]) * s.heads * s.latent,
                static_cast<size_t>(rows) * s.latent,
                r.out.begin() + static_cast<size_t>(j) * rows * s.latent);
    std::copy_n(lse.begin() + static_cast<size_t>(cu[j]) * s.heads, rows,
                r.lse.begin() + static_cast<size_t>(j) * rows);
  }
  return r;
}

// `selected` (with `topk`): every sequence's selection, [batch, topk]; the plan then counts
// min(topk, len) keys per sequence.
Result RunCuda(const Shape& s, const Problem& pr, float scale, MlaDecodeKernel kernel, bool fp8,
               MlaDecodePlan* plan, const std::vector<int32_t>* selected = nullptr, int topk = 0) {
  MlaDecodePlanOptions options;
  options.num_sms = s.num_sms > 0 ? s.num_sms : testing::NumMultiprocessors();
  options.num_heads = s.heads;
  options.q_rows_per_seq = s.s_q;
  options.max_blocks_per_seq = pr.max_blocks;
  // The grid the backend plans for this kernel (64 rows per CTA for the 64-row kernels).
  const absl::StatusOr<int> rows_per_cta = MlaDecodeRowsPerCta(s.latent, s.rope, kernel, fp8);
  EXPECT_TRUE(rows_per_cta.ok()) << rows_per_cta.status();
  options.rows_per_cta = rows_per_cta.value_or(kMlaDecodeRowsPerCta);
  std::vector<int32_t> plan_lens = s.lens;
  if (selected != nullptr) {
    for (int32_t& n : plan_lens) n = std::min(n, topk);
  }
  const absl::Status planned = PlanMlaDecode(plan_lens, options, plan);
  EXPECT_TRUE(planned.ok()) << planned;
  const int batch = static_cast<int>(s.lens.size());
  const size_t rows = static_cast<size_t>(s.s_q) * s.heads;
  DeviceBuffer q = Upload(pr.q);
  DeviceBuffer cache = fp8 ? Upload(pr.fp8_cache) : Upload(pr.cache);
  DeviceBuffer table = Upload(pr.table);
  DeviceBuffer lens = Upload(s.lens);
  DeviceBuffer selection = Upload(selected != nullptr ? *selected : std::vector<int32_t>{0});
  DeviceBuffer parts = Upload(plan->parts);
  DeviceBuffer offsets = Upload(plan->split_offsets);
  const size_t slots = std::max(1, plan->num_partial_slots());
  DeviceBuffer partial_out = Zeros(slots * rows * s.latent * sizeof(float));
  DeviceBuffer partial_lse = Zeros(slots * rows * sizeof(float));
  DeviceBuffer out = Zeros(batch * rows * s.latent * sizeof(bf16_t));
  DeviceBuffer lse = Zeros(batch * rows * sizeof(float));
  // Poison the outputs so that a row the kernels forget shows up.
  EXPECT_TRUE(out.Fill(0xff).ok());
  EXPECT_TRUE(lse.Fill(0xff).ok());

  MlaDecodeParams p;
  p.batch = batch;
  p.q_rows_per_seq = s.s_q;
  p.num_heads = s.heads;
  p.kv_lora_rank = s.latent;
  p.rope_dim = s.rope;
  p.num_blocks = pr.num_blocks;
  p.max_blocks_per_seq = pr.max_blocks;
  p.softmax_scale = scale;
  p.kernel = kernel;
  p.num_parts = plan->num_parts;
  p.num_partial_slots = plan->num_partial_slots();
  p.q = q.as<bf16_t>();
  p.kv_cache = cache.data();
  p.kv_fp8 = fp8;
  p.block_table = table.as<int32_t>();
  p.seq_lens = lens.as<int32_t>();
  p.parts = parts.as<MlaDecodePart>();
  p.split_offsets = offsets.as<int32_t>();
  p.partial_out = partial_out.as<float>();
  p.partial_lse = partial_lse.as<float>();
  p.out = out.as<bf16_t>();
  p.lse = lse.as<float>();
  if (selected != nullptr) {
    p.selected = selection.as<int32_t>();
    p.topk = topk;
  }
  const absl::Status launched = LaunchMlaDecode(p, nullptr);
  EXPECT_TRUE(launched.ok()) << launched;
  const absl::Status synced = DeviceSynchronize();
  EXPECT_TRUE(synced.ok()) << synced;
  Result r;
  for (bf16_t v : Download<bf16_t>(out)) r.out.push_back(Bf16ToFloat(v));
  r.lse = Download<float>(lse);
  return r;
}

void ExpectKernelMatches(const Shape& s, const Problem& pr, float scale, MlaDecodeKernel kernel,
                         bool fp8, const Result& want,
                         const std::vector<int32_t>* selected = nullptr, int topk = 0);

// Every split kernel where it takes the widths (the tensor-core ones round p to bf16 for
// their second product, 2^-9 of each weight: ExpectKernelMatches allows for it), the
// CUDA-core one alone otherwise; each on the bf16 cache and on the FP8 one (against the
// reference on the values the kernels read from it).
void ExpectMatches(const Shape& s, uint32_t seed) {
  const float scale = 0.11472139f;
  const Problem pr = MakeProblem(s, seed);
  for (const bool fp8 : {false, true}) {
    const Result want = CpuReference(s, pr, fp8 ? pr.fp8_as_bf16 : pr.cache, scale);
    for (const MlaDecodeKernel kernel :
         {MlaDecodeKernel::kSimt, MlaDecodeKernel::kMma, MlaDecodeKernel::kMmaKSplit,
          MlaDecodeKernel::kMmaRing, MlaDecodeKernel::kMmaRows64, MlaDecodeKernel::kMmaWgmma}) {
      const bool mma = kernel != MlaDecodeKernel::kSimt;
      if (mma && !MlaDecodeMmaSupports(s.latent, s.rope)) {
        std::printf("[ L %d R %d ] tensor-core kernels: not for these widths\n", s.latent, s.rope);
        continue;
      }
      const bool ring = kernel == MlaDecodeKernel::kMmaRing ||
                        kernel == MlaDecodeKernel::kMmaRows64 ||
                        kernel == MlaDecodeKernel::kMmaWgmma;
      if (ring && !MlaDecodeRingSupports(s.latent, s.rope)) {
        std::printf("[ L %d R %d ] ring and 64-row kernels: rows too wide\n", s.latent, s.rope);
        continue;
      }
      if (kernel == MlaDecodeKernel::kMmaWgmma && !MlaDecodeWgmmaSupports(s.latent, s.rope)) {
        continue;  // Not DeepSeek's widths: the 64-row kernel's case, run above.
      }
      // The ring kernel hands an FP8 cache whose rows it does not take to the tensor-core
      // kernel (mla_decode.h), DeepSeek's widths run its FP8 path; the 64-row kernel hands
      // every FP8 cache to the tensor-core kernel.
      SCOPED_TRACE(::testing::Message()
                   << (kernel == MlaDecodeKernel::kSimt        ? "CUDA-core kernel"
                       : kernel == MlaDecodeKernel::kMma       ? "tensor-core kernel"
                       : kernel == MlaDecodeKernel::kMmaKSplit ? "tensor-core kernel, k-split"
                       : kernel == MlaDecodeKernel::kMmaRing   ? "tensor-core kernel, ring"
                       : kernel == MlaDecodeKernel::kMmaRows64 ? "tensor-core kernel, 64 rows"
                                                               : "wgmma kernel, 64 rows")
                   << (fp8 ? ", FP8 cache" : ", bf16 cache"));
      ExpectKernelMatches(s, pr, scale, kernel, fp8, want);
    }
  }
}

void ExpectKernelMatches(const Shape& s, const Problem& pr, float scale, MlaDecodeKernel kernel,
                         bool fp8, const Result& want, const std::vector<int32_t>* selected,
                         int topk) {
  MlaDecodePlan plan;
  const Result got = RunCuda(s, pr, scale, kernel, fp8, &plan, selected, topk);
  ASSERT_EQ(got.out.size(), want.out.size());
  ASSERT_EQ(got.lse.size(), want.lse.size());
  SCOPED_TRACE(::testing::Message()
               << "parts " << plan.num_parts << " partial slots " << plan.num_partial_slots());
  // Both kernels round out to bf16 (2^-9 of it) and sum in fp32 in another order: 1e-3 +
  // |out| / 128. The tensor-core kernel also rounds each weight p to bf16 for P·V: out
  // moves by at most 2^-9 · Σ p·|v| / Σ p ≤ 2^-9 · max |v|, and the cache's values (bf16 or
  // dequantized FP8) lie in [-1, 1] here (MakeProblem).
  const double p_rounding = kernel != MlaDecodeKernel::kSimt ? 1.0 / 512 : 0.0;
  for (size_t i = 0; i < got.out.size(); ++i) {
    ASSERT_TRUE(std::isfinite(got.out[i])) << "out[" << i << "]";
    ASSERT_NEAR(got.out[i], want.out[i], 1e-3 + p_rounding + std::fabs(want.out[i]) / 128)
        << "out[" << i << "]";
  }
  std::vector<double> lse_got;
  std::vector<double> lse_want;
  for (size_t i = 0; i < got.lse.size(); ++i) {
    if (std::isinf(want.lse[i])) {
      ASSERT_TRUE(std::isinf(got.lse[i]) && got.lse[i] < 0) << "lse[" << i << "] " << got.lse[i];
      continue;
    }
    ASSERT_NEAR(got.lse[i], want.lse[i], 1e-4 * (1 + std::fabs(want.lse[i]))) << "lse[" << i << "]";
    lse_got.push_back(got.lse[i]);
    lse_want.push_back(want.lse[i]);
  }
  EXPECT_LT(CosineDiff(std::vector<double>(got.out.begin(), got.out.end()),
                       std::vector<double>(want.out.begin(), want.out.end())),
            1e-5);
  EXPECT_LT(CosineDiff(lse_got, lse_want), 1e-5);
}

// DeepSeek-V3.2's sparse attention: each sequence's one query row attends to a random
// ascending selection of min(topk, len) of its positions. Every position the selection
// leaves out is NaN in the caches the kernels read (a kernel that reads one fails), and
// the reference is dense attention over a cache holding only the selected rows, in order.
// The kernels that gather (CUDA-core, mma, k-split) each run; the 64-row kernel, asked for,
// must hand the call to the mma kernel (on a plan made for its 64-row tiles).
void ExpectSparseMatches(const Shape& s, int topk, uint32_t seed) {
  ASSERT_EQ(s.s_q, 1);
  const float scale = 0.11472139f;
  Problem pr = MakeProblem(s, seed);
  std::mt19937 rng(seed + 1000);
  const size_t batch = s.lens.size();
  std::vector<int32_t> selected(batch * topk, -1);
  Shape gathered_shape = s;
  Problem g;  // the selected rows of every sequence, in order, from block 0 up
  g.width = pr.width;
  g.q = pr.q;
  for (size_t j = 0; j < batch; ++j) {
    const int32_t n = s.lens[j], count = std::min(n, topk);
    std::vector<int32_t> positions(n);
    std::iota(positions.begin(), positions.end(), 0);
    std::shuffle(positions.begin(), positions.end(), rng);
    positions.resize(count);
    std::sort(positions.begin(), positions.end());
    std::copy(positions.begin(), positions.end(), selected.begin() + j * topk);
    gathered_shape.lens[j] = count;
    const int blocks = (count + kMlaBlockSize - 1) / kMlaBlockSize;
    g.max_blocks = std::max(g.max_blocks, blocks + 1);
    g.num_blocks += blocks;
  }
  const int32_t spare = g.num_blocks++;
  const size_t rows = static_cast<size_t>(g.num_blocks) * kMlaBlockSize;
  const bf16_t nan = FloatToBf16(std::numeric_limits<float>::quiet_NaN());
  g.cache.assign(rows * g.width, nan);
  g.fp8_as_bf16 = g.cache;
  g.table.assign(batch * g.max_blocks, spare);
  const int64_t fp8_row = CacheRowBytes(CacheDType::kFp8E4M3, s.latent, s.rope);
  int32_t next = 0;
  for (size_t j = 0; j < batch; ++j) {
    const int32_t* table = pr.table.data() + j * pr.max_blocks;
    auto slot_of = [&](int32_t pos) {
      return static_cast<size_t>(table[pos / kMlaBlockSize]) * kMlaBlockSize + pos % kMlaBlockSize;
    };
    std::vector<bool> kept(static_cast<size_t>(s.lens[j]), false);
    for (int32_t k = 0; k < gathered_shape.lens[j]; ++k) {
      if (k % kMlaBlockSize == 0) g.table[j * g.max_blocks + k / kMlaBlockSize] = next++;
      const int32_t pos = selected[j * topk + k];
      kept[static_cast<size_t>(pos)] = true;
      const size_t to = static_cast<size_t>(next - 1) * kMlaBlockSize + k % kMlaBlockSize;
      std::copy_n(pr.cache.begin() + slot_of(pos) * pr.width, pr.width,
                  g.cache.begin() + to * g.width);
      std::copy_n(pr.fp8_as_bf16.begin() + slot_of(pos) * pr.width, pr.width,
                  g.fp8_as_bf16.begin() + to * g.width);
    }
    for (int32_t pos = 0; pos < s.lens[j]; ++pos) {
      if (kept[static_cast<size_t>(pos)]) continue;
      std::fill_n(pr.cache.begin() + slot_of(pos) * pr.width, pr.width, nan);
      std::fill_n(pr.fp8_cache.begin() + slot_of(pos) * fp8_row, fp8_row, kCacheNaNByte);
    }
  }
  for (const bool fp8 : {false, true}) {
    const Result want = CpuReference(gathered_shape, g, fp8 ? g.fp8_as_bf16 : g.cache, scale);
    for (const MlaDecodeKernel kernel :
         {MlaDecodeKernel::kSimt, MlaDecodeKernel::kMma, MlaDecodeKernel::kMmaKSplit,
          MlaDecodeKernel::kMmaRows64}) {
      if (kernel != MlaDecodeKernel::kSimt && !MlaDecodeMmaSupports(s.latent, s.rope)) continue;
      if (kernel == MlaDecodeKernel::kMmaRows64 && !MlaDecodeRingSupports(s.latent, s.rope)) {
        continue;
      }
      SCOPED_TRACE(::testing::Message()
                   << "sparse, top " << topk << ", kernel " << static_cast<int>(kernel)
                   << (fp8 ? ", FP8 cache" : ", bf16 cache"));
      ExpectKernelMatches(s, pr, scale, kernel, fp8, want, &selected, topk);
    }
  }
}

TEST(MlaDecodeCudaTest, SparseSelectionsGatherOnlyTheSelectedKeys) {
  MLA_SKIP_WITHOUT_CUDA();
  // A top-k that is not a multiple of the block, sequences shorter than it (every position
  // selected), at its edges and far longer; the V2-Lite widths and a tiny model's.
  ExpectSparseMatches({16, 512, 64, 1, {0, 1, 64, 129, 130, 131, 1000}}, 130, 21);
  ExpectSparseMatches({4, 40, 8, 1, {5, 64, 65, 300}}, 64, 22);
  ExpectSparseMatches({5, 36, 6, 1, {3, 200}}, 70, 23);
  // Forced splits: a selection cut into pieces over many parts.
  ExpectSparseMatches({16, 512, 64, 1, {2000, 300, 7}, 600}, 256, 24);
  ExpectSparseMatches({128, 512, 64, 1, {700, 90}, 3}, 192, 25);
}

// The opt-in kernels hand calls they cannot take to the tensor-core kernel, which the
// tests above would not notice: on a device with an H100's or H200's shared memory per
// CTA (227 KiB) they must really run at DeepSeek's widths.
TEST(MlaDecodeCudaTest, OptInKernelsRunAtDeepSeekWidths) {
  MLA_SKIP_WITHOUT_CUDA();
  const absl::StatusOr<std::vector<CudaDeviceProps>> devices = ListCudaDevices();
  ASSERT_TRUE(devices.ok() && !devices->empty()) << devices.status();
  const int64_t optin = devices->front().max_shared_bytes_per_block;
  if (optin < 227 * 1024) GTEST_SKIP() << "this device allows " << optin << " bytes per CTA";
  EXPECT_TRUE(MlaDecodeRingRuns(512, 64, false));
  EXPECT_TRUE(MlaDecodeRingRuns(512, 64, true));
  EXPECT_TRUE(MlaDecodeRows64Runs(512, 64, false));
  EXPECT_FALSE(MlaDecodeRows64Runs(512, 64, true));  // FP8 caches run the tensor-core kernel
  using K = MlaDecodeKernel;
  EXPECT_EQ(MlaDecodeRowsPerCta(512, 64, K::kMmaRows64).value_or(-1), 64);
  EXPECT_EQ(MlaDecodeRowsPerCta(512, 64, K::kMmaRows64, /*kv_fp8=*/true).value_or(-1),
            kMlaDecodeRowsPerCta);  // FP8 caches run the tensor-core kernel
  EXPECT_EQ(MlaDecodeRowsPerCta(512, 64, K::kMmaRing).value_or(-1), kMlaDecodeRowsPerCta);
  EXPECT_EQ(MlaDecodeCtasPerSm(512, 64, K::kMmaRing).value_or(-1), 1);
  EXPECT_EQ(MlaDecodeCtasPerSm(512, 64, K::kMmaRing, /*kv_fp8=*/true).value_or(-1), 1);
  EXPECT_EQ(MlaDecodeCtasPerSm(512, 64, K::kMmaRows64).value_or(-1), 1);
  EXPECT_EQ(MlaDecodeSplitName(512, 64, K::kMmaRing, /*kv_fp8=*/true).value_or(""), "mma_ring");
  EXPECT_EQ(MlaDecodeSplitName(512, 64, K::kMmaRows64, /*kv_fp8=*/true).value_or(""), "mma");
  // The wgmma build: an image for sm_90 only.
  const CudaDeviceProps& d = devices->front();
  if (d.compute_major == 9 && d.compute_minor == 0) {
    EXPECT_TRUE(MlaDecodeWgmmaRuns(512, 64, false));
    EXPECT_EQ(MlaDecodeRowsPerCta(512, 64, K::kMmaWgmma).value_or(-1), 64);
    EXPECT_EQ(MlaDecodeCtasPerSm(512, 64, K::kMmaWgmma).value_or(-1), 1);
    EXPECT_EQ(MlaDecodeSplitName(512, 64, K::kMmaWgmma).value_or(""), "mma_wgmma");
  } else {
    EXPECT_FALSE(MlaDecodeWgmmaRuns(512, 64, false));
    EXPECT_EQ(MlaDecodeSplitName(512, 64, K::kMmaWgmma).value_or(""), "mma_rows64");
  }
  EXPECT_FALSE(MlaDecodeWgmmaRuns(512, 64, true));
}

TEST(MlaDecodeCudaTest, EdgeLengthsV2LiteShape) {
  MLA_SKIP_WITHOUT_CUDA();
  ExpectMatches({16, 512, 64, 1, {0, 1, 63, 64, 65, 1000}}, 1);
}

TEST(MlaDecodeCudaTest, ForcedSplitsOverManyParts) {
  MLA_SKIP_WITHOUT_CUDA();
  // More parts than the device has SMs: every long sequence is cut into many pieces.
  ExpectMatches({16, 512, 64, 1, {4096, 140, 20, 0, 65}, 600}, 2);
  ExpectMatches({16, 512, 64, 1, {4096, 140, 20}, 3}, 3);
  ExpectMatches({16, 512, 64, 1, {1, 64}, 1}, 4);
}

TEST(MlaDecodeCudaTest, V3Heads) {
  MLA_SKIP_WITHOUT_CUDA();
  ExpectMatches({128, 512, 64, 1, {1, 65, 2000, 0}}, 5);
  ExpectMatches({128, 512, 64, 1, {3000}, 1000}, 6);
}

TEST(MlaDecodeCudaTest, SeveralQueryRowsAndTinyShapes) {
  MLA_SKIP_WITHOUT_CUDA();
  // s_q = 2 (speculative verification), an odd head count that leaves a partial tile,
  // and a tiny model's latent/rope widths (not multiples of 8: the 4-byte load path).
  ExpectMatches({3, 32, 16, 2, {2, 63, 200, 0}, 7}, 7);
  ExpectMatches({5, 36, 6, 3, {3, 64, 65, 129}}, 8);
  ExpectMatches({16, 64, 0, 1, {70, 10}}, 9);
  // L = 40, R = 8: three k-steps (a warp of the k-split variant has none) and a last
  // column pair with one n-tile (L mod 16 = 8).
  ExpectMatches({4, 40, 8, 1, {1, 64, 100}}, 10);
  // L + R = 144: nine k-steps (the ring kernel's last ldmatrix reads two chunks of padding).
  ExpectMatches({3, 136, 8, 2, {2, 65, 300}}, 13);
  // L = 264, R = 24: the 64-row kernel's second half of the latent ends with a one-tile
  // column pair.
  ExpectMatches({4, 264, 24, 1, {1, 64, 200}}, 15);
  // 80 query rows (20 heads, s_q = 4): the 64-row kernel's second tile is partial.
  ExpectMatches({20, 512, 64, 4, {5, 64, 130, 700}}, 14);
}

TEST(MlaDecodeCudaTest, LargeRandomBatch) {
  MLA_SKIP_WITHOUT_CUDA();
  std::mt19937 rng(10);
  Shape s{16, 512, 64, 1, {}};
  for (int j = 0; j < 64; ++j) s.lens.push_back(static_cast<int32_t>(rng() % 300));
  ExpectMatches(s, 11);
}

// The FP8 problem itself, on the host (no device needed): every used slot encoded, the
// unused ones NaN, and the reference on its values within FP8's error of the bf16 one
// (relative steps of 2^-4 on average) but not equal to it (the cache is really FP8).
TEST(MlaDecodeCudaTest, Fp8ProblemIsTheBf16OneQuantized) {
  const Shape s{16, 512, 64, 1, {0, 1, 65, 300}};
  const Problem pr = MakeProblem(s, 12);
  const Result bf16 = CpuReference(s, pr, pr.cache, 0.11472139f);
  const Result fp8 = CpuReference(s, pr, pr.fp8_as_bf16, 0.11472139f);
  ASSERT_EQ(bf16.out.size(), fp8.out.size());
  double diff = 0, norm = 0;
  for (size_t i = 0; i < bf16.out.size(); ++i) {
    ASSERT_TRUE(std::isfinite(fp8.out[i])) << i;
    diff += (fp8.out[i] - bf16.out[i]) * (fp8.out[i] - bf16.out[i]);
    norm += bf16.out[i] * bf16.out[i];
  }
  EXPECT_GT(diff, 0.0);
  EXPECT_LT(std::sqrt(diff / norm), 0.1);
  size_t nan_rows = 0;
  const int64_t row_bytes = CacheRowBytes(CacheDType::kFp8E4M3, s.latent, s.rope);
  for (size_t slot = 0; slot * row_bytes < pr.fp8_cache.size(); ++slot) {
    nan_rows += pr.fp8_cache[slot * row_bytes] == kCacheNaNByte &&
                std::isnan(Bf16ToFloat(pr.cache[slot * pr.width]));
  }
  EXPECT_EQ(nan_rows, static_cast<size_t>(pr.num_blocks) * kMlaBlockSize - (1 + 65 + 300));
}

TEST(MlaDecodeCudaTest, RejectsBadShapesBeforeLaunching) {
  MlaDecodeParams p;
  p.batch = 1;
  p.num_heads = 16;
  p.kv_lora_rank = 512;
  p.rope_dim = 64;
  p.block_size = 16;
  p.softmax_scale = 0.1f;
  // Shapes are checked on the host first, with or without a device.
  EXPECT_EQ(LaunchMlaDecode(p, nullptr).code(), absl::StatusCode::kInvalidArgument);
}

}  // namespace
}  // namespace mla::cuda
