// Python/jinja2 semantics of the operators a template applies to values: attribute and item
// access, slicing, arithmetic, concatenation, membership and iteration.
#ifndef MLA_ENGINE_CHAT_VALUE_OPS_H_
#define MLA_ENGINE_CHAT_VALUE_OPS_H_

#include <optional>
#include <string>

#include "absl/status/statusor.h"
#include "engine/chat/value.h"

namespace mla::chat {

// `obj.name`: a dict key or namespace attribute; Undefined when missing. InvalidArgument
// for attribute access on Undefined (jinja2's UndefinedError) and for methods used as
// values (only calling them is supported).
absl::StatusOr<Value> GetAttr(const Value& obj, const std::string& name);
// `obj[key]`: list/str index (negative from the end), dict key; Undefined when missing.
absl::StatusOr<Value> GetItem(const Value& obj, const Value& key);
// `obj[start:stop:step]` on a list or str (by code point).
absl::StatusOr<Value> GetSlice(const Value& obj, const std::optional<int64_t>& start,
                               const std::optional<int64_t>& stop,
                               const std::optional<int64_t>& step);
// Binary operators + - * / // % ** and ~ (string concatenation).
absl::StatusOr<Value> BinaryOp(const std::string& op, const Value& a, const Value& b);
// Unary minus and plus.
absl::StatusOr<Value> UnaryOp(const std::string& op, const Value& a);
// `needle in haystack`.
absl::StatusOr<bool> Contains(const Value& haystack, const Value& needle);
// The items a for loop visits: list items, str characters, dict keys; Undefined is empty.
absl::StatusOr<ValueList> Iterate(const Value& value);

}  // namespace mla::chat

#endif  // MLA_ENGINE_CHAT_VALUE_OPS_H_
