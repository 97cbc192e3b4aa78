// Small typed accessors over nlohmann::json that report errors as absl::Status naming the
// file and the JSON field, so that an unexpected tokenizer.json says exactly what is wrong.
#ifndef MLA_ENGINE_TOKENIZER_JSON_UTIL_H_
#define MLA_ENGINE_TOKENIZER_JSON_UTIL_H_

#include <nlohmann/json.hpp>
#include <string>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/string_view.h"

namespace mla::json_util {

// "where" is a location such as "tokenizer.json: pre_tokenizer.pretokenizers[2]".
inline std::string Field(absl::string_view where, absl::string_view key) {
  return absl::StrCat(where, ".", key);
}

inline absl::Status Invalid(absl::string_view where, absl::string_view what) {
  return absl::InvalidArgumentError(absl::StrCat(where, ": ", what));
}

inline absl::Status Unsupported(absl::string_view where, absl::string_view what) {
  return absl::UnimplementedError(absl::StrCat(where, ": ", what));
}

// The member `key` of object `j`; nullptr when absent or null.
inline const nlohmann::json* Find(const nlohmann::json& j, const char* key) {
  if (!j.is_object()) return nullptr;
  auto it = j.find(key);
  if (it == j.end() || it->is_null()) return nullptr;
  return &*it;
}

inline absl::StatusOr<std::string> GetString(const nlohmann::json& j, const char* key,
                                             absl::string_view where) {
  const nlohmann::json* v = Find(j, key);
  if (v == nullptr || !v->is_string()) {
    return Invalid(Field(where, key), "expected a string");
  }
  return v->get<std::string>();
}

// A boolean member, `fallback` when absent or null.
inline absl::StatusOr<bool> GetBool(const nlohmann::json& j, const char* key, bool fallback,
                                    absl::string_view where) {
  const nlohmann::json* v = Find(j, key);
  if (v == nullptr) return fallback;
  if (!v->is_boolean()) return Invalid(Field(where, key), "expected true or false");
  return v->get<bool>();
}

}  // namespace mla::json_util

#endif  // MLA_ENGINE_TOKENIZER_JSON_UTIL_H_
