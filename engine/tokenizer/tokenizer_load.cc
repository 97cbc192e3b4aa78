// Tokenizer::Load / FromJson: turns tokenizer.json and tokenizer_config.json into a
// Tokenizer, rejecting what it cannot reproduce exactly.
#include <algorithm>
#include <nlohmann/json.hpp>
#include <utility>

#include "absl/container/flat_hash_set.h"
#include "absl/strings/str_cat.h"
#include "common/status_macros.h"
#include "engine/tokenizer/added_vocabulary.h"
#include "engine/tokenizer/bpe_model.h"
#include "engine/tokenizer/byte_level.h"
#include "engine/tokenizer/file_util.h"
#include "engine/tokenizer/json_util.h"
#include "engine/tokenizer/normalizer.h"
#include "engine/tokenizer/pre_tokenizer.h"
#include "engine/tokenizer/tokenizer.h"

namespace mla {

using json_util::Field;
using json_util::Invalid;
using json_util::Unsupported;

class TokenizerBuilder {
 public:
  TokenizerBuilder(Tokenizer* tokenizer, std::string file) : t_(tokenizer), file_(file) {}

  // Tokenizer::FromJson without the exception guard.
  static absl::StatusOr<std::unique_ptr<Tokenizer>> Create(
      absl::string_view tokenizer_json, absl::string_view tokenizer_config_json,
      absl::string_view tokenizer_json_name, absl::string_view tokenizer_config_json_name);

  absl::Status Build(const nlohmann::json& root) {
    if (!root.is_object()) return Invalid(file_, "expected a JSON object");
    MLA_RETURN_IF_ERROR(CheckDecoder(root));
    const nlohmann::json* model = json_util::Find(root, "model");
    if (model == nullptr) return Invalid(At("model"), "missing");
    MLA_ASSIGN_OR_RETURN(t_->bpe_, BpeModel::FromJson(*model, At("model")));
    const nlohmann::json null_value;
    const nlohmann::json* normalizer = json_util::Find(root, "normalizer");
    MLA_ASSIGN_OR_RETURN(
        t_->normalizer_,
        Normalizer::FromJson(normalizer ? *normalizer : null_value, At("normalizer")));
    const nlohmann::json* pre = json_util::Find(root, "pre_tokenizer");
    if (pre == nullptr) return Unsupported(At("pre_tokenizer"), "missing (byte-level needed)");
    MLA_ASSIGN_OR_RETURN(t_->pre_tokenizer_, PreTokenizer::FromJson(*pre, At("pre_tokenizer")));
    const nlohmann::json* added = json_util::Find(root, "added_tokens");
    const BpeModel& bpe = *t_->bpe_;
    MLA_ASSIGN_OR_RETURN(t_->added_,
                         AddedVocabulary::FromJson(
                             added ? *added : null_value, t_->normalizer_.get(),
                             [&bpe](absl::string_view content) { return bpe.TokenToId(content); },
                             At("added_tokens")));
    BuildIdTables();
    return absl::OkStatus();
  }

  // The post-processor decides BOS/EOS unless tokenizer_config.json does (see tokenizer.h).
  absl::Status ApplyPostProcessor(const nlohmann::json& root) {
    const nlohmann::json* post = json_util::Find(root, "post_processor");
    if (post == nullptr) return absl::OkStatus();
    return AddPostProcessor(*post, At("post_processor"));
  }

  absl::Status ApplyConfig(const nlohmann::json& config, const std::string& name) {
    if (!config.is_object()) return Invalid(name, "expected a JSON object");
    MLA_ASSIGN_OR_RETURN(t_->bos_token_, SpecialContent(config, "bos_token", name));
    MLA_ASSIGN_OR_RETURN(t_->eos_token_, SpecialContent(config, "eos_token", name));
    MLA_ASSIGN_OR_RETURN(t_->bos_token_id_, IdOf(t_->bos_token_, Field(name, "bos_token")));
    MLA_ASSIGN_OR_RETURN(t_->eos_token_id_, IdOf(t_->eos_token_, Field(name, "eos_token")));
    MLA_ASSIGN_OR_RETURN(t_->chat_template_, ChatTemplate(config, name));
    const bool has_flags = config.contains("add_bos_token") || config.contains("add_eos_token");
    if (!has_flags) return absl::OkStatus();
    MLA_ASSIGN_OR_RETURN(const bool add_bos,
                         json_util::GetBool(config, "add_bos_token", false, name));
    MLA_ASSIGN_OR_RETURN(const bool add_eos,
                         json_util::GetBool(config, "add_eos_token", false, name));
    if ((add_bos && t_->bos_token_id_ < 0) || (add_eos && t_->eos_token_id_ < 0)) {
      return Invalid(name, "add_bos_token/add_eos_token is set but the token is not configured");
    }
    t_->prefix_ids_.clear();
    t_->suffix_ids_.clear();
    if (add_bos) t_->prefix_ids_.push_back(t_->bos_token_id_);
    if (add_eos) t_->suffix_ids_.push_back(t_->eos_token_id_);
    return absl::OkStatus();
  }

