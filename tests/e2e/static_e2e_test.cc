// End to end with the `static` driver: controller + worker whose builds run on an existing machine
// over SSH (a real OpenSSH server from the sshd fixture), driven by the `freeagent` command.
#include "absl/strings/str_cat.h"
#include "common/fs.h"
#include "common/process.h"
#include "common/sha256.h"
#include "tests/e2e/e2e_fixture.h"
#include "tests/support/sshd_fixture.h"

namespace freeagent::testing {
namespace {

using namespace std::chrono_literals;

class StaticDriverE2ETest : public E2ETest {
 protected:
  void SetUp() override {
    E2ETest::SetUp();
    ASSERT_FALSE(HasFatalFailure());
    auto sshd = SshdFixture::Start();
    ASSERT_TRUE(sshd.ok()) << sshd.status();
    sshd_ = std::move(*sshd);
    FA_ASSERT_OK_AND_ASSIGN(workspace_root_, cluster().MakeDir("machine-jobs"));
    FA_ASSERT_OK_AND_ASSIGN(std::string conf_dir, cluster().MakeDir("conf"));
    config_path_ = conf_dir + "/worker.toml";
    FA_ASSERT_OK(WriteFileAtomic(
        config_path_,
        absl::StrCat("driver = \"static\"\n\n[static]\nhost = \"127.0.0.1\"\nport = ", sshd_->port(),
                     "\nuser = \"", sshd_->user(), "\"\nkey = \"", sshd_->ed25519_key(),
                     "\"\nhost_key_fingerprint = \"", sshd_->host_key_fingerprint(),
                     "\"\nworkspace_root = \"", workspace_root_, "\"\nreset_command = \"touch ", workspace_root_,
                     "/../reset-ran\"\n")));
    StartController();
  }

  ProcessResult RunCli(std::vector<std::string> args) {
    ProcessOptions options;
    options.argv = {CliBinary(), "--controller", cluster().address(), "--insecure"};
    options.argv.insert(options.argv.end(), args.begin(), args.end());
    options.deadline = Deadline::After(120s);
    absl::StatusOr<ProcessResult> result = RunProcess(options);
    EXPECT_TRUE(result.ok()) << result.status();
    return result.ok() ? *result : ProcessResult{};
  }

  static size_t Entries(const std::string& dir) {
    absl::StatusOr<std::vector<std::string>> names = ListDirectory(dir);
    return names.ok() ? names->size() : 0;
  }

  std::unique_ptr<SshdFixture> sshd_;
  std::string workspace_root_;
  std::string config_path_;
};

TEST_F(StaticDriverE2ETest, BuildsHelloOnTheMachineAndReturnsItsArtifact) {
  WorkerOptions w = NamedWorker("mac1");
  w.driver = "static";
  w.extra_args = {"--config", config_path_};
  ASSERT_NE(StartWorker(w), nullptr);
  FA_ASSERT_OK(client().WaitForWorkers(1, 20s));

  FA_ASSERT_OK_AND_ASSIGN(std::string out, cluster().MakeDir("out"));
  ProcessResult run = RunCli({"submit", SourceDir() + "/examples/hello", "--follow", "--download", out});
  ASSERT_EQ(run.exit_code, 0) << "stdout:\n" << run.stdout_data << "\nstderr:\n" << run.stderr_data;
  EXPECT_NE(run.stdout_data.find("hello, free agent"), std::string::npos) << run.stdout_data;

  FA_ASSERT_OK_AND_ASSIGN(auto builds, client().List());
  ASSERT_FALSE(builds.empty());
  const freeagent::v1::Build& build = builds.front();
  ASSERT_EQ(build.state(), freeagent::v1::JOB_STATE_SUCCEEDED) << build.ShortDebugString();
  ASSERT_EQ(build.artifacts_size(), 1) << build.ShortDebugString();
  FA_ASSERT_OK_AND_ASSIGN(std::string digest, Sha256File(out + "/" + build.artifacts(0).name()));
  EXPECT_EQ(digest, build.artifacts(0).sha256());

  // The job's workspace on the machine is gone and the reset command ran.
  EXPECT_EQ(Entries(workspace_root_), 0u);
  EXPECT_EQ(::access((workspace_root_ + "/../reset-ran").c_str(), F_OK), 0);
}

TEST_F(StaticDriverE2ETest, WrongPinnedHostKeyEndsTheBuildAsErrorNamingBothKeys) {
  std::string conf = *ReadFile(config_path_);
  std::string bad = "SHA256:AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA";
  conf.replace(conf.find(sshd_->host_key_fingerprint()), sshd_->host_key_fingerprint().size(), bad);
  FA_ASSERT_OK(WriteFileAtomic(config_path_, conf));
  WorkerOptions w = NamedWorker("mac1");
  w.driver = "static";
  w.extra_args = {"--config", config_path_};
  ASSERT_NE(StartWorker(w), nullptr);
  FA_ASSERT_OK(client().WaitForWorkers(1, 20s));

  ProcessResult run = RunCli({"submit", SourceDir() + "/examples/hello", "--follow"});
  EXPECT_NE(run.exit_code, 0);
  FA_ASSERT_OK_AND_ASSIGN(auto builds, client().List());
  ASSERT_FALSE(builds.empty());
  const freeagent::v1::Build& build = builds.front();
  EXPECT_EQ(build.state(), freeagent::v1::JOB_STATE_ERROR) << build.ShortDebugString();
  EXPECT_NE(build.error().find(bad), std::string::npos) << build.error();
  EXPECT_NE(build.error().find(sshd_->host_key_fingerprint()), std::string::npos) << build.error();
}

}  // namespace
}  // namespace freeagent::testing
