// PKCS#12 (.p12) signing identities: opened with their password on the host, in the legacy RC2-40/3DES
// form macOS Keychain exports (through OpenSSL 3's legacy provider) and the modern AES form.
#pragma once

#include <string>
#include <string_view>

#include "absl/status/statusor.h"
#include "absl/time/time.h"

namespace freeagent::signing {

// What the host knows about a signing certificate. Fingerprints are uppercase hex of the DER.
struct CertificateInfo {
  std::string common_name;   // "Apple Distribution: Example Corp (ABCDE12345)"
  std::string team_id;       // subject OU
  std::string organization;  // subject O
  std::string serial_hex;    // uppercase hex
  absl::Time not_before = absl::InfinitePast();
  absl::Time not_after = absl::InfinitePast();
  bool code_signing_eku = false;  // extendedKeyUsage includes codeSigning
  std::string sha1;
  std::string sha256;
  std::string der;
};

// True when the common name starts like one of Apple's code-signing identities ("Apple Development:",
// "Apple Distribution:", "iPhone Developer:", "iPhone Distribution:", "Developer ID Application:", ...)
// or the certificate has the codeSigning extended key usage.
bool IsCodeSigningIdentity(const CertificateInfo& cert);

// The identity in a P12: the certificate that matches the private key.
struct P12Identity {
  std::string source;  // file name given to ParseP12, used in every message about it
  CertificateInfo certificate;
};

// Opens a P12. Errors start with "P12 <source_name>: " and are distinct:
//   INVALID_ARGUMENT   not a PKCS#12 file (garbage, truncated, empty);
//   PERMISSION_DENIED  wrong password (the integrity MAC does not verify);
//   FAILED_PRECONDITION legacy encryption while OpenSSL's legacy provider could not be loaded (names it);
//   INVALID_ARGUMENT   no private key, no certificate, or no certificate matching the key.
// Loads OpenSSL's "legacy" and "default" providers into the default library context once.
// Never crashes on arbitrary bytes. Thread-safe.
absl::StatusOr<P12Identity> ParseP12(std::string_view bytes, std::string_view password, const std::string& source_name);

// True when OpenSSL's legacy provider (RC2, RC4, DES) is available in this process.
bool LegacyProviderAvailable();

}  // namespace freeagent::signing