 private:
  std::string At(absl::string_view key) const { return Field(file_, key); }

  absl::Status CheckDecoder(const nlohmann::json& root) const {
    const nlohmann::json* decoder = json_util::Find(root, "decoder");
    const std::string type =
        decoder != nullptr && decoder->is_object() ? decoder->value("type", "") : "";
    if (type != "ByteLevel") {
      return Unsupported(At("decoder"), absl::StrCat("decoder '", type,
                                                     "' is not supported "
                                                     "(only ByteLevel)"));
    }
    return absl::OkStatus();
  }

  void BuildIdTables() {
    const std::vector<std::string>& model_tokens = t_->bpe_->tokens();
    size_t size = model_tokens.size();
    for (const AddedToken& token : t_->added_->tokens()) {
      size = std::max(size, static_cast<size_t>(token.id) + 1);
    }
    std::vector<std::string> strings(size);
    t_->has_token_.assign(size, false);
    for (size_t id = 0; id < model_tokens.size(); ++id) {
      if (!model_tokens[id].empty()) {
        strings[id] = model_tokens[id];
        t_->has_token_[id] = true;
      }
    }
    absl::flat_hash_set<std::string> special_contents;
    for (const AddedToken& token : t_->added_->tokens()) {
      // Added tokens take precedence over the model for id -> token, as in Hugging Face.
      strings[static_cast<size_t>(token.id)] = token.pattern;
      t_->has_token_[static_cast<size_t>(token.id)] = true;
      if (token.special) special_contents.insert(token.content);
    }
    t_->token_bytes_.assign(size, std::string());
    t_->special_.assign(size, false);
    for (size_t id = 0; id < size; ++id) {
      // The ByteLevel decoder maps a token back to bytes when every character is in its
      // alphabet and otherwise keeps the token's own UTF-8.
      if (!ByteLevelToBytes(strings[id], &t_->token_bytes_[id])) {
        t_->token_bytes_[id] = strings[id];
      }
      t_->special_[id] = special_contents.contains(strings[id]);
    }
  }

  absl::Status AddPostProcessor(const nlohmann::json& j, const std::string& where) {
    const std::string type = j.is_object() ? j.value("type", "") : "";
    if (type == "ByteLevel") return absl::OkStatus();  // offsets only
    if (type == "Sequence") {
      const nlohmann::json* list = json_util::Find(j, "processors");
      if (list == nullptr || !list->is_array()) {
        return Invalid(Field(where, "processors"), "expected an array");
      }
      for (size_t i = 0; i < list->size(); ++i) {
        MLA_RETURN_IF_ERROR(
            AddPostProcessor((*list)[i], absl::StrCat(where, ".processors[", i, "]")));
      }
      return absl::OkStatus();
    }
    if (type == "TemplateProcessing") return AddTemplate(j, where);
    return Unsupported(Field(where, "type"),
                       absl::StrCat("post-processor '", type,
                                    "' is not supported "
                                    "(supported: ByteLevel, TemplateProcessing, Sequence)"));
  }

  // Only the single-sequence template matters for Encode.
  absl::Status AddTemplate(const nlohmann::json& j, const std::string& where) {
    const nlohmann::json* single = json_util::Find(j, "single");
    const nlohmann::json* specials = json_util::Find(j, "special_tokens");
    if (single == nullptr || !single->is_array()) {
      return Invalid(Field(where, "single"), "expected an array");
    }
    bool after_text = false;
    for (size_t i = 0; i < single->size(); ++i) {
      const nlohmann::json& piece = (*single)[i];
      const std::string at = absl::StrCat(where, ".single[", i, "]");
      if (piece.contains("Sequence")) {
        after_text = true;
        continue;
      }
      const nlohmann::json* special = json_util::Find(piece, "SpecialToken");
      if (special == nullptr) return Invalid(at, "expected Sequence or SpecialToken");
      MLA_ASSIGN_OR_RETURN(const std::string name, json_util::GetString(*special, "id", at));
      const nlohmann::json* entry = specials ? json_util::Find(*specials, name.c_str()) : nullptr;
      const nlohmann::json* ids = entry ? json_util::Find(*entry, "ids") : nullptr;
      if (ids == nullptr || !ids->is_array()) {
        return Invalid(Field(where, "special_tokens"), absl::StrCat("no ids for '", name, "'"));
      }
      for (const nlohmann::json& id : *ids) {
        if (!id.is_number_integer() || !t_->IsValidId(id.get<int32_t>())) {
          return Invalid(Field(where, "special_tokens"), absl::StrCat("bad id for '", name, "'"));
        }
        (after_text ? t_->suffix_ids_ : t_->prefix_ids_).push_back(id.get<int32_t>());
      }
    }
    return absl::OkStatus();
  }

