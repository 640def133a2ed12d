#include "signing/p12.h"

#include <openssl/bn.h>
#include <openssl/err.h>
#include <openssl/provider.h>
#include <openssl/x509v3.h>

#include <array>
#include <mutex>

#include "absl/strings/str_cat.h"
#include "signing/internal/openssl_util.h"

namespace freeagent::signing {
namespace {

using internal::EvpPkeyPtr;
using internal::Pkcs12Ptr;
using internal::X509Ptr;
using internal::X509StackPtr;

// Larger than any real identity export; anything bigger is refused before parsing.
constexpr size_t kMaxP12Bytes = 1u << 20;

struct Providers {
  OSSL_PROVIDER* legacy = nullptr;
  OSSL_PROVIDER* fallback = nullptr;
};

// Once per process: loading any provider explicitly stops OpenSSL from loading "default" on its own,
// so both are loaded. They stay loaded for the life of the process.
const Providers& LoadProviders() {
  static Providers providers;
  static std::once_flag once;
  std::call_once(once, [] {
    providers.fallback = OSSL_PROVIDER_load(nullptr, "default");
    providers.legacy = OSSL_PROVIDER_load(nullptr, "legacy");
    ERR_clear_error();
  });
  return providers;
}

absl::Status P12Error(absl::StatusCode code, const std::string& source, std::string_view reason) {
  return absl::Status(code, absl::StrCat("P12 ", source, ": ", absl::string_view(reason.data(), reason.size())));
}

std::string NameEntry(X509_NAME* name, int nid) {
  int index = X509_NAME_get_index_by_NID(name, nid, -1);
  if (index < 0) return "";
  ASN1_STRING* data = X509_NAME_ENTRY_get_data(X509_NAME_get_entry(name, index));
  unsigned char* utf8 = nullptr;
  int len = ASN1_STRING_to_UTF8(&utf8, data);
  if (len < 0) return "";
  std::string out(reinterpret_cast<char*>(utf8), static_cast<size_t>(len));
  OPENSSL_free(utf8);
  return out;
}

std::string SerialHex(X509* cert) {
  BIGNUM* bn = ASN1_INTEGER_to_BN(X509_get0_serialNumber(cert), nullptr);
  if (bn == nullptr) return "";
  char* hex = BN_bn2hex(bn);
  BN_free(bn);
  if (hex == nullptr) return "";
  std::string out(hex);
  OPENSSL_free(hex);
  return out;
}

CertificateInfo Describe(X509* cert) {
  CertificateInfo info;
  X509_NAME* subject = X509_get_subject_name(cert);
  info.common_name = NameEntry(subject, NID_commonName);
  info.team_id = NameEntry(subject, NID_organizationalUnitName);
  info.organization = NameEntry(subject, NID_organizationName);
  info.serial_hex = SerialHex(cert);
  info.not_before = internal::Asn1TimeToAbsl(X509_get0_notBefore(cert));
  info.not_after = internal::Asn1TimeToAbsl(X509_get0_notAfter(cert));
  info.code_signing_eku = (X509_get_extension_flags(cert) & EXFLAG_XKUSAGE) != 0 &&
                          (X509_get_extended_key_usage(cert) & XKU_CODE_SIGN) != 0;
  info.der = internal::CertificateDer(cert);
  info.sha1 = internal::DigestHex(EVP_sha1(), info.der);
  info.sha256 = internal::DigestHex(EVP_sha256(), info.der);
  return info;
}

// PKCS#12 treats an empty password and no password differently; Keychain and openssl write either.
bool VerifyMac(PKCS12* p12, std::string_view password) {
  std::string pw(password);
  if (PKCS12_verify_mac(p12, pw.c_str(), static_cast<int>(pw.size())) == 1) return true;
  return pw.empty() && PKCS12_verify_mac(p12, nullptr, 0) == 1;
}

}  // namespace

bool LegacyProviderAvailable() { return LoadProviders().legacy != nullptr; }

bool IsCodeSigningIdentity(const CertificateInfo& cert) {
  static constexpr std::array<std::string_view, 8> kPrefixes = {
      "Apple Development:",   "Apple Distribution:",        "iPhone Developer:",
      "iPhone Distribution:", "Developer ID Application:", "Mac Developer:",
      "3rd Party Mac Developer Application:", "Apple Sign In:"};
  if (cert.code_signing_eku) return true;
  for (std::string_view prefix : kPrefixes) {
    if (std::string_view(cert.common_name).starts_with(prefix)) return true;
  }
  return false;
}

absl::StatusOr<P12Identity> ParseP12(std::string_view bytes, std::string_view password, const std::string& source) {
  const Providers& providers = LoadProviders();
  if (bytes.empty()) return P12Error(absl::StatusCode::kInvalidArgument, source, "file is empty");
  if (bytes.size() > kMaxP12Bytes) return P12Error(absl::StatusCode::kInvalidArgument, source, "larger than 1 MiB");
  internal::BioPtr in = internal::MemoryBio(bytes);
  Pkcs12Ptr p12(d2i_PKCS12_bio(in.get(), nullptr));
  if (p12 == nullptr) {
    internal::DrainErrors();
    return P12Error(absl::StatusCode::kInvalidArgument, source, "not a PKCS#12 file (bad or truncated DER)");
  }
  if (PKCS12_mac_present(p12.get()) && !VerifyMac(p12.get(), password)) {
    internal::DrainErrors();
    return P12Error(absl::StatusCode::kPermissionDenied, source,
                    "wrong password (the integrity check (MAC) does not verify)");
  }
  EVP_PKEY* raw_key = nullptr;
  X509* raw_cert = nullptr;
  STACK_OF(X509)* raw_ca = nullptr;
  std::string pw(password);
  int ok = PKCS12_parse(p12.get(), pw.c_str(), &raw_key, &raw_cert, &raw_ca);
  EvpPkeyPtr key(raw_key);
  X509Ptr cert(raw_cert);
  X509StackPtr others(raw_ca);
  if (ok != 1) {
    std::string why = internal::DrainErrors();
    if (providers.legacy == nullptr) {
      return P12Error(absl::StatusCode::kFailedPrecondition, source,
                      absl::StrCat("cannot be decrypted and OpenSSL's legacy provider (RC2-40/3DES, used by "
                                   "Keychain exports) could not be loaded; install it or set OPENSSL_MODULES (",
                                   why, ")"));
    }
    return P12Error(absl::StatusCode::kInvalidArgument, source, absl::StrCat("cannot be decrypted: ", why));
  }
  if (key == nullptr) return P12Error(absl::StatusCode::kInvalidArgument, source, "contains no private key");
  if (cert == nullptr || X509_check_private_key(cert.get(), key.get()) != 1) {
    // PKCS12_parse pairs key and certificate by localKeyID; look through the rest by the key itself.
    X509Ptr match;
    for (int i = 0; others != nullptr && i < sk_X509_num(others.get()); ++i) {
      X509* candidate = sk_X509_value(others.get(), i);
      if (X509_check_private_key(candidate, key.get()) == 1) {
        X509_up_ref(candidate);
        match.reset(candidate);
        break;
      }
    }
    ERR_clear_error();
    bool any_cert = cert != nullptr || (others != nullptr && sk_X509_num(others.get()) > 0);
    if (match == nullptr) {
      return P12Error(absl::StatusCode::kInvalidArgument, source,
                      any_cert ? "the private key does not match any certificate in the file"
                               : "contains no certificate");
    }
    cert = std::move(match);
  }
  P12Identity identity;
  identity.source = source;
  identity.certificate = Describe(cert.get());
  return identity;
}

}  // namespace freeagent::signing
