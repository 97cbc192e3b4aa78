#include "engine/chat/evaluator.h"

#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "absl/container/flat_hash_map.h"
#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "engine/chat/builtins.h"
#include "engine/chat/value_ops.h"
#include "common/status_macros.h"

namespace mla::chat {
namespace {

// Output size limit, so a runaway template (e.g. a huge range loop) fails instead of
// exhausting memory.
constexpr size_t kMaxOutputBytes = size_t{256} << 20;

enum class Flow { kNormal, kBreak, kContinue };

class Evaluator {
 public:
  explicit Evaluator(const ValueDict& context) {
    frames_.emplace_back();
    for (const auto& [k, v] : context.items()) frames_.back()[k] = v;
  }

  absl::StatusOr<Flow> Exec(const StmtList& body, std::string* out);
  bool raised() const { return raised_; }

 private:
  absl::StatusOr<Flow> ExecOne(const Stmt& stmt, std::string* out);
  absl::StatusOr<Flow> ExecFor(const Stmt& stmt, std::string* out);
  absl::Status ExecSet(const Stmt& stmt, std::string* out);

  absl::StatusOr<Value> Eval(const Expr& e);
  absl::StatusOr<Value> EvalCompare(const Expr& e);
  absl::StatusOr<Value> EvalSlice(const Expr& e);
  absl::StatusOr<CallArgs> EvalArgs(const Expr& e, size_t first);

  Value Lookup(const std::string& name) const {
    for (auto it = frames_.rbegin(); it != frames_.rend(); ++it) {
      auto hit = it->find(name);
      if (hit != it->end()) return hit->second;
    }
    return Value::Undefined(absl::StrCat("'", name, "' is undefined"));
  }

