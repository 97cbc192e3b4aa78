#include "engine/model/config.h"

#include <algorithm>
#include <cmath>
#include <fstream>
#include <limits>
#include <sstream>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "nlohmann/json.hpp"

namespace mla {
namespace {

using Json = nlohmann::json;

// Upper bounds on the geometry, checked before anything is sized from it. Each is far
// above every published MLA model (DeepSeek-V3: 61 layers, hidden 7168, 128 heads, 256
// experts, vocabulary 129280) and low enough that products of them fit in 64 bits and
// the per-layer and per-expert bookkeeping stays small even when the weights are absent.
constexpr int64_t kMaxLayers = 1024;
constexpr int64_t kMaxWidth = 1 << 16;         // hidden_size, q_lora_rank, kv_lora_rank
constexpr int64_t kMaxHeads = 1024;
constexpr int64_t kMaxHeadDim = 4096;          // qk_nope, qk_rope and v head dims
constexpr int64_t kMaxIntermediate = 1 << 20;  // intermediate sizes
constexpr int64_t kMaxExperts = 1 << 14;       // routed and shared experts, groups
constexpr int64_t kMaxVocab = 1 << 24;
constexpr int64_t kMaxPositions = int64_t{1} << 32;
constexpr int64_t kMaxFp8Block = 1 << 16;

// Reads fields from one JSON object and remembers the first error, so that the parser
// reads as a flat list of fields instead of a ladder of early returns.
class FieldReader {
 public:
  FieldReader(const Json& obj, absl::string_view file, std::string prefix = "")
      : obj_(obj), file_(file), prefix_(std::move(prefix)) {}

  const absl::Status& status() const { return status_; }
  bool Has(const char* name) const {
    return obj_.contains(name) && !obj_.at(name).is_null();
  }

  // An integer in [min, max]. Absent or null: `fallback` when optional, else an error.
  // Every caller names its bound: nothing is sized from an unbounded number.
  void Int(const char* name, int* out, bool required, int64_t min, int64_t max) {
    int64_t v = *out;
    Int64(name, &v, required, min, std::min<int64_t>(max, std::numeric_limits<int>::max()));
    *out = static_cast<int>(v);
  }
  void Int64(const char* name, int64_t* out, bool required, int64_t min, int64_t max) {
    if (!status_.ok()) return;
    if (!Has(name)) {
      if (required) Fail(name, "is required");
      return;
    }
    const Json& v = obj_.at(name);
    if (!v.is_number_integer()) return Fail(name, "must be an integer");
    if (v.is_number_unsigned() && v.get<uint64_t>() > static_cast<uint64_t>(max)) {
      return Fail(name, absl::StrCat("must be in [", min, ", ", max, "], got ",
                                     v.get<uint64_t>()));
    }
    const int64_t x = v.get<int64_t>();
    if (x < min || x > max) {
      return Fail(name, absl::StrCat("must be in [", min, ", ", max, "], got ", x));
    }
    *out = x;
  }
  void Double(const char* name, double* out, bool required, double min, double max) {
    if (!status_.ok()) return;
    if (!Has(name)) {
      if (required) Fail(name, "is required");
      return;
    }
    const Json& v = obj_.at(name);
    if (!v.is_number()) return Fail(name, "must be a number");
    const double x = v.get<double>();
    if (!std::isfinite(x) || x < min || x > max) {
      return Fail(name, absl::StrCat("must be a finite number in [", min, ", ", max,
                                     "], got ", x));
    }
    *out = x;
  }
  void Bool(const char* name, bool* out) {
    if (!status_.ok() || !Has(name)) return;
    const Json& v = obj_.at(name);
    if (!v.is_boolean()) return Fail(name, "must be true or false");
    *out = v.get<bool>();
  }
  void String(const char* name, std::string* out, bool required) {
    if (!status_.ok()) return;
    if (!Has(name)) {
      if (required) Fail(name, "is required");
      return;
    }
    const Json& v = obj_.at(name);
    if (!v.is_string()) return Fail(name, "must be a string");
    *out = v.get<std::string>();
  }
  void Fail(absl::string_view name, absl::string_view what) {
    if (status_.ok()) {
      status_ = absl::InvalidArgumentError(
          absl::StrCat(file_, ": field '", prefix_, name, "' ", what));
    }
  }

