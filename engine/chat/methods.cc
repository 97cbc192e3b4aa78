// str and dict methods callable from templates, and tojson's JSON encoder.
#include <algorithm>
#include <cmath>
#include <cstdio>
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

constexpr absl::string_view kStrMethods[] = {
    "capitalize", "casefold", "center", "count", "encode", "endswith", "expandtabs", "find",
    "format", "format_map", "index", "isalnum", "isalpha", "isascii", "isdecimal", "isdigit",
    "isidentifier", "islower", "isnumeric", "isprintable", "isspace", "istitle", "isupper",
    "join", "ljust", "lower", "lstrip", "maketrans", "partition", "removeprefix",
    "removesuffix", "replace", "rfind", "rindex", "rjust", "rpartition", "rsplit", "rstrip",
    "split", "splitlines", "startswith", "strip", "swapcase", "title", "translate", "upper",
    "zfill"};
constexpr absl::string_view kDictMethods[] = {"clear", "copy", "fromkeys", "get", "items",
                                              "keys", "pop", "popitem", "setdefault",
                                              "update", "values"};
constexpr absl::string_view kListMethods[] = {"append", "clear", "copy", "count", "extend",
                                              "index", "insert", "pop", "remove", "reverse",
                                              "sort"};
// The methods implemented below.
constexpr absl::string_view kSupported[] = {"endswith", "find", "get", "items", "join",
                                            "keys", "lower", "lstrip", "replace", "rstrip",
                                            "split", "startswith", "strip", "upper", "values"};

template <size_t N>
bool InList(const absl::string_view (&names)[N], absl::string_view name) {
  return std::find(std::begin(names), std::end(names), name) != std::end(names);
}

Value Arg(const CallArgs& args, size_t index, absl::string_view name, Value fallback = Value()) {
  if (index < args.args.size()) return args.args[index];
  for (const auto& [k, v] : args.kwargs) {
    if (k == name) return v;
  }
  return fallback;
}

absl::Status BadArgs(absl::string_view method) {
  return absl::InvalidArgumentError(absl::StrCat("unsupported arguments to ", method, "()"));
}

// Python str.split(): on runs of whitespace when `sep` is null, else on `sep`.
absl::StatusOr<Value> Split(const std::string& s, const Value& sep, int64_t maxsplit) {
  ValueList out;
  if (sep.is_string()) {
    const std::string& d = sep.string_value();
    if (d.empty()) return absl::InvalidArgumentError("empty separator");
    size_t pos = 0;
    while (maxsplit != 0) {
      const size_t hit = s.find(d, pos);
      if (hit == std::string::npos) break;
      out.push_back(Value::String(s.substr(pos, hit - pos)));
      pos = hit + d.size();
      --maxsplit;
    }
    out.push_back(Value::String(s.substr(pos)));
    return Value::List(std::move(out));
  }
  if (!sep.is_none() && !sep.is_undefined()) return BadArgs("split");
  const std::vector<char32_t> cps = DecodeUtf8(s);
  size_t i = 0;
  while (true) {
    while (i < cps.size() && IsPythonSpace(cps[i])) ++i;
    if (i == cps.size()) break;
    if (maxsplit == 0) {
      out.push_back(Value::String(EncodeUtf8(std::vector<char32_t>(cps.begin() + i, cps.end()))));
      break;
    }
    size_t j = i;
    while (j < cps.size() && !IsPythonSpace(cps[j])) ++j;
    out.push_back(Value::String(EncodeUtf8(std::vector<char32_t>(cps.begin() + i, cps.begin() + j))));
    i = j;
    --maxsplit;
  }
  return Value::List(std::move(out));
}