  // Scope frames, innermost last: the context, then one per running loop iteration.
  std::vector<absl::flat_hash_map<std::string, Value>> frames_;
  bool raised_ = false;  // the error came from raise_exception(): report it unchanged
};

absl::Status WithLine(int line, const absl::Status& status) {
  return absl::Status(status.code(), absl::StrCat("line ", line, ": ", status.message()));
}

absl::StatusOr<Flow> Evaluator::Exec(const StmtList& body, std::string* out) {
  for (const StmtPtr& stmt : body) {
    absl::StatusOr<Flow> flow = ExecOne(*stmt, out);
    if (!flow.ok()) return flow.status();
    if (*flow != Flow::kNormal) return *flow;
    if (out->size() > kMaxOutputBytes) {
      return absl::InvalidArgumentError("rendered template exceeds the output size limit");
    }
  }
  return Flow::kNormal;
}

absl::StatusOr<Flow> Evaluator::ExecOne(const Stmt& stmt, std::string* out) {
  auto fail = [&](const absl::Status& s) { return raised_ ? s : WithLine(stmt.line, s); };
  switch (stmt.kind) {
    case Stmt::Kind::kText:
      *out += stmt.text;
      return Flow::kNormal;
    case Stmt::Kind::kOutput: {
      absl::StatusOr<Value> v = Eval(*stmt.expr);
      if (!v.ok()) return fail(v.status());
      *out += v->Str();
      return Flow::kNormal;
    }
    case Stmt::Kind::kIf:
      for (const auto& [cond, body] : stmt.branches) {
        absl::StatusOr<Value> v = Eval(*cond);
        if (!v.ok()) return fail(v.status());
        if (v->Truthy()) return Exec(body, out);
      }
      return Exec(stmt.else_body, out);
    case Stmt::Kind::kFor:
      return ExecFor(stmt, out);
    case Stmt::Kind::kSet:
    case Stmt::Kind::kSetBlock: {
      absl::Status s = ExecSet(stmt, out);
      if (!s.ok()) return fail(s);
      return Flow::kNormal;
    }
    case Stmt::Kind::kBreak:
      return Flow::kBreak;
    case Stmt::Kind::kContinue:
      return Flow::kContinue;
  }
  return Flow::kNormal;
}

absl::Status Evaluator::ExecSet(const Stmt& stmt, std::string* out) {
  (void)out;
  Value value;
  if (stmt.kind == Stmt::Kind::kSetBlock) {
    std::string captured;
    MLA_ASSIGN_OR_RETURN(Flow flow, Exec(stmt.body, &captured));
    (void)flow;
    value = Value::String(std::move(captured));
  } else {
    MLA_ASSIGN_OR_RETURN(value, Eval(*stmt.expr));
  }
  if (stmt.attr.empty()) {
    frames_.back()[stmt.text] = std::move(value);
    return absl::OkStatus();
  }
  const Value target = Lookup(stmt.text);
  if (target.kind() != Value::Kind::kNamespace) {
    return absl::InvalidArgumentError("cannot assign attribute on non-namespace object");
  }
  if (stmt.attr[0] == '_') {
    return absl::InvalidArgumentError(
        absl::StrCat("namespace attribute '", stmt.attr, "' must not start with an underscore"));
  }
  target.namespace_attrs().Set(stmt.attr, std::move(value));
  return absl::OkStatus();
}

absl::StatusOr<Flow> Evaluator::ExecFor(const Stmt& stmt, std::string* out) {
  auto fail = [&](const absl::Status& s) { return raised_ ? s : WithLine(stmt.line, s); };
  absl::StatusOr<Value> iterable = Eval(*stmt.expr);
  if (!iterable.ok()) return fail(iterable.status());
  absl::StatusOr<ValueList> all = Iterate(*iterable);
  if (!all.ok()) return fail(all.status());
  auto bind = [&](const Value& item) -> absl::Status {
    if (stmt.targets.size() == 1) {
      frames_.back()[stmt.targets[0]] = item;
      return absl::OkStatus();
    }
    absl::StatusOr<ValueList> parts = Iterate(item);
    if (!parts.ok()) return parts.status();
    if (parts->size() != stmt.targets.size()) {
      return absl::InvalidArgumentError(absl::StrCat("cannot unpack ", parts->size(),
                                                     " values into ", stmt.targets.size()));
    }
    for (size_t i = 0; i < parts->size(); ++i) frames_.back()[stmt.targets[i]] = (*parts)[i];
    return absl::OkStatus();
  };
  ValueList items;
  for (const Value& item : *all) {
    if (stmt.cond == nullptr) {
      items.push_back(item);
      continue;
    }
    frames_.emplace_back();
    absl::Status s = bind(item);
    absl::StatusOr<Value> keep = s.ok() ? Eval(*stmt.cond) : absl::StatusOr<Value>(s);
    frames_.pop_back();
    if (!keep.ok()) return fail(keep.status());
    if (keep->Truthy()) items.push_back(item);
  }
  // jinja runs the else block unless some iteration reached the end of the body: a loop
  // whose iterations all ended in break or continue runs it too.
  bool completed = false;
  const int64_t n = static_cast<int64_t>(items.size());
  for (int64_t i = 0; i < n; ++i) {
    frames_.emplace_back();
    ValueDict loop;
    loop.Set("index", Value::Int(i + 1));
    loop.Set("index0", Value::Int(i));
    loop.Set("revindex", Value::Int(n - i));
    loop.Set("revindex0", Value::Int(n - i - 1));
    loop.Set("first", Value::Bool(i == 0));
    loop.Set("last", Value::Bool(i == n - 1));
    loop.Set("length", Value::Int(n));
    loop.Set("depth", Value::Int(1));
    loop.Set("depth0", Value::Int(0));
    if (i > 0) loop.Set("previtem", items[i - 1]);
    if (i + 1 < n) loop.Set("nextitem", items[i + 1]);
    frames_.back()["loop"] = Value::Dict(std::move(loop));
    absl::Status s = bind(items[i]);
    absl::StatusOr<Flow> flow = s.ok() ? Exec(stmt.body, out) : absl::StatusOr<Flow>(fail(s));
    frames_.pop_back();
    if (!flow.ok()) return flow.status();
    if (*flow == Flow::kNormal) completed = true;
    if (*flow == Flow::kBreak) break;
  }
  if (!completed) return Exec(stmt.else_body, out);
  return Flow::kNormal;
}

absl::StatusOr<CallArgs> Evaluator::EvalArgs(const Expr& e, size_t first) {
  CallArgs args;
  for (size_t i = first; i < e.children.size(); ++i) {
    MLA_ASSIGN_OR_RETURN(Value v, Eval(*e.children[i]));
    args.args.push_back(std::move(v));
  }
  for (const auto& [k, expr] : e.kwargs) {
    MLA_ASSIGN_OR_RETURN(Value v, Eval(*expr));
    args.kwargs.emplace_back(k, std::move(v));
  }
  return args;
}

absl::StatusOr<Value> Evaluator::EvalCompare(const Expr& e) {
  MLA_ASSIGN_OR_RETURN(Value left, Eval(*e.children[0]));
  for (size_t i = 0; i < e.ops.size(); ++i) {
    MLA_ASSIGN_OR_RETURN(Value right, Eval(*e.children[i + 1]));
    const std::string& op = e.ops[i];
    bool result = false;
    if (op == "==" || op == "!=") {
      result = Equals(left, right) == (op == "==");
    } else if (op == "in" || op == "not in") {
      MLA_ASSIGN_OR_RETURN(bool in, Contains(right, left));
      result = in == (op == "in");
    } else {
      const bool swap = op == ">" || op == "<=";
      MLA_ASSIGN_OR_RETURN(bool less, swap ? LessThan(right, left) : LessThan(left, right));
      result = (op == "<" || op == ">") ? less : !less;
    }
    if (!result) return Value::Bool(false);
    left = std::move(right);
  }
  return Value::Bool(true);
}

absl::StatusOr<Value> Evaluator::EvalSlice(const Expr& e) {
  MLA_ASSIGN_OR_RETURN(Value obj, Eval(*e.children[0]));
  std::optional<int64_t> parts[3];
  for (int i = 0; i < 3; ++i) {
    if (e.children[i + 1] == nullptr) continue;
    MLA_ASSIGN_OR_RETURN(Value v, Eval(*e.children[i + 1]));
    if (v.is_none()) continue;
    if (!v.is_integral()) {
      return absl::InvalidArgumentError("slice indices must be integers or None");
    }
    parts[i] = v.int_value();
  }
  return GetSlice(obj, parts[0], parts[1], parts[2]);
}

absl::StatusOr<Value> Evaluator::Eval(const Expr& e) {
  switch (e.kind) {
    case Expr::Kind::kLiteral:
      return e.literal;
    case Expr::Kind::kName:
      return Lookup(e.name);
    case Expr::Kind::kAttr: {
      MLA_ASSIGN_OR_RETURN(Value obj, Eval(*e.children[0]));
      return GetAttr(obj, e.name);
    }
    case Expr::Kind::kItem: {
      MLA_ASSIGN_OR_RETURN(Value obj, Eval(*e.children[0]));
      MLA_ASSIGN_OR_RETURN(Value key, Eval(*e.children[1]));
      return GetItem(obj, key);
    }
    case Expr::Kind::kSlice:
      return EvalSlice(e);
    case Expr::Kind::kUnary: {
      MLA_ASSIGN_OR_RETURN(Value v, Eval(*e.children[0]));
      if (e.name == "not") return Value::Bool(!v.Truthy());
      return UnaryOp(e.name, v);
    }
    case Expr::Kind::kBinary: {
      MLA_ASSIGN_OR_RETURN(Value left, Eval(*e.children[0]));
      // `and` / `or` short-circuit and yield an operand, as in Python.
      if (e.name == "and" && !left.Truthy()) return left;
      if (e.name == "or" && left.Truthy()) return left;
      MLA_ASSIGN_OR_RETURN(Value right, Eval(*e.children[1]));
      if (e.name == "and" || e.name == "or") return right;
      return BinaryOp(e.name, left, right);
    }
    case Expr::Kind::kCompare:
      return EvalCompare(e);
    case Expr::Kind::kCondExpr: {
      MLA_ASSIGN_OR_RETURN(Value test, Eval(*e.children[0]));
      if (test.Truthy()) return Eval(*e.children[1]);
      if (e.children[2] == nullptr) return Value::Undefined("conditional expression had no else");
      return Eval(*e.children[2]);
    }
    case Expr::Kind::kTest: {
      MLA_ASSIGN_OR_RETURN(Value v, Eval(*e.children[0]));
      MLA_ASSIGN_OR_RETURN(CallArgs args, EvalArgs(e, 1));
      MLA_ASSIGN_OR_RETURN(bool result, ApplyTest(e.name, v, args));
      return Value::Bool(result != e.negated);
    }
    case Expr::Kind::kFilter: {
      MLA_ASSIGN_OR_RETURN(Value v, Eval(*e.children[0]));
      MLA_ASSIGN_OR_RETURN(CallArgs args, EvalArgs(e, 1));
      return ApplyFilter(e.name, v, args);
    }
    case Expr::Kind::kCall: {
      MLA_ASSIGN_OR_RETURN(CallArgs args, EvalArgs(e, 0));
      absl::StatusOr<Value> result = CallFunction(e.name, args);
      if (e.name == "raise_exception") raised_ = true;
      return result;
    }
    case Expr::Kind::kMethodCall: {
      MLA_ASSIGN_OR_RETURN(Value obj, Eval(*e.children[0]));
      MLA_ASSIGN_OR_RETURN(CallArgs args, EvalArgs(e, 1));
      return CallMethod(obj, e.name, args);
    }
    case Expr::Kind::kList: {
      MLA_ASSIGN_OR_RETURN(CallArgs items, EvalArgs(e, 0));
      return Value::List(std::move(items.args));
    }
    case Expr::Kind::kDict: {
      ValueDict dict;
      for (size_t i = 0; i + 1 < e.children.size(); i += 2) {
        MLA_ASSIGN_OR_RETURN(Value key, Eval(*e.children[i]));
        MLA_ASSIGN_OR_RETURN(Value value, Eval(*e.children[i + 1]));
        if (!key.is_string()) return absl::InvalidArgumentError("dict keys must be strings");
        dict.Set(key.string_value(), std::move(value));
      }
      return Value::Dict(std::move(dict));
    }
  }
  return absl::InternalError("unknown expression kind");
}

}  // namespace

absl::StatusOr<std::string> RenderTemplate(const StmtList& body, const ValueDict& context) {
  Evaluator evaluator(context);
  std::string out;
  absl::StatusOr<Flow> flow = evaluator.Exec(body, &out);
  if (!flow.ok()) return flow.status();
  return out;
}

}  // namespace mla::chat
