#include "engine/chat/value_ops.h"

#include <cmath>
#include <limits>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "engine/chat/builtins.h"
#include "engine/chat/text_util.h"

namespace mla::chat {
namespace {

absl::Status UndefinedError(const Value& v) {
  return absl::InvalidArgumentError(v.undefined_hint());
}

absl::Status TypeError(const std::string& what) { return absl::InvalidArgumentError(what); }

absl::Status MethodAsValue(const Value& obj, const std::string& name) {
  return absl::InvalidArgumentError(absl::StrCat("method '", obj.TypeName(), ".", name,
                                                 "' used as a value is not supported"));
}

Value NoAttribute(const Value& obj, const std::string& name) {
  return Value::Undefined(
      absl::StrCat("'", obj.TypeName(), " object' has no attribute '", name, "'"));
}

// Python's slice.indices() followed by the walk it describes.
std::vector<int64_t> SliceIndices(int64_t n, const std::optional<int64_t>& start,
                                  const std::optional<int64_t>& stop, int64_t step) {
  const int64_t lower = step > 0 ? 0 : -1;
  const int64_t upper = step > 0 ? n : n - 1;
  auto clamp = [&](const std::optional<int64_t>& v, int64_t dflt) {
    if (!v.has_value()) return dflt;
    int64_t x = *v;
    if (x < 0) {
      x += n;
      if (x < lower) x = lower;
    } else if (x > upper) {
      x = upper;
    }
    return x;
  };
  const int64_t from = clamp(start, step > 0 ? lower : upper);
  const int64_t to = clamp(stop, step > 0 ? upper : lower);
  std::vector<int64_t> out;
  for (int64_t i = from; step > 0 ? i < to : i > to; i += step) out.push_back(i);
  return out;
}

}  // namespace

absl::StatusOr<Value> GetAttr(const Value& obj, const std::string& name) {
  switch (obj.kind()) {
    case Value::Kind::kUndefined:
      return UndefinedError(obj);
    case Value::Kind::kNamespace: {
      const Value* v = obj.namespace_attrs().Find(name);
      return v != nullptr ? *v : NoAttribute(obj, name);
    }
    case Value::Kind::kDict: {
      // jinja tries Python attributes first, so dict methods shadow keys here.
      if (IsMethodOf(obj, name)) return MethodAsValue(obj, name);
      const Value* v = obj.dict().Find(name);
      return v != nullptr ? *v : NoAttribute(obj, name);
    }
    default:
      if (IsMethodOf(obj, name)) return MethodAsValue(obj, name);
      return NoAttribute(obj, name);
  }
}

absl::StatusOr<Value> GetItem(const Value& obj, const Value& key) {
  switch (obj.kind()) {
    case Value::Kind::kUndefined:
      return UndefinedError(obj);
    case Value::Kind::kDict:
    case Value::Kind::kNamespace:
      if (key.is_string()) {
        if (obj.kind() == Value::Kind::kNamespace) return GetAttr(obj, key.string_value());
        const Value* v = obj.dict().Find(key.string_value());
        if (v != nullptr) return *v;
        return GetAttr(obj, key.string_value());  // jinja falls back to getattr
      }
      return Value::Undefined(absl::StrCat("'dict object' has no attribute ", key.Repr()));
    case Value::Kind::kList:
    case Value::Kind::kString: {
      if (!key.is_integral()) {
        if (key.is_string()) return GetAttr(obj, key.string_value());
        return Value::Undefined(
            absl::StrCat("'", obj.TypeName(), " object' has no attribute ", key.Repr()));
      }
      const bool is_list = obj.kind() == Value::Kind::kList;
      std::vector<char32_t> cps;
      if (!is_list) cps = DecodeUtf8(obj.string_value());
      const int64_t n = is_list ? static_cast<int64_t>(obj.list().size())
                                : static_cast<int64_t>(cps.size());
      int64_t i = key.int_value();
      if (i < 0) i += n;
      if (i < 0 || i >= n) return Value::Undefined(absl::StrCat(obj.TypeName(), " index out of range"));
      if (is_list) return obj.list()[i];
      return Value::String(EncodeUtf8({cps[i]}));
    }
    default:
      return Value::Undefined(
          absl::StrCat("'", obj.TypeName(), " object' has no attribute ", key.Repr()));
  }
}

absl::StatusOr<Value> GetSlice(const Value& obj, const std::optional<int64_t>& start,
                               const std::optional<int64_t>& stop,
                               const std::optional<int64_t>& step) {
  const int64_t s = step.value_or(1);
  if (s == 0) return absl::InvalidArgumentError("slice step cannot be zero");
  if (obj.kind() == Value::Kind::kList) {
    ValueList out;
    for (int64_t i : SliceIndices(obj.list().size(), start, stop, s)) out.push_back(obj.list()[i]);
    return obj.is_tuple() ? Value::Tuple(std::move(out)) : Value::List(std::move(out));
  }
  if (obj.is_string()) {
    const std::vector<char32_t> cps = DecodeUtf8(obj.string_value());
    std::vector<char32_t> out;
    for (int64_t i : SliceIndices(cps.size(), start, stop, s)) out.push_back(cps[i]);
    return Value::String(EncodeUtf8(out));
  }
  if (obj.is_undefined()) return UndefinedError(obj);
  return TypeError(absl::StrCat("'", obj.TypeName(), "' object is not subscriptable"));
}

namespace {

absl::StatusOr<Value> Arithmetic(const std::string& op, const Value& a, const Value& b) {
  const bool ints = a.is_integral() && b.is_integral();
  const double x = a.float_value();
  const double y = b.float_value();
  if (op == "/") {
    if (y == 0) return absl::InvalidArgumentError("division by zero");
    return Value::Float(x / y);
  }
  if (ints) {
    const int64_t i = a.int_value();
    const int64_t j = b.int_value();
    int64_t r = 0;
    if (op == "+" && !__builtin_add_overflow(i, j, &r)) return Value::Int(r);
    if (op == "-" && !__builtin_sub_overflow(i, j, &r)) return Value::Int(r);
    if (op == "*" && !__builtin_mul_overflow(i, j, &r)) return Value::Int(r);
    if (op == "//" || op == "%") {
      if (j == 0) return absl::InvalidArgumentError("integer division or modulo by zero");
      int64_t q = i / j;
      if ((i % j != 0) && ((i < 0) != (j < 0))) --q;  // floor, as Python does
      return Value::Int(op == "//" ? q : i - q * j);
    }
    if (op == "**" && j >= 0) {
      int64_t acc = 1;
      for (int64_t k = 0; k < j; ++k) {
        if (__builtin_mul_overflow(acc, i, &acc)) return absl::InvalidArgumentError("integer overflow");
      }
      return Value::Int(acc);
    }
    if (op != "**") return absl::InvalidArgumentError("integer overflow");
  }
  if (op == "+") return Value::Float(x + y);
  if (op == "-") return Value::Float(x - y);
  if (op == "*") return Value::Float(x * y);
  if (op == "**") return Value::Float(std::pow(x, y));
  if (y == 0) return absl::InvalidArgumentError("float division by zero");
  const double q = std::floor(x / y);
  return Value::Float(op == "//" ? q : x - q * y);
}

absl::StatusOr<Value> Repeat(const Value& seq, int64_t times) {
  if (seq.is_string()) {
    std::string out;
    for (int64_t k = 0; k < times; ++k) out += seq.string_value();
    return Value::String(std::move(out));
  }
  ValueList out;
  for (int64_t k = 0; k < times; ++k) {
    out.insert(out.end(), seq.list().begin(), seq.list().end());
  }
  return Value::List(std::move(out));
}

}  // namespace

absl::StatusOr<Value> BinaryOp(const std::string& op, const Value& a, const Value& b) {
  if (op == "~") return Value::String(a.Str() + b.Str());
  if (a.is_undefined()) return UndefinedError(a);
  if (b.is_undefined()) return UndefinedError(b);
  if (a.is_number() && b.is_number()) return Arithmetic(op, a, b);
  if (op == "+" && a.kind() == b.kind() && a.is_string()) {
    return Value::String(a.string_value() + b.string_value());
  }
  if (op == "+" && a.kind() == b.kind() && a.kind() == Value::Kind::kList) {
    ValueList out = a.list();
    out.insert(out.end(), b.list().begin(), b.list().end());
    return Value::List(std::move(out));
  }
  const bool a_seq = a.is_string() || a.kind() == Value::Kind::kList;
  const bool b_seq = b.is_string() || b.kind() == Value::Kind::kList;
  if (op == "*" && a_seq && b.is_integral()) return Repeat(a, b.int_value());
  if (op == "*" && b_seq && a.is_integral()) return Repeat(b, a.int_value());
  return TypeError(absl::StrCat("unsupported operand type(s) for ", op, ": '", a.TypeName(),
                                "' and '", b.TypeName(), "'"));
}

absl::StatusOr<Value> UnaryOp(const std::string& op, const Value& a) {
  if (a.is_undefined()) return UndefinedError(a);
  if (!a.is_number()) {
    return TypeError(absl::StrCat("bad operand type for unary ", op, ": '", a.TypeName(), "'"));
  }
  if (op == "+") return a.is_integral() ? Value::Int(a.int_value()) : a;
  if (a.is_integral()) {
    if (a.int_value() == std::numeric_limits<int64_t>::min()) {
      return absl::InvalidArgumentError("integer overflow");
    }
    return Value::Int(-a.int_value());
  }
  return Value::Float(-a.float_value());
}

absl::StatusOr<bool> Contains(const Value& haystack, const Value& needle) {
  switch (haystack.kind()) {
    case Value::Kind::kUndefined:
      return false;
    case Value::Kind::kString:
      if (!needle.is_string()) {
        return TypeError(absl::StrCat("'in <string>' requires string as left operand, not ",
                                      needle.TypeName()));
      }
      return haystack.string_value().find(needle.string_value()) != std::string::npos;
    case Value::Kind::kList:
      for (const Value& item : haystack.list()) {
        if (Equals(item, needle)) return true;
      }
      return false;
    case Value::Kind::kDict:
      return needle.is_string() && haystack.dict().Find(needle.string_value()) != nullptr;
    default:
      return TypeError(
          absl::StrCat("argument of type '", haystack.TypeName(), "' is not iterable"));
  }
}

absl::StatusOr<ValueList> Iterate(const Value& value) {
  switch (value.kind()) {
    case Value::Kind::kUndefined:
      return ValueList{};
    case Value::Kind::kList:
      return value.list();
    case Value::Kind::kString: {
      ValueList out;
      for (char32_t cp : DecodeUtf8(value.string_value())) {
        out.push_back(Value::String(EncodeUtf8({cp})));
      }
      return out;
    }
    case Value::Kind::kDict: {
      ValueList out;
      for (const auto& [k, v] : value.dict().items()) out.push_back(Value::String(k));
      return out;
    }
    default:
      return TypeError(absl::StrCat("'", value.TypeName(), "' object is not iterable"));
  }
}

}  // namespace mla::chat
