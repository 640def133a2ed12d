// End to end: the `freeagent` command against a real controller and worker.
#include "common/fs.h"
#include "common/process.h"
#include "common/sha256.h"
#include "tests/e2e/e2e_fixture.h"

namespace freeagent::testing {
namespace {

using namespace std::chrono_literals;

class CliTest : public E2ETest {
 protected:
  void SetUp() override {
    E2ETest::SetUp();
    ASSERT_FALSE(HasFatalFailure());
    StartController();
    ASSERT_FALSE(HasFatalFailure());
    ASSERT_NE(StartWorker(), nullptr);
    FA_ASSERT_OK(client().WaitForWorkers(1, 20s));
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

  static std::vector<std::string> Files(const std::string& dir) {
    absl::StatusOr<std::vector<std::string>> names = ListDirectory(dir);
    return names.ok() ? *names : std::vector<std::string>{};
  }
};

TEST_F(CliTest, SubmitHelloFollowDownloadSucceedsWithVerifiedArtifact) {
  FA_ASSERT_OK_AND_ASSIGN(std::string out, cluster().MakeDir("out"));
  ProcessResult run = RunCli({"submit", SourceDir() + "/examples/hello", "--follow", "--download", out});
  ASSERT_EQ(run.exit_code, 0) << "stdout:\n" << run.stdout_data << "\nstderr:\n" << run.stderr_data;
  EXPECT_NE(run.stdout_data.find("hello, free agent"), std::string::npos) << run.stdout_data;
  EXPECT_NE(run.stderr_data.find("==> SUCCEEDED"), std::string::npos) << run.stderr_data;
  // The worker's notes are shown on stderr (the last one before the outcome); stdout is the raw log.
  EXPECT_NE(run.stderr_data.find("==> build succeeded\n==> SUCCEEDED"), std::string::npos) << run.stderr_data;
  EXPECT_EQ(run.stdout_data.find("==> "), std::string::npos) << run.stdout_data;

  FA_ASSERT_OK_AND_ASSIGN(auto builds, client().List());
  ASSERT_FALSE(builds.empty());
  const freeagent::v1::Build& build = builds.front();
  ASSERT_EQ(build.artifacts_size(), 1) << build.ShortDebugString();
  EXPECT_EQ(Files(out), std::vector<std::string>{build.artifacts(0).name()});
  FA_ASSERT_OK_AND_ASSIGN(std::string digest, Sha256File(out + "/" + build.artifacts(0).name()));
  EXPECT_EQ(digest, build.artifacts(0).sha256());

  // `logs` prints exactly what --follow printed.
  ProcessResult logs = RunCli({"logs", build.id()});
  EXPECT_EQ(logs.exit_code, 0) << logs.stderr_data;
  EXPECT_EQ(logs.stdout_data, run.stdout_data);

  ProcessResult show = RunCli({"show", build.id()});
  EXPECT_EQ(show.exit_code, 0) << show.stderr_data;
  EXPECT_NE(show.stdout_data.find("SUCCEEDED"), std::string::npos) << show.stdout_data;
  EXPECT_NE(show.stdout_data.find("RUNNING CLEANING_UP: build succeeded\n"), std::string::npos) << show.stdout_data;
  EXPECT_NE(show.stdout_data.find(build.artifacts(0).sha256()), std::string::npos) << show.stdout_data;

  // Downloading again into the same directory keeps the verified file; a different one is refused.
  ProcessResult again = RunCli({"artifacts", build.id(), "-o", out});
  EXPECT_EQ(again.exit_code, 0) << again.stderr_data;
  FA_ASSERT_OK(WriteFileAtomic(out + "/" + build.artifacts(0).name(), "something else"));
  ProcessResult clash = RunCli({"artifacts", build.id(), "-o", out});
  EXPECT_EQ(clash.exit_code, 2);
  EXPECT_NE(clash.stderr_data.find("freeagent: FAILED_PRECONDITION"), std::string::npos) << clash.stderr_data;
  ProcessResult forced = RunCli({"artifacts", build.id(), "-o", out, "--force"});
  EXPECT_EQ(forced.exit_code, 0) << forced.stderr_data;
  FA_ASSERT_OK_AND_ASSIGN(digest, Sha256File(out + "/" + build.artifacts(0).name()));
  EXPECT_EQ(digest, build.artifacts(0).sha256());
}

// `freeagent artifacts ID -o DIR` started while the build runs follows the artifact's upload (a
// multi-MB file written by the step) and ends with the verified file, no part file left.
TEST_F(CliTest, ArtifactsStartedDuringTheBuildEndWithTheVerifiedFile) {
  using freeagent::v1::Build;
  FA_ASSERT_OK_AND_ASSIGN(std::string out, cluster().MakeDir("out"));
  FA_ASSERT_OK_AND_ASSIGN(std::string source, client().UploadTrivialSource(cluster().root()));
  // The pause after the write lets the command start polling before the upload is announced.
  auto spec = MakeSpec(source, {{"make", "head -c 25165824 /dev/urandom > big.bin && sleep 1"}});
  spec.add_artifacts()->set_glob("big.bin");
  FA_ASSERT_OK_AND_ASSIGN(Build build, client().Submit(spec));
  FA_ASSERT_OK_AND_ASSIGN(
      Build running, client().WaitFor(
                         build.id(),
                         [](const Build& b) {
                           return b.state() == freeagent::v1::JOB_STATE_RUNNING || IsTerminal(b.state());
                         },
                         20s));
  ASSERT_EQ(running.state(), freeagent::v1::JOB_STATE_RUNNING) << running.ShortDebugString();

  const auto started = std::chrono::steady_clock::now();
  ProcessResult run = RunCli({"artifacts", build.id(), "-o", out});
  const auto took = std::chrono::steady_clock::now() - started;
  ASSERT_EQ(run.exit_code, 0) << "stdout:\n" << run.stdout_data << "\nstderr:\n" << run.stderr_data;
  EXPECT_LT(took, 30s);
  EXPECT_EQ(run.stderr_data.find("failed"), std::string::npos) << run.stderr_data;

  FA_ASSERT_OK_AND_ASSIGN(Build done, client().WaitForTerminal(build.id(), 20s));
  ASSERT_EQ(done.state(), freeagent::v1::JOB_STATE_SUCCEEDED) << done.ShortDebugString();
  ASSERT_EQ(done.artifacts_size(), 1) << done.ShortDebugString();
  EXPECT_EQ(done.artifacts(0).size(), 25165824u);
  EXPECT_EQ(Files(out), std::vector<std::string>{"big.bin"});
  FA_ASSERT_OK_AND_ASSIGN(std::string digest, Sha256File(out + "/big.bin"));
  EXPECT_EQ(digest, done.artifacts(0).sha256());
  EXPECT_EQ(run.stdout_data, digest + "  " + out + "/big.bin\n");
}

TEST_F(CliTest, FailingBuildExitsOneAndUnknownBuildExitsTwo) {
  FA_ASSERT_OK_AND_ASSIGN(std::string project, cluster().MakeDir("project"));
  ProcessResult run = RunCli({"submit", project, "--step", "boom=echo about-to-fail; exit 7", "--follow"});
  EXPECT_EQ(run.exit_code, 1) << run.stderr_data;
  EXPECT_NE(run.stdout_data.find("about-to-fail"), std::string::npos) << run.stdout_data;
  EXPECT_NE(run.stderr_data.find("FAILED: step boom exited with 7"), std::string::npos) << run.stderr_data;

  ProcessResult missing = RunCli({"show", "b-000000000000"});
  EXPECT_EQ(missing.exit_code, 2);
  EXPECT_NE(missing.stderr_data.find("freeagent: NOT_FOUND"), std::string::npos) << missing.stderr_data;
}

}  // namespace
}  // namespace freeagent::testing
