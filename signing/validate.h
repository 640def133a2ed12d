// Host-side checks of a job's signing material before any VM is created: the P12 identity and its
// provisioning profiles must agree with each other, with the clock and with the job's bundle id, so a
// build does not fail late inside the guest with "No signing certificate found".
#pragma once

#include <string>
#include <utility>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "signing/p12.h"
#include "signing/profile.h"

namespace freeagent::signing {

struct SigningBundle {
  P12Identity identity;
  std::vector<Profile> profiles;
  std::string bundle_id;  // empty = not checked
};

// A named file's bytes (the name is used in messages).
struct NamedBytes {
  std::string name;
  std::string bytes;
};

// Parses the P12 (with `password`) and every profile. The first parse error is returned as is (see
// ParseP12 and ParseProfile: each names its file).
absl::StatusOr<SigningBundle> LoadBundle(const NamedBytes& p12, std::string_view password,
                                         const std::vector<NamedBytes>& profiles, std::string bundle_id);

// LoadBundle from files; each file is named by its base name in messages. NOT_FOUND (with the path)
// for a file that does not exist.
absl::StatusOr<SigningBundle> LoadBundleFiles(const std::string& p12_path, std::string_view password,
                                              const std::vector<std::string>& profile_paths, std::string bundle_id);

// Checks, at time `now`:
//   the certificate is valid (not before not_before, not after not_after);
//   it is a code-signing identity (IsCodeSigningIdentity);
//   each profile has not expired;
//   each profile lists the certificate among its DeveloperCertificates (by SHA-256 fingerprint);
//   each profile's team equals the certificate's team (subject OU);
//   `bundle_id`, when set, is matched by some profile's application-identifier.
// FAILED_PRECONDITION with every problem found, one per line, each naming the file and the fields.
absl::Status Validate(const SigningBundle& bundle, absl::Time now);

// What `freeagent signing check` reports: the summary of material that could be read, and the outcome
// of Validate.
struct CheckReport {
  std::string summary;
  absl::Status validation;
};

// Reads and parses the files (errors name the file: missing, unreadable, wrong password, not a
// profile), then validates them at `now`.
absl::StatusOr<CheckReport> CheckFiles(const std::string& p12_path, std::string_view password,
                                       const std::vector<std::string>& profile_paths, const std::string& bundle_id,
                                       absl::Time now);

// A readable multi-line summary: identity, team, expiry in days, and per profile its name, UUID,
// kind, expiry, devices count and entitlements.
std::string Summarize(const SigningBundle& bundle, absl::Time now);

}  // namespace freeagent::signing
