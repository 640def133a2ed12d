// KeychainInstaller against a fake `security` (tests/signing/testdata/fake_security.pl) placed first on
// PATH of a LocalGuest: the command stream is golden-tested, secrets are proven absent from every
// command line, and cleanup is checked after success and after failures. The real macOS tool is not run
// here; the fake answers in the output formats of the real tool (no output was captured on a Mac
// for these tests).
#include "signing/keychain_installer.h"

#include <sys/stat.h>

#include <cstdlib>
#include <mutex>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_replace.h"
#include "absl/strings/str_split.h"
#include "common/fs.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "tests/signing/fixtures.h"
#include "vm/local_guest.h"

namespace freeagent::signing {
namespace {

using ::testing::HasSubstr;
using ::testing::Not;

// Forwards to a LocalGuest with the fake's environment, and records every command line it is given.
class RecordingGuest : public vm::Guest {
 public:
  RecordingGuest(std::map<std::string, std::string> env) : env_(std::move(env)) {}

  absl::StatusOr<vm::ExecResult> Exec(const vm::ExecRequest& request) override {
    {
      std::lock_guard<std::mutex> lock(mu_);
      commands_.push_back(request.command);
      for (const auto& [k, v] : request.env) commands_.push_back(absl::StrCat("env ", k, "=", v));
    }
    vm::ExecRequest copy = request;
    for (const auto& [k, v] : env_) copy.env[k] = v;
    return inner_.Exec(copy);
  }
  absl::StatusOr<vm::TransferResult> Upload(const std::string& local, const std::string& remote, int mode,
                                            const CancellationToken& cancel) override {
    {
      std::lock_guard<std::mutex> lock(mu_);
      uploads_.push_back(remote);
    }
    return inner_.Upload(local, remote, mode, cancel);
  }
  absl::StatusOr<vm::TransferResult> Download(const std::string& remote, const std::string& local, uint64_t max,
                                              const CancellationToken& cancel) override {
    return inner_.Download(remote, local, max, cancel);
  }
  absl::Status UploadArchive(const std::string& a, const std::string& d, const CancellationToken& c) override {
    return inner_.UploadArchive(a, d, c);
  }
  absl::Status UploadDirectory(const std::string& l, const std::string& r, const CancellationToken& c) override {
    return inner_.UploadDirectory(l, r, c);
  }
  std::string Describe() const override { return "recording local"; }

  std::vector<std::string> commands() {
    std::lock_guard<std::mutex> lock(mu_);
    return commands_;
  }
  std::vector<std::string> uploads() {
    std::lock_guard<std::mutex> lock(mu_);
    return uploads_;
  }

 private:
  vm::LocalGuest inner_;
  std::map<std::string, std::string> env_;
  std::mutex mu_;
  std::vector<std::string> commands_;
  std::vector<std::string> uploads_;
};

constexpr char kP12Password[] = "pa ss\"w\\o$rd";
constexpr char kLogin[] = "/Users/test/Library/Keychains/login.keychain-db";

bool Exists(const std::string& path) {
  struct stat st;
  return lstat(path.c_str(), &st) == 0;
}

class KeychainInstallerTest : public ::testing::Test {
 protected:
  void SetUp() override {
    auto root = MakePrivateTempDir("/tmp", "fa-keychain-test.");
    ASSERT_TRUE(root.ok());
    root_ = *root;
    for (const char* d : {"/home", "/tmp", "/bin", "/state", "/host"}) ASSERT_TRUE(MakeDirs(root_ + d).ok());
    auto fake = ReadFile(std::string(FA_FAKE_SECURITY));
    ASSERT_TRUE(fake.ok());
    ASSERT_TRUE(WriteFileAtomic(root_ + "/bin/security", *fake, 0755).ok());
    ASSERT_TRUE(WriteFileAtomic(root_ + "/state/search", absl::StrCat(kLogin, "\n")).ok());

    const auto& ca = testing::SharedCa();
    testing::TestIdentity leaf = testing::MakeLeaf(ca);
    ASSERT_TRUE(WriteFileAtomic(root_ + "/host/id.p12", testing::MakeP12(leaf, kP12Password, true), 0600).ok());
    auto identity = ParseP12(*ReadFile(root_ + "/host/id.p12"), kP12Password, "id.p12");
    ASSERT_TRUE(identity.ok()) << identity.status();
    request_.p12_host_path = root_ + "/host/id.p12";
    request_.p12_password = kP12Password;
    request_.identity = *identity;
    for (const char* uuid : {"AAAAAAAA-1111-2222-3333-444444444444", "BBBBBBBB-1111-2222-3333-444444444444"}) {
      testing::ProfileOptions o;
      o.uuid = uuid;
      o.developer_certificates_der = {leaf.cert_der};
      std::string path = absl::StrCat(root_, "/host/", uuid, ".mobileprovision");
      ASSERT_TRUE(WriteFileAtomic(path, testing::MakeProfile(o, ca)).ok());
      auto profile = ParseProfileFile(path);
      ASSERT_TRUE(profile.ok()) << profile.status();
      request_.profiles.push_back({*profile, path});
    }
    env_ = {{"PATH", absl::StrCat(root_, "/bin:", std::getenv("PATH"))},
            {"HOME", root_ + "/home"},
            {"TMPDIR", root_ + "/tmp"},
            {"FAKE_SECURITY_STATE", root_ + "/state"},
            {"FAKE_P12_PASSWORD", kP12Password},
            {"FAKE_IDENTITY_SHA1", identity->certificate.sha1},
            {"FAKE_IDENTITY_NAME", identity->certificate.common_name}};
  }
  void TearDown() override { (void)RemoveTree(root_); }

