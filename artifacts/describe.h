// What is inside an artifact, read on the worker host from the downloaded copy: the app's Info.plist and
// embedded provisioning profile of an .ipa, the entry count and size of an .apk/.aab. The result goes
// into ArtifactInfo.metadata (the keys below) or, when the file cannot be read, into
// ArtifactInfo.description_error; the artifact itself is delivered either way.
//
// Metadata keys (all values are strings):
//   every described type: "kind" ("ipa", "apk", "aab"), "entries" (files in the zip),
//                         "uncompressed_bytes" (their total size)
//   .ipa, from Payload/<name>.app/Info.plist: "bundle_id", "short_version", "build", "minimum_os",
//                         "display_name" (CFBundleDisplayName, else CFBundleName) — each only when present
//   .ipa, from Payload/<name>.app/embedded.mobileprovision: "profile_uuid", "profile_name",
//                         "profile_team_id", "profile_kind", "profile_expires" (UTC, RFC 3339)
// AndroidManifest.xml is binary XML; nothing is taken from it that is not read for certain, so an
// .apk/.aab description holds only what the zip directory says.
#pragma once

#include <cstdint>
#include <map>
#include <string>

#include "absl/status/statusor.h"
#include "freeagent/v1/common.pb.h"

namespace freeagent::artifacts {

struct Description {
  std::map<std::string, std::string> metadata;
  std::string error;  // why (part of) the content could not be read; empty when all was read
};

// Limits that keep a hostile archive from taking the worker's memory.
inline constexpr uint64_t kMaxPlistBytes = 8ull << 20;
inline constexpr uint64_t kMaxProfileBytes = 4ull << 20;

// Describes the host file `local_path`; `name` (the artifact's file name) selects the type by its
// extension. Types without a describer get an empty Description. Never fails: problems land in
// Description::error.
Description DescribeFile(const std::string& local_path, const std::string& name);

// Reads the app's fields from an Info.plist (binary or XML). INVALID_ARGUMENT when it is not a plist
// dictionary.
absl::StatusOr<std::map<std::string, std::string>> ReadInfoPlist(const std::string& data);

// Copies a Description into the artifact record.
void ApplyDescription(const Description& d, freeagent::v1::ArtifactInfo* info);

}  // namespace freeagent::artifacts
