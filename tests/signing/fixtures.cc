#include "tests/signing/fixtures.h"

#include <openssl/cms.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/pkcs12.h>
#include <openssl/x509.h>
#include <openssl/x509v3.h>
#include <plist/plist.h>

#include <cstdio>
#include <cstdlib>
#include <memory>

#include "common/fs.h"
#include "common/process.h"

namespace freeagent::signing::testing {
namespace {

// Test material that cannot be made is a broken test environment: stop loudly.
[[noreturn]] void Die(const std::string& what) {
  std::fprintf(stderr, "signing fixtures: %s\n", what.c_str());
  ERR_print_errors_fp(stderr);
  std::abort();
}

struct Deleter {
  void operator()(BIO* p) const { BIO_free(p); }
  void operator()(X509* p) const { X509_free(p); }
  void operator()(EVP_PKEY* p) const { EVP_PKEY_free(p); }
  void operator()(CMS_ContentInfo* p) const { CMS_ContentInfo_free(p); }
  void operator()(PKCS12* p) const { PKCS12_free(p); }
};
template <typename T>
using Ptr = std::unique_ptr<T, Deleter>;

std::string BioString(BIO* bio) {
  char* data = nullptr;
  long len = BIO_get_mem_data(bio, &data);
  return std::string(data, static_cast<size_t>(len));
}

Ptr<EVP_PKEY> ReadKey(const std::string& pem) {
  Ptr<BIO> bio(BIO_new_mem_buf(pem.data(), static_cast<int>(pem.size())));
  Ptr<EVP_PKEY> key(PEM_read_bio_PrivateKey(bio.get(), nullptr, nullptr, nullptr));
  if (!key) Die("cannot read key");
  return key;
}

Ptr<X509> ReadCert(const std::string& pem) {
  Ptr<BIO> bio(BIO_new_mem_buf(pem.data(), static_cast<int>(pem.size())));
  Ptr<X509> cert(PEM_read_bio_X509(bio.get(), nullptr, nullptr, nullptr));
  if (!cert) Die("cannot read certificate");
  return cert;
}

TestIdentity Finish(EVP_PKEY* key, X509* cert) {
  TestIdentity id;
  Ptr<BIO> kb(BIO_new(BIO_s_mem()));
  PEM_write_bio_PrivateKey(kb.get(), key, nullptr, nullptr, 0, nullptr, nullptr);
  id.key_pem = BioString(kb.get());
  Ptr<BIO> cb(BIO_new(BIO_s_mem()));
  PEM_write_bio_X509(cb.get(), cert);
  id.cert_pem = BioString(cb.get());
  unsigned char* der = nullptr;
  int len = i2d_X509(cert, &der);
  if (len <= 0) Die("cannot encode certificate");
  id.cert_der.assign(reinterpret_cast<char*>(der), static_cast<size_t>(len));
  OPENSSL_free(der);
  return id;
}

void AddExtension(X509* cert, X509* issuer, int nid, const char* value) {
  X509V3_CTX ctx;
  X509V3_set_ctx_nodb(&ctx);
  X509V3_set_ctx(&ctx, issuer, cert, nullptr, nullptr, 0);
  X509_EXTENSION* ext = X509V3_EXT_conf_nid(nullptr, &ctx, nid, value);
  if (ext == nullptr) Die("cannot make extension");
  X509_add_ext(cert, ext, -1);
  X509_EXTENSION_free(ext);
}

void AddName(X509_NAME* name, const char* field, const std::string& value) {
  if (value.empty()) return;
  X509_NAME_add_entry_by_txt(name, field, MBSTRING_UTF8, reinterpret_cast<const unsigned char*>(value.c_str()), -1,
                             -1, 0);
}

std::string WriteTemp(const std::string& dir, const std::string& name, const std::string& data) {
  std::string path = dir + "/" + name;
  if (!WriteFileAtomic(path, data, 0600).ok()) Die("cannot write " + path);
  return path;
}

}  // namespace

TestIdentity MakeCa(const std::string& common_name) {
  Ptr<EVP_PKEY> key(EVP_RSA_gen(2048));
  if (!key) Die("RSA keygen");
  Ptr<X509> cert(X509_new());
  X509_set_version(cert.get(), 2);
  ASN1_INTEGER_set(X509_get_serialNumber(cert.get()), 1);
  X509_gmtime_adj(X509_getm_notBefore(cert.get()), -86400);
  X509_gmtime_adj(X509_getm_notAfter(cert.get()), 86400L * 3650);
  X509_NAME* name = X509_get_subject_name(cert.get());
  AddName(name, "CN", common_name);
  AddName(name, "O", "Free Agent Tests");
  X509_set_issuer_name(cert.get(), name);
  X509_set_pubkey(cert.get(), key.get());
  AddExtension(cert.get(), cert.get(), NID_basic_constraints, "critical,CA:TRUE");
  AddExtension(cert.get(), cert.get(), NID_key_usage, "critical,keyCertSign,cRLSign,digitalSignature");
  if (X509_sign(cert.get(), key.get(), EVP_sha256()) <= 0) Die("CA sign");
  return Finish(key.get(), cert.get());
}

const TestIdentity& SharedCa() {
  static const TestIdentity* ca = new TestIdentity(MakeCa());
  return *ca;
}

TestIdentity MakeLeaf(const TestIdentity& ca, const LeafOptions& o) {
  Ptr<EVP_PKEY> ca_key = ReadKey(ca.key_pem);
  Ptr<X509> ca_cert = ReadCert(ca.cert_pem);
  Ptr<EVP_PKEY> key(EVP_RSA_gen(2048));
  if (!key) Die("RSA keygen");
  Ptr<X509> cert(X509_new());
  X509_set_version(cert.get(), 2);
  ASN1_INTEGER_set(X509_get_serialNumber(cert.get()), o.serial);
  ASN1_TIME_set(X509_getm_notBefore(cert.get()), absl::ToTimeT(o.not_before));
  ASN1_TIME_set(X509_getm_notAfter(cert.get()), absl::ToTimeT(o.not_after));
  X509_NAME* name = X509_get_subject_name(cert.get());
  AddName(name, "UID", o.team_id.empty() ? "" : "6QW7N8XY2Z");
  AddName(name, "CN", o.common_name);
  AddName(name, "OU", o.team_id);
  AddName(name, "O", o.organization);
  AddName(name, "C", "US");
  X509_set_issuer_name(cert.get(), X509_get_subject_name(ca_cert.get()));
  X509_set_pubkey(cert.get(), key.get());
  AddExtension(cert.get(), ca_cert.get(), NID_basic_constraints, "critical,CA:FALSE");
  AddExtension(cert.get(), ca_cert.get(), NID_key_usage, "critical,digitalSignature");
  if (o.code_signing_eku) AddExtension(cert.get(), ca_cert.get(), NID_ext_key_usage, "critical,codeSigning");
  if (X509_sign(cert.get(), ca_key.get(), EVP_sha256()) <= 0) Die("leaf sign");
  return Finish(key.get(), cert.get());
}

std::string MakeP12(const TestIdentity& leaf, const std::string& password, bool legacy, const TestIdentity* ca) {
  auto dir = MakePrivateTempDir("/tmp", "fa-p12-fixture.");
  if (!dir.ok()) Die("temp dir");
  std::string key = WriteTemp(*dir, "key.pem", leaf.key_pem);
  std::string cert = WriteTemp(*dir, "cert.pem", leaf.cert_pem);
  std::string out = *dir + "/out.p12";
  ProcessOptions p;
  p.argv = {"openssl", "pkcs12", "-export", "-inkey", key, "-in", cert, "-name", "signing identity",
            "-passout", "env:FA_FIXTURE_P12_PASSWORD", "-out", out};
  if (legacy) p.argv.push_back("-legacy");
  if (ca != nullptr) {
    p.argv.push_back("-certfile");
    p.argv.push_back(WriteTemp(*dir, "ca.pem", ca->cert_pem));
  }
  p.env["FA_FIXTURE_P12_PASSWORD"] = password;
  auto r = RunProcess(p);
  if (!r.ok() || !r->Succeeded()) Die("openssl pkcs12 -export failed: " + (r.ok() ? r->stderr_data : ""));
  auto bytes = ReadFile(out);
  (void)RemoveTree(*dir);
  if (!bytes.ok()) Die("cannot read the P12");
  return *bytes;
}

std::string MakeMismatchedP12(const TestIdentity& key_of, const TestIdentity& cert_of, const std::string& password) {
  Ptr<EVP_PKEY> key = ReadKey(key_of.key_pem);
  Ptr<X509> cert = ReadCert(cert_of.cert_pem);
  STACK_OF(X509)* others = sk_X509_new_null();
  sk_X509_push(others, cert.get());
  Ptr<PKCS12> p12(PKCS12_create(password.c_str(), "mismatch", key.get(), nullptr, others, 0, 0, 0, 0, 0));
  sk_X509_free(others);
  if (!p12) Die("PKCS12_create");
  Ptr<BIO> out(BIO_new(BIO_s_mem()));
  i2d_PKCS12_bio(out.get(), p12.get());
  return BioString(out.get());
}

std::string MakeProfilePlist(const ProfileOptions& o) {
  auto date = [](absl::Time t) {
    return plist_new_date(static_cast<int32_t>(absl::ToUnixSeconds(t) - 978307200), 0);
  };
  auto strings = [](const std::vector<std::string>& v) {
    plist_t arr = plist_new_array();
    for (const auto& s : v) plist_array_append_item(arr, plist_new_string(s.c_str()));
    return arr;
  };
  plist_t root = plist_new_dict();
  plist_dict_set_item(root, "AppIDName", plist_new_string(o.app_id_name.c_str()));
  plist_dict_set_item(root, "ApplicationIdentifierPrefix", strings({o.team_id}));
  plist_dict_set_item(root, "CreationDate", date(o.creation_date));
  plist_dict_set_item(root, "Platform", strings({o.platform}));
  plist_dict_set_item(root, "IsXcodeManaged", plist_new_bool(0));
  plist_t certs = plist_new_array();
  for (const auto& der : o.developer_certificates_der) plist_array_append_item(certs, plist_new_data(der.data(), der.size()));
  plist_dict_set_item(root, "DeveloperCertificates", certs);
  plist_t ents = plist_new_dict();
  plist_dict_set_item(ents, "application-identifier", plist_new_string(o.application_identifier.c_str()));
  plist_dict_set_item(ents, "keychain-access-groups", strings(o.keychain_access_groups));
  plist_dict_set_item(ents, "get-task-allow", plist_new_bool(o.get_task_allow ? 1 : 0));
  plist_dict_set_item(ents, "com.apple.developer.team-identifier", plist_new_string(o.team_id.c_str()));
  plist_dict_set_item(root, "Entitlements", ents);
  plist_dict_set_item(root, "ExpirationDate", date(o.expiration_date));
  plist_dict_set_item(root, "Name", plist_new_string(o.name.c_str()));
  if (!o.devices.empty()) plist_dict_set_item(root, "ProvisionedDevices", strings(o.devices));
  if (o.provisions_all_devices) plist_dict_set_item(root, "ProvisionsAllDevices", plist_new_bool(1));
  plist_dict_set_item(root, "TeamIdentifier", strings({o.team_id}));
  plist_dict_set_item(root, "TeamName", plist_new_string(o.team_name.c_str()));
  plist_dict_set_item(root, "TimeToLive", plist_new_uint(300));
  plist_dict_set_item(root, "UUID", plist_new_string(o.uuid.c_str()));
  plist_dict_set_item(root, "Version", plist_new_uint(1));
  char* xml = nullptr;
  uint32_t len = 0;
  plist_to_xml(root, &xml, &len);
  plist_free(root);
  if (xml == nullptr) Die("plist_to_xml");
  std::string out(xml, len);
  plist_to_xml_free(xml);
  return out;
}

std::string SignCms(const std::string& payload, const TestIdentity& signer) {
  Ptr<EVP_PKEY> key = ReadKey(signer.key_pem);
  Ptr<X509> cert = ReadCert(signer.cert_pem);
  Ptr<BIO> in(BIO_new_mem_buf(payload.data(), static_cast<int>(payload.size())));
  Ptr<CMS_ContentInfo> cms(CMS_sign(cert.get(), key.get(), nullptr, in.get(), CMS_BINARY));
  if (!cms) Die("CMS_sign");
  Ptr<BIO> out(BIO_new(BIO_s_mem()));
  if (i2d_CMS_bio(out.get(), cms.get()) != 1) Die("i2d_CMS_bio");
  return BioString(out.get());
}

std::string MakeProfile(const ProfileOptions& options, const TestIdentity& signer) {
  return SignCms(MakeProfilePlist(options), signer);
}

}  // namespace freeagent::signing::testing
