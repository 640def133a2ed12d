#include "artifacts/profile_summary.h"

#include "absl/time/time.h"
#include "common/status_macros.h"
#include "signing/profile.h"

namespace freeagent::artifacts {

absl::Status SummarizeProfile(std::string_view der, std::map<std::string, std::string>& out) {
  ASSIGN_OR_RETURN(signing::Profile p, signing::ParseProfile(der, "embedded.mobileprovision"));
  out["profile_uuid"] = p.uuid;
  out["profile_name"] = p.name;
  out["profile_team_id"] = p.team_id;
  out["profile_kind"] = std::string(signing::ProfileKindName(p.kind));
  out["profile_expires"] = absl::FormatTime("%Y-%m-%dT%H:%M:%SZ", p.expiration_date, absl::UTCTimeZone());
  return absl::OkStatus();
}

}  // namespace freeagent::artifacts
