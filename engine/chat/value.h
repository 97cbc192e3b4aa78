// The values a chat template computes with, modelled on the Python objects jinja2 sees:
// Undefined, None, bool, int, float, str, list, dict and jinja's namespace. Printing and
// comparison follow Python (str(), repr(), ==, <) so that rendered text matches jinja2.
#ifndef MLA_ENGINE_CHAT_VALUE_H_
#define MLA_ENGINE_CHAT_VALUE_H_

#include <cstdint>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"

namespace mla::chat {

class Value;
using ValueList = std::vector<Value>;

// An insertion-ordered dict with string keys (Python dicts keep insertion order).
class ValueDict {
 public:
  const Value* Find(absl::string_view key) const;
  void Set(const std::string& key, Value value);
  const std::vector<std::pair<std::string, Value>>& items() const { return items_; }
  size_t size() const { return items_.size(); }

 private:
  std::vector<std::pair<std::string, Value>> items_;
};

class Value {
 public:
  enum class Kind { kUndefined, kNone, kBool, kInt, kFloat, kString, kList, kDict, kNamespace };

  Value() = default;  // Undefined
  // An Undefined that remembers why (jinja2's hint), e.g. "'x' is undefined", for the error
  // raised when a template uses it in a way Undefined does not allow.
  static Value Undefined(std::string hint);
  static Value None();
  static Value Bool(bool b);
  static Value Int(int64_t i);
  static Value Float(double f);
  static Value String(std::string s);
  static Value List(ValueList items);
  // A Python tuple (what dict.items() yields): a list that prints with parentheses.
  static Value Tuple(ValueList items);
  static Value Dict(ValueDict dict);
  // A jinja namespace: a mutable attribute bag shared by reference (`{% set ns.x = ... %}`).
  static Value Namespace(ValueDict attrs);

  Kind kind() const { return kind_; }
  bool is_undefined() const { return kind_ == Kind::kUndefined; }
  bool is_none() const { return kind_ == Kind::kNone; }
  bool is_string() const { return kind_ == Kind::kString; }
  // Python's bool is an int subclass: True + 1 == 2 and True == 1.
  bool is_integral() const { return kind_ == Kind::kInt || kind_ == Kind::kBool; }
  bool is_number() const { return is_integral() || kind_ == Kind::kFloat; }

  bool bool_value() const { return bool_; }
  bool is_tuple() const { return kind_ == Kind::kList && bool_; }
  int64_t int_value() const { return kind_ == Kind::kBool ? (bool_ ? 1 : 0) : int_; }
  double float_value() const {
    return kind_ == Kind::kFloat ? float_ : static_cast<double>(int_value());
  }
  const std::string& string_value() const { return *string_; }
  std::string undefined_hint() const;
  const ValueList& list() const { return *list_; }
  const ValueDict& dict() const { return *dict_; }
  ValueDict& namespace_attrs() const { return *dict_; }

  // Python truthiness; Undefined is falsy.
  bool Truthy() const;
  // Python str(): what `{{ value }}` prints. Undefined prints as "".
  std::string Str() const;
  // Python repr(), used for items inside printed lists and dicts.
  std::string Repr() const;
  // Python's type name, for error messages ("str", "int", "dict", ...).
  std::string TypeName() const;

 private:
  Kind kind_ = Kind::kUndefined;
  bool bool_ = false;  // also: a kList that is a tuple
  int64_t int_ = 0;
  double float_ = 0.0;
  std::shared_ptr<const std::string> string_;
  std::shared_ptr<const ValueList> list_;
  std::shared_ptr<ValueDict> dict_;  // dict (never mutated after creation) or namespace
};

// Python ==: numbers compare by value across int/float/bool, containers element-wise.
bool Equals(const Value& a, const Value& b);
// Python <; InvalidArgument where Python raises TypeError (e.g. str < int).
absl::StatusOr<bool> LessThan(const Value& a, const Value& b);
// repr() of a float as Python prints it ("1.0", "0.1", "1e+16").
std::string FloatRepr(double value);
// Python repr() of a str, choosing quotes and escapes the way CPython does.
std::string StringRepr(absl::string_view s);

}  // namespace mla::chat

#endif  // MLA_ENGINE_CHAT_VALUE_H_
