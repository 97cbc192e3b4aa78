// The CUDA per-token kernels (RMSNorm, YaRN RoPE, embedding, SiLU-mul) and the latent cache
// write against the CPU backend's functions on random bf16 inputs.
#include "engine/backend/cuda/kernels/pointwise.h"

#include <cmath>
#include <limits>
#include <numeric>
#include <random>
#include <vector>

#include "engine/backend/cpu/pointwise.h"
#include "engine/backend/cuda/host/cache_slots.h"
#include "engine/backend/cuda/kernels/latent_cache.h"
#include "engine/backend/cuda/kernels/sampling.h"
#include "engine/model/config.h"
#include "engine/model/rope.h"
#include "tests/gpu/cuda_test_util.h"

namespace mla::cuda {
namespace {

using testing::Bf16Close;
using testing::Download;
using testing::Upload;

std::vector<bf16_t> RandomBf16(size_t n, uint32_t seed, float lo = -2.0f, float hi = 2.0f) {
  std::mt19937 rng(seed);
  std::uniform_real_distribution<float> dist(lo, hi);
  std::vector<bf16_t> v(n);
  for (bf16_t& x : v) x = FloatToBf16(dist(rng));
  return v;
}

std::vector<float> ToFloat(const std::vector<bf16_t>& v) {
  std::vector<float> f(v.size());
  for (size_t i = 0; i < v.size(); ++i) f[i] = Bf16ToFloat(v[i]);
  return f;
}

TEST(PointwiseCudaTest, RmsNormMatchesCpu) {
  MLA_SKIP_WITHOUT_CUDA();
  for (int dim : {512, 2048, 7168, 33}) {
    const int rows = 5;
    const int stride = dim + 3;  // Row strides wider than dim (a slice of a wider tensor).
    const std::vector<bf16_t> x = RandomBf16(static_cast<size_t>(rows) * stride, dim);
    const std::vector<bf16_t> w = RandomBf16(dim, dim + 1, 0.5f, 1.5f);
    DeviceBuffer dx = Upload(x);
    DeviceBuffer dw = Upload(w);
    DeviceBuffer dout = Upload(std::vector<bf16_t>(static_cast<size_t>(rows) * dim));
    MLA_ASSERT_OK(LaunchRmsNorm(
        {rows, dim, 1e-6f, dx.as<bf16_t>(), stride, dw.as<bf16_t>(), dout.as<bf16_t>(), dim},
        nullptr));
    MLA_ASSERT_OK(DeviceSynchronize());
    const std::vector<float> xf = ToFloat(x);
    const std::vector<float> wf = ToFloat(w);
    std::vector<float> want(static_cast<size_t>(rows) * dim);
    RmsNorm(xf.data(), stride, rows, dim, wf.data(), 1e-6f, want.data(), dim);
    const std::vector<bf16_t> got = Download<bf16_t>(dout);
    for (size_t i = 0; i < want.size(); ++i) {
      ASSERT_TRUE(Bf16Close(got[i], want[i]))
          << "dim " << dim << " i " << i << ": " << Bf16ToFloat(got[i]) << " vs " << want[i];
    }
  }
}

TEST(PointwiseCudaTest, YarnRopeMatchesCpuForQAndK) {
  MLA_SKIP_WITHOUT_CUDA();
  ModelConfig config;  // DeepSeek-V2-Lite's rope.
  config.qk_rope_head_dim = 64;
  config.rope_theta = 10000.0;
  config.rope_scaling = {true, 40.0, 4096, 32.0, 1.0, 0.707, 0.707};
  const Rope rope(config);
  const int heads = 16;
  const int head_dim = 192;  // q row: [nope 128 | rope 64] per head.
  const std::vector<int32_t> positions = {0, 1, 63, 4095, 4096, 100000, 163839};
  const int tokens = static_cast<int>(positions.size());
  std::vector<bf16_t> q = RandomBf16(static_cast<size_t>(tokens) * heads * head_dim, 3);
  std::vector<bf16_t> k = RandomBf16(static_cast<size_t>(tokens) * 576, 4);  // [c 512 | k_pe 64]
  DeviceBuffer dq = Upload(q);
  DeviceBuffer dk = Upload(k);
  DeviceBuffer dpos = Upload(positions);
  DeviceBuffer dfreq = Upload(rope.inv_freq());
  RopeParams p;
  p.num_tokens = tokens;
  p.num_vectors = heads;
  p.rope_dim = 64;
  p.x = dq.as<bf16_t>() + 128;
  p.token_stride = heads * head_dim;
  p.vector_stride = head_dim;
  p.positions = dpos.as<int32_t>();
  p.inv_freq = dfreq.as<float>();
  p.attention_factor = rope.attention_factor();
  MLA_ASSERT_OK(LaunchRope(p, nullptr));
  p.num_vectors = 1;
  p.x = dk.as<bf16_t>() + 512;
  p.token_stride = 576;
  MLA_ASSERT_OK(LaunchRope(p, nullptr));
  MLA_ASSERT_OK(DeviceSynchronize());

  std::vector<float> qf = ToFloat(q);
  std::vector<float> kf = ToFloat(k);
  std::vector<float> cos(32);
  std::vector<float> sin(32);
  for (int t = 0; t < tokens; ++t) {
    rope.Angles(positions[t], cos.data(), sin.data());
    RotateInterleaved(cos.data(), sin.data(), rope.dim() / 2,
                      qf.data() + t * heads * head_dim + 128, heads, head_dim);
    RotateInterleaved(cos.data(), sin.data(), rope.dim() / 2, kf.data() + t * 576 + 512, 1, 576);
  }
  const std::vector<bf16_t> gq = Download<bf16_t>(dq);
  const std::vector<bf16_t> gk = Download<bf16_t>(dk);
  for (size_t i = 0; i < qf.size(); ++i) {
    ASSERT_TRUE(Bf16Close(gq[i], qf[i]))
        << "q[" << i << "] " << Bf16ToFloat(gq[i]) << " vs " << qf[i];
  }
  for (size_t i = 0; i < kf.size(); ++i) {
    ASSERT_TRUE(Bf16Close(gk[i], kf[i]))
        << "k[" << i << "] " << Bf16ToFloat(gk[i]) << " vs " << kf[i];
  }
}

TEST(PointwiseCudaTest, EmbeddingGathersRowsAndFlagsBadIds) {
  MLA_SKIP_WITHOUT_CUDA();
  const int vocab = 50;
  const int hidden = 70;
  const std::vector<bf16_t> table = RandomBf16(static_cast<size_t>(vocab) * hidden, 5);
  const std::vector<int32_t> ids = {3, 0, 49, 3, -1, 50, 7};
  DeviceBuffer dtable = Upload(table);
  DeviceBuffer dids = Upload(ids);
  DeviceBuffer dout = Upload(std::vector<bf16_t>(ids.size() * hidden, 0xffff));
  DeviceBuffer dbad = Upload(std::vector<int32_t>{0});
  MLA_ASSERT_OK(
      LaunchEmbedding({static_cast<int64_t>(ids.size()), vocab, hidden, dids.as<int32_t>(),
                       dtable.as<bf16_t>(), dout.as<bf16_t>(), dbad.as<int32_t>()},
                      nullptr));
  MLA_ASSERT_OK(DeviceSynchronize());
  const std::vector<bf16_t> got = Download<bf16_t>(dout);
  for (size_t t = 0; t < ids.size(); ++t) {
    for (int d = 0; d < hidden; ++d) {
      const bool valid = ids[t] >= 0 && ids[t] < vocab;
      const bf16_t want = valid ? table[static_cast<size_t>(ids[t]) * hidden + d] : 0;
      ASSERT_EQ(got[t * hidden + d], want) << "token " << t << " dim " << d;
    }
  }
  EXPECT_EQ(Download<int32_t>(dbad)[0], 2);
}

TEST(PointwiseCudaTest, SiluMulMatchesCpu) {
  MLA_SKIP_WITHOUT_CUDA();
  const int rows = 4;
  const int inter = 1408;
  const std::vector<bf16_t> gate_up =
      RandomBf16(static_cast<size_t>(rows) * 2 * inter, 6, -6.0f, 6.0f);
  DeviceBuffer din = Upload(gate_up);
  DeviceBuffer dout = Upload(std::vector<bf16_t>(static_cast<size_t>(rows) * inter));
  MLA_ASSERT_OK(LaunchSiluMul(
      {rows, inter, din.as<bf16_t>(), din.as<bf16_t>() + inter, 2 * inter, dout.as<bf16_t>()},
      nullptr));
  MLA_ASSERT_OK(DeviceSynchronize());
  const std::vector<float> f = ToFloat(gate_up);
  std::vector<float> want(static_cast<size_t>(rows) * inter);
  SiluMul(f.data(), f.data() + inter, rows, inter, 2 * inter, want.data());
  const std::vector<bf16_t> got = Download<bf16_t>(dout);
  for (size_t i = 0; i < want.size(); ++i) {
    ASSERT_TRUE(Bf16Close(got[i], want[i]))
        << i << ": " << Bf16ToFloat(got[i]) << " vs " << want[i];
  }
}

TEST(LatentCacheCudaTest, WritesRowsIntoTableSlotsOnly) {
  MLA_SKIP_WITHOUT_CUDA();
  const int latent = 512;
  const int rope = 64;
  const int width = latent + rope;
  const int num_blocks = 6;
  const int bs = 64;
  // Positions 60..130 of a sequence over shuffled blocks, plus one padding token.
  std::vector<int32_t> table = {4, 1, 5};
  std::vector<int32_t> slots;
  MLA_ASSERT_OK(AppendCacheSlots(table, bs, num_blocks, 60, 71, &slots));
  slots.push_back(-1);
  const int tokens = static_cast<int>(slots.size());
  const int row = 600;  // kv_a output row: [c 512 | k_pe 64 | spare]
  const std::vector<bf16_t> kv = RandomBf16(static_cast<size_t>(tokens) * row, 7);
  const bf16_t nan = FloatToBf16(std::numeric_limits<float>::quiet_NaN());
  DeviceBuffer dcache =
      Upload(std::vector<bf16_t>(static_cast<size_t>(num_blocks) * bs * width, nan));
  DeviceBuffer dkv = Upload(kv);
  DeviceBuffer dslots = Upload(slots);
  LatentCacheWriteParams p;
  p.num_tokens = tokens;
  p.kv_lora_rank = latent;
  p.rope_dim = rope;
  p.block_size = bs;
  p.num_blocks = num_blocks;
  p.latent = dkv.as<bf16_t>();
  p.latent_stride = row;
  p.k_pe = dkv.as<bf16_t>() + latent;
  p.k_pe_stride = row;
  p.slots = dslots.as<int32_t>();
  p.kv_cache = dcache.as<bf16_t>();
  MLA_ASSERT_OK(LaunchLatentCacheWrite(p, nullptr));
  MLA_ASSERT_OK(DeviceSynchronize());
  std::vector<bf16_t> want(static_cast<size_t>(num_blocks) * bs * width, nan);
  for (int t = 0; t < tokens; ++t) {
    if (slots[t] < 0) continue;
    std::copy_n(kv.begin() + static_cast<size_t>(t) * row, width,
                want.begin() + static_cast<size_t>(slots[t]) * width);
  }
  EXPECT_EQ(Download<bf16_t>(dcache), want);
}

TEST(SamplingCudaTest, ArgmaxTakesTheLowestIndexOnTiesAndSkipsNaN) {
  MLA_SKIP_WITHOUT_CUDA();
  const int vocab = 102400;
  const int stride = vocab + 5;
  const int rows = 4;
  std::mt19937 rng(8);
  std::uniform_real_distribution<float> dist(-10.0f, 10.0f);
  std::vector<float> logits(static_cast<size_t>(rows) * stride);
  for (float& x : logits) x = dist(rng);
  logits[1 * stride + 5000] = 50.0f;  // Tie: the lower index wins.
  logits[1 * stride + 90000] = 50.0f;
  for (int i = 0; i < vocab; ++i) logits[2 * stride + i] = -INFINITY;
  logits[3 * stride + 10] = std::numeric_limits<float>::quiet_NaN();
  logits[3 * stride + 20] = 60.0f;
  DeviceBuffer dlogits = Upload(logits);
  DeviceBuffer dids = Upload(std::vector<int32_t>(rows, -7));
  DeviceBuffer dmax = Upload(std::vector<float>(rows, 7.0f));
  MLA_ASSERT_OK(LaunchArgmax(
      {rows, vocab, dlogits.as<float>(), stride, dids.as<int32_t>(), dmax.as<float>()}, nullptr));
  MLA_ASSERT_OK(DeviceSynchronize());
  std::vector<int32_t> want(rows, 0);
  for (int r = 0; r < rows; ++r) {
    for (int i = 1; i < vocab; ++i) {
      const float x = logits[static_cast<size_t>(r) * stride + i];
      if (!std::isnan(x) && x > logits[static_cast<size_t>(r) * stride + want[r]]) want[r] = i;
    }
  }
  EXPECT_EQ(want[1], 5000);
  EXPECT_EQ(want[3], 20);
  EXPECT_EQ(Download<int32_t>(dids), want);
  const std::vector<float> max_values = Download<float>(dmax);
  EXPECT_EQ(max_values[1], 50.0f);
  EXPECT_EQ(max_values[2], -INFINITY);  // The host sampler refuses such a row.
  EXPECT_EQ(max_values[3], 60.0f);
  EXPECT_EQ(max_values[0], logits[static_cast<size_t>(want[0])]);
}

}  // namespace
}  // namespace mla::cuda
