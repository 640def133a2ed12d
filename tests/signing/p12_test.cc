#include "signing/p12.h"

#include <cstdio>
#include <cstdlib>

#include "absl/strings/ascii.h"
#include "common/sha256.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "tests/signing/fixtures.h"

namespace freeagent::signing {
namespace {

using ::testing::HasSubstr;
using ::testing::Not;
using testing::LeafOptions;
using testing::MakeLeaf;
using testing::MakeP12;
using testing::TestIdentity;

// DER of the algorithm OIDs, to prove which encryption a fixture really uses.
const std::string kRc2_40Oid("\x06\x0a\x2a\x86\x48\x86\xf7\x0d\x01\x0c\x01\x06", 12);  // pbeWithSHA1And40BitRC2-CBC
const std::string kAes256CbcOid("\x06\x09\x60\x86\x48\x01\x65\x03\x04\x01\x2a", 11);

class P12Test : public ::testing::Test {
 protected:
  void SetUp() override {
    ca_ = &testing::SharedCa();
    static const TestIdentity* leaf = [] {
      LeafOptions o;
      o.not_before = absl::FromUnixSeconds(1700000000);
      o.not_after = absl::FromUnixSeconds(2000000000);
      return new TestIdentity(MakeLeaf(testing::SharedCa(), o));
    }();
    leaf_ = leaf;
  }
  const TestIdentity* ca_ = nullptr;
  const TestIdentity* leaf_ = nullptr;
};

void ExpectLeaf(const P12Identity& id, const TestIdentity& leaf) {
  const CertificateInfo& c = id.certificate;
  EXPECT_EQ(c.common_name, "Apple Distribution: Example Corp (ABCDE12345)");
  EXPECT_EQ(c.team_id, "ABCDE12345");
  EXPECT_EQ(c.organization, "Example Corp");
  EXPECT_EQ(c.serial_hex, "1234");
  EXPECT_EQ(c.not_before, absl::FromUnixSeconds(1700000000));
  EXPECT_EQ(c.not_after, absl::FromUnixSeconds(2000000000));
  EXPECT_TRUE(c.code_signing_eku);
  EXPECT_EQ(c.der, leaf.cert_der);
  EXPECT_EQ(c.sha256, absl::AsciiStrToUpper(Sha256Hex(leaf.cert_der)));
  EXPECT_TRUE(IsCodeSigningIdentity(c));
}

TEST_F(P12Test, OpensLegacyKeychainExport) {
  std::string bytes = MakeP12(*leaf_, "s3cret pass", /*legacy=*/true, ca_);
  ASSERT_NE(bytes.find(kRc2_40Oid), std::string::npos) << "fixture is not RC2-40";
  auto id = ParseP12(bytes, "s3cret pass", "dist.p12");
  ASSERT_TRUE(id.ok()) << id.status();
  EXPECT_TRUE(LegacyProviderAvailable());
  EXPECT_EQ(id->source, "dist.p12");
  ExpectLeaf(*id, *leaf_);
}

TEST_F(P12Test, OpensModernAesFile) {
  std::string bytes = MakeP12(*leaf_, "s3cret pass", /*legacy=*/false, ca_);
  ASSERT_NE(bytes.find(kAes256CbcOid), std::string::npos) << "fixture is not AES-256";
  auto id = ParseP12(bytes, "s3cret pass", "dist.p12");
  ASSERT_TRUE(id.ok()) << id.status();
  ExpectLeaf(*id, *leaf_);
}

TEST_F(P12Test, OpensFileWithEmptyPassword) {
  auto id = ParseP12(MakeP12(*leaf_, "", /*legacy=*/true), "", "nopass.p12");
  ASSERT_TRUE(id.ok()) << id.status();
  ExpectLeaf(*id, *leaf_);
}

TEST_F(P12Test, WrongPasswordIsPermissionDeniedWithoutThePassword) {
  for (bool legacy : {true, false}) {
    auto id = ParseP12(MakeP12(*leaf_, "right-one", legacy), "wrong-one", "dist.p12");
    ASSERT_FALSE(id.ok());
    EXPECT_EQ(id.status().code(), absl::StatusCode::kPermissionDenied);
    EXPECT_THAT(id.status().message(), HasSubstr("P12 dist.p12: wrong password"));
    EXPECT_THAT(id.status().message(), Not(HasSubstr("wrong-one")));
    EXPECT_THAT(id.status().message(), Not(HasSubstr("right-one")));
  }
}

TEST_F(P12Test, RejectsGarbageTruncatedAndEmpty) {
  std::string valid = MakeP12(*leaf_, "pw", false);
  for (const std::string& bytes : {std::string(), std::string("not a p12 at all"), valid.substr(0, valid.size() / 3),
                                   leaf_->cert_der}) {
    auto id = ParseP12(bytes, "pw", "bad.p12");
    ASSERT_FALSE(id.ok());
    EXPECT_EQ(id.status().code(), absl::StatusCode::kInvalidArgument) << id.status();
    EXPECT_THAT(id.status().message(), HasSubstr("P12 bad.p12: "));
  }
}

TEST_F(P12Test, KeyThatMatchesNoCertificateIsRefused) {
  TestIdentity other = MakeLeaf(*ca_);
  auto id = ParseP12(testing::MakeMismatchedP12(other, *leaf_, "pw"), "pw", "mixed.p12");
  ASSERT_FALSE(id.ok());
  EXPECT_EQ(id.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(id.status().message(), HasSubstr("P12 mixed.p12: the private key does not match any certificate"));
}

// OpenSSL finds its provider modules through OPENSSL_MODULES; pointing it nowhere in a fresh process
// (the death-test child) is a host without the legacy provider.
TEST_F(P12Test, MissingLegacyProviderIsNamed) {
  GTEST_FLAG_SET(death_test_style, "threadsafe");
  const std::string bytes = MakeP12(*leaf_, "pw", /*legacy=*/true);
  EXPECT_EXIT(
      {
        setenv("OPENSSL_MODULES", "/nonexistent-openssl-modules", 1);
        auto id = ParseP12(bytes, "pw", "keychain-export.p12");
        std::fprintf(stderr, "%s\n", std::string(id.status().message()).c_str());
        std::exit(!id.ok() && id.status().code() == absl::StatusCode::kFailedPrecondition && !LegacyProviderAvailable()
                      ? 0
                      : 1);
      },
      ::testing::ExitedWithCode(0), "P12 keychain-export.p12: .*legacy provider .* could not be loaded");
}

TEST(CodeSigningIdentity, AppleNameOrCodeSigningUsage) {
  CertificateInfo c;
  c.common_name = "Apple Development: Jane Doe (TEAMID1234)";
  EXPECT_TRUE(IsCodeSigningIdentity(c));
  c.common_name = "iPhone Distribution: Example Corp (ABCDE12345)";
  EXPECT_TRUE(IsCodeSigningIdentity(c));
  c.common_name = "www.example.com";
  EXPECT_FALSE(IsCodeSigningIdentity(c));
  c.code_signing_eku = true;
  EXPECT_TRUE(IsCodeSigningIdentity(c));
}

}  // namespace
}  // namespace freeagent::signing
