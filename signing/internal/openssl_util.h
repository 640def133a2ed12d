// OpenSSL helpers shared by the P12 and profile parsers: owning handles, the error queue as text,
// fingerprints and ASN.1 time conversion. Private to freeagent::signing.
#pragma once

#include <openssl/asn1.h>
#include <openssl/bio.h>
#include <openssl/cms.h>
#include <openssl/evp.h>
#include <openssl/pkcs12.h>
#include <openssl/x509.h>

#include <memory>
#include <string>
#include <string_view>

#include "absl/status/status.h"
#include "absl/time/time.h"

namespace freeagent::signing::internal {

struct BioFree { void operator()(BIO* p) const { BIO_free(p); } };
struct X509Free { void operator()(X509* p) const { X509_free(p); } };
struct X509StackFree { void operator()(STACK_OF(X509)* p) const { sk_X509_pop_free(p, X509_free); } };
struct EvpPkeyFree { void operator()(EVP_PKEY* p) const { EVP_PKEY_free(p); } };
struct Pkcs12Free { void operator()(PKCS12* p) const { PKCS12_free(p); } };
struct CmsFree { void operator()(CMS_ContentInfo* p) const { CMS_ContentInfo_free(p); } };

using BioPtr = std::unique_ptr<BIO, BioFree>;
using X509Ptr = std::unique_ptr<X509, X509Free>;
using X509StackPtr = std::unique_ptr<STACK_OF(X509), X509StackFree>;
using EvpPkeyPtr = std::unique_ptr<EVP_PKEY, EvpPkeyFree>;
using Pkcs12Ptr = std::unique_ptr<PKCS12, Pkcs12Free>;
using CmsPtr = std::unique_ptr<CMS_ContentInfo, CmsFree>;

// A read-only memory BIO over `bytes` (which must outlive it).
BioPtr MemoryBio(std::string_view bytes);

// Drains the thread's OpenSSL error queue into one line ("" if empty).
std::string DrainErrors();

// Uppercase hex digest of `bytes` with `md` (EVP_sha1(), EVP_sha256()).
std::string DigestHex(const EVP_MD* md, std::string_view bytes);

// The certificate's DER encoding ("" if it cannot be encoded).
std::string CertificateDer(X509* cert);

// ASN1_TIME (UTCTime or GeneralizedTime) as absl::Time; InfinitePast on a malformed value.
absl::Time Asn1TimeToAbsl(const ASN1_TIME* t);

}  // namespace freeagent::signing::internal
