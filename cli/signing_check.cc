#include "cli/signing_check.h"

#include <sys/stat.h>

#include <cerrno>
#include <cstdio>
#include <cstdlib>

#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"
#include "cli/blob_transfer.h"
#include "cli/commands.h"
#include "common/fs.h"
#include "common/sha256.h"
#include "common/status_macros.h"
#include "signing/validate.h"

namespace freeagent::cli {

namespace {

// The password comes from the environment so it is never in this process's argv.
absl::StatusOr<std::string> PasswordFromEnv(const std::string& var) {
  if (var.empty()) return std::string();
  const char* value = std::getenv(var.c_str());
  if (value == nullptr) {
    return absl::InvalidArgumentError(absl::StrCat("--password-env: environment variable ", var, " is not set"));
  }
  return std::string(value);
}

absl::StatusOr<std::string> UploadOne(freeagent::v1::BlobService::StubInterface* blobs, const std::string& path) {
  ASSIGN_OR_RETURN(std::string digest, Sha256File(path));
  struct stat st;
  if (stat(path.c_str(), &st) != 0) return ErrnoStatus(errno, "stat", path);
  RETURN_IF_ERROR(UploadFile(blobs, path, digest, static_cast<uint64_t>(st.st_size), /*show_progress=*/false).status());
  return digest;
}

}  // namespace

absl::Status AttachSigning(const SigningCheckOptions& options, freeagent::v1::BlobService::StubInterface* blobs,
                           freeagent::v1::JobSpec* spec) {
  if (options.p12.empty()) {
    if (!options.profiles.empty()) return absl::InvalidArgumentError("--profile needs --p12");
    return absl::OkStatus();
  }
  ASSIGN_OR_RETURN(std::string password, PasswordFromEnv(options.password_env));
  ASSIGN_OR_RETURN(signing::CheckReport report, signing::CheckFiles(options.p12, password, options.profiles,
                                                                    options.bundle_id, absl::Now()));
  if (!report.validation.ok()) {
    return absl::FailedPreconditionError(absl::StrCat("signing material: ", report.validation.message()));
  }
  freeagent::v1::SigningMaterial* m = spec->mutable_signing();
  ASSIGN_OR_RETURN(*m->mutable_p12_digest(), UploadOne(blobs, options.p12));
  m->set_p12_password(password);
  m->clear_profile_digests();
  for (const auto& path : options.profiles) {
    ASSIGN_OR_RETURN(*m->add_profile_digests(), UploadOne(blobs, path));
  }
  m->set_bundle_id(options.bundle_id);
  return absl::OkStatus();
}

absl::StatusOr<int> SigningCheck(const SigningCheckOptions& options) {
  ASSIGN_OR_RETURN(std::string password, PasswordFromEnv(options.password_env));
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
