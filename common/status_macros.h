// Early-return helpers for absl::Status and absl::StatusOr.
#ifndef MLA_COMMON_STATUS_MACROS_H_
#define MLA_COMMON_STATUS_MACROS_H_

#include "absl/status/status.h"
#include "absl/status/statusor.h"

#define MLA_CONCAT_INNER_(a, b) a##b
#define MLA_CONCAT_(a, b) MLA_CONCAT_INNER_(a, b)

// Returns the status from the enclosing function when `expr` is not OK.
#define MLA_RETURN_IF_ERROR(expr)                \
  do {                                           \
    const absl::Status mla_status_ = (expr);     \
    if (!mla_status_.ok()) return mla_status_;   \
  } while (false)

// `MLA_ASSIGN_OR_RETURN(auto x, F());` assigns the value or returns the error.
#define MLA_ASSIGN_OR_RETURN(lhs, expr) \
  MLA_ASSIGN_OR_RETURN_IMPL_(MLA_CONCAT_(mla_statusor_, __LINE__), lhs, expr)
#define MLA_ASSIGN_OR_RETURN_IMPL_(tmp, lhs, expr) \
  auto tmp = (expr);                               \
  if (!tmp.ok()) return tmp.status();              \
  lhs = std::move(tmp).value()

#endif  // MLA_COMMON_STATUS_MACROS_H_