  // bos_token / eos_token: a string, an AddedToken object with "content", or null.
  static absl::StatusOr<std::string> SpecialContent(const nlohmann::json& config, const char* key,
                                                    const std::string& name) {
    const nlohmann::json* v = json_util::Find(config, key);
    if (v == nullptr) return std::string();
    if (v->is_string()) return v->get<std::string>();
    if (v->is_object()) return json_util::GetString(*v, "content", Field(name, key));
    return Invalid(Field(name, key), "expected a string or an object with \"content\"");
  }

  absl::StatusOr<int32_t> IdOf(const std::string& content, const std::string& where) const {
    if (content.empty()) return -1;
    const int32_t id = t_->TokenToId(content);
    if (id < 0) return Invalid(where, absl::StrCat("'", content, "' is not in the vocabulary"));
    return id;
  }

  // A string, or (newer configs) a list of {"name", "template"}: the "default" one.
  static absl::StatusOr<std::string> ChatTemplate(const nlohmann::json& config,
                                                  const std::string& name) {
    const nlohmann::json* v = json_util::Find(config, "chat_template");
    if (v == nullptr) return std::string();
    if (v->is_string()) return v->get<std::string>();
    if (v->is_array()) {
      for (const nlohmann::json& entry : *v) {
        if (entry.is_object() && entry.value("name", "") == "default" &&
            entry.contains("template") && entry["template"].is_string()) {
          return entry["template"].get<std::string>();
        }
      }
      return std::string();
    }
    return Invalid(Field(name, "chat_template"), "expected a string or a list");
  }

  Tokenizer* t_;
  std::string file_;
};

namespace {

absl::StatusOr<nlohmann::json> ParseJson(absl::string_view text, absl::string_view name) {
  nlohmann::json j = nlohmann::json::parse(text.begin(), text.end(), nullptr,
                                           /*allow_exceptions=*/false);
  if (j.is_discarded()) return Invalid(name, "not valid JSON");
  return absl::StatusOr<nlohmann::json>(absl::in_place, std::move(j));
}

}  // namespace

absl::StatusOr<std::unique_ptr<Tokenizer>> TokenizerBuilder::Create(
    absl::string_view tokenizer_json, absl::string_view tokenizer_config_json,
    absl::string_view tokenizer_json_name, absl::string_view tokenizer_config_json_name) {
  std::unique_ptr<Tokenizer> tokenizer(new Tokenizer());
  TokenizerBuilder builder(tokenizer.get(), std::string(tokenizer_json_name));
  nlohmann::json config;
  bool config_overrides = false;
  if (!tokenizer_config_json.empty()) {
    MLA_ASSIGN_OR_RETURN(config, ParseJson(tokenizer_config_json, tokenizer_config_json_name));
    config_overrides = config.is_object() &&
                       (config.contains("add_bos_token") || config.contains("add_eos_token"));
  }
  {
    // The parsed tokenizer.json (tens of MB as a DOM) is freed before returning.
    MLA_ASSIGN_OR_RETURN(const nlohmann::json root, ParseJson(tokenizer_json, tokenizer_json_name));
    MLA_RETURN_IF_ERROR(builder.Build(root));
    if (!config_overrides) MLA_RETURN_IF_ERROR(builder.ApplyPostProcessor(root));
  }
  if (!tokenizer_config_json.empty()) {
    MLA_RETURN_IF_ERROR(builder.ApplyConfig(config, std::string(tokenizer_config_json_name)));
  }
  return tokenizer;
}

absl::StatusOr<std::unique_ptr<Tokenizer>> Tokenizer::FromJson(
    absl::string_view tokenizer_json, absl::string_view tokenizer_config_json,
    absl::string_view tokenizer_json_name, absl::string_view tokenizer_config_json_name) {
  // The parsers check types before reading values; this only guards against a JSON shape
  // that slipped past those checks, so that no exception leaves the module.
  try {
    return TokenizerBuilder::Create(tokenizer_json, tokenizer_config_json, tokenizer_json_name,
                                    tokenizer_config_json_name);
  } catch (const nlohmann::json::exception& e) {
    return Invalid(tokenizer_json_name, absl::StrCat("unexpected JSON structure: ", e.what()));
  }
}

absl::StatusOr<std::unique_ptr<Tokenizer>> Tokenizer::Load(
    const std::string& tokenizer_json_path, const std::string& tokenizer_config_json_path) {
  MLA_ASSIGN_OR_RETURN(const std::string json, ReadTokenizerFile(tokenizer_json_path));
  std::string config;
  if (!tokenizer_config_json_path.empty()) {
    MLA_ASSIGN_OR_RETURN(config, ReadTokenizerFile(tokenizer_config_json_path));
    if (config.empty()) return Invalid(tokenizer_config_json_path, "empty file");
  }
  return FromJson(json, config, tokenizer_json_path, tokenizer_config_json_path);
}

}  // namespace mla