absl::StatusOr<Value> StrMethod(const std::string& s, const std::string& name,
                                const CallArgs& args) {
  const Value a0 = Arg(args, 0, "");
  if (name == "strip" || name == "lstrip" || name == "rstrip") {
    if (!a0.is_undefined() && !a0.is_none() && !a0.is_string()) return BadArgs(name);
    const std::string chars = a0.is_string() ? a0.string_value() : "";
    return Value::String(PyStrip(s, a0.is_string() ? &chars : nullptr, name != "rstrip",
                                 name != "lstrip"));
  }
  if (name == "split") {
    const Value maxsplit = Arg(args, 1, "maxsplit", Value::Int(-1));
    if (!maxsplit.is_integral()) return BadArgs(name);
    return Split(s, Arg(args, 0, "sep"), maxsplit.int_value());
  }
  if (name == "startswith" || name == "endswith") {
    if (!a0.is_string() || args.args.size() != 1) return BadArgs(name);
    const std::string& p = a0.string_value();
    const bool hit = p.size() <= s.size() &&
                     (name == "startswith" ? s.compare(0, p.size(), p) == 0
                                           : s.compare(s.size() - p.size(), p.size(), p) == 0);
    return Value::Bool(hit);
  }
  if (name == "lower" || name == "upper") {
    CallArgs filter_args;
    return ApplyFilter(name, Value::String(s), filter_args);
  }
  if (name == "replace") return ApplyFilter("replace", Value::String(s), args);
  if (name == "find") {
    if (!a0.is_string() || args.args.size() != 1) return BadArgs(name);
    const size_t hit = s.find(a0.string_value());
    if (hit == std::string::npos) return Value::Int(-1);
    return Value::Int(static_cast<int64_t>(CodePointCount(absl::string_view(s).substr(0, hit))));
  }
  if (name == "join") {
    MLA_ASSIGN_OR_RETURN(ValueList items, Iterate(a0));
    std::string out;
    for (size_t i = 0; i < items.size(); ++i) {
      if (!items[i].is_string()) {
        return absl::InvalidArgumentError(absl::StrCat(
            "sequence item ", i, ": expected str instance, ", items[i].TypeName(), " found"));
      }
      if (i > 0) out += s;
      out += items[i].string_value();
    }
    return Value::String(std::move(out));
  }
  return absl::InvalidArgumentError(absl::StrCat("unsupported method str.", name, "()"));
}

absl::StatusOr<Value> DictMethod(const ValueDict& d, const std::string& name,
                                 const CallArgs& args) {
  if (name == "get") {
    const Value key = Arg(args, 0, "key");
    const Value* v = key.is_string() ? d.Find(key.string_value()) : nullptr;
    return v != nullptr ? *v : Arg(args, 1, "default", Value::None());
  }
  ValueList out;
  for (const auto& [k, v] : d.items()) {
    if (name == "keys") out.push_back(Value::String(k));
    if (name == "values") out.push_back(v);
    if (name == "items") out.push_back(Value::Tuple({Value::String(k), v}));
  }
  if (name == "keys" || name == "values" || name == "items") return Value::List(std::move(out));
  return absl::InvalidArgumentError(absl::StrCat("unsupported method dict.", name, "()"));
}

void AppendJsonString(absl::string_view s, bool ensure_ascii, std::string* out) {
  out->push_back('"');
  for (char32_t cp : DecodeUtf8(s)) {
    char buf[16];
    switch (cp) {
      case '"': *out += "\\\""; continue;
      case '\\': *out += "\\\\"; continue;
      case '\n': *out += "\\n"; continue;
      case '\r': *out += "\\r"; continue;
      case '\t': *out += "\\t"; continue;
      case '\b': *out += "\\b"; continue;
      case '\f': *out += "\\f"; continue;
      default: break;
    }
    if (cp < 0x20 || (ensure_ascii && cp >= 0x7F)) {
      if (cp >= 0x10000) {
        const char32_t v = cp - 0x10000;
        std::snprintf(buf, sizeof(buf), "\\u%04x\\u%04x", static_cast<unsigned>(0xD800 + (v >> 10)),
                      static_cast<unsigned>(0xDC00 + (v & 0x3FF)));
      } else {
        std::snprintf(buf, sizeof(buf), "\\u%04x", static_cast<unsigned>(cp));
      }
      *out += buf;
    } else {
      AppendUtf8(cp, out);
    }
  }
  out->push_back('"');
}

// A newline and `indent` · `level` spaces, or nothing when indent < 0 (one line). Built in
// place: GCC 12 warns at -O3 (-Wrestrict, a false positive) on "\n" + std::string(...).
std::string NewlineAndIndent(int indent, int level) {
  if (indent < 0) return "";
  std::string s(1 + static_cast<size_t>(indent) * level, ' ');
  s[0] = '\n';
  return s;
}

