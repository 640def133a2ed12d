#include "cli/signing_check.h"

#include <cstdio>
#include <cstdlib>

#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"
#include "cli/commands.h"
#include "common/status_macros.h"
#include "signing/validate.h"

namespace freeagent::cli {

absl::StatusOr<int> SigningCheck(const SigningCheckOptions& options) {
  std::string password;
  if (!options.password_env.empty()) {
    // The password comes from the environment so it is never in this process's argv.
    const char* value = std::getenv(options.password_env.c_str());
    if (value == nullptr) {
      return absl::InvalidArgumentError(
          absl::StrCat("--password-env: environment variable ", options.password_env, " is not set"));
    }
    password = value;
  }
  ASSIGN_OR_RETURN(signing::CheckReport report, signing::CheckFiles(options.p12, password, options.profiles,
                                                                    options.bundle_id, absl::Now()));
  std::fputs(report.summary.c_str(), stdout);
  if (!report.validation.ok()) {
    std::fprintf(stderr, "signing check failed:\n%s\n", std::string(report.validation.message()).c_str());
    return kExitBuildFailed;
  }
  std::fputs("signing check passed\n", stdout);
  return kExitOk;
}

}  // namespace freeagent::cli
