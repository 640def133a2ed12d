#include "signing/profile.h"

#include <plist/plist.h>

#include <cstdlib>
#include <memory>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "common/fs.h"
#include "common/status_macros.h"
#include "signing/internal/openssl_util.h"

namespace freeagent::signing {
namespace {

using internal::BioPtr;
using internal::CmsPtr;

// Real profiles are a few tens of KiB; anything past this is not a profile.
constexpr size_t kMaxProfileBytes = 16u << 20;
// Seconds from the Unix epoch to 2001-01-01, the epoch of plist dates.
constexpr int64_t kPlistEpochOffset = 978307200;
constexpr int kMaxRenderDepth = 16;

struct PlistFree { void operator()(void* p) const { plist_free(static_cast<plist_t>(p)); } };
using PlistPtr = std::unique_ptr<void, PlistFree>;
struct CFree { void operator()(void* p) const { std::free(p); } };

absl::Status Invalid(const std::string& source, std::string_view reason) {
  return absl::InvalidArgumentError(
      absl::StrCat("provisioning profile ", source, ": ", absl::string_view(reason.data(), reason.size())));
}

std::string StringValue(plist_t node) {
  if (node == nullptr || plist_get_node_type(node) != PLIST_STRING) return "";
  // plist_get_string_val asserts on a string with an embedded NUL (a crafted profile); the pointer
  // form with its length reads any string.
  uint64_t len = 0;
  const char* ptr = plist_get_string_ptr(node, &len);
  return ptr ? std::string(ptr, len) : std::string();
}

bool BoolValue(plist_t node) {
  if (node == nullptr || plist_get_node_type(node) != PLIST_BOOLEAN) return false;
  uint8_t v = 0;
  plist_get_bool_val(node, &v);
  return v != 0;
}

absl::Time DateValue(plist_t node) {
  int32_t sec = 0, usec = 0;
  plist_get_date_val(node, &sec, &usec);
  return absl::FromUnixSeconds(kPlistEpochOffset + sec) + absl::Microseconds(usec);
}

std::string DataValue(plist_t node) {
  uint64_t len = 0;
  const char* ptr = plist_get_data_ptr(node, &len);
  return ptr ? std::string(ptr, len) : std::string();
}

std::string Render(plist_t node, int depth) {
  if (depth > kMaxRenderDepth) return "...";
  switch (plist_get_node_type(node)) {
    case PLIST_BOOLEAN:
      return BoolValue(node) ? "true" : "false";
    case PLIST_UINT: {
      uint64_t v = 0;
      plist_get_uint_val(node, &v);
      return absl::StrCat(v);
    }
    case PLIST_REAL: {
      double v = 0;
      plist_get_real_val(node, &v);
      return absl::StrCat(v);
    }
    case PLIST_STRING:
      return StringValue(node);
    case PLIST_DATE:
      return absl::FormatTime(absl::RFC3339_sec, DateValue(node), absl::UTCTimeZone());
    case PLIST_DATA: {
      uint64_t len = 0;
      plist_get_data_ptr(node, &len);
      return absl::StrCat("<", len, " bytes>");
    }
    case PLIST_ARRAY: {
      std::vector<std::string> items;
      for (uint32_t i = 0; i < plist_array_get_size(node); ++i) {
        items.push_back(Render(plist_array_get_item(node, i), depth + 1));
      }
      return absl::StrCat("[", absl::StrJoin(items, ", "), "]");
    }
    case PLIST_DICT: {
      std::vector<std::string> items;
      plist_dict_iter it = nullptr;
      plist_dict_new_iter(node, &it);
      std::unique_ptr<void, CFree> owned_it(it);
      for (;;) {
        char* key = nullptr;
        plist_t val = nullptr;
        plist_dict_next_item(node, it, &key, &val);
        if (val == nullptr) {
          std::free(key);
          break;
        }
        std::unique_ptr<char, CFree> owned_key(key);
        items.push_back(absl::StrCat(key ? key : "", ": ", Render(val, depth + 1)));
      }
      return absl::StrCat("{", absl::StrJoin(items, ", "), "}");
    }
    default:
      return "";
  }
}

// Every string of an array node (non-strings skipped).
std::vector<std::string> StringArray(plist_t node) {
  std::vector<std::string> out;
  if (node == nullptr || plist_get_node_type(node) != PLIST_ARRAY) return out;
  for (uint32_t i = 0; i < plist_array_get_size(node); ++i) {
    plist_t item = plist_array_get_item(node, i);
    if (plist_get_node_type(item) == PLIST_STRING) out.push_back(StringValue(item));
  }
  return out;
}

absl::StatusOr<std::string> RequiredString(plist_t dict, const char* key, const std::string& source) {
  plist_t node = plist_dict_get_item(dict, key);
  if (node == nullptr) return Invalid(source, absl::StrCat("no ", key));
  if (plist_get_node_type(node) != PLIST_STRING) return Invalid(source, absl::StrCat(key, " is not a string"));
  std::string value = StringValue(node);
  if (value.empty()) return Invalid(source, absl::StrCat(key, " is empty"));
  return value;
}

ProfileKind DeriveKind(const Profile& p) {
  if (p.provisions_all_devices) return ProfileKind::kEnterprise;
  if (p.provisioned_devices.empty()) return ProfileKind::kAppStore;
  return p.get_task_allow ? ProfileKind::kDevelopment : ProfileKind::kAdHoc;
}

}  // namespace

std::string_view ProfileKindName(ProfileKind kind) {
  switch (kind) {
    case ProfileKind::kDevelopment: return "development";
    case ProfileKind::kAdHoc: return "ad-hoc";
    case ProfileKind::kAppStore: return "app-store";
    case ProfileKind::kEnterprise: return "enterprise";
  }
  return "unknown";
}

absl::StatusOr<Profile> ParseProfilePlist(std::string_view bytes, const std::string& source) {
  if (bytes.empty()) return Invalid(source, "empty plist payload");
  if (bytes.size() > kMaxProfileBytes) return Invalid(source, "plist payload larger than 16 MiB");
  plist_t raw = nullptr;
  plist_from_memory(bytes.data(), static_cast<uint32_t>(bytes.size()), &raw);
  PlistPtr root(raw);
  if (raw == nullptr) return Invalid(source, "payload is not a property list");
  if (plist_get_node_type(raw) != PLIST_DICT) return Invalid(source, "payload is not a plist dictionary");

  Profile p;
  p.source = source;
  ASSIGN_OR_RETURN(p.uuid, RequiredString(raw, "UUID", source));
  ASSIGN_OR_RETURN(p.name, RequiredString(raw, "Name", source));
  std::vector<std::string> teams = StringArray(plist_dict_get_item(raw, "TeamIdentifier"));
  if (teams.empty() || teams[0].empty()) return Invalid(source, "no TeamIdentifier");
  p.team_id = teams[0];
  p.team_name = StringValue(plist_dict_get_item(raw, "TeamName"));
  p.app_id_name = StringValue(plist_dict_get_item(raw, "AppIDName"));
  p.platforms = StringArray(plist_dict_get_item(raw, "Platform"));

  plist_t expiration = plist_dict_get_item(raw, "ExpirationDate");
  if (expiration == nullptr || plist_get_node_type(expiration) != PLIST_DATE) {
    return Invalid(source, "no ExpirationDate date");
  }
  p.expiration_date = DateValue(expiration);
  plist_t creation = plist_dict_get_item(raw, "CreationDate");
  if (creation != nullptr && plist_get_node_type(creation) == PLIST_DATE) p.creation_date = DateValue(creation);

  plist_t ents = plist_dict_get_item(raw, "Entitlements");
  if (ents == nullptr || plist_get_node_type(ents) != PLIST_DICT) return Invalid(source, "no Entitlements dictionary");
  ASSIGN_OR_RETURN(p.application_identifier, RequiredString(ents, "application-identifier", source));
  p.get_task_allow = BoolValue(plist_dict_get_item(ents, "get-task-allow"));
  plist_dict_iter it = nullptr;
  plist_dict_new_iter(ents, &it);
  std::unique_ptr<void, CFree> owned_it(it);
  for (;;) {
    char* key = nullptr;
    plist_t val = nullptr;
    plist_dict_next_item(ents, it, &key, &val);
    std::unique_ptr<char, CFree> owned_key(key);
    if (val == nullptr) break;
    if (key != nullptr) p.entitlements[key] = Render(val, 0);
  }

  plist_t certs = plist_dict_get_item(raw, "DeveloperCertificates");
  if (certs != nullptr && plist_get_node_type(certs) == PLIST_ARRAY) {
    for (uint32_t i = 0; i < plist_array_get_size(certs); ++i) {
      plist_t item = plist_array_get_item(certs, i);
      if (plist_get_node_type(item) != PLIST_DATA) {
        return Invalid(source, absl::StrCat("DeveloperCertificates[", i, "] is not data"));
      }
      ProfileCertificate cert;
      cert.der = DataValue(item);
      cert.sha1 = internal::DigestHex(EVP_sha1(), cert.der);
      cert.sha256 = internal::DigestHex(EVP_sha256(), cert.der);
      p.developer_certificates.push_back(std::move(cert));
    }
  }
  p.provisioned_devices = StringArray(plist_dict_get_item(raw, "ProvisionedDevices"));
  p.provisions_all_devices = BoolValue(plist_dict_get_item(raw, "ProvisionsAllDevices"));
  p.kind = DeriveKind(p);
  return p;
}

absl::StatusOr<Profile> ParseProfile(std::string_view der, const std::string& source) {
  if (der.empty()) return Invalid(source, "file is empty");
  if (der.size() > kMaxProfileBytes) return Invalid(source, "larger than 16 MiB");
  BioPtr in = internal::MemoryBio(der);
  CmsPtr cms(d2i_CMS_bio(in.get(), nullptr));
  if (cms == nullptr) {
    internal::DrainErrors();
    return Invalid(source, "not a CMS (PKCS#7) DER structure");
  }
  if (OBJ_obj2nid(CMS_get0_type(cms.get())) != NID_pkcs7_signed) {
    return Invalid(source, "CMS content is not SignedData");
  }
  ASN1_OCTET_STRING** content = CMS_get0_content(cms.get());
  if (content == nullptr || *content == nullptr) return Invalid(source, "SignedData carries no content (detached)");
  // Integrity only: the signature must match the content and the signer certificate inside.
  BioPtr out(BIO_new(BIO_s_mem()));
  if (CMS_verify(cms.get(), nullptr, nullptr, nullptr, out.get(), CMS_NO_SIGNER_CERT_VERIFY | CMS_BINARY) != 1) {
    std::string why = internal::DrainErrors();
    return Invalid(source, absl::StrCat("CMS signature does not verify", why.empty() ? "" : ": ", why));
  }
  char* data = nullptr;
  long len = BIO_get_mem_data(out.get(), &data);
  if (len <= 0 || data == nullptr) return Invalid(source, "empty plist payload");
  return ParseProfilePlist(std::string_view(data, static_cast<size_t>(len)), source);
}

absl::StatusOr<Profile> ParseProfileFile(const std::string& path) {
  ASSIGN_OR_RETURN(std::string bytes, ReadFile(path));
  return ParseProfile(bytes, path);
}

bool ApplicationIdentifierMatches(std::string_view application_identifier, std::string_view bundle_id) {
  size_t dot = application_identifier.find('.');
  if (dot == std::string_view::npos || bundle_id.empty()) return false;
  std::string_view pattern = application_identifier.substr(dot + 1);
  if (pattern == "*") return true;
  if (pattern.ends_with(".*")) {
    std::string_view prefix = pattern.substr(0, pattern.size() - 1);  // keeps the dot
    return bundle_id.size() > prefix.size() && bundle_id.starts_with(prefix);
  }
  return pattern == bundle_id;
}

}  // namespace freeagent::signing
