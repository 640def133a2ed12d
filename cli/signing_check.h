// `freeagent signing check`: the worker's host-side validation of iOS signing material, run locally
// before submitting, with a readable summary.
#pragma once

#include <string>
#include <vector>

#include "absl/status/statusor.h"

namespace freeagent::cli {

struct SigningCheckOptions {
  std::string p12;
  std::string password_env;  // name of the variable holding the P12 password; empty = no password
  std::vector<std::string> profiles;
  std::string bundle_id;
};

// Prints the summary to stdout and any validation problems to stderr. Returns kExitOk when the
// material is valid, kExitBuildFailed when Validate found problems; unreadable files, a wrong password
// or an unset password variable are errors.
absl::StatusOr<int> SigningCheck(const SigningCheckOptions& options);

}  // namespace freeagent::cli
