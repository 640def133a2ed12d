// `freeagent signing check`: the worker's host-side validation of iOS signing material, run locally
// before submitting, with a readable summary.
#pragma once

#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "freeagent/v1/blob.grpc.pb.h"
#include "freeagent/v1/common.pb.h"

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

// For `submit --p12 ...`: validates the material locally as SigningCheck does (a problem is
// FAILED_PRECONDITION listing them, so nothing is uploaded), then uploads the P12 and profiles as
// blobs and fills `spec->signing` (digests, password, bundle id). No-op when `options.p12` is empty;
// profiles without a P12 are INVALID_ARGUMENT.
absl::Status AttachSigning(const SigningCheckOptions& options, freeagent::v1::BlobService::StubInterface* blobs,
                           freeagent::v1::JobSpec* spec);

}  // namespace freeagent::cli
