#include "signing/validate.h"

#include "absl/time/clock.h"
#include "common/fs.h"
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
using testing::MakeProfile;
using testing::ProfileOptions;
using testing::TestIdentity;

const absl::Time kNow = absl::FromUnixSeconds(1800000000);

class ValidateTest : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    ca_ = &testing::SharedCa();
    LeafOptions o;
    o.not_before = kNow - absl::Hours(24 * 30);
    o.not_after = kNow + absl::Hours(24 * 100) + absl::Minutes(5);
    leaf_ = new TestIdentity(MakeLeaf(*ca_, o));
  }
  static void TearDownTestSuite() { delete leaf_; }

  static ProfileOptions GoodProfile() {
    ProfileOptions o;
    o.developer_certificates_der = {leaf_->cert_der};
    o.creation_date = kNow - absl::Hours(24);
    o.expiration_date = kNow + absl::Hours(24 * 50) + absl::Minutes(5);
    o.devices = {"00008030-001A2B3C4D5E6F70"};
    o.get_task_allow = true;
    return o;
  }

  static absl::StatusOr<SigningBundle> Load(const TestIdentity& leaf, const std::vector<ProfileOptions>& profiles,
                                            const std::string& bundle_id = "com.example.app") {
    std::vector<NamedBytes> files;
    for (size_t i = 0; i < profiles.size(); ++i) {
      files.push_back({"profile" + std::to_string(i) + ".mobileprovision", MakeProfile(profiles[i], *ca_)});
    }
    return LoadBundle({"dist.p12", MakeP12(leaf, "pw", /*legacy=*/false)}, "pw", files, bundle_id);
  }

  static std::string Problems(const TestIdentity& leaf, const std::vector<ProfileOptions>& profiles,
                              const std::string& bundle_id = "com.example.app") {
    auto bundle = Load(leaf, profiles, bundle_id);
    EXPECT_TRUE(bundle.ok()) << bundle.status();
    if (!bundle.ok()) return "";
    absl::Status s = Validate(*bundle, kNow);
    if (!s.ok()) {
      EXPECT_EQ(s.code(), absl::StatusCode::kFailedPrecondition);
    }
    return std::string(s.message());
  }

  static const TestIdentity* ca_;
  static const TestIdentity* leaf_;
};
const TestIdentity* ValidateTest::ca_ = nullptr;
const TestIdentity* ValidateTest::leaf_ = nullptr;

TEST_F(ValidateTest, MatchingMaterialPassesAndIsSummarized) {
  auto bundle = Load(*leaf_, {GoodProfile()});
  ASSERT_TRUE(bundle.ok()) << bundle.status();
  EXPECT_TRUE(Validate(*bundle, kNow).ok()) << Validate(*bundle, kNow);
  std::string summary = Summarize(*bundle, kNow);
  EXPECT_THAT(summary, HasSubstr("identity: Apple Distribution: Example Corp (ABCDE12345)"));
  EXPECT_THAT(summary, HasSubstr("team: ABCDE12345 (Example Corp)"));
  EXPECT_THAT(summary, HasSubstr("(in 100 days)"));
  EXPECT_THAT(summary, HasSubstr("kind: development"));
  EXPECT_THAT(summary, HasSubstr("(in 50 days)"));
  EXPECT_THAT(summary, HasSubstr("devices: 1"));
  EXPECT_THAT(summary, HasSubstr("get-task-allow = true"));
}

TEST_F(ValidateTest, WrongPasswordStopsLoading) {
  auto bundle = LoadBundle({"dist.p12", MakeP12(*leaf_, "pw", true)}, "nope", {}, "");
  ASSERT_FALSE(bundle.ok());
  EXPECT_EQ(bundle.status().code(), absl::StatusCode::kPermissionDenied);
}

TEST_F(ValidateTest, ExpiredAndNotYetValidCertificates) {
  LeafOptions expired;
  expired.not_before = kNow - absl::Hours(24 * 400);
  expired.not_after = kNow - absl::Hours(24);
  TestIdentity old = MakeLeaf(*ca_, expired);
  ProfileOptions p = GoodProfile();
  p.developer_certificates_der = {old.cert_der};
  std::string msg = Problems(old, {p});
  EXPECT_THAT(msg, HasSubstr("P12 dist.p12: certificate \"Apple Distribution: Example Corp (ABCDE12345)\" expired on"));
  EXPECT_THAT(msg, Not(HasSubstr("not valid yet")));

  LeafOptions future;
  future.not_before = kNow + absl::Hours(24);
  future.not_after = kNow + absl::Hours(24 * 400);
  TestIdentity early = MakeLeaf(*ca_, future);
  p.developer_certificates_der = {early.cert_der};
  msg = Problems(early, {p});
  EXPECT_THAT(msg, HasSubstr("is not valid yet (notBefore"));
  EXPECT_THAT(msg, Not(HasSubstr("expired")));
}