 private:
  const Json& obj_;
  absl::string_view file_;
  std::string prefix_;
  absl::Status status_;
};

// DeepSeek-V3 and V3.2 configs may leave the router out: transformers' V3 and V3.2 code
// always route with sigmoid scores and noaux_tc, so that is their default here.
bool HasV3Router(const ModelConfig& c) {
  return c.model_type == "deepseek_v3" || c.model_type == "deepseek_v32";
}

void ReadEnums(FieldReader& r, ModelConfig& c) {
  std::string topk = "greedy", scoring = "softmax";
  if (HasV3Router(c)) topk = "noaux_tc", scoring = "sigmoid";
  r.String("topk_method", &topk, false);
  r.String("scoring_func", &scoring, false);
  if (topk == "greedy") c.topk_method = TopkMethod::kGreedy;
  else if (topk == "group_limited_greedy") c.topk_method = TopkMethod::kGroupLimitedGreedy;
  else if (topk == "noaux_tc") c.topk_method = TopkMethod::kNoauxTc;
  else r.Fail("topk_method", absl::StrCat("has unsupported value '", topk,
                                          "' (greedy, group_limited_greedy, noaux_tc)"));
  if (scoring == "softmax") c.scoring_func = ScoringFunc::kSoftmax;
  else if (scoring == "sigmoid") c.scoring_func = ScoringFunc::kSigmoid;
  else r.Fail("scoring_func", absl::StrCat("has unsupported value '", scoring,
                                           "' (softmax, sigmoid)"));
}

void ReadRopeScaling(const Json& root, absl::string_view file, FieldReader& outer,
                     ModelConfig& c) {
  if (!outer.status().ok() || !root.contains("rope_scaling") || root["rope_scaling"].is_null())
    return;
  const Json& rs = root["rope_scaling"];
  if (!rs.is_object()) return outer.Fail("rope_scaling", "must be an object or null");
  FieldReader r(rs, file, "rope_scaling.");
  std::string type;
  if (rs.contains("type")) r.String("type", &type, true);
  else r.String("rope_type", &type, true);
  if (r.status().ok() && type != "yarn") {
    r.Fail("type", absl::StrCat("has unsupported value '", type, "' (only yarn)"));
  }
  RopeScaling& y = c.rope_scaling;
  y.yarn = true;
  r.Double("factor", &y.factor, true, 1.0, 1e6);
  r.Int64("original_max_position_embeddings", &y.original_max_position_embeddings, true, 1,
          kMaxPositions);
  r.Double("beta_fast", &y.beta_fast, false, 0.0, 1e6);
  r.Double("beta_slow", &y.beta_slow, false, 0.0, 1e6);
  r.Double("mscale", &y.mscale, false, 0.0, 1e6);
  r.Double("mscale_all_dim", &y.mscale_all_dim, false, 0.0, 1e6);
  if (!r.status().ok()) outer.Fail("rope_scaling", r.status().message());
}

// The V3.2 indexer's fields: required for model_type deepseek_v32, refused elsewhere (a
// dense model silently ignoring them would serve different attention than trained).
void ReadIndexer(FieldReader& r, ModelConfig& c) {
  const bool v32 = c.model_type == "deepseek_v32";
  for (const char* name : {"index_n_heads", "index_head_dim", "index_topk"}) {
    if (!v32 && r.Has(name)) {
      return r.Fail(name, absl::StrCat("is a DeepSeek-V3.2 field but model_type is '", c.model_type,
                                       "' (expected deepseek_v32)"));
    }
  }
  if (!v32) return;
  r.Int("index_n_heads", &c.index_n_heads, true, 1, kMaxHeads);
  r.Int("index_head_dim", &c.index_head_dim, true, 2, kMaxHeadDim);
  r.Int("index_topk", &c.index_topk, true, 1, std::numeric_limits<int>::max());
}

void ReadEos(const Json& root, FieldReader& r, ModelConfig& c) {
  if (!r.Has("eos_token_id")) return;
  const Json& v = root["eos_token_id"];
  // Read as 64 bits and bounded here, so that a huge id cannot wrap into the vocabulary.
  auto add = [&](const Json& e) {
    const int64_t id = e.get<int64_t>();
    if (id < 0 || id > kMaxVocab) {
      r.Fail("eos_token_id", absl::StrCat("must hold ids in [0, ", kMaxVocab, "], got ", id));
      return false;
    }
    c.eos_token_ids.push_back(static_cast<int>(id));
    return true;
  };
  if (v.is_number_integer()) {
    add(v);
  } else if (v.is_array()) {
    if (v.size() > static_cast<size_t>(kMaxVocab)) {
      return r.Fail("eos_token_id", absl::StrCat("must hold at most ", kMaxVocab, " ids"));
    }
    for (const Json& e : v) {
      if (!e.is_number_integer()) return r.Fail("eos_token_id", "must hold integers");
      if (!add(e)) return;
    }
  } else {
    r.Fail("eos_token_id", "must be an integer or a list of integers");
  }
}

void ReadQuantization(const Json& root, FieldReader& r, ModelConfig& c) {
  if (!r.Has("quantization_config")) return;
  const Json& q = root["quantization_config"];
  if (!q.is_object()) return r.Fail("quantization_config", "must be an object");
  const std::string method = q.value("quant_method", "");
  if (method != "fp8") {
    return r.Fail("quantization_config",
                  absl::StrCat("has unsupported quant_method '", method, "' (only fp8)"));
  }
  c.fp8_weights = true;
  if (q.contains("weight_block_size")) {
    const Json& b = q["weight_block_size"];
    auto in_range = [](const Json& d) {
      return d.is_number_integer() && d.get<int64_t>() >= 1 && d.get<int64_t>() <= kMaxFp8Block;
    };
    if (!b.is_array() || b.size() != 2 || !in_range(b[0]) || !in_range(b[1])) {
      return r.Fail("quantization_config.weight_block_size",
                    absl::StrCat("must be two integers in [1, ", kMaxFp8Block, "]"));
    }
    c.fp8_block_rows = static_cast<int>(b[0].get<int64_t>());
    c.fp8_block_cols = static_cast<int>(b[1].get<int64_t>());
  }
}

absl::Status CheckConsistency(const ModelConfig& c, absl::string_view file) {
  auto fail = [&](absl::string_view what) {
    return absl::InvalidArgumentError(absl::StrCat(file, ": ", what));
  };
  if (c.qk_rope_head_dim % 2 != 0) return fail("field 'qk_rope_head_dim' must be even");
  if (c.has_indexer()) {
    // The indexer reads the query's low-rank residual and rotates its first
    // qk_rope_head_dim values (DeepseekV32Indexer).
    if (c.q_lora_rank == 0) return fail("field 'q_lora_rank' is required by the V3.2 indexer");
    if (c.index_head_dim < c.qk_rope_head_dim)
      return fail("field 'index_head_dim' must be at least qk_rope_head_dim");
  }
  if (c.n_routed_experts > 0) {
    if (c.num_experts_per_tok < 1 || c.num_experts_per_tok > c.n_routed_experts)
      return fail("field 'num_experts_per_tok' must be in [1, n_routed_experts]");
    if (c.moe_intermediate_size < 1) return fail("field 'moe_intermediate_size' is required");
    if (c.topk_method != TopkMethod::kGreedy) {
      if (c.n_group < 1 || c.n_routed_experts % c.n_group != 0)
        return fail("field 'n_group' must divide n_routed_experts");
      if (c.topk_group < 1 || c.topk_group > c.n_group)
        return fail("field 'topk_group' must be in [1, n_group]");
    }
  }
  for (int eos : c.eos_token_ids) {
    if (eos < 0 || eos >= c.vocab_size) return fail("field 'eos_token_id' is outside the vocabulary");
  }
  return absl::OkStatus();
}

}  // namespace

absl::StatusOr<ModelConfig> ParseModelConfig(absl::string_view json_text,
                                             absl::string_view file_name) {
  Json root = Json::parse(json_text, nullptr, /*allow_exceptions=*/false);
  if (root.is_discarded()) {
    return absl::InvalidArgumentError(absl::StrCat(file_name, ": not valid JSON"));
  }
  if (!root.is_object()) {
    return absl::InvalidArgumentError(absl::StrCat(file_name, ": must be a JSON object"));
  }
  ModelConfig c;
  FieldReader r(root, file_name);
  if (r.Has("architectures")) {
    const Json& a = root["architectures"];
    if (!a.is_array() || a.empty() || !a[0].is_string()) {
      r.Fail("architectures", "must be a non-empty list of strings");
    } else {
      c.architecture = a[0].get<std::string>();
    }
  }
  r.String("model_type", &c.model_type, false);
  r.Int("hidden_size", &c.hidden_size, true, 1, kMaxWidth);
  ReadIndexer(r, c);
  r.Int("num_hidden_layers", &c.num_hidden_layers, true, 1, kMaxLayers);
  r.Int("num_attention_heads", &c.num_attention_heads, true, 1, kMaxHeads);
  r.Int("q_lora_rank", &c.q_lora_rank, false, 1, kMaxWidth);
  r.Int("kv_lora_rank", &c.kv_lora_rank, true, 1, kMaxWidth);
  r.Int("qk_nope_head_dim", &c.qk_nope_head_dim, true, 1, kMaxHeadDim);
  r.Int("qk_rope_head_dim", &c.qk_rope_head_dim, true, 2, kMaxHeadDim);
  r.Int("v_head_dim", &c.v_head_dim, true, 1, kMaxHeadDim);
  r.Int("intermediate_size", &c.intermediate_size, true, 1, kMaxIntermediate);
  r.Int("moe_intermediate_size", &c.moe_intermediate_size, false, 1, kMaxIntermediate);
  r.Int("n_routed_experts", &c.n_routed_experts, false, 0, kMaxExperts);
  r.Int("n_shared_experts", &c.n_shared_experts, false, 0, kMaxExperts);
  r.Int("num_experts_per_tok", &c.num_experts_per_tok, false, 0, kMaxExperts);
  r.Int("first_k_dense_replace", &c.first_k_dense_replace, false, 0, kMaxLayers);
  r.Int("moe_layer_freq", &c.moe_layer_freq, false, 1, kMaxLayers);
  r.Double("routed_scaling_factor", &c.routed_scaling_factor, false, 0.0, 1e6);
  ReadEnums(r, c);
  r.Int("n_group", &c.n_group, false, 1, kMaxExperts);
  r.Int("topk_group", &c.topk_group, false, 1, kMaxExperts);
  r.Bool("norm_topk_prob", &c.norm_topk_prob);
  r.Int("vocab_size", &c.vocab_size, true, 1, kMaxVocab);
  r.Int64("max_position_embeddings", &c.max_position_embeddings, true, 1, kMaxPositions);
  r.Double("rope_theta", &c.rope_theta, false, 1.0, 1e12);
  ReadRopeScaling(root, file_name, r, c);
  r.Double("rms_norm_eps", &c.rms_norm_eps, false, 0.0, 1.0);
  r.Int("bos_token_id", &c.bos_token_id, false, 0, kMaxVocab);
  ReadEos(root, r, c);
  r.String("torch_dtype", &c.torch_dtype, false);
  r.Bool("tie_word_embeddings", &c.tie_word_embeddings);
  ReadQuantization(root, r, c);
  if (!r.status().ok()) return r.status();
  if (absl::Status s = CheckConsistency(c, file_name); !s.ok()) return s;
  return c;
}

absl::StatusOr<ModelConfig> LoadModelConfig(const std::string& model_dir) {
  const std::string path = model_dir + "/config.json";
  std::ifstream in(path, std::ios::binary);
  if (!in) return absl::NotFoundError(absl::StrCat(path, ": cannot open"));
  std::stringstream buffer;
  buffer << in.rdbuf();
  return ParseModelConfig(buffer.str(), path);
}

double SoftmaxScale(const ModelConfig& c) {
  double scale = 1.0 / std::sqrt(static_cast<double>(c.qk_head_dim()));
  const RopeScaling& y = c.rope_scaling;
  if (y.yarn && y.mscale_all_dim != 0.0 && y.factor > 1.0) {
    const double m = 0.1 * y.mscale_all_dim * std::log(y.factor) + 1.0;
    scale *= m * m;
  }
  return scale;
}

}  // namespace mla
