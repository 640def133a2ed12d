// Provisioning profiles (.mobileprovision): a CMS SignedData (DER) wrapping an XML plist. ParseProfile
// checks the signature against the signer certificate carried inside (integrity, not trust in Apple's
// chain: the host has no Apple roots) and reads the fields that signing and artifact metadata need.
#pragma once

#include <map>
#include <string>
#include <string_view>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/time/time.h"

namespace freeagent::signing {

// Derived from the devices and entitlements, the way Xcode names distribution methods.
enum class ProfileKind {
  kDevelopment,  // device list and get-task-allow = true
  kAdHoc,        // device list, get-task-allow = false
  kAppStore,     // no device list
  kEnterprise,   // ProvisionsAllDevices = true (In-House)
};
// "development", "ad-hoc", "app-store", "enterprise".
std::string_view ProfileKindName(ProfileKind kind);

// One DeveloperCertificates entry: the DER bytes and their fingerprints (uppercase hex).
struct ProfileCertificate {
  std::string der;
  std::string sha1;
  std::string sha256;
};

struct Profile {
  std::string source;  // file name given to ParseProfile, used in every message about this profile
  std::string uuid;
  std::string name;
  std::string team_id;      // first of TeamIdentifier
  std::string team_name;
  std::string app_id_name;  // AppIDName
  // Entitlements' application-identifier, e.g. "ABCDE12345.com.example.app" or "ABCDE12345.*".
  std::string application_identifier;
  std::vector<std::string> platforms;  // Platform, e.g. {"iOS"}
  absl::Time creation_date = absl::InfinitePast();
  absl::Time expiration_date = absl::InfinitePast();
  std::vector<ProfileCertificate> developer_certificates;
  std::vector<std::string> provisioned_devices;  // UDIDs
  bool provisions_all_devices = false;
  bool get_task_allow = false;
  // Every entitlement, its value rendered as text: strings as is, booleans "true"/"false", numbers in
  // decimal, arrays as "[a, b]", dictionaries as "{k: v}", data as "<N bytes>".
  std::map<std::string, std::string> entitlements;
  ProfileKind kind = ProfileKind::kAppStore;
};

// Parses a .mobileprovision from its bytes. `source_name` (usually the file name) starts every error.
// INVALID_ARGUMENT for bytes that are not a CMS SignedData, a signature that does not verify, a
// payload that is not a plist dictionary, or a missing/mistyped required field (UUID, Name,
// TeamIdentifier, ExpirationDate, Entitlements with application-identifier). Never crashes on
// arbitrary bytes. Thread-safe.
absl::StatusOr<Profile> ParseProfile(std::string_view der, const std::string& source_name);

// Reads the file at `path` and parses it, naming the file in errors.
absl::StatusOr<Profile> ParseProfileFile(const std::string& path);

// The parsing half of ParseProfile: the plist payload (XML or binary) alone. For callers that have
// already unwrapped the CMS envelope, and for tests.
absl::StatusOr<Profile> ParseProfilePlist(std::string_view plist, const std::string& source_name);

// True when the profile's application-identifier (with its "PREFIX." removed) matches `bundle_id`:
// exactly, "*" for everything, or "com.example.*" for "com.example." followed by anything.
bool ApplicationIdentifierMatches(std::string_view application_identifier, std::string_view bundle_id);

}  // namespace freeagent::signing
