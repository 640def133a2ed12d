// The provisioning-profile part of an .ipa description: the embedded.mobileprovision read through the
// signing module's parser (CMS signature checked, plist fields read) and reduced to metadata keys.
#pragma once

#include <map>
#include <string>
#include <string_view>

#include "absl/status/status.h"

namespace freeagent::artifacts {

// Adds "profile_uuid", "profile_name", "profile_team_id", "profile_kind" and "profile_expires" (UTC,
// RFC 3339) to `out`. INVALID_ARGUMENT (the parser's reason) when the bytes are not a readable profile;
// `out` is left unchanged then.
absl::Status SummarizeProfile(std::string_view der, std::map<std::string, std::string>& out);

}  // namespace freeagent::artifacts
