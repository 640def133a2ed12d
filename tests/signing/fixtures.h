// Signing test material made at test time with OpenSSL (nothing secret is committed): a CA, Apple-like
// code-signing leaves, P12 files in the legacy (RC2-40/3DES, `openssl pkcs12 -export -legacy`) and the
// modern (AES) form, and provisioning profiles (libplist XML in a CMS SignedData). Shared with the
// artifacts tests, which embed a profile in a test .ipa.
#pragma once

#include <string>
#include <vector>

#include "absl/time/clock.h"
#include "absl/time/time.h"

namespace freeagent::signing::testing {

struct TestIdentity {
  std::string key_pem;   // PKCS#8 PEM, unencrypted
  std::string cert_pem;
  std::string cert_der;
};

// A self-signed CA (RSA 2048) that can sign leaves and profiles.
TestIdentity MakeCa(const std::string& common_name = "Free Agent Test CA");

struct LeafOptions {
  std::string common_name = "Apple Distribution: Example Corp (ABCDE12345)";
  std::string team_id = "ABCDE12345";  // subject OU
  std::string organization = "Example Corp";
  absl::Time not_before = absl::Now() - absl::Hours(24);
  absl::Time not_after = absl::Now() + absl::Hours(24 * 365);
  bool code_signing_eku = true;
  long serial = 0x1234;
};

// One CA per test process, made on first use (key generation is the slow part of the fixtures).
const TestIdentity& SharedCa();

// A leaf signed by `ca`.
TestIdentity MakeLeaf(const TestIdentity& ca, const LeafOptions& options = {});

// `leaf`'s key and certificate (and `ca`'s certificate when given) as a P12, made with the openssl
// CLI: `legacy` = RC2-40 certificates and 3DES key as macOS Keychain exports, else OpenSSL 3's AES.
std::string MakeP12(const TestIdentity& leaf, const std::string& password, bool legacy,
                    const TestIdentity* ca = nullptr);

// A P12 whose private key is `key_of`'s and whose only certificate is `cert_of`'s (a key/certificate
// mismatch that PKCS12_create refuses to make directly). Modern encryption.
std::string MakeMismatchedP12(const TestIdentity& key_of, const TestIdentity& cert_of, const std::string& password);

struct ProfileOptions {
  std::string uuid = "6A2F3C1E-9B4D-4E8A-A1F0-3C5D7E9B1A20";
  std::string name = "Example App Store";
  std::string team_id = "ABCDE12345";
  std::string team_name = "Example Corp";
  std::string app_id_name = "Example";
  std::string application_identifier = "ABCDE12345.com.example.app";
  std::string platform = "iOS";
  absl::Time creation_date = absl::Now() - absl::Hours(24);
  absl::Time expiration_date = absl::Now() + absl::Hours(24 * 300);
  std::vector<std::string> developer_certificates_der;
  std::vector<std::string> devices;
  bool provisions_all_devices = false;
  bool get_task_allow = false;
  std::vector<std::string> keychain_access_groups = {"ABCDE12345.*"};
};

// The profile's XML plist (libplist).
std::string MakeProfilePlist(const ProfileOptions& options);

// `payload` in a CMS SignedData (DER, content attached) signed by `signer`.
std::string SignCms(const std::string& payload, const TestIdentity& signer);

// MakeProfilePlist + SignCms: the bytes of a .mobileprovision.
std::string MakeProfile(const ProfileOptions& options, const TestIdentity& signer);

}  // namespace freeagent::signing::testing
