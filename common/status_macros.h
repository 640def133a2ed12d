// RETURN_IF_ERROR / ASSIGN_OR_RETURN for absl::Status and absl::StatusOr (Abseil 20220623 has none).
#pragma once

#include <utility>

#include "absl/status/status.h"
#include "absl/status/statusor.h"

#define FA_STATUS_CONCAT_INNER_(a, b) a##b
#define FA_STATUS_CONCAT_(a, b) FA_STATUS_CONCAT_INNER_(a, b)

// Returns the status from the enclosing function if `expr` is not OK.
#define RETURN_IF_ERROR(expr)                                  \
  do {                                                         \
    ::absl::Status fa_status_ = (expr);                        \
    if (!fa_status_.ok()) return fa_status_;                   \
  } while (0)

// `ASSIGN_OR_RETURN(auto x, MakeX());` declares/assigns `x` from a StatusOr or returns its error.
#define ASSIGN_OR_RETURN(lhs, expr) \
  FA_ASSIGN_OR_RETURN_IMPL_(FA_STATUS_CONCAT_(fa_statusor_, __LINE__), lhs, expr)

#define FA_ASSIGN_OR_RETURN_IMPL_(statusor, lhs, expr) \
  auto statusor = (expr);                              \
  if (!statusor.ok()) return std::move(statusor).status(); \
  lhs = std::move(statusor).value()