absl::Status AppendJson(const Value& v, bool ensure_ascii, int indent, bool sort_keys, int depth,
                        std::string* out) {
  const std::string newline = NewlineAndIndent(indent, depth + 1);
  const std::string close_nl = NewlineAndIndent(indent, depth);
  const std::string item_sep = indent >= 0 ? "," : ", ";
  switch (v.kind()) {
    case Value::Kind::kNone: *out += "null"; return absl::OkStatus();
    case Value::Kind::kBool: *out += v.bool_value() ? "true" : "false"; return absl::OkStatus();
    case Value::Kind::kInt: *out += absl::StrCat(v.int_value()); return absl::OkStatus();
    case Value::Kind::kFloat: {
      const double f = v.float_value();
      *out += std::isnan(f) ? "NaN" : (std::isinf(f) ? (f > 0 ? "Infinity" : "-Infinity")
                                                      : FloatRepr(f));
      return absl::OkStatus();
    }
    case Value::Kind::kString: AppendJsonString(v.string_value(), ensure_ascii, out); return absl::OkStatus();
    case Value::Kind::kList: {
      if (v.list().empty()) { *out += "[]"; return absl::OkStatus(); }
      *out += "[";
      for (size_t i = 0; i < v.list().size(); ++i) {
        *out += (i > 0 ? item_sep : "") + newline;
        MLA_RETURN_IF_ERROR(AppendJson(v.list()[i], ensure_ascii, indent, sort_keys, depth + 1, out));
      }
      *out += close_nl + "]";
      return absl::OkStatus();
    }
    case Value::Kind::kDict: {
      if (v.dict().size() == 0) { *out += "{}"; return absl::OkStatus(); }
      auto items = v.dict().items();
      if (sort_keys) {
        std::stable_sort(items.begin(), items.end(),
                         [](const auto& a, const auto& b) { return a.first < b.first; });
      }
      *out += "{";
      for (size_t i = 0; i < items.size(); ++i) {
        *out += (i > 0 ? item_sep : "") + newline;
        AppendJsonString(items[i].first, ensure_ascii, out);
        *out += ": ";
        MLA_RETURN_IF_ERROR(AppendJson(items[i].second, ensure_ascii, indent, sort_keys, depth + 1, out));
      }
      *out += close_nl + "}";
      return absl::OkStatus();
    }
    default:
      return absl::InvalidArgumentError(
          absl::StrCat("Object of type ", v.TypeName(), " is not JSON serializable"));
  }
}

}  // namespace

bool IsKnownMethod(absl::string_view name) { return InList(kSupported, name); }

bool IsMethodOf(const Value& obj, absl::string_view name) {
  switch (obj.kind()) {
    case Value::Kind::kString: return InList(kStrMethods, name);
    case Value::Kind::kDict: return InList(kDictMethods, name);
    case Value::Kind::kList: return InList(kListMethods, name);
    default: return false;
  }
}

absl::StatusOr<Value> CallMethod(const Value& obj, const std::string& name, const CallArgs& args) {
  if (obj.is_undefined()) return absl::InvalidArgumentError(obj.undefined_hint());
  if (obj.is_string() && InList(kStrMethods, name)) return StrMethod(obj.string_value(), name, args);
  if (obj.kind() == Value::Kind::kDict && InList(kDictMethods, name)) {
    return DictMethod(obj.dict(), name, args);
  }
  if (obj.kind() == Value::Kind::kNamespace || obj.kind() == Value::Kind::kDict) {
    // A callable stored under that key would be needed; templates only hold data.
    return absl::InvalidArgumentError(absl::StrCat("'", name, "' is not callable"));
  }
  return absl::InvalidArgumentError(
      absl::StrCat("'", obj.TypeName(), " object' has no supported method '", name, "'"));
}

absl::StatusOr<std::string> ToJson(const Value& value, bool ensure_ascii, int indent,
                                   bool sort_keys) {
  std::string out;
  MLA_RETURN_IF_ERROR(AppendJson(value, ensure_ascii, indent, sort_keys, 0, &out));
  return out;
}

}  // namespace mla::chat