  std::string Log() { return ReadFile(root_ + "/state/log").value_or(""); }
  std::string SearchList() { return ReadFile(root_ + "/state/search").value_or(""); }
  std::string ClassicProfile(const std::string& uuid) {
    return absl::StrCat(root_, "/home/Library/MobileDevice/Provisioning Profiles/", uuid, ".mobileprovision");
  }
  std::string XcodeProfile(const std::string& uuid) {
    return absl::StrCat(root_, "/home/Library/Developer/Xcode/UserData/Provisioning Profiles/", uuid,
                        ".mobileprovision");
  }
  // The random keychain password, read back from the fake's stdin log.
  std::string KeychainPassword() {
    std::string log = Log();
    size_t at = log.find("stdin: create-keychain -p \"");
    if (at == std::string::npos) return "";
    at += std::string("stdin: create-keychain -p \"").size();
    return log.substr(at, log.find('"', at) - at);
  }
  // No secret in any command line the guest was given, nor in any argv the fake saw.
  void ExpectNoSecretInArgv(RecordingGuest& guest) {
    std::string kc_password = KeychainPassword();
    ASSERT_EQ(kc_password.size(), 48u);
    for (const std::string& c : guest.commands()) {
      EXPECT_THAT(c, Not(HasSubstr("pa ss"))) << c;
      EXPECT_THAT(c, Not(HasSubstr(kc_password))) << c;
    }
    for (absl::string_view line : absl::StrSplit(Log(), '\n')) {
      if (!absl::StartsWith(line, "argv: ")) continue;
      EXPECT_THAT(std::string(line), Not(HasSubstr("pa ss")));
      EXPECT_THAT(std::string(line), Not(HasSubstr(kc_password)));
    }
  }

