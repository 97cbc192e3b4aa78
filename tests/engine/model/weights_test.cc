#include "engine/model/weights.h"

#include <cctype>
#include <cmath>
#include <filesystem>
#include <functional>
#include <random>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "engine/common/bf16.h"
#include "engine/model/config.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "nlohmann/json.hpp"
#include "tests/engine/model/safetensors_writer.h"

namespace mla {
namespace {

using ::mla::testing::FromBytes;
using ::mla::testing::RefF16;
using ::mla::testing::RefFp8E4M3;
using ::mla::testing::TempDir;
using ::mla::testing::TensorMap;
using ::mla::testing::TestTensor;
using ::mla::testing::ToBytes;
using ::mla::testing::WriteFile;
using ::mla::testing::WriteSafetensors;
using ::testing::AllOf;
using ::testing::HasSubstr;

// V2-Lite's shape in miniature: plain q_proj, one dense layer then MoE with two shared
// experts, softmax + greedy routing. v_head_dim differs from qk_nope_head_dim on purpose.
ModelConfig LiteConfig() {
  ModelConfig c;
  c.hidden_size = 16;
  c.num_hidden_layers = 3;
  c.num_attention_heads = 2;
  c.kv_lora_rank = 12;
  c.qk_nope_head_dim = 8;
  c.qk_rope_head_dim = 4;
  c.v_head_dim = 6;
  c.intermediate_size = 20;
  c.moe_intermediate_size = 6;
  c.n_routed_experts = 4;
  c.n_shared_experts = 2;
  c.num_experts_per_tok = 2;
  c.first_k_dense_replace = 1;
  c.vocab_size = 32;
  return c;
}

// V3's shape in miniature: q LoRA, sigmoid + noaux_tc with the score bias, one shared
// expert, fp8 blocks that do not divide the matrices.
ModelConfig V3Config() {
  ModelConfig c = LiteConfig();
  c.q_lora_rank = 10;
  c.n_shared_experts = 1;
  c.topk_method = TopkMethod::kNoauxTc;
  c.scoring_func = ScoringFunc::kSigmoid;
  c.n_group = 2;
  c.topk_group = 1;
  c.fp8_weights = true;
  c.fp8_block_rows = 8;
  c.fp8_block_cols = 4;
  return c;
}

// DeepSeek-V3.2 in miniature: V3 plus the lightning indexer.
ModelConfig V32Config() {
  ModelConfig c = V3Config();
  c.model_type = "deepseek_v32";
  c.index_n_heads = 3;
  c.index_head_dim = 6;
  c.index_topk = 4;
  return c;
}

// Every tensor the loader reads, with its expected shape and (given weights) where it went.
struct Spec {
  std::string name;  // Full tensor name.
  std::vector<int64_t> shape;
  const Matrix* matrix = nullptr;
  const std::vector<float>* vector = nullptr;
};

std::vector<Spec> Specs(const ModelConfig& c, const ModelWeights* w) {
  std::vector<Spec> out;
  auto lin = [&](const std::string& name, int64_t rows, int64_t cols, const Matrix* m) {
    out.push_back({name + ".weight", {rows, cols}, w ? m : nullptr, nullptr});
  };
  auto vec = [&](const std::string& name, int64_t n, const std::vector<float>* v) {
    out.push_back({name, {n}, nullptr, w ? v : nullptr});
  };
  auto mlp = [&](const std::string& p, int64_t inter, const MlpWeights* m) {
    lin(p + "gate_proj", inter, c.hidden_size, m ? &m->gate : nullptr);
    lin(p + "up_proj", inter, c.hidden_size, m ? &m->up : nullptr);
    lin(p + "down_proj", c.hidden_size, inter, m ? &m->down : nullptr);
  };
  const int64_t h = c.num_attention_heads, hid = c.hidden_size;
  lin("model.embed_tokens", c.vocab_size, hid, w ? &w->embed_tokens : nullptr);
  for (int i = 0; i < c.num_hidden_layers; ++i) {
    const LayerWeights* l = w ? &w->layers[i] : nullptr;
    const AttentionWeights* a = l ? &l->attn : nullptr;
    const std::string p = absl::StrCat("model.layers.", i, ".");
    const std::string s = p + "self_attn.";
    vec(p + "input_layernorm.weight", hid, l ? &l->input_layernorm : nullptr);
    vec(p + "post_attention_layernorm.weight", hid, l ? &l->post_attention_layernorm : nullptr);
    if (c.q_lora_rank > 0) {
      lin(s + "q_a_proj", c.q_lora_rank, hid, a ? &a->q_a_proj : nullptr);
      vec(s + "q_a_layernorm.weight", c.q_lora_rank, a ? &a->q_a_layernorm : nullptr);
      lin(s + "q_b_proj", h * c.qk_head_dim(), c.q_lora_rank, a ? &a->q_b_proj : nullptr);
    } else {
      lin(s + "q_proj", h * c.qk_head_dim(), hid, a ? &a->q_proj : nullptr);
    }
    lin(s + "kv_a_proj_with_mqa", c.latent_dim(), hid, a ? &a->kv_a_proj_with_mqa : nullptr);
    vec(s + "kv_a_layernorm.weight", c.kv_lora_rank, a ? &a->kv_a_layernorm : nullptr);
    lin(s + "kv_b_proj", h * (c.qk_nope_head_dim + c.v_head_dim), c.kv_lora_rank,
        a ? &a->kv_b_proj : nullptr);
    lin(s + "o_proj", hid, h * c.v_head_dim, a ? &a->o_proj : nullptr);
    if (c.has_indexer()) {
      const IndexerWeights* ix = a ? &a->indexer : nullptr;
      const std::string x = s + "indexer.";
      lin(x + "wq_b", int64_t{c.index_n_heads} * c.index_head_dim, c.q_lora_rank,
          ix ? &ix->wq_b : nullptr);
      lin(x + "wk", c.index_head_dim, hid, ix ? &ix->wk : nullptr);
      vec(x + "k_norm.weight", c.index_head_dim, ix ? &ix->k_norm : nullptr);
      vec(x + "k_norm.bias", c.index_head_dim, ix ? &ix->k_norm_bias : nullptr);
      lin(x + "weights_proj", c.index_n_heads, hid, ix ? &ix->weights_proj : nullptr);
    }
    if (!c.IsMoeLayer(i)) {
      mlp(p + "mlp.", c.intermediate_size, l ? &l->mlp : nullptr);
      continue;
    }
    const MoeWeights* moe = l ? &l->moe : nullptr;
    lin(p + "mlp.gate", c.n_routed_experts, hid, moe ? &moe->gate : nullptr);
    if (c.topk_method == TopkMethod::kNoauxTc) {
      vec(p + "mlp.gate.e_score_correction_bias", c.n_routed_experts,
          moe ? &moe->score_bias : nullptr);
    }
    for (int e = 0; e < c.n_routed_experts; ++e) {
      mlp(absl::StrCat(p, "mlp.experts.", e, "."), c.moe_intermediate_size,
          moe ? &moe->experts[e] : nullptr);
    }
    if (c.n_shared_experts > 0) {
      mlp(p + "mlp.shared_experts.", c.n_shared_experts * c.moe_intermediate_size,
          moe ? &moe->shared : nullptr);
    }
  }
  vec("model.norm.weight", hid, w ? &w->norm : nullptr);
  lin("lm_head", c.vocab_size, hid, w ? &w->lm_head : nullptr);
  return out;
}

// Random tensors for a config: linears in `linear_dtype` (fp8 ones with their scales),
// norms and biases in F32.
TensorMap MakeTensors(const ModelConfig& c, const std::string& linear_dtype, uint32_t seed = 1) {
  std::mt19937 rng(seed);
  std::uniform_real_distribution<float> uni(-1.0f, 1.0f);
  TensorMap t;
  for (const Spec& s : Specs(c, nullptr)) {
    const int64_t n = s.shape.size() == 1 ? s.shape[0] : s.shape[0] * s.shape[1];
    std::vector<float> f(n);
    for (float& x : f) x = uni(rng);
    if (s.shape.size() == 1 || linear_dtype == "F32") {
      t[s.name] = {"F32", s.shape, ToBytes(f)};
    } else if (linear_dtype == "BF16") {
      std::vector<uint16_t> b(n);
      for (int64_t i = 0; i < n; ++i) b[i] = FloatToBf16(f[i]);
      t[s.name] = {"BF16", s.shape, ToBytes(b)};
    } else if (linear_dtype == "F16") {
      std::vector<uint16_t> b(n);  // Any finite code, subnormals included.
      for (uint16_t& x : b) {
        x = static_cast<uint16_t>(rng());
        if ((x & 0x7c00) == 0x7c00) x &= 0xbfff;  // Inf/NaN exponent: make it finite.
      }
      t[s.name] = {"F16", s.shape, ToBytes(b)};
    } else {
      std::vector<uint8_t> b(n);  // Every code but the two NaNs: subnormals, negatives, 448.
      for (uint8_t& x : b) {
        x = static_cast<uint8_t>(rng() & 0xff);
        if ((x & 0x7f) == 0x7f) --x;
      }
      t[s.name] = {"F8_E4M3", s.shape, ToBytes(b)};
      const std::vector<int64_t> ss = {(s.shape[0] + c.fp8_block_rows - 1) / c.fp8_block_rows,
                                       (s.shape[1] + c.fp8_block_cols - 1) / c.fp8_block_cols};
      std::vector<float> scale(ss[0] * ss[1]);
      for (float& x : scale) x = std::ldexp(1 + uni(rng) / 2, static_cast<int>(rng() % 9) - 6);
      t[s.name + "_scale_inv"] = {"F32", ss, ToBytes(scale)};  // <prefix>.weight_scale_inv
    }
  }
  return t;
}

// Checks one loaded matrix against the bytes it came from, element by element.
void ExpectMatrixMatches(const TensorMap& t, const ModelConfig& c, const Spec& s) {
  const TestTensor& src = t.at(s.name);
  const Matrix& m = *s.matrix;
  ASSERT_EQ(std::vector<int64_t>({m.rows, m.cols}), s.shape) << s.name;
  const int64_t n = m.rows * m.cols;
  if (src.dtype == "BF16") {
    ASSERT_EQ(m.dtype, DType::kBF16) << s.name;
    EXPECT_EQ(FromBytes<uint16_t>(src.bytes), std::vector<uint16_t>(m.bf16(), m.bf16() + n));
  } else if (src.dtype == "F32") {
    ASSERT_EQ(m.dtype, DType::kF32) << s.name;
    EXPECT_EQ(FromBytes<float>(src.bytes), std::vector<float>(m.f32(), m.f32() + n));
  } else if (src.dtype == "F16") {
    ASSERT_EQ(m.dtype, DType::kF32) << s.name;
    const auto codes = FromBytes<uint16_t>(src.bytes);
    for (int64_t i = 0; i < n; ++i) ASSERT_EQ(m.f32()[i], RefF16(codes[i])) << s.name << i;
  } else {
    ASSERT_EQ(m.dtype, DType::kBF16) << s.name;
    const TestTensor& scale_t = t.at(s.name + "_scale_inv");
    const auto scale = FromBytes<float>(scale_t.bytes);
    for (int64_t i = 0; i < m.rows; ++i) {
      for (int64_t j = 0; j < m.cols; ++j) {
        const float want = RefFp8E4M3(static_cast<uint8_t>(src.bytes[i * m.cols + j])) *
                           scale[(i / c.fp8_block_rows) * scale_t.shape[1] + j / c.fp8_block_cols];
        ASSERT_EQ(m.bf16()[i * m.cols + j], FloatToBf16(want)) << s.name << " " << i << "," << j;
      }
    }
  }
}

// Checks every tensor of `w` against `t` and the byte count against the storage.
void ExpectWeightsMatch(const ModelWeights& w, const TensorMap& t, const ModelConfig& c) {
  ASSERT_EQ(w.layers.size(), static_cast<size_t>(c.num_hidden_layers));
  int64_t bytes = 0;
  for (const Spec& s : Specs(c, &w)) {
    if (s.matrix != nullptr) {
      bytes += s.matrix->rows * s.matrix->cols * static_cast<int64_t>(DTypeSize(s.matrix->dtype));
      ExpectMatrixMatches(t, c, s);
    } else {
      bytes += static_cast<int64_t>(s.vector->size() * sizeof(float));
      EXPECT_EQ(*s.vector, FromBytes<float>(t.at(s.name).bytes)) << s.name;
    }
  }
  for (int i = 0; i < c.num_hidden_layers; ++i) EXPECT_EQ(w.layers[i].is_moe, i >= 1);
  EXPECT_EQ(w.bytes, bytes);
}

absl::StatusOr<ModelWeights> WriteAndLoad(const TempDir& dir, const TensorMap& t,
                                          const ModelConfig& c) {
  WriteSafetensors(dir.File("model.safetensors"), t);
  return LoadModelWeights(dir.path(), c);
}

TEST(LoadModelWeightsTest, Bf16LiteModel) {
  TempDir dir;
  const ModelConfig c = LiteConfig();
  const TensorMap t = MakeTensors(c, "BF16");
  auto w = WriteAndLoad(dir, t, c);
  ASSERT_TRUE(w.ok()) << w.status();
  EXPECT_EQ(w->dtype, DType::kBF16);
  EXPECT_TRUE(w->layers[0].attn.q_a_proj.empty());
  EXPECT_EQ(w->layers[1].moe.experts.size(), 4u);
  EXPECT_TRUE(w->layers[1].moe.score_bias.empty());
  ExpectWeightsMatch(*w, t, c);
}

TEST(LoadModelWeightsTest, Fp8V3ModelWithMtpLayerIgnored) {
  TempDir dir;
  const ModelConfig c = V3Config();
  TensorMap t = MakeTensors(c, "F8_E4M3");
  // V3's MTP layer sits after the last layer; a wrong shape proves it is never read.
  t["model.layers.3.eh_proj.weight"] = {"BF16", {16, 32}, std::string(16 * 32 * 2, '\0')};
  t["model.layers.3.self_attn.kv_b_proj.weight"] = {"BF16", {1, 1}, std::string(2, '\0')};
  t["model.layers.3.shared_head.head.weight"] = {"I64", {1}, std::string(8, '\0')};
  auto w = WriteAndLoad(dir, t, c);
  ASSERT_TRUE(w.ok()) << w.status();
  EXPECT_EQ(w->dtype, DType::kBF16);
  EXPECT_TRUE(w->layers[0].attn.q_proj.empty());
  ExpectWeightsMatch(*w, t, c);
}

TEST(LoadModelWeightsTest, V32IndexerWeights) {
  TempDir dir;
  const ModelConfig c = V32Config();
  const TensorMap t = MakeTensors(c, "BF16");
  auto w = WriteAndLoad(dir, t, c);
  ASSERT_TRUE(w.ok()) << w.status();
  EXPECT_EQ(w->layers[2].attn.indexer.wq_b.rows, 18);
  ExpectWeightsMatch(*w, t, c);
}

TEST(LoadModelWeightsTest, V32IndexerTensorsMissingOrMisshapenAreNamed) {
  const std::string ix = "model.layers.1.self_attn.indexer.";
  for (const std::string name :
       {"wq_b.weight", "wk.weight", "k_norm.weight", "k_norm.bias", "weights_proj.weight"}) {
    TempDir dir;
    TensorMap t = MakeTensors(V32Config(), "BF16");
    t.erase(ix + name);
    auto w = WriteAndLoad(dir, t, V32Config());
    EXPECT_EQ(w.status().code(), absl::StatusCode::kNotFound) << name;
    EXPECT_THAT(w.status().message(), HasSubstr("'" + ix + name + "' is missing"));
  }
  TempDir dir;
  TensorMap t = MakeTensors(V32Config(), "BF16");
  t[ix + "wk.weight"] = {"BF16", {5, 16}, std::string(5 * 16 * 2, '\0')};
  auto w = WriteAndLoad(dir, t, V32Config());
  EXPECT_EQ(w.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(w.status().message(), AllOf(HasSubstr(ix + "wk.weight"), HasSubstr("[5, 16]"),
                                          HasSubstr("[index_head_dim, hidden_size]")));
}

TEST(LoadModelWeightsTest, IndexerTensorsWithoutV32ConfigAreRefused) {
  TempDir dir;
  TensorMap t = MakeTensors(V32Config(), "BF16");
  auto w = WriteAndLoad(dir, t, V3Config());
  EXPECT_EQ(w.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(w.status().message(),
              AllOf(HasSubstr("self_attn.indexer.wk.weight"), HasSubstr("index_n_heads")));
}

TEST(LoadModelWeightsTest, Fp8PartialBlocks) {
  TempDir dir;
  ModelConfig c = V3Config();
  c.num_hidden_layers = 1;
  c.hidden_size = 200;
  c.q_lora_rank = 130;
  c.fp8_block_rows = 128;
  c.fp8_block_cols = 128;
  c.vocab_size = 10500;  // embed_tokens [10500, 200] is large enough to dequantize on threads.
  const TensorMap t = MakeTensors(c, "F8_E4M3", 7);
  ASSERT_EQ(t.at("model.layers.0.self_attn.q_a_proj.weight_scale_inv").shape,
            (std::vector<int64_t>{2, 2}));
  auto w = WriteAndLoad(dir, t, c);
  ASSERT_TRUE(w.ok()) << w.status();
  ExpectWeightsMatch(*w, t, c);
}

TEST(LoadModelWeightsTest, F32AndF16ServeAsF32) {
  const ModelConfig c = LiteConfig();
  for (const char* dtype : {"F32", "F16"}) {
    TempDir dir;
    const TensorMap t = MakeTensors(c, dtype);
    auto w = WriteAndLoad(dir, t, c);
    ASSERT_TRUE(w.ok()) << w.status();
    EXPECT_EQ(w->dtype, DType::kF32) << dtype;
    ExpectWeightsMatch(*w, t, c);
  }
}

TEST(LoadModelWeightsTest, MixedDtypesAndNonF32Norms) {
  TempDir dir;
  const ModelConfig c = LiteConfig();
  TensorMap t = MakeTensors(c, "BF16");
  const std::string o_proj = "model.layers.2.self_attn.o_proj.weight";
  t[o_proj] = MakeTensors(c, "F32").at(o_proj);
  t["model.norm.weight"] = {"BF16", {16}, ToBytes(std::vector<uint16_t>(16, 0xbfc0))};
  t["model.layers.0.input_layernorm.weight"] = {
      "F16", {16}, ToBytes(std::vector<uint16_t>(16, 0x0001))};
  auto w = WriteAndLoad(dir, t, c);
  ASSERT_TRUE(w.ok()) << w.status();
  EXPECT_EQ(w->dtype, DType::kF32);  // One f32 matrix: the model is served as f32.
  EXPECT_EQ(w->layers[2].attn.o_proj.dtype, DType::kF32);
  EXPECT_EQ(w->layers[2].attn.kv_b_proj.dtype, DType::kBF16);
  EXPECT_EQ(w->norm, std::vector<float>(16, -1.5f));
  EXPECT_EQ(w->layers[0].input_layernorm, std::vector<float>(16, std::ldexp(1.0f, -24)));
}

TEST(LoadModelWeightsTest, ShardedCheckpoint) {
  TempDir dir;
  const ModelConfig c = V3Config();
  const TensorMap t = MakeTensors(c, "F8_E4M3", 3);
  TensorMap shards[2];
  nlohmann::json index;
  int k = 0;
  for (const auto& [name, tensor] : t) {
    const int shard = k++ % 2;  // Weights and their scales land in different shards.
    shards[shard][name] = tensor;
    index["weight_map"][name] = absl::StrCat("model-0000", shard + 1, "-of-00002.safetensors");
  }
  WriteSafetensors(dir.File("model-00001-of-00002.safetensors"), shards[0]);
  WriteSafetensors(dir.File("model-00002-of-00002.safetensors"), shards[1]);
  WriteFile(dir.File("model.safetensors.index.json"), index.dump());
  auto w = LoadModelWeights(dir.path(), c);
  ASSERT_TRUE(w.ok()) << w.status();
  ExpectWeightsMatch(*w, t, c);
}

// A config built in code can hold dims whose int sums wrap; the loader's shape arithmetic
// runs in 64 bits, so the messages show the true expected shapes (once [-2147483633, 16]).
TEST(LoadModelWeightsTest, HugeDimsGiveTrueShapesNotWrappedOnes) {
  TempDir dir;
  const ModelConfig good = LiteConfig();
  WriteSafetensors(dir.File("model.safetensors"), MakeTensors(good, "BF16"));
  ModelConfig c = good;
  c.kv_lora_rank = 2147483647;
  auto w = LoadModelWeights(dir.path(), c);
  ASSERT_FALSE(w.ok());
  EXPECT_THAT(w.status().message(), HasSubstr("expected [2147483651, 16]")) << w.status();
  c = good;
  c.qk_nope_head_dim = 2147483647;
  w = LoadModelWeights(dir.path(), c);
  ASSERT_FALSE(w.ok());
  EXPECT_THAT(w.status().message(), HasSubstr("expected [4294967302, 16]")) << w.status();
  c = good;
  c.num_attention_heads = 2147483647;
  c.qk_nope_head_dim = 2147483647;
  w = LoadModelWeights(dir.path(), c);
  ASSERT_FALSE(w.ok());
  EXPECT_THAT(w.status().message(), HasSubstr("is too large")) << w.status();
}

TEST(LoadModelWeightsTest, TiedEmbeddings) {
  TempDir dir;
  ModelConfig c = LiteConfig();
  c.tie_word_embeddings = true;
  TensorMap t = MakeTensors(c, "BF16");
  t.erase("lm_head.weight");
  auto w = WriteAndLoad(dir, t, c);
  ASSERT_TRUE(w.ok()) << w.status();
  ASSERT_EQ(w->lm_head.rows, c.vocab_size);
  EXPECT_EQ(FromBytes<uint16_t>(t.at("model.embed_tokens.weight").bytes),
            std::vector<uint16_t>(w->lm_head.bf16(), w->lm_head.bf16() + 32 * 16));
  EXPECT_NE(w->lm_head.bf16(), w->embed_tokens.bf16());  // Its own copy.
}

// A checkpoint broken in one way, and what the error must say.
struct BadCase {
  std::string label;
  bool v3 = false;
  std::function<void(TensorMap&, ModelConfig&)> mutate;
  absl::StatusCode code;
  std::vector<std::string> expected;  // Substrings of the message besides the file name.
};

const std::string kL1 = "model.layers.1.";

std::vector<BadCase> BadCases() {
  using C = absl::StatusCode;
  auto set = [](const std::string& name, TestTensor t) {
    return [=](TensorMap& m, ModelConfig&) { m[name] = t; };
  };
  auto erase = [](const std::string& name) {
    return [=](TensorMap& m, ModelConfig&) { m.erase(name); };
  };
  const std::string kv_b = kL1 + "self_attn.kv_b_proj.weight";
  // clang-format off: one case per entry reads better than one field per line.
  return {
      {"missing_tensor", false, erase(kv_b), C::kNotFound, {kv_b}},
      {"missing_expert",
       false,
       erase(kL1 + "mlp.experts.3.down_proj.weight"),
       C::kNotFound,
       {"mlp.experts.3.down_proj.weight"}},
      {"kv_b_shape",
       false,
       set(kv_b, {"BF16", {29, 12}, std::string(29 * 12 * 2, '\0')}),
       C::kInvalidArgument,
       {kv_b, "[29, 12]", "[28, 12]", "heads*(qk_nope+v_head_dim)"}},
      {"norm_shape",
       false,
       set("model.norm.weight", {"F32", {1, 16}, std::string(64, '\0')}),
       C::kInvalidArgument,
       {"model.norm.weight", "[1, 16]"}},
      {"q_a_proj_without_q_lora",
       false,
       set(kL1 + "self_attn.q_a_proj.weight", {"BF16", {4, 16}, std::string(128, '\0')}),
       C::kInvalidArgument,
       {"self_attn.q_a_proj.weight", "q_lora_rank"}},
      {"q_proj_with_q_lora",
       true,
       set(kL1 + "self_attn.q_proj.weight", {"BF16", {4, 16}, std::string(128, '\0')}),
       C::kInvalidArgument,
       {"self_attn.q_proj.weight", "q_lora_rank"}},
      {"linear_i32",
       false,
       set(kv_b, {"I32", {28, 12}, std::string(28 * 12 * 4, '\0')}),
       C::kInvalidArgument,
       {kv_b, "I32"}},
      {"linear_f64",
       false,
       set(kv_b, {"F64", {28, 12}, std::string(28 * 12 * 8, '\0')}),
       C::kInvalidArgument,
       {kv_b, "unsupported dtype 'F64'"}},
      {"norm_i64",
       false,
       set("model.norm.weight", {"I64", {16}, std::string(128, '\0')}),
       C::kInvalidArgument,
       {"model.norm.weight", "I64"}},
      {"fp8_without_scale",
       true,
       erase(kv_b + "_scale_inv"),
       C::kNotFound,
       {kv_b, "weight_scale_inv"}},
      {"fp8_scale_shape",
       true,
       set(kv_b + "_scale_inv", {"F32", {4, 4}, std::string(64, '\0')}),
       C::kInvalidArgument,
       {kv_b + "_scale_inv", "[4, 4]", "[4, 3]"}},
      {"dense_layer_with_router",
       false,
       set("model.layers.0.mlp.gate.weight", {"BF16", {4, 16}, std::string(128, '\0')}),
       C::kInvalidArgument,
       {"model.layers.0.mlp.gate.weight", "dense"}},
      {"moe_layer_with_dense_mlp",
       false,
       set(kL1 + "mlp.gate_proj.weight", {"BF16", {20, 16}, std::string(640, '\0')}),
       C::kInvalidArgument,
       {kL1 + "mlp.gate_proj.weight", "MoE"}},
      {"bias_without_noaux_tc",
       false,
       set(kL1 + "mlp.gate.e_score_correction_bias", {"F32", {4}, std::string(16, '\0')}),
       C::kInvalidArgument,
       {"e_score_correction_bias", "noaux_tc"}},
      {"noaux_tc_without_bias",
       true,
       erase(kL1 + "mlp.gate.e_score_correction_bias"),
       C::kNotFound,
       {"e_score_correction_bias"}},
      {"shared_experts_unexpected",
       false,
       [](TensorMap&, ModelConfig& c) { c.n_shared_experts = 0; },
       C::kInvalidArgument,
       {"shared_experts.gate_proj.weight", "n_shared_experts"}},
      {"lm_head_missing_untied",
       false,
       erase("lm_head.weight"),
       C::kNotFound,
       {"'lm_head.weight'"}},
  };
  // clang-format on
}

class BadCheckpointTest : public ::testing::TestWithParam<BadCase> {};

TEST_P(BadCheckpointTest, FailsNamingFileAndTensor) {
  TempDir dir;
  ModelConfig c = GetParam().v3 ? V3Config() : LiteConfig();
  TensorMap t = MakeTensors(c, GetParam().v3 ? "F8_E4M3" : "BF16");
  GetParam().mutate(t, c);
  auto w = WriteAndLoad(dir, t, c);
  ASSERT_FALSE(w.ok());
  EXPECT_EQ(w.status().code(), GetParam().code) << w.status();
  EXPECT_THAT(w.status().message(), HasSubstr(dir.File("model.safetensors")));
  for (const std::string& s : GetParam().expected) {
    EXPECT_THAT(w.status().message(), HasSubstr(s));
  }
}

INSTANTIATE_TEST_SUITE_P(All, BadCheckpointTest, ::testing::ValuesIn(BadCases()),
                         [](const auto& info) { return info.param.label; });

TEST(LoadModelWeightsTest, MissingTensorInShardedCheckpointNamesIndex) {
  TempDir dir;
  const ModelConfig c = LiteConfig();
  TensorMap t = MakeTensors(c, "BF16");
  t.erase("model.norm.weight");
  nlohmann::json index;
  for (const auto& [name, tensor] : t) index["weight_map"][name] = "model-1.safetensors";
  WriteSafetensors(dir.File("model-1.safetensors"), t);
  WriteFile(dir.File("model.safetensors.index.json"), index.dump());
  auto w = LoadModelWeights(dir.path(), c);
  EXPECT_EQ(w.status().code(), absl::StatusCode::kNotFound);
  EXPECT_THAT(w.status().message(), AllOf(HasSubstr(dir.File("model.safetensors.index.json")),
                                          HasSubstr("'model.norm.weight'")));
}

// The small generated models committed under models/, when present.
class CommittedModelTest : public ::testing::TestWithParam<const char*> {};

TEST_P(CommittedModelTest, LoadsWithConfigShapes) {
  const std::string dir = std::string(MLA_MODELS_DIR) + "/" + GetParam();
  if (!std::filesystem::exists(dir + "/config.json")) GTEST_SKIP() << dir << " not present";
  auto c = LoadModelConfig(dir);
  ASSERT_TRUE(c.ok()) << c.status();
  auto w = LoadModelWeights(dir, *c);
  ASSERT_TRUE(w.ok()) << w.status();
  ASSERT_EQ(w->layers.size(), static_cast<size_t>(c->num_hidden_layers));
  int64_t bytes = 0;
  for (const Spec& s : Specs(*c, &*w)) {
    if (s.matrix != nullptr) {
      EXPECT_EQ(std::vector<int64_t>({s.matrix->rows, s.matrix->cols}), s.shape) << s.name;
      bytes += static_cast<int64_t>(s.matrix->data.size());
    } else {
      EXPECT_EQ(static_cast<int64_t>(s.vector->size()), s.shape[0]) << s.name;
      bytes += static_cast<int64_t>(s.vector->size() * sizeof(float));
    }
  }
  EXPECT_EQ(w->bytes, bytes);
}

INSTANTIATE_TEST_SUITE_P(Models, CommittedModelTest,
                         ::testing::Values("tiny-v2-lite", "tiny-v3", "tiny-v32"),
                         [](const auto& info) {
                           std::string n = info.param;
                           for (char& ch : n) ch = std::isalnum(ch) ? ch : '_';
                           return n;
                         });

}  // namespace
}  // namespace mla
