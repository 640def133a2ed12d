// End to end: `freeagent signing check` and `freeagent submit --p12 ...` as real processes against a
// real controller. Bad material is refused by the CLI before anything is uploaded or submitted.
#include "absl/strings/str_cat.h"
#include "common/fs.h"
#include "common/process.h"
#include "gmock/gmock.h"
#include "tests/e2e/e2e_fixture.h"
#include "tests/signing/fixtures.h"

namespace freeagent::testing {
namespace {

using namespace std::chrono_literals;
using ::testing::HasSubstr;
using ::testing::Not;

constexpr char kPassword[] = "e2e p12 password";

class SigningE2ETest : public E2ETest {
 protected:
  void SetUp() override {
    E2ETest::SetUp();
    ASSERT_FALSE(HasFatalFailure());
    StartController();
    ASSERT_FALSE(HasFatalFailure());
    FA_ASSERT_OK_AND_ASSIGN(dir_, cluster().MakeDir("signing"));
    const auto& ca = signing::testing::SharedCa();
    signing::testing::TestIdentity leaf = signing::testing::MakeLeaf(ca);
    FA_ASSERT_OK(WriteFileAtomic(dir_ + "/dist.p12", signing::testing::MakeP12(leaf, kPassword, true), 0600));
    signing::testing::ProfileOptions good;
    good.developer_certificates_der = {leaf.cert_der};
    FA_ASSERT_OK(WriteFileAtomic(dir_ + "/good.mobileprovision", signing::testing::MakeProfile(good, ca)));
    signing::testing::ProfileOptions other = good;
    other.developer_certificates_der = {signing::testing::MakeLeaf(ca).cert_der};
    FA_ASSERT_OK(WriteFileAtomic(dir_ + "/other.mobileprovision", signing::testing::MakeProfile(other, ca)));
  }

  ProcessResult RunCli(std::vector<std::string> args) {
    ProcessOptions options;
    options.argv = {CliBinary(), "--controller", cluster().address()};
    options.argv.insert(options.argv.end(), args.begin(), args.end());
    options.env["FA_P12_PASSWORD"] = kPassword;
    options.env["FREEAGENT_INSECURE"] = "1";  // the test controller serves plaintext on loopback
    options.deadline = Deadline::After(60s);
    absl::StatusOr<ProcessResult> result = RunProcess(options);
    EXPECT_TRUE(result.ok()) << result.status();
    return result.ok() ? *result : ProcessResult{};
  }

  std::string dir_;
};

TEST_F(SigningE2ETest, SigningCheckPrintsSummaryOrProblems) {
  ProcessResult ok = RunCli({"signing", "check", "--p12", dir_ + "/dist.p12", "--password-env", "FA_P12_PASSWORD",
                             "--profile", dir_ + "/good.mobileprovision", "--bundle-id", "com.example.app"});
  EXPECT_EQ(ok.exit_code, 0) << ok.stdout_data << ok.stderr_data;
  EXPECT_THAT(ok.stdout_data, HasSubstr("identity: Apple Distribution: Example Corp (ABCDE12345)"));
  EXPECT_THAT(ok.stdout_data, HasSubstr("kind: app-store"));
  EXPECT_THAT(ok.stdout_data, HasSubstr("signing check passed"));

  ProcessResult bad = RunCli({"signing", "check", "--p12", dir_ + "/dist.p12", "--password-env", "FA_P12_PASSWORD",
                              "--profile", dir_ + "/other.mobileprovision"});
  EXPECT_EQ(bad.exit_code, 1);
  EXPECT_THAT(bad.stderr_data, HasSubstr("other.mobileprovision"));
  EXPECT_THAT(bad.stderr_data, HasSubstr("does not contain the P12's certificate"));

  ProcessResult unset = RunCli({"signing", "check", "--p12", dir_ + "/dist.p12", "--password-env", "NOT_SET_ANYWHERE"});
  EXPECT_EQ(unset.exit_code, 2);
  EXPECT_THAT(unset.stderr_data, HasSubstr("environment variable NOT_SET_ANYWHERE is not set"));
}

TEST_F(SigningE2ETest, SubmitRefusesBadMaterialBeforeUploadingAndUploadsGoodMaterial) {
  ProcessResult bad = RunCli({"submit", SourceDir() + "/examples/hello", "--p12", dir_ + "/dist.p12",
                              "--p12-password-env", "FA_P12_PASSWORD", "--profile", dir_ + "/other.mobileprovision"});
  EXPECT_EQ(bad.exit_code, 2);
  EXPECT_THAT(bad.stderr_data, HasSubstr("freeagent: FAILED_PRECONDITION: signing material: "));
  EXPECT_THAT(bad.stderr_data, HasSubstr("does not contain the P12's certificate"));
  FA_ASSERT_OK_AND_ASSIGN(auto builds, client().List());
  EXPECT_TRUE(builds.empty());

  // Good material is uploaded and named in the spec; no worker runs it here (no macOS worker).
  ProcessResult good = RunCli({"submit", SourceDir() + "/examples/hello", "--p12", dir_ + "/dist.p12",
                               "--p12-password-env", "FA_P12_PASSWORD", "--profile", dir_ + "/good.mobileprovision",
                               "--bundle-id", "com.example.app"});
  EXPECT_EQ(good.exit_code, 0) << good.stderr_data;
  FA_ASSERT_OK_AND_ASSIGN(builds, client().List());
  ASSERT_EQ(builds.size(), 1u);
  EXPECT_THAT(good.stdout_data, HasSubstr(builds[0].id()));
  EXPECT_THAT(builds[0].ShortDebugString(), Not(HasSubstr(kPassword))) << "the password is not read back";
}

}  // namespace
}  // namespace freeagent::testing
