// Filters, tests and global functions. Methods and tojson live in methods.cc.
#include <algorithm>
#include <cctype>
#include <cmath>
#include <cstdlib>
#include <string>
#include <utility>
#include <vector>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/string_view.h"
#include "engine/chat/builtins.h"
#include "engine/chat/text_util.h"
#include "engine/chat/value_ops.h"
#include "common/status_macros.h"

namespace mla::chat {
namespace {

constexpr absl::string_view kFilters[] = {
    "abs",  "capitalize", "count", "d",    "default", "first", "int",  "items",  "join",
    "last", "length",     "list",  "lower", "replace", "reverse", "safe", "string", "title",
    "tojson", "trim",     "upper"};
constexpr absl::string_view kTests[] = {
    "boolean", "defined", "divisibleby", "eq",      "equalto",  "even",    "false",
    "float",   "ge",      "greaterthan", "gt",      "in",       "integer", "iterable",
    "le",      "lessthan", "lt",         "mapping", "ne",       "none",    "number",
    "odd",     "sameas",  "sequence",    "string",  "true",     "undefined"};
constexpr absl::string_view kFunctions[] = {"dict", "namespace", "raise_exception", "range"};

template <size_t N>
bool InList(const absl::string_view (&names)[N], absl::string_view name) {
  return std::find(std::begin(names), std::end(names), name) != std::end(names);
}

// Positional argument `index` or keyword `name`, else `fallback`.
Value Arg(const CallArgs& args, size_t index, absl::string_view name, Value fallback = Value()) {
  if (index < args.args.size()) return args.args[index];
  for (const auto& [k, v] : args.kwargs) {
    if (k == name) return v;
  }
  return fallback;
}

absl::Status Unsupported(absl::string_view what) {
  return absl::InvalidArgumentError(absl::StrCat(what, " is not supported"));
}

bool IsAscii(absl::string_view s) {
  return std::all_of(s.begin(), s.end(), [](char c) { return static_cast<unsigned char>(c) < 0x80; });
}

// Case mapping is implemented for ASCII only; other text would need Unicode tables, and a
// wrong prompt is worse than an error.
absl::StatusOr<std::string> AsciiCase(absl::string_view s, const std::string& mode) {
  if (!IsAscii(s)) return Unsupported(absl::StrCat("'", mode, "' on non-ASCII text"));
  std::string out(s);
  if (mode == "lower") {
    for (char& c : out) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  } else if (mode == "upper") {
    for (char& c : out) c = static_cast<char>(std::toupper(static_cast<unsigned char>(c)));
  } else if (mode == "capitalize") {
    for (size_t i = 0; i < out.size(); ++i) {
      const auto c = static_cast<unsigned char>(out[i]);
      out[i] = static_cast<char>(i == 0 ? std::toupper(c) : std::tolower(c));
    }
  } else {
    // jinja's title filter: capitalize each piece after a run of [-\s({[<].
    bool word_start = true;
    for (char& c : out) {
      const auto u = static_cast<unsigned char>(c);
      const bool sep = c == '-' || std::isspace(u) || c == '(' || c == '{' || c == '[' || c == '<';
      c = static_cast<char>(word_start ? std::toupper(u) : std::tolower(u));
      word_start = sep;
    }
  }
  return out;
}

absl::StatusOr<Value> Length(const Value& value) {
  switch (value.kind()) {
    case Value::Kind::kUndefined:
      return Value::Int(0);
    case Value::Kind::kString:
      return Value::Int(static_cast<int64_t>(CodePointCount(value.string_value())));
    case Value::Kind::kList:
      return Value::Int(static_cast<int64_t>(value.list().size()));
    case Value::Kind::kDict:
      return Value::Int(static_cast<int64_t>(value.dict().size()));
    default:
      return absl::InvalidArgumentError(
          absl::StrCat("object of type '", value.TypeName(), "' has no len()"));
  }
}

absl::StatusOr<Value> ToInt(const Value& value, const CallArgs& args) {
  const Value fallback = Arg(args, 0, "default", Value::Int(0));
  if (Arg(args, 1, "base").is_number() && Arg(args, 1, "base").int_value() != 10) {
    return Unsupported("int filter with a base other than 10");
  }
  if (value.is_integral()) return Value::Int(value.int_value());
  if (value.kind() == Value::Kind::kFloat) {
    return std::isfinite(value.float_value())
               ? Value::Int(static_cast<int64_t>(value.float_value())) : fallback;
  }
  if (!value.is_string()) return fallback;
  const std::string s = PyStrip(value.string_value(), nullptr, true, true);
  if (s.find('_') != std::string::npos) return Unsupported("int filter on text with '_'");
  try {
    size_t used = 0;
    if (!s.empty() && s.find_first_not_of("+-0123456789") == std::string::npos) {
      const int64_t v = std::stoll(s, &used);
      if (used == s.size()) return Value::Int(v);
    }
    const double d = std::stod(s, &used);
    if (used == s.size() && std::isfinite(d)) return Value::Int(static_cast<int64_t>(d));
  } catch (const std::exception&) {
  }
  return fallback;
}

absl::StatusOr<Value> Replace(const Value& value, const CallArgs& args) {
  const Value old_v = Arg(args, 0, "old");
  const Value new_v = Arg(args, 1, "new");
  const Value count_v = Arg(args, 2, "count");
  if (!old_v.is_string() || !new_v.is_string()) return Unsupported("replace without strings");
  int64_t count = count_v.is_integral() ? count_v.int_value() : -1;
  const std::string& from = old_v.string_value();
  const std::string& to = new_v.string_value();
  const std::string s = value.Str();
  std::string out;
  if (from.empty()) {
    // Python inserts `to` before every code point and at the end.
    const std::vector<char32_t> cps = DecodeUtf8(s);
    for (char32_t cp : cps) {
      if (count != 0) {
        out += to;
        --count;
      }
      AppendUtf8(cp, &out);
    }
    if (count != 0) out += to;
    return Value::String(std::move(out));
  }
  size_t pos = 0;
  while (count != 0) {
    const size_t hit = s.find(from, pos);
    if (hit == std::string::npos) break;
    out.append(s, pos, hit - pos);
    out += to;
    pos = hit + from.size();
    --count;
  }
  out.append(s, pos, std::string::npos);
  return Value::String(std::move(out));
}

absl::StatusOr<Value> JoinFilter(const Value& value, const CallArgs& args) {
  if (!Arg(args, 1, "attribute").is_undefined()) return Unsupported("join(attribute=...)");
  const Value sep = Arg(args, 0, "d", Value::String(""));
  MLA_ASSIGN_OR_RETURN(ValueList items, Iterate(value));
  std::string out;
  for (size_t i = 0; i < items.size(); ++i) {
    if (i > 0) out += sep.Str();
    out += items[i].Str();
  }
  return Value::String(std::move(out));
}

absl::StatusOr<Value> TojsonFilter(const Value& value, const CallArgs& args) {
  if (!Arg(args, 2, "separators").is_undefined() && !Arg(args, 2, "separators").is_none()) {
    return Unsupported("tojson(separators=...)");
  }
  const Value ensure_ascii = Arg(args, 0, "ensure_ascii", Value::Bool(false));
  const Value indent = Arg(args, 1, "indent", Value::None());
  const Value sort_keys = Arg(args, 3, "sort_keys", Value::Bool(false));
  if (!indent.is_none() && !indent.is_integral()) return Unsupported("non-integer tojson indent");
  MLA_ASSIGN_OR_RETURN(
      std::string json,
      ToJson(value, ensure_ascii.Truthy(),
             indent.is_none() ? -1 : static_cast<int>(std::max<int64_t>(indent.int_value(), 0)),
             sort_keys.Truthy()));
  return Value::String(std::move(json));
}

absl::StatusOr<Value> ItemsOrList(const std::string& name, const Value& value) {
  if (name == "items") {
    if (value.is_undefined()) return Value::List({});
    if (value.kind() != Value::Kind::kDict) return Unsupported("items on a non-dict");
    ValueList out;
    for (const auto& [k, v] : value.dict().items()) out.push_back(Value::Tuple({Value::String(k), v}));
    return Value::List(std::move(out));
  }
  MLA_ASSIGN_OR_RETURN(ValueList items, Iterate(value));
  if (name == "reverse") {
    if (value.is_string()) {
      std::string out;
      for (auto it = items.rbegin(); it != items.rend(); ++it) out += it->string_value();
      return Value::String(std::move(out));
    }
    std::reverse(items.begin(), items.end());
  }
  if (name == "first") return items.empty() ? Value() : items.front();
  if (name == "last") return items.empty() ? Value() : items.back();
  return Value::List(std::move(items));
}

}  // namespace

bool IsKnownFilter(absl::string_view name) { return InList(kFilters, name); }
bool IsKnownTest(absl::string_view name) { return InList(kTests, name); }
bool IsKnownFunction(absl::string_view name) { return InList(kFunctions, name); }

absl::StatusOr<Value> ApplyFilter(const std::string& name, const Value& value,
                                  const CallArgs& args) {
  if (name == "trim") {
    const Value chars = Arg(args, 0, "chars");
    const std::string chars_str = chars.is_string() ? chars.string_value() : "";
    return Value::String(
        PyStrip(value.Str(), chars.is_string() ? &chars_str : nullptr, true, true));
  }
  if (name == "length" || name == "count") return Length(value);
  if (name == "tojson") return TojsonFilter(value, args);
  if (name == "string") return Value::String(value.Str());
  if (name == "safe") return value;
  if (name == "lower" || name == "upper" || name == "capitalize" || name == "title") {
    MLA_ASSIGN_OR_RETURN(std::string s, AsciiCase(value.Str(), name));
    return Value::String(std::move(s));
  }
  if (name == "join") return JoinFilter(value, args);
  if (name == "default" || name == "d") {
    const bool boolean = Arg(args, 1, "boolean", Value::Bool(false)).Truthy();
    if (value.is_undefined() || (boolean && !value.Truthy())) {
      return Arg(args, 0, "default_value", Value::String(""));
    }
    return value;
  }
  if (name == "replace") return Replace(value, args);
  if (name == "int") return ToInt(value, args);
  if (name == "abs") {
    if (!value.is_number()) return absl::InvalidArgumentError("bad operand type for abs()");
    if (value.is_integral()) return Value::Int(std::abs(value.int_value()));
    return Value::Float(std::fabs(value.float_value()));
  }
  return ItemsOrList(name, value);  // items, first, last, list, reverse
}

absl::StatusOr<bool> ApplyTest(const std::string& name, const Value& value, const CallArgs& args) {
  using Kind = Value::Kind;
  const Kind k = value.kind();
  if (name == "defined") return k != Kind::kUndefined;
  if (name == "undefined") return k == Kind::kUndefined;
  if (name == "none") return k == Kind::kNone;
  if (name == "string") return k == Kind::kString;
  if (name == "number") return value.is_number();
  if (name == "integer") return k == Kind::kInt;
  if (name == "float") return k == Kind::kFloat;
  if (name == "boolean") return k == Kind::kBool;
  if (name == "true") return k == Kind::kBool && value.bool_value();
  if (name == "false") return k == Kind::kBool && !value.bool_value();
  if (name == "mapping") return k == Kind::kDict;
  // jinja's sequence/iterable tests also accept Undefined (it has __len__ and __iter__).
  if (name == "sequence" || name == "iterable") {
    return k == Kind::kString || k == Kind::kList || k == Kind::kDict || k == Kind::kUndefined;
  }
  const Value other = Arg(args, 0, "other");
  if (name == "even" || name == "odd" || name == "divisibleby") {
    const int64_t divisor = name == "divisibleby" ? other.int_value() : 2;
    if (!value.is_integral() || (name == "divisibleby" && !other.is_integral()) || divisor == 0) {
      return Unsupported(absl::StrCat("'", name, "' test on these values"));
    }
    const int64_t rem = ((value.int_value() % divisor) + divisor) % divisor;
    return name == "odd" ? rem == 1 : rem == 0;
  }
  if (name == "eq" || name == "equalto") return Equals(value, other);
  if (name == "ne") return !Equals(value, other);
  if (name == "sameas") {
    if (k == Kind::kNone || k == Kind::kBool) return k == other.kind() && Equals(value, other);
    return Unsupported("'sameas' test on values other than none/true/false");
  }
  if (name == "in") return Contains(other, value);
  if (name == "lt" || name == "lessthan") return LessThan(value, other);
  if (name == "gt" || name == "greaterthan") return LessThan(other, value);
  MLA_ASSIGN_OR_RETURN(bool less, name == "le" ? LessThan(other, value) : LessThan(value, other));
  return !less;  // le: !(other < value); ge: !(value < other)
}

absl::StatusOr<Value> CallFunction(const std::string& name, const CallArgs& args) {
  if (name == "raise_exception") {
    return absl::InvalidArgumentError(Arg(args, 0, "message").Str());
  }
  if (name == "namespace" || name == "dict") {
    ValueDict attrs;
    if (!args.args.empty()) {
      if (args.args.size() > 1 || args.args[0].kind() != Value::Kind::kDict) {
        return Unsupported(absl::StrCat(name, "() with positional arguments other than a dict"));
      }
      attrs = args.args[0].dict();
    }
    for (const auto& [k, v] : args.kwargs) attrs.Set(k, v);
    if (name == "dict") return Value::Dict(std::move(attrs));
    for (const auto& [k, v] : attrs.items()) {
      if (!k.empty() && k[0] == '_') {
        return absl::InvalidArgumentError(
            absl::StrCat("namespace attribute '", k, "' must not start with an underscore"));
      }
    }
    return Value::Namespace(std::move(attrs));
  }
  // range(stop) / range(start, stop[, step]), capped like jinja's sandbox (MAX_RANGE).
  for (const Value& a : args.args) {
    if (!a.is_integral()) return absl::InvalidArgumentError("range() arguments must be integers");
  }
  if (args.args.empty() || args.args.size() > 3 || !args.kwargs.empty()) {
    return absl::InvalidArgumentError("range() takes 1 to 3 positional arguments");
  }
  const int64_t start = args.args.size() > 1 ? args.args[0].int_value() : 0;
  const int64_t stop = args.args.size() > 1 ? args.args[1].int_value() : args.args[0].int_value();
  const int64_t step = args.args.size() > 2 ? args.args[2].int_value() : 1;
  if (step == 0) return absl::InvalidArgumentError("range() arg 3 must not be zero");
  ValueList out;
  for (int64_t i = start; step > 0 ? i < stop : i > stop; i += step) {
    if (out.size() >= 100000) return absl::InvalidArgumentError("range too big");
    out.push_back(Value::Int(i));
  }
  return Value::List(std::move(out));
}

}  // namespace mla::chat