  std::string root_;
  std::map<std::string, std::string> env_;
  KeychainInstallRequest request_;
};

TEST_F(KeychainInstallerTest, InstallsVerifiesAndCleansUpWithGoldenCommandStream) {
  RecordingGuest guest(env_);
  KeychainInstaller installer(&guest);
  auto env = installer.Install(request_);
  ASSERT_TRUE(env.ok()) << env.status();
  const std::string keychain = env->at(kEnvKeychain);
  const std::string tmp = keychain.substr(0, keychain.rfind('/'));
  EXPECT_TRUE(absl::StartsWith(tmp, root_ + "/tmp/freeagent-signing.")) << tmp;
  struct stat st;
  ASSERT_EQ(stat(tmp.c_str(), &st), 0);
  EXPECT_EQ(st.st_mode & 0777, 0700u);
  EXPECT_EQ(env->at(kEnvSigningIdentity), "Apple Distribution: Example Corp (ABCDE12345)");
  EXPECT_EQ(env->at(kEnvSigningIdentitySha1), request_.identity.certificate.sha1);
  EXPECT_EQ(env->at(kEnvTeamId), "ABCDE12345");
  EXPECT_EQ(env->at(kEnvProfileUuids), "AAAAAAAA-1111-2222-3333-444444444444,BBBBBBBB-1111-2222-3333-444444444444");
  EXPECT_EQ(env->at(kEnvProfilePaths), absl::StrCat(ClassicProfile("AAAAAAAA-1111-2222-3333-444444444444"), ":",
                                                   ClassicProfile("BBBBBBBB-1111-2222-3333-444444444444")));
  for (const auto& f : request_.profiles) {
    EXPECT_TRUE(Exists(ClassicProfile(f.profile.uuid)));
    EXPECT_TRUE(Exists(XcodeProfile(f.profile.uuid)));
  }
  EXPECT_EQ(SearchList(), absl::StrCat(keychain, "\n", kLogin, "\n"));
  EXPECT_TRUE(Exists(keychain));

  ASSERT_TRUE(installer.Cleanup().ok());
  EXPECT_EQ(SearchList(), absl::StrCat(kLogin, "\n"));
  EXPECT_FALSE(Exists(keychain));
  EXPECT_FALSE(Exists(tmp));
  for (const auto& f : request_.profiles) {
    EXPECT_FALSE(Exists(ClassicProfile(f.profile.uuid)));
    EXPECT_FALSE(Exists(XcodeProfile(f.profile.uuid)));
  }
  ExpectNoSecretInArgv(guest);

  std::string golden = absl::StrReplaceAll(Log(), {{KeychainPassword(), "<KCPW>"},
                                                  {"pa ss\\\"w\\\\o$rd", "<P12PW>"},
                                                  {tmp, "<TMP>"}});
  EXPECT_EQ(golden,
            "argv: [list-keychains] [-d] [user]\n"
            "argv: [-i]\n"
            "stdin: create-keychain -p \"<KCPW>\" \"<TMP>/freeagent.keychain-db\"\n"
            "argv: [-i]\n"
            "stdin: unlock-keychain -p \"<KCPW>\" \"<TMP>/freeagent.keychain-db\"\n"
            "argv: [-i]\n"
            "stdin: set-keychain-settings -lut 21600 \"<TMP>/freeagent.keychain-db\"\n"
            "argv: [-i]\n"
            "stdin: import \"<TMP>/identity.p12\" -k \"<TMP>/freeagent.keychain-db\" -f pkcs12 -P \"<P12PW>\" "
            "-T /usr/bin/codesign -T /usr/bin/security\n"
            "argv: [-i]\n"
            "stdin: set-key-partition-list -S apple-tool:,apple:,codesign: -s -k \"<KCPW>\" "
            "\"<TMP>/freeagent.keychain-db\"\n"
            "argv: [list-keychains] [-d] [user] [-s] [<TMP>/freeagent.keychain-db] "
            "[/Users/test/Library/Keychains/login.keychain-db]\n"
            "argv: [find-identity] [-v] [-p] [codesigning] [<TMP>/freeagent.keychain-db]\n"
            "argv: [list-keychains] [-d] [user] [-s] [/Users/test/Library/Keychains/login.keychain-db]\n"
            "argv: [delete-keychain] [<TMP>/freeagent.keychain-db]\n");
  EXPECT_THAT(guest.uploads(), ::testing::ElementsAre(tmp + "/identity.p12",
                                                      tmp + "/AAAAAAAA-1111-2222-3333-444444444444.mobileprovision",
                                                      tmp + "/BBBBBBBB-1111-2222-3333-444444444444.mobileprovision"));
  EXPECT_TRUE(installer.Cleanup().ok()) << "cleanup is idempotent";
}

TEST_F(KeychainInstallerTest, FailedImportIsReportedAndEverythingIsRemoved) {
  env_["FAKE_P12_PASSWORD"] = "something else";
  RecordingGuest guest(env_);
  KeychainInstaller installer(&guest);
  auto env = installer.Install(request_);
  ASSERT_FALSE(env.ok());
  EXPECT_THAT(env.status().message(), HasSubstr("importing the P12 id.p12 failed"));
  EXPECT_THAT(env.status().message(), HasSubstr("MAC verification failed during PKCS12 import"));
  EXPECT_THAT(env.status().message(), Not(HasSubstr("pa ss")));
  ASSERT_TRUE(installer.Cleanup().ok());
  EXPECT_EQ(SearchList(), absl::StrCat(kLogin, "\n"));
  EXPECT_THAT(Log(), HasSubstr("argv: [delete-keychain]"));
  // create-keychain may have added itself to the list, so the saved list is put back regardless.
  EXPECT_THAT(Log(), HasSubstr(absl::StrCat("argv: [list-keychains] [-d] [user] [-s] [", kLogin, "]\n")));
  auto left = ListDirectory(root_ + "/tmp");
  ASSERT_TRUE(left.ok());
  EXPECT_TRUE(left->empty());
  ExpectNoSecretInArgv(guest);
}

TEST_F(KeychainInstallerTest, FailedKeychainCreationCleansUpQuietly) {
  env_["FAKE_SECURITY_FAIL"] = "create-keychain";
  RecordingGuest guest(env_);
  KeychainInstaller installer(&guest);
  auto env = installer.Install(request_);
  ASSERT_FALSE(env.ok());
  EXPECT_THAT(env.status().message(), HasSubstr("signing: creating the keychain failed (exit 1): security: "));
  EXPECT_TRUE(installer.Cleanup().ok()) << "nothing to delete is not an error";
  EXPECT_THAT(Log(), Not(HasSubstr("argv: [delete-keychain]")));
  EXPECT_EQ(SearchList(), absl::StrCat(kLogin, "\n"));
  EXPECT_TRUE(ListDirectory(root_ + "/tmp")->empty());
}

TEST_F(KeychainInstallerTest, FailureAfterSearchListChangeRestoresItInDestructor) {
  env_["FAKE_SECURITY_FAIL"] = "find-identity";
  RecordingGuest guest(env_);
  {
    KeychainInstaller installer(&guest);
    auto env = installer.Install(request_);
    ASSERT_FALSE(env.ok());
    EXPECT_THAT(env.status().message(), HasSubstr("listing code-signing identities failed"));
    EXPECT_NE(SearchList(), absl::StrCat(kLogin, "\n"));
    EXPECT_TRUE(Exists(ClassicProfile("AAAAAAAA-1111-2222-3333-444444444444")));
  }
  EXPECT_EQ(SearchList(), absl::StrCat(kLogin, "\n"));
  EXPECT_FALSE(Exists(ClassicProfile("AAAAAAAA-1111-2222-3333-444444444444")));
  EXPECT_FALSE(Exists(XcodeProfile("BBBBBBBB-1111-2222-3333-444444444444")));
  EXPECT_TRUE(ListDirectory(root_ + "/tmp")->empty());
}

TEST_F(KeychainInstallerTest, IdentityMissingAfterImportNamesWhatWasFound) {
  env_["FAKE_IDENTITY_SHA1"] = std::string(40, 'E');
  env_["FAKE_IDENTITY_NAME"] = "Apple Development: Someone Else (ZZZZZ99999)";
  RecordingGuest guest(env_);
  KeychainInstaller installer(&guest);
  auto env = installer.Install(request_);
  ASSERT_FALSE(env.ok());
  EXPECT_EQ(env.status().code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_THAT(env.status().message(), HasSubstr("does not list \"Apple Distribution: Example Corp (ABCDE12345)\""));
  EXPECT_THAT(env.status().message(),
              HasSubstr(absl::StrCat("found: ", std::string(40, 'E'), " \"Apple Development: Someone Else")));
}

TEST_F(KeychainInstallerTest, LeavesPreexistingProfilesAndWritesEasCredentials) {
  const std::string uuid = "AAAAAAAA-1111-2222-3333-444444444444";
  ASSERT_TRUE(MakeDirs(root_ + "/home/Library/MobileDevice/Provisioning Profiles").ok());
  ASSERT_TRUE(WriteFileAtomic(ClassicProfile(uuid), "already here").ok());
  ASSERT_TRUE(MakeDirs(root_ + "/home/workspace").ok());
  request_.eas_credentials_dir = root_ + "/home/workspace";
  RecordingGuest guest(env_);
  KeychainInstaller installer(&guest);
  auto env = installer.Install(request_);
  ASSERT_TRUE(env.ok()) << env.status();
  const std::string credentials = root_ + "/home/workspace/credentials.json";
  auto json = ReadFile(credentials);
  ASSERT_TRUE(json.ok());
  EXPECT_THAT(*json, HasSubstr("\"password\": \"pa ss\\\"w\\\\o$rd\""));
  EXPECT_THAT(*json, HasSubstr("/identity.p12\""));
  EXPECT_THAT(*json, HasSubstr(absl::StrCat("\"provisioningProfilePath\": ")));
  struct stat st;
  ASSERT_EQ(stat(credentials.c_str(), &st), 0);
  EXPECT_EQ(st.st_mode & 0777, 0600u);
  ASSERT_TRUE(installer.Cleanup().ok());
  EXPECT_EQ(*ReadFile(ClassicProfile(uuid)), "already here");
  EXPECT_FALSE(Exists(XcodeProfile(uuid)));
  EXPECT_FALSE(Exists(credentials));
  ExpectNoSecretInArgv(guest);
}

// `security find-identity` output in the format macOS prints (written for the test, not captured
// from a Mac): the -v form, no identities, and the plain form with a revoked identity.
TEST(FindIdentityOutput, ParsesValidZeroAndRevoked) {
  auto found = ParseFindIdentityOutput(
      "  1) 3F2A9C0D1E2B3A4C5D6E7F8091A2B3C4D5E6F708 \"Apple Development: Jane Doe (TEAMID1234)\"\n"
      "     1 valid identities found\n");
  ASSERT_EQ(found.size(), 1u);
  EXPECT_EQ(found[0].sha1, "3F2A9C0D1E2B3A4C5D6E7F8091A2B3C4D5E6F708");
  EXPECT_EQ(found[0].name, "Apple Development: Jane Doe (TEAMID1234)");
  EXPECT_EQ(found[0].problem, "");

  EXPECT_TRUE(ParseFindIdentityOutput("\n     0 valid identities found\n").empty());

  found = ParseFindIdentityOutput(
      "Policy: Code Signing\n"
      "  Matching identities\n"
      "  1) 0A1B2C3D4E5F60718293A4B5C6D7E8F901234567 \"iPhone Distribution: Example Corp (ABCDE12345)\" "
      "(CSSMERR_TP_CERT_REVOKED)\n"
      "  2) 3F2A9C0D1E2B3A4C5D6E7F8091A2B3C4D5E6F708 \"Apple Development: Jane Doe (TEAMID1234)\"\n"
      "     2 identities found\n"
      "\n"
      "  Valid identities only\n"
      "  1) 3F2A9C0D1E2B3A4C5D6E7F8091A2B3C4D5E6F708 \"Apple Development: Jane Doe (TEAMID1234)\"\n"
      "     1 valid identities found\n");
  ASSERT_EQ(found.size(), 3u);
  EXPECT_EQ(found[0].problem, "CSSMERR_TP_CERT_REVOKED");
  EXPECT_EQ(found[0].name, "iPhone Distribution: Example Corp (ABCDE12345)");
  EXPECT_EQ(found[1].problem, "");
}

TEST(KeychainList, ParsesQuotedPaths) {
  EXPECT_THAT(ParseKeychainList("    \"/Users/admin/Library/Keychains/login.keychain-db\"\n"
                                "    \"/Library/Keychains/System.keychain\"\n"),
              ::testing::ElementsAre("/Users/admin/Library/Keychains/login.keychain-db",
                                     "/Library/Keychains/System.keychain"));
}

TEST(SecurityQuote, EscapesQuotesAndBackslashes) {
  EXPECT_EQ(SecurityQuote("a b"), "\"a b\"");
  EXPECT_EQ(SecurityQuote("x\"y\\z$"), "\"x\\\"y\\\\z$\"");
}

}  // namespace
}  // namespace freeagent::signing
