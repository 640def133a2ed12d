// `freeagent artifacts` (cli::Commands) against a real controller, following uploads that do not end
// the plain way:
// - the blob store no longer knows an upload the build still lists (stored just before a controller
//   restart, which forgets which digest an upload became): the command takes the artifact by digest
//   as soon as the build lists it stored, instead of waiting for the upload to begin;
// - the attempt fails while its upload stream is still open: the follow ends with the attempt and
//   leaves no part file.
#include <sys/stat.h>

#include <atomic>
#include <thread>

#include "absl/strings/str_cat.h"
#include "cli/commands.h"
#include "tests/controller/controller_fixture.h"

namespace freeagent::controller::testing {
namespace {

bool WaitForFile(const std::string& path, std::chrono::milliseconds timeout) {
  const auto deadline = std::chrono::steady_clock::now() + timeout;
  struct stat st {};
  while (::stat(path.c_str(), &st) != 0) {
    if (std::chrono::steady_clock::now() >= deadline) return false;
    std::this_thread::sleep_for(10ms);
  }
  return true;
}

class ArtifactsFollowTest : public ControllerTest {
 protected:
  void SetUp() override {
    ControllerTest::SetUp();
    StartServer();
  }

  // A progress report of `job` announcing `artifact` (uploading, or stored).
  static v1::WorkerMessage Announce(const v1::BuildJob& job, const v1::ArtifactInfo& artifact) {
    v1::WorkerMessage m = FakeWorker::Progress(job, v1::PHASE_UPLOADING_ARTIFACTS);
    m.mutable_progress()->set_message(
        absl::StrCat(artifact.upload_id().empty() ? "stored artifact " : "uploading artifact ", artifact.path()));
    *m.mutable_progress()->mutable_uploading_artifact() = artifact;
    return m;
  }
};

TEST_F(ArtifactsFollowTest, UploadStoredBeforeARestartIsTakenByDigestOnceTheBuildListsIt) {
  auto worker = std::make_unique<FakeWorker>(channel_);
  worker->Hello("w1", {}, 1);
  auto build = Submit(Spec(UploadSource()));
  ASSERT_TRUE(build.ok()) << build.status();
  auto job = worker->NextAssign();
  ASSERT_TRUE(job.has_value());
  ASSERT_TRUE(worker->Send(FakeWorker::Accepted(*job)));

  const std::string data = RandomBytes(3 << 20);
  const std::string upload_id(32, '7');
  v1::ArtifactInfo uploading;
  uploading.set_name("app.bin");
  uploading.set_path("out/app.bin");
  uploading.set_upload_id(upload_id);
  ASSERT_TRUE(worker->Send(Announce(*job, uploading)));
  ASSERT_TRUE(UploadStreaming(upload_id, 0, data, true, Sha256Hex(data), data.size(), nullptr).ok());
  ASSERT_TRUE(WaitBuild(build->id(), [](const v1::Build& b) { return b.uploading_artifacts_size() == 1; }));

  // The controller restarts before the worker says the artifact is stored.
  worker.reset();
  StopServer();
  StartServer();
  ASSERT_EQ(Get(build->id()).uploading_artifacts(0).upload_id(), upload_id);

  const std::string dir = root_ + "/out";
  std::atomic<bool> ended{false};
  absl::StatusOr<int> exit_code = absl::UnknownError("not run");
  std::thread cli([&] {
    cli::Commands commands(channel_);
    exit_code = commands.Artifacts(build->id(), dir, /*force=*/false, /*json=*/false);
    ended = true;
  });
  // The command has asked to follow the upload (its part file is there) and was told it is unknown.
  ASSERT_TRUE(WaitForFile(dir + "/.app.bin." + upload_id.substr(0, 16) + ".part", 10s));

  FakeWorker back(channel_);
  v1::RunningJob running;
  running.set_job_id(job->job_id());
  running.set_attempt(job->attempt());
  running.set_phase(v1::PHASE_UPLOADING_ARTIFACTS);
  v1::Welcome welcome = back.Hello("w1", {}, 1, {running});
  ASSERT_EQ(welcome.jobs_size(), 1);
  ASSERT_EQ(welcome.jobs(0).action(), v1::JobDirective::ACTION_CONTINUE);
  v1::ArtifactInfo stored = uploading;
  stored.clear_upload_id();
  stored.set_sha256(Sha256Hex(data));
  stored.set_size(data.size());
  const auto announced = std::chrono::steady_clock::now();
  ASSERT_TRUE(back.Send(Announce(*job, stored)));

  // Taken by digest at once: well before the 30 s an unknown upload used to be awaited, and while the
  // build still runs.
  const bool arrived = WaitForFile(dir + "/app.bin", 10s);
  const auto took = std::chrono::steady_clock::now() - announced;
  EXPECT_TRUE(arrived) << "the stored artifact was not taken by digest";
  EXPECT_LT(took, 5s);
  EXPECT_FALSE(ended);

  // Once the worker is cleaning up the command ends with the verified file and nothing else.
  ASSERT_TRUE(back.Send(FakeWorker::Progress(*job, v1::PHASE_CLEANING_UP)));
  cli.join();
  ASSERT_TRUE(exit_code.ok()) << exit_code.status();
  EXPECT_EQ(*exit_code, cli::kExitOk);
  auto content = ReadFile(dir + "/app.bin");
  ASSERT_TRUE(content.ok()) << content.status();
  EXPECT_TRUE(*content == data) << "the downloaded bytes differ";
  EXPECT_EQ(*ListDirectory(dir), std::vector<std::string>{"app.bin"}) << "a part file was left behind";
}

TEST_F(ArtifactsFollowTest, AFollowGivenUpWhenTheAttemptFailsLeavesNoPartFile) {
  FakeWorker worker(channel_);
  worker.Hello("w1", {}, 1);
  auto build = Submit(Spec(UploadSource()));
  ASSERT_TRUE(build.ok()) << build.status();
  auto job = worker.NextAssign();
  ASSERT_TRUE(job.has_value());
  ASSERT_TRUE(worker.Send(FakeWorker::Accepted(*job)));

  const std::string upload_id(32, '8');
  v1::ArtifactInfo uploading;
  uploading.set_name("app.bin");
  uploading.set_path("out/app.bin");
  uploading.set_upload_id(upload_id);
  ASSERT_TRUE(worker.Send(Announce(*job, uploading)));
  auto upload = StartUpload(upload_id, 0);
  upload->Send(RandomBytes(1 << 20));
  ASSERT_TRUE(WaitBuild(build->id(), [](const v1::Build& b) { return b.uploading_artifacts_size() == 1; }));

  const std::string dir = root_ + "/out";
  absl::StatusOr<int> exit_code = absl::UnknownError("not run");
  std::thread cli([&] {
    cli::Commands commands(channel_);
    exit_code = commands.Artifacts(build->id(), dir, /*force=*/false, /*json=*/false);
  });
  // The command follows the upload (its part file is there); then the attempt fails mid-upload.
  const std::string part = dir + "/.app.bin." + upload_id.substr(0, 16) + ".part";
  ASSERT_TRUE(WaitForFile(part, 10s));
  const auto failed = std::chrono::steady_clock::now();
  ASSERT_TRUE(worker.Send(FakeWorker::Result(*job, v1::JOB_STATE_FAILED, 0)));
  cli.join();
  // The follow ends with the attempt, not after the blob store's idle limit (5 min) while the
  // upload's stream stays open.
  EXPECT_LT(std::chrono::steady_clock::now() - failed, 10s);
  upload->End().IgnoreError();

  struct stat st {};
  EXPECT_NE(::stat(part.c_str(), &st), 0) << "the part file of the given-up follow was left behind";
  auto left = ListDirectory(dir);
  ASSERT_TRUE(left.ok()) << left.status();
  EXPECT_TRUE(left->empty()) << "files left: " << left->size();
  EXPECT_TRUE(exit_code.ok()) << exit_code.status();
}

}  // namespace
}  // namespace freeagent::controller::testing