TEST_F(ValidateTest, NotASigningIdentity) {
  LeafOptions web;
  web.common_name = "www.example.com";
  web.code_signing_eku = false;
  web.not_before = kNow - absl::Hours(24);
  web.not_after = kNow + absl::Hours(24);
  TestIdentity server = MakeLeaf(*ca_, web);
  ProfileOptions p = GoodProfile();
  p.developer_certificates_der = {server.cert_der};
  EXPECT_THAT(Problems(server, {p}), HasSubstr("certificate \"www.example.com\" is not a code-signing identity"));
}

TEST_F(ValidateTest, ExpiredProfile) {
  ProfileOptions p = GoodProfile();
  p.expiration_date = kNow - absl::Hours(1);
  std::string msg = Problems(*leaf_, {p});
  EXPECT_THAT(msg, HasSubstr("provisioning profile profile0.mobileprovision (\"Example App Store\", UUID "));
  EXPECT_THAT(msg, HasSubstr("expired on"));
  EXPECT_THAT(msg, HasSubstr("(ExpirationDate)"));
  EXPECT_THAT(msg, Not(HasSubstr("P12")));
}

TEST_F(ValidateTest, ProfileWithoutTheCertificate) {
  TestIdentity other = MakeLeaf(*ca_);
  ProfileOptions p = GoodProfile();
  p.developer_certificates_der = {other.cert_der};
  std::string msg = Problems(*leaf_, {p});
  EXPECT_THAT(msg, HasSubstr("profile0.mobileprovision"));
  EXPECT_THAT(msg, HasSubstr("does not contain the P12's certificate"));
  EXPECT_THAT(msg, Not(HasSubstr("TeamIdentifier")));
}

TEST_F(ValidateTest, TeamsDisagree) {
  ProfileOptions p = GoodProfile();
  p.team_id = "ZZZZZ99999";
  p.application_identifier = "ZZZZZ99999.com.example.app";
  std::string msg = Problems(*leaf_, {p});
  EXPECT_THAT(msg, HasSubstr("TeamIdentifier ZZZZZ99999 differs from the P12 dist.p12 certificate's team (subject OU) "
                             "ABCDE12345"));
  EXPECT_THAT(msg, Not(HasSubstr("does not contain")));
}

TEST_F(ValidateTest, BundleIdMustMatchSomeProfile) {
  std::string msg = Problems(*leaf_, {GoodProfile()}, "com.other.app");
  EXPECT_THAT(msg, HasSubstr("bundle id com.other.app is not matched by any profile's application-identifier "
                             "(profile0.mobileprovision: ABCDE12345.com.example.app)"));

  ProfileOptions wildcard = GoodProfile();
  wildcard.application_identifier = "ABCDE12345.com.other.*";
  EXPECT_EQ(Problems(*leaf_, {GoodProfile(), wildcard}, "com.other.app"), "");
  EXPECT_EQ(Problems(*leaf_, {GoodProfile()}, ""), "");
}

TEST_F(ValidateTest, ReportsEveryProblemOnItsOwnLine) {
  ProfileOptions p = GoodProfile();
  p.expiration_date = kNow - absl::Hours(1);
  p.team_id = "ZZZZZ99999";
  p.developer_certificates_der = {};
  std::string msg = Problems(*leaf_, {p});
  EXPECT_EQ(std::count(msg.begin(), msg.end(), '\n'), 2) << msg;
  EXPECT_THAT(msg, HasSubstr("none listed"));
}

}  // namespace
}  // namespace freeagent::signing

namespace freeagent::signing {
namespace {

TEST(CheckFiles, ReadsFilesSummarizesAndValidates) {
  auto dir = MakePrivateTempDir("/tmp", "fa-check-test.");
  ASSERT_TRUE(dir.ok());
  const auto& ca = testing::SharedCa();
  testing::TestIdentity leaf = testing::MakeLeaf(ca);
  testing::ProfileOptions o;
  o.developer_certificates_der = {leaf.cert_der};
  ASSERT_TRUE(WriteFileAtomic(*dir + "/id.p12", testing::MakeP12(leaf, "pw", true)).ok());
  ASSERT_TRUE(WriteFileAtomic(*dir + "/a.mobileprovision", testing::MakeProfile(o, ca)).ok());

  auto report = CheckFiles(*dir + "/id.p12", "pw", {*dir + "/a.mobileprovision"}, "com.example.app", absl::Now());
  ASSERT_TRUE(report.ok()) << report.status();
  EXPECT_TRUE(report->validation.ok()) << report->validation;
  EXPECT_THAT(report->summary, ::testing::HasSubstr("kind: app-store"));

  report = CheckFiles(*dir + "/id.p12", "pw", {*dir + "/a.mobileprovision"}, "com.other", absl::Now());
  ASSERT_TRUE(report.ok());
  EXPECT_THAT(report->validation.message(), ::testing::HasSubstr("bundle id com.other"));

  report = CheckFiles(*dir + "/id.p12", "pw", {*dir + "/missing.mobileprovision"}, "", absl::Now());
  ASSERT_FALSE(report.ok());
  EXPECT_EQ(report.status().code(), absl::StatusCode::kNotFound);
  EXPECT_THAT(report.status().message(), ::testing::HasSubstr("missing.mobileprovision"));
  ASSERT_TRUE(RemoveTree(*dir).ok());
}

}  // namespace
}  // namespace freeagent::signing
