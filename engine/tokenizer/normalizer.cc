#include "engine/tokenizer/normalizer.h"

#include <utility>

#include "absl/strings/str_cat.h"
#include "common/status_macros.h"
#include "engine/tokenizer/json_util.h"

namespace mla {

using json_util::Field;
using json_util::Invalid;

absl::StatusOr<std::unique_ptr<Regex>> ParsePattern(const nlohmann::json& j,
                                                    const std::string& where) {
  // {"String": "..."} or {"Regex": "..."}, as in Split pre-tokenizers.
  if (const nlohmann::json* s = json_util::Find(j, "String"); s != nullptr && s->is_string()) {
    return Regex::Literal(s->get<std::string>());
  }
  if (const nlohmann::json* r = json_util::Find(j, "Regex"); r != nullptr && r->is_string()) {
    auto regex = Regex::Compile(r->get<std::string>());
    if (!regex.ok()) {
      return absl::Status(regex.status().code(),
                          absl::StrCat(where, ": ", regex.status().message()));
    }
    return regex;
  }
  return Invalid(where, "expected {\"String\": ...} or {\"Regex\": ...}");
}

absl::Status Normalizer::AddSteps(const nlohmann::json& j, const std::string& where,
                                  std::vector<Step>* steps) {
  MLA_ASSIGN_OR_RETURN(const std::string type, json_util::GetString(j, "type", where));
  if (type == "Sequence") {
    const nlohmann::json* list = json_util::Find(j, "normalizers");
    if (list == nullptr || !list->is_array()) {
      return Invalid(Field(where, "normalizers"), "expected an array");
    }
    for (size_t i = 0; i < list->size(); ++i) {
      MLA_RETURN_IF_ERROR(
          AddSteps((*list)[i], absl::StrCat(where, ".normalizers[", i, "]"), steps));
    }
    return absl::OkStatus();
  }
  Step step;
  if (type == "Prepend") {
    MLA_ASSIGN_OR_RETURN(step.prepend, json_util::GetString(j, "prepend", where));
  } else if (type == "Replace") {
    const nlohmann::json* pattern = json_util::Find(j, "pattern");
    if (pattern == nullptr) return Invalid(Field(where, "pattern"), "missing");
    MLA_ASSIGN_OR_RETURN(step.pattern, ParsePattern(*pattern, Field(where, "pattern")));
    MLA_ASSIGN_OR_RETURN(step.content, json_util::GetString(j, "content", where));
  } else {
    return json_util::Unsupported(
        Field(where, "type"),
        absl::StrCat("normalizer type '", type,
                     "' is not supported (supported: Sequence, Prepend, Replace)"));
  }
  steps->push_back(std::move(step));
  return absl::OkStatus();
}

absl::StatusOr<std::unique_ptr<Normalizer>> Normalizer::FromJson(const nlohmann::json& j,
                                                                 absl::string_view where) {
  if (j.is_null()) return std::unique_ptr<Normalizer>();
  std::unique_ptr<Normalizer> normalizer(new Normalizer());
  MLA_RETURN_IF_ERROR(AddSteps(j, std::string(where), &normalizer->steps_));
  if (normalizer->steps_.empty()) return std::unique_ptr<Normalizer>();
  return normalizer;
}

absl::StatusOr<std::string> Normalizer::Apply(absl::string_view text) const {
  std::string current(text);
  for (const Step& step : steps_) {
    if (step.pattern == nullptr) {
      // Hugging Face prepends only to a non-empty string.
      if (!current.empty()) current.insert(0, step.prepend);
      continue;
    }
    std::string replaced;
    size_t copied = 0;
    MLA_RETURN_IF_ERROR(step.pattern->ForEachMatch(current, [&](size_t start, size_t end) {
      replaced.append(current, copied, start - copied);
      replaced.append(step.content);
      copied = end;
    }));
    replaced.append(current, copied, std::string::npos);
    current = std::move(replaced);
  }
  return current;
}

}  // namespace mla
