#include "engine/model/config.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <cmath>
#include <functional>
#include <string>

#include "nlohmann/json.hpp"

namespace mla {
namespace {

using ::testing::HasSubstr;
using Json = nlohmann::json;

// DeepSeek-V2-Lite's published config.json fields (the subset the engine reads).
Json V2LiteConfig() {
  return Json::parse(R"({
    "architectures": ["DeepseekV2ForCausalLM"], "model_type": "deepseek_v2",
    "hidden_size": 2048, "num_hidden_layers": 27, "num_attention_heads": 16,
    "q_lora_rank": null, "kv_lora_rank": 512, "qk_nope_head_dim": 128,
    "qk_rope_head_dim": 64, "v_head_dim": 128, "intermediate_size": 10944,
    "moe_intermediate_size": 1408, "n_routed_experts": 64, "n_shared_experts": 2,
    "num_experts_per_tok": 6, "first_k_dense_replace": 1, "moe_layer_freq": 1,
    "routed_scaling_factor": 1.0, "topk_method": "greedy", "n_group": 1, "topk_group": 1,
    "norm_topk_prob": false, "scoring_func": "softmax", "vocab_size": 102400,
    "max_position_embeddings": 163840, "rope_theta": 10000,
    "rope_scaling": {"type": "yarn", "factor": 40, "original_max_position_embeddings": 4096,
                     "beta_fast": 32, "beta_slow": 1, "mscale": 0.707, "mscale_all_dim": 0.707},
    "rms_norm_eps": 1e-6, "bos_token_id": 100000, "eos_token_id": 100001,
    "torch_dtype": "bfloat16"})");
}

Json V3Config() {
  Json j = V2LiteConfig();
  j["architectures"] = {"DeepseekV3ForCausalLM"};
  j["model_type"] = "deepseek_v3";
  j["hidden_size"] = 7168;
  j["num_hidden_layers"] = 61;
  j["num_attention_heads"] = 128;
  j["q_lora_rank"] = 1536;
  j["n_routed_experts"] = 256;
  j["n_shared_experts"] = 1;
  j["num_experts_per_tok"] = 8;
  j["first_k_dense_replace"] = 3;
  j["topk_method"] = "noaux_tc";
  j["scoring_func"] = "sigmoid";
  j["n_group"] = 8;
  j["topk_group"] = 4;
  j["norm_topk_prob"] = true;
  j["routed_scaling_factor"] = 2.5;
  j["vocab_size"] = 129280;
  j["bos_token_id"] = 0;
  j["eos_token_id"] = 1;
  j["rope_scaling"]["mscale"] = 1.0;
  j["rope_scaling"]["mscale_all_dim"] = 1.0;
  j["quantization_config"] = {{"quant_method", "fp8"}, {"weight_block_size", {128, 128}}};
  return j;
}

TEST(ModelConfigTest, ParsesV2Lite) {
  auto c = ParseModelConfig(V2LiteConfig().dump());
  ASSERT_TRUE(c.ok()) << c.status();
  EXPECT_EQ(c->architecture, "DeepseekV2ForCausalLM");
  EXPECT_EQ(c->hidden_size, 2048);
  EXPECT_EQ(c->q_lora_rank, 0);
  EXPECT_EQ(c->latent_dim(), 576);
  EXPECT_EQ(c->qk_head_dim(), 192);
  EXPECT_EQ(c->topk_method, TopkMethod::kGreedy);
  EXPECT_EQ(c->scoring_func, ScoringFunc::kSoftmax);
  EXPECT_TRUE(c->rope_scaling.yarn);
  EXPECT_DOUBLE_EQ(c->rope_scaling.factor, 40.0);
  EXPECT_EQ(c->rope_scaling.original_max_position_embeddings, 4096);
  EXPECT_EQ(c->eos_token_ids, std::vector<int>{100001});
  EXPECT_FALSE(c->fp8_weights);
  EXPECT_FALSE(c->IsMoeLayer(0));
  EXPECT_TRUE(c->IsMoeLayer(1));
  EXPECT_TRUE(c->IsMoeLayer(26));
}

TEST(ModelConfigTest, ParsesV3) {
  auto c = ParseModelConfig(V3Config().dump());
  ASSERT_TRUE(c.ok()) << c.status();
  EXPECT_EQ(c->q_lora_rank, 1536);
  EXPECT_EQ(c->topk_method, TopkMethod::kNoauxTc);
  EXPECT_EQ(c->scoring_func, ScoringFunc::kSigmoid);
  EXPECT_TRUE(c->norm_topk_prob);
  EXPECT_TRUE(c->fp8_weights);
  EXPECT_EQ(c->fp8_block_rows, 128);
  EXPECT_FALSE(c->IsMoeLayer(2));
  EXPECT_TRUE(c->IsMoeLayer(3));
}

TEST(ModelConfigTest, SoftmaxScaleMatchesReference) {
  // REFERENCE.md: V2/V2-Lite 0.11472139, V3 0.13523378.
  auto v2 = ParseModelConfig(V2LiteConfig().dump());
  auto v3 = ParseModelConfig(V3Config().dump());
  ASSERT_TRUE(v2.ok() && v3.ok());
  EXPECT_NEAR(SoftmaxScale(*v2), 0.11472139, 5e-8);
  EXPECT_NEAR(SoftmaxScale(*v3), 0.13523378, 5e-8);
  Json plain = V2LiteConfig();
  plain["rope_scaling"] = nullptr;
  auto p = ParseModelConfig(plain.dump());
  ASSERT_TRUE(p.ok());
  EXPECT_NEAR(SoftmaxScale(*p), 1.0 / std::sqrt(192.0), 1e-12);
  EXPECT_FALSE(p->rope_scaling.yarn);
}

TEST(ModelConfigTest, EosListAccepted) {
  Json j = V2LiteConfig();
  j["eos_token_id"] = {100001, 100002};
  auto c = ParseModelConfig(j.dump());
  ASSERT_TRUE(c.ok());
  EXPECT_EQ(c->eos_token_ids, (std::vector<int>{100001, 100002}));
}

TEST(ModelConfigTest, RejectsBadJson) {
  auto c = ParseModelConfig("{not json", "dir/config.json");
  EXPECT_EQ(c.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(c.status().message(), HasSubstr("dir/config.json"));
  EXPECT_FALSE(ParseModelConfig("[1, 2]").ok());
}

// Numbers that once sized allocations unchecked (2^31 - 1 layers aborted the process with
// std::bad_alloc): each is refused naming the field and its bound.
TEST(ModelConfigTest, HugeNumbersAreRefusedNamingFieldAndBound) {
  struct Huge {
    const char* field;
    int64_t value;
    const char* bound;
  };
  const Huge cases[] = {
      {"num_hidden_layers", 2147483647, "[1, 1024]"},
      {"num_hidden_layers", 100000000, "[1, 1024]"},
      {"hidden_size", 2147483647, "[1, 65536]"},
      {"num_attention_heads", 1 << 20, "[1, 1024]"},
      {"q_lora_rank", 2147483647, "[1, 65536]"},
      {"kv_lora_rank", 2147483647, "[1, 65536]"},
      {"qk_nope_head_dim", 2147483647, "[1, 4096]"},
      {"qk_rope_head_dim", 1 << 20, "[2, 4096]"},
      {"v_head_dim", 2147483647, "[1, 4096]"},
      {"intermediate_size", 2147483647, "[1, 1048576]"},
      {"moe_intermediate_size", 2147483647, "[1, 1048576]"},
      {"n_routed_experts", 100000000, "[0, 16384]"},
      {"n_shared_experts", 100000000, "[0, 16384]"},
      {"vocab_size", 2147483647, "[1, 16777216]"},
      {"max_position_embeddings", int64_t{1} << 40, "[1, 4294967296]"},
      {"eos_token_id", int64_t{1} << 33, "[0, 16777216]"},
  };
  for (const Huge& h : cases) {
    Json j = V2LiteConfig();
    j[h.field] = h.value;
    auto c = ParseModelConfig(j.dump(), "m/config.json");
    ASSERT_FALSE(c.ok()) << h.field;
    EXPECT_EQ(c.status().code(), absl::StatusCode::kInvalidArgument);
    EXPECT_THAT(c.status().message(), HasSubstr(h.field));
    EXPECT_THAT(c.status().message(), HasSubstr(h.bound)) << c.status().message();
  }
  // Beyond 64 bits (an unsigned JSON integer) the message shows the number as written.
  Json j = V2LiteConfig();
  j["num_hidden_layers"] = uint64_t{18446744073709551615u};
  auto c = ParseModelConfig(j.dump());
  ASSERT_FALSE(c.ok());
  EXPECT_THAT(c.status().message(), HasSubstr("got 18446744073709551615"));
  // A weight block size that wrapped a 32-bit int once read as positive.
  j = V2LiteConfig();
  j["quantization_config"] = {{"quant_method", "fp8"},
                              {"weight_block_size", {int64_t{1} << 32, 128}}};
  c = ParseModelConfig(j.dump());
  ASSERT_FALSE(c.ok());
  EXPECT_THAT(c.status().message(), HasSubstr("weight_block_size"));
}

struct BadCase {
  const char* name;
  const char* field;  // Field the error must name.
  void (*mutate)(Json&);
};

class ModelConfigInvalidTest : public ::testing::TestWithParam<BadCase> {};

TEST_P(ModelConfigInvalidTest, NamesTheField) {
  Json j = V2LiteConfig();
  GetParam().mutate(j);
  auto c = ParseModelConfig(j.dump(), "m/config.json");
  ASSERT_FALSE(c.ok()) << GetParam().name;
  EXPECT_EQ(c.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(c.status().message(), HasSubstr(GetParam().field));
  EXPECT_THAT(c.status().message(), HasSubstr("m/config.json"));
}

INSTANTIATE_TEST_SUITE_P(
    AllFields, ModelConfigInvalidTest,
    ::testing::Values(
        BadCase{"missing_hidden", "hidden_size", [](Json& j) { j.erase("hidden_size"); }},
        BadCase{"zero_layers", "num_hidden_layers", [](Json& j) { j["num_hidden_layers"] = 0; }},
        BadCase{"string_heads", "num_attention_heads",
                [](Json& j) { j["num_attention_heads"] = "16"; }},
        BadCase{"missing_kv_lora", "kv_lora_rank", [](Json& j) { j.erase("kv_lora_rank"); }},
        BadCase{"negative_q_lora", "q_lora_rank", [](Json& j) { j["q_lora_rank"] = -1; }},
        BadCase{"odd_rope", "qk_rope_head_dim", [](Json& j) { j["qk_rope_head_dim"] = 63; }},
        BadCase{"float_vocab", "vocab_size", [](Json& j) { j["vocab_size"] = 1.5; }},
        BadCase{"missing_v_dim", "v_head_dim", [](Json& j) { j.erase("v_head_dim"); }},
        BadCase{"bad_topk", "topk_method", [](Json& j) { j["topk_method"] = "random"; }},
        BadCase{"bad_scoring", "scoring_func", [](Json& j) { j["scoring_func"] = "relu"; }},
        BadCase{"too_many_experts_per_tok", "num_experts_per_tok",
                [](Json& j) { j["num_experts_per_tok"] = 65; }},
        BadCase{"bad_groups", "n_group",
                [](Json& j) {
                  j["topk_method"] = "group_limited_greedy";
                  j["n_group"] = 7;
                }},
        BadCase{"topk_group_gt_n_group", "topk_group",
                [](Json& j) {
                  j["topk_method"] = "group_limited_greedy";
                  j["n_group"] = 8;
                  j["topk_group"] = 9;
                }},
        BadCase{"rope_type", "rope_scaling", [](Json& j) { j["rope_scaling"]["type"] = "linear"; }},
        BadCase{"yarn_factor_missing", "factor",
                [](Json& j) { j["rope_scaling"].erase("factor"); }},
        BadCase{"nan_like_theta", "rope_theta", [](Json& j) { j["rope_theta"] = -5; }},
        BadCase{"eos_outside_vocab", "eos_token_id", [](Json& j) { j["eos_token_id"] = 999999; }},
        BadCase{"eos_string", "eos_token_id", [](Json& j) { j["eos_token_id"] = "x"; }},
        BadCase{"quant_method", "quantization_config",
                [](Json& j) { j["quantization_config"] = {{"quant_method", "gptq"}}; }},
        BadCase{"norm_topk_type", "norm_topk_prob", [](Json& j) { j["norm_topk_prob"] = 1; }},
        BadCase{"architectures_empty", "architectures",
                [](Json& j) { j["architectures"] = Json::array(); }}),
    [](const ::testing::TestParamInfo<BadCase>& info) { return std::string(info.param.name); });

// DeepSeek-V3.2-Exp: V3's shape plus the indexer; its config.json names no router.
Json V32Config() {
  Json j = V3Config();
  j["architectures"] = {"DeepseekV32ForCausalLM"};
  j["model_type"] = "deepseek_v32";
  j.erase("topk_method");
  j.erase("scoring_func");
  j["index_n_heads"] = 64;
  j["index_head_dim"] = 128;
  j["index_topk"] = 2048;
  return j;
}

TEST(ModelConfigTest, ParsesV32WithV3RouterByDefault) {
  auto c = ParseModelConfig(V32Config().dump());
  ASSERT_TRUE(c.ok()) << c.status();
  EXPECT_TRUE(c->has_indexer());
  EXPECT_EQ(c->index_n_heads, 64);
  EXPECT_EQ(c->index_head_dim, 128);
  EXPECT_EQ(c->index_topk, 2048);
  EXPECT_EQ(c->topk_method, TopkMethod::kNoauxTc);
  EXPECT_EQ(c->scoring_func, ScoringFunc::kSigmoid);
  auto v3 = ParseModelConfig(V3Config().dump());
  ASSERT_TRUE(v3.ok());
  EXPECT_FALSE(v3->has_indexer());
}

TEST(ModelConfigTest, MalformedV32ConfigsNameTheField) {
  struct Case {
    std::function<void(Json&)> mutate;
    std::string expected;
  };
  const std::vector<Case> cases = {
      {[](Json& j) { j.erase("index_topk"); }, "field 'index_topk' is required"},
      {[](Json& j) { j.erase("index_n_heads"); }, "field 'index_n_heads' is required"},
      {[](Json& j) { j["index_head_dim"] = "128"; }, "field 'index_head_dim' must be an integer"},
      {[](Json& j) { j["index_topk"] = 0; }, "field 'index_topk' must be in [1, "},
      {[](Json& j) { j["index_head_dim"] = 32; },
       "field 'index_head_dim' must be at least qk_rope_head_dim"},
      {[](Json& j) { j["q_lora_rank"] = nullptr; },
       "field 'q_lora_rank' is required by the V3.2 indexer"},
      {[](Json& j) { j["model_type"] = "deepseek_v3"; },
       "field 'index_n_heads' is a DeepSeek-V3.2 field but model_type is 'deepseek_v3'"},
  };
  for (const Case& c : cases) {
    Json j = V32Config();
    c.mutate(j);
    auto parsed = ParseModelConfig(j.dump());
    ASSERT_FALSE(parsed.ok()) << c.expected;
    EXPECT_THAT(parsed.status().message(), HasSubstr(c.expected));
  }
}

}  // namespace
}  // namespace mla
