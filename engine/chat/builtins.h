// The filters, tests, global functions and str/dict methods the template engine supports,
// each matching jinja2 (as transformers configures it) and Python's behaviour. The parser
// rejects any name not listed here.
#ifndef MLA_ENGINE_CHAT_BUILTINS_H_
#define MLA_ENGINE_CHAT_BUILTINS_H_

#include <string>
#include <utility>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "engine/chat/value.h"

namespace mla::chat {

struct CallArgs {
  std::vector<Value> args;
  std::vector<std::pair<std::string, Value>> kwargs;
};

bool IsKnownFilter(absl::string_view name);
bool IsKnownTest(absl::string_view name);
bool IsKnownFunction(absl::string_view name);
// Any str or dict method name the engine can call (type is checked at run time).
bool IsKnownMethod(absl::string_view name);
// Whether `name` is a Python method of `obj`'s type (supported or not).
bool IsMethodOf(const Value& obj, absl::string_view name);

absl::StatusOr<Value> ApplyFilter(const std::string& name, const Value& value,
                                  const CallArgs& args);
absl::StatusOr<bool> ApplyTest(const std::string& name, const Value& value, const CallArgs& args);
// raise_exception(msg) returns InvalidArgument carrying msg.
absl::StatusOr<Value> CallFunction(const std::string& name, const CallArgs& args);
absl::StatusOr<Value> CallMethod(const Value& obj, const std::string& name, const CallArgs& args);

// json.dumps(value, ensure_ascii=..., indent=..., sort_keys=...) with Python's default
// separators, as transformers' tojson filter calls it. indent < 0 means None.
absl::StatusOr<std::string> ToJson(const Value& value, bool ensure_ascii, int indent,
                                   bool sort_keys);

}  // namespace mla::chat

#endif  // MLA_ENGINE_CHAT_BUILTINS_H_
