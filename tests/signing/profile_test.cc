#include "signing/profile.h"

#include <plist/plist.h>

#include <cstdlib>

#include "absl/strings/ascii.h"
#include "absl/strings/match.h"
#include "common/sha256.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "tests/signing/fixtures.h"

namespace freeagent::signing {
namespace {

using ::testing::HasSubstr;
using testing::MakeLeaf;
using testing::MakeProfile;
using testing::MakeProfilePlist;
using testing::ProfileOptions;
using testing::SignCms;
using testing::TestIdentity;

class ProfileTest : public ::testing::Test {
 protected:
  void SetUp() override {
    ca_ = &testing::SharedCa();
    static const TestIdentity* leaf = new TestIdentity(MakeLeaf(testing::SharedCa()));
    leaf_ = leaf;
  }
  const TestIdentity* ca_ = nullptr;
  const TestIdentity* leaf_ = nullptr;
};

TEST_F(ProfileTest, ReadsEveryField) {
  ProfileOptions o;
  o.developer_certificates_der = {leaf_->cert_der};
  o.creation_date = absl::FromUnixSeconds(1700000000);
  o.expiration_date = absl::FromUnixSeconds(1900000000);
  auto p = ParseProfile(MakeProfile(o, *ca_), "app.mobileprovision");
  ASSERT_TRUE(p.ok()) << p.status();
  EXPECT_EQ(p->source, "app.mobileprovision");
  EXPECT_EQ(p->uuid, o.uuid);
  EXPECT_EQ(p->name, "Example App Store");
  EXPECT_EQ(p->team_id, "ABCDE12345");
  EXPECT_EQ(p->team_name, "Example Corp");
  EXPECT_EQ(p->app_id_name, "Example");
  EXPECT_EQ(p->application_identifier, "ABCDE12345.com.example.app");
  EXPECT_THAT(p->platforms, ::testing::ElementsAre("iOS"));
  EXPECT_EQ(p->creation_date, absl::FromUnixSeconds(1700000000));
  EXPECT_EQ(p->expiration_date, absl::FromUnixSeconds(1900000000));
  ASSERT_EQ(p->developer_certificates.size(), 1u);
  EXPECT_EQ(p->developer_certificates[0].der, leaf_->cert_der);
  EXPECT_EQ(p->developer_certificates[0].sha256, absl::AsciiStrToUpper(Sha256Hex(leaf_->cert_der)));
  EXPECT_EQ(p->developer_certificates[0].sha1.size(), 40u);
  EXPECT_TRUE(p->provisioned_devices.empty());
  EXPECT_FALSE(p->provisions_all_devices);
  EXPECT_EQ(p->entitlements.at("application-identifier"), "ABCDE12345.com.example.app");
  EXPECT_EQ(p->entitlements.at("get-task-allow"), "false");
  EXPECT_EQ(p->entitlements.at("keychain-access-groups"), "[ABCDE12345.*]");
  EXPECT_EQ(p->kind, ProfileKind::kAppStore);
}

TEST_F(ProfileTest, DerivesKindFromDevicesAndEntitlements) {
  ProfileOptions dev;
  dev.devices = {"00008030-001A2B3C4D5E6F70", "00008101-000A1B2C3D4E5F60"};
  dev.get_task_allow = true;
  auto p = ParseProfile(MakeProfile(dev, *ca_), "dev");
  ASSERT_TRUE(p.ok()) << p.status();
  EXPECT_EQ(p->kind, ProfileKind::kDevelopment);
  EXPECT_EQ(p->provisioned_devices.size(), 2u);
  EXPECT_EQ(ProfileKindName(p->kind), "development");

  ProfileOptions adhoc = dev;
  adhoc.get_task_allow = false;
  p = ParseProfile(MakeProfile(adhoc, *ca_), "adhoc");
  ASSERT_TRUE(p.ok());
  EXPECT_EQ(p->kind, ProfileKind::kAdHoc);

  ProfileOptions enterprise;
  enterprise.provisions_all_devices = true;
  p = ParseProfile(MakeProfile(enterprise, *ca_), "enterprise");
  ASSERT_TRUE(p.ok());
  EXPECT_EQ(p->kind, ProfileKind::kEnterprise);
  EXPECT_TRUE(p->provisions_all_devices);
}

TEST_F(ProfileTest, TamperedPayloadFailsSignatureCheck) {
  std::string bytes = MakeProfile(ProfileOptions{}, *ca_);
  size_t at = bytes.find("Example App Store");
  ASSERT_NE(at, std::string::npos);
  bytes[at] = 'X';
  auto p = ParseProfile(bytes, "tampered.mobileprovision");
  ASSERT_FALSE(p.ok());
  EXPECT_EQ(p.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(p.status().message(), HasSubstr("tampered.mobileprovision"));
  EXPECT_THAT(p.status().message(), HasSubstr("signature does not verify"));
}

TEST_F(ProfileTest, RejectsWhatIsNotAProfile) {
  struct Case {
    std::string bytes;
    std::string reason;
  };
  std::string valid = MakeProfile(ProfileOptions{}, *ca_);
  std::vector<Case> cases = {
      {"", "empty"},
      {"hello, this is not DER", "not a CMS"},
      {leaf_->cert_der, "not a CMS"},
      {valid.substr(0, valid.size() / 2), "not a CMS"},
      {SignCms("<plist>not closed", *ca_), "not a property list"},
      {SignCms("<?xml version=\"1.0\"?><plist version=\"1.0\"><array/></plist>", *ca_), "not a plist dictionary"},
  };
  for (const auto& c : cases) {
    auto p = ParseProfile(c.bytes, "bad.mobileprovision");
    ASSERT_FALSE(p.ok()) << c.reason;
    EXPECT_THAT(p.status().message(), HasSubstr("provisioning profile bad.mobileprovision: "));
    EXPECT_THAT(p.status().message(), HasSubstr(c.reason));
  }
}

TEST_F(ProfileTest, NamesTheMissingField) {
  ProfileOptions o;
  std::string xml = MakeProfilePlist(o);
  auto without = [&](const std::string& key) {
    plist_t root = nullptr;
    plist_from_xml(xml.data(), static_cast<uint32_t>(xml.size()), &root);
    plist_dict_remove_item(root, key.c_str());
    char* out = nullptr;
    uint32_t len = 0;
    plist_to_xml(root, &out, &len);
    std::string s(out, len);
    plist_to_xml_free(out);
    plist_free(root);
    return s;
  };
  for (const std::string key : {"UUID", "Name", "TeamIdentifier", "ExpirationDate", "Entitlements"}) {
    auto p = ParseProfile(SignCms(without(key), *ca_), "p");
    ASSERT_FALSE(p.ok()) << key;
    EXPECT_THAT(p.status().message(), HasSubstr(key));
  }
  o.application_identifier = "";
  auto p = ParseProfile(MakeProfile(o, *ca_), "p");
  ASSERT_FALSE(p.ok());
  EXPECT_THAT(p.status().message(), HasSubstr("application-identifier is empty"));
}

TEST_F(ProfileTest, ParsesBinaryPlistPayload) {
  std::string xml = MakeProfilePlist(ProfileOptions{});
  plist_t root = nullptr;
  plist_from_xml(xml.data(), static_cast<uint32_t>(xml.size()), &root);
  char* bin = nullptr;
  uint32_t len = 0;
  plist_to_bin(root, &bin, &len);
  std::string bytes(bin, len);
  plist_to_bin_free(bin);
  plist_free(root);
  ASSERT_TRUE(absl::StartsWith(bytes, "bplist00"));
  auto p = ParseProfilePlist(bytes, "bin");
  ASSERT_TRUE(p.ok()) << p.status();
  EXPECT_EQ(p->uuid, ProfileOptions{}.uuid);
}

TEST(ApplicationIdentifier, MatchesExactAndWildcards) {
  EXPECT_TRUE(ApplicationIdentifierMatches("ABCDE12345.com.example.app", "com.example.app"));
  EXPECT_FALSE(ApplicationIdentifierMatches("ABCDE12345.com.example.app", "com.example.app2"));
  EXPECT_FALSE(ApplicationIdentifierMatches("ABCDE12345.com.example.app", "com.example"));
  EXPECT_TRUE(ApplicationIdentifierMatches("ABCDE12345.*", "org.other.thing"));
  EXPECT_TRUE(ApplicationIdentifierMatches("ABCDE12345.com.example.*", "com.example.app"));
  EXPECT_TRUE(ApplicationIdentifierMatches("ABCDE12345.com.example.*", "com.example.app.widget"));
  EXPECT_FALSE(ApplicationIdentifierMatches("ABCDE12345.com.example.*", "com.example."));
  EXPECT_FALSE(ApplicationIdentifierMatches("ABCDE12345.com.example.*", "com.examples.app"));
  EXPECT_FALSE(ApplicationIdentifierMatches("ABCDE12345.com.example.*", "com.example"));
  EXPECT_FALSE(ApplicationIdentifierMatches("noprefix", "noprefix"));
  EXPECT_FALSE(ApplicationIdentifierMatches("ABCDE12345.*", ""));
}

}  // namespace
}  // namespace freeagent::signing
