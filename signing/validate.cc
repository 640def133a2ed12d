#include "signing/validate.h"

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "common/fs.h"
#include "common/status_macros.h"

namespace freeagent::signing {
namespace {

std::string Day(absl::Time t) { return absl::FormatTime("%Y-%m-%d %H:%M:%S UTC", t, absl::UTCTimeZone()); }

std::string ProfileLabel(const Profile& p) {
  return absl::StrCat("provisioning profile ", p.source, " (\"", p.name, "\", UUID ", p.uuid, ")");
}

bool ListsCertificate(const Profile& p, const CertificateInfo& cert) {
  for (const auto& c : p.developer_certificates) {
    if (c.sha256 == cert.sha256) return true;
  }
  return false;
}

// Whole days from `now` to `t`, rounded down (negative once past).
int64_t DaysUntil(absl::Time t, absl::Time now) { return absl::ToInt64Hours(t - now) / 24; }

}  // namespace

absl::StatusOr<SigningBundle> LoadBundle(const NamedBytes& p12, std::string_view password,
                                         const std::vector<NamedBytes>& profiles, std::string bundle_id) {
  SigningBundle bundle;
  ASSIGN_OR_RETURN(bundle.identity, ParseP12(p12.bytes, password, p12.name));
  for (const auto& file : profiles) {
    ASSIGN_OR_RETURN(Profile profile, ParseProfile(file.bytes, file.name));
    bundle.profiles.push_back(std::move(profile));
  }
  bundle.bundle_id = std::move(bundle_id);
  return bundle;
}

absl::Status Validate(const SigningBundle& bundle, absl::Time now) {
  std::vector<std::string> problems;
  const CertificateInfo& cert = bundle.identity.certificate;
  std::string cert_label = absl::StrCat("P12 ", bundle.identity.source, ": certificate \"", cert.common_name, "\"");
  if (now < cert.not_before) {
    problems.push_back(absl::StrCat(cert_label, " is not valid yet (notBefore ", Day(cert.not_before), ")"));
  }
  if (now > cert.not_after) {
    problems.push_back(absl::StrCat(cert_label, " expired on ", Day(cert.not_after), " (notAfter)"));
  }
  if (!IsCodeSigningIdentity(cert)) {
    problems.push_back(absl::StrCat(cert_label,
                                    " is not a code-signing identity (no codeSigning extended key usage, "
                                    "and the common name is not an Apple Development/Distribution name)"));
  }
  for (const Profile& p : bundle.profiles) {
    if (now > p.expiration_date) {
      problems.push_back(absl::StrCat(ProfileLabel(p), " expired on ", Day(p.expiration_date), " (ExpirationDate)"));
    }
    if (!ListsCertificate(p, cert)) {
      std::vector<std::string> listed;
      for (const auto& c : p.developer_certificates) listed.push_back(c.sha1);
      problems.push_back(absl::StrCat(ProfileLabel(p), " does not contain the P12's certificate \"",
                                      cert.common_name, "\" (SHA-1 ", cert.sha1, ") in DeveloperCertificates (",
                                      listed.empty() ? "none listed" : absl::StrCat("SHA-1 ", absl::StrJoin(listed, ", ")),
                                      ")"));
    }
    if (p.team_id != cert.team_id) {
      problems.push_back(absl::StrCat(ProfileLabel(p), " TeamIdentifier ", p.team_id, " differs from the P12 ",
                                      bundle.identity.source, " certificate's team (subject OU) ",
                                      cert.team_id.empty() ? "(none)" : cert.team_id));
    }
  }
  if (!bundle.bundle_id.empty() && !bundle.profiles.empty()) {
    bool matched = false;
    std::vector<std::string> ids;
    for (const Profile& p : bundle.profiles) {
      matched = matched || ApplicationIdentifierMatches(p.application_identifier, bundle.bundle_id);
      ids.push_back(absl::StrCat(p.source, ": ", p.application_identifier));
    }
    if (!matched) {
      problems.push_back(absl::StrCat("bundle id ", bundle.bundle_id,
                                      " is not matched by any profile's application-identifier (",
                                      absl::StrJoin(ids, "; "), ")"));
    }
  }
  if (problems.empty()) return absl::OkStatus();
  return absl::FailedPreconditionError(absl::StrJoin(problems, "\n"));
}

absl::StatusOr<SigningBundle> LoadBundleFiles(const std::string& p12_path, std::string_view password,
                                              const std::vector<std::string>& profile_paths, std::string bundle_id) {
  auto base_name = [](const std::string& path) { return path.substr(path.rfind('/') + 1); };
  NamedBytes p12{base_name(p12_path), ""};
  ASSIGN_OR_RETURN(p12.bytes, ReadFile(p12_path));
  std::vector<NamedBytes> profiles;
  for (const auto& path : profile_paths) {
    ASSIGN_OR_RETURN(std::string bytes, ReadFile(path));
    profiles.push_back({base_name(path), std::move(bytes)});
  }
  return LoadBundle(p12, password, profiles, std::move(bundle_id));
}

absl::StatusOr<CheckReport> CheckFiles(const std::string& p12_path, std::string_view password,
                                       const std::vector<std::string>& profile_paths, const std::string& bundle_id,
                                       absl::Time now) {
  ASSIGN_OR_RETURN(SigningBundle bundle, LoadBundleFiles(p12_path, password, profile_paths, bundle_id));
  return CheckReport{Summarize(bundle, now), Validate(bundle, now)};
}

std::string Summarize(const SigningBundle& bundle, absl::Time now) {
  const CertificateInfo& cert = bundle.identity.certificate;
  std::string out = absl::StrCat("identity: ", cert.common_name, "\n", "  file: ", bundle.identity.source, "\n",
                                 "  team: ", cert.team_id.empty() ? "(none)" : cert.team_id,
                                 cert.organization.empty() ? "" : absl::StrCat(" (", cert.organization, ")"), "\n",
                                 "  serial: ", cert.serial_hex, "\n", "  sha1: ", cert.sha1, "\n",
                                 "  expires: ", Day(cert.not_after), " (in ", DaysUntil(cert.not_after, now), " days)\n");
  for (const Profile& p : bundle.profiles) {
    absl::StrAppend(&out, "profile: ", p.name, "\n", "  file: ", p.source, "\n", "  uuid: ", p.uuid, "\n",
                    "  kind: ", std::string(ProfileKindName(p.kind)), "\n", "  team: ", p.team_id,
                    p.team_name.empty() ? "" : absl::StrCat(" (", p.team_name, ")"), "\n",
                    "  app id: ", p.application_identifier, "\n", "  expires: ", Day(p.expiration_date), " (in ",
                    DaysUntil(p.expiration_date, now), " days)\n", "  devices: ",
                    p.provisions_all_devices ? "all" : absl::StrCat(p.provisioned_devices.size()), "\n",
                    "  entitlements:\n");
    for (const auto& [key, value] : p.entitlements) absl::StrAppend(&out, "    ", key, " = ", value, "\n");
  }
  return out;
}

}  // namespace freeagent::signing
