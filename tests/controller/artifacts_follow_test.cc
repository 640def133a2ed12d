// `freeagent artifacts` (cli::Commands) against a real controller, following uploads that do not end
// the plain way:
// - the blob store no longer knows an upload the build still lists (stored just before a controller
//   restart, which forgets which digest an upload became): the command takes the artifact by digest
//   as soon as the build lists it stored, instead of waiting for the upload to begin;
// - the attempt fails while its upload stream is still open: the follow ends with the attempt and
//   leaves no part file;
// - the controller restarts mid-upload, cutting both the worker's upload and the follow: the command
//   follows again from the bytes it has once the controller is back and the worker resumes.
#include <sys/stat.h>

#include <atomic>
#include <optional>
#include <thread>

#include "absl/cleanup/cleanup.h"
#include "absl/strings/str_cat.h"
#include "cli/commands.h"
#include "tests/controller/controller_fixture.h"

namespace freeagent::controller::testing {
namespace {

// Waits for `path` to exist and hold at least `min_size` bytes.
bool WaitForFile(const std::string& path, std::chrono::milliseconds timeout, off_t min_size = 0) {
  const auto deadline = std::chrono::steady_clock::now() + timeout;
  struct stat st {};
  while (::stat(path.c_str(), &st) != 0 || st.st_size < min_size) {
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

  // The artifact out/app.bin while streaming upload `upload_id` carries it.
  static v1::ArtifactInfo Uploading(const std::string& upload_id) {
    v1::ArtifactInfo a;
    a.set_name("app.bin");
    a.set_path("out/app.bin");
    a.set_upload_id(upload_id);
    return a;
  }

  // The artifact out/app.bin once stored with the bytes `data`.
  static v1::ArtifactInfo Stored(const std::string& data) {
    v1::ArtifactInfo a = Uploading("");
    a.set_sha256(Sha256Hex(data));
    a.set_size(data.size());
    return a;
  }

  struct Taken {
    std::string build_id;
    v1::BuildJob job;
  };

  // Connects `worker` as w1 with one slot, submits a build and has the worker accept its job.
  std::optional<Taken> TakeBuild(FakeWorker& worker) {
    worker.Hello("w1", {}, 1);
    auto build = Submit(Spec(UploadSource()));
    EXPECT_TRUE(build.ok()) << build.status();
    if (!build.ok()) return std::nullopt;
    auto job = worker.NextAssign();
    EXPECT_TRUE(job.has_value()) << "no job assigned";
    if (!job.has_value() || !worker.Send(FakeWorker::Accepted(*job))) return std::nullopt;
    return Taken{build->id(), *std::move(job)};
  }

  // `worker` comes back (after a controller restart) with `job` uploading its artifacts, and is told
  // to go on with it.
  static void Rejoin(FakeWorker& worker, const v1::BuildJob& job) {
    v1::RunningJob running;
    running.set_job_id(job.job_id());
    running.set_attempt(job.attempt());
    running.set_phase(v1::PHASE_UPLOADING_ARTIFACTS);
    v1::Welcome welcome = worker.Hello("w1", {}, 1, {running});
    ASSERT_EQ(welcome.jobs_size(), 1);
    ASSERT_EQ(welcome.jobs(0).action(), v1::JobDirective::ACTION_CONTINUE);
  }

  // `dir` holds app.bin with exactly the bytes `data`, and nothing else (no part file).
  static void ExpectOnlyApp(const std::string& dir, const std::string& data) {
    auto content = ReadFile(dir + "/app.bin");
    ASSERT_TRUE(content.ok()) << content.status();
    EXPECT_TRUE(*content == data) << "the downloaded bytes differ";
    EXPECT_EQ(*ListDirectory(dir), std::vector<std::string>{"app.bin"}) << "a part file was left behind";
  }
};

TEST_F(ArtifactsFollowTest, UploadStoredBeforeARestartIsTakenByDigestOnceTheBuildListsIt) {
  auto worker = std::make_unique<FakeWorker>(channel_);
  const std::optional<Taken> taken = TakeBuild(*worker);
  ASSERT_TRUE(taken.has_value());
  const std::string& build_id = taken->build_id;
  const v1::BuildJob& job = taken->job;

  const std::string data = RandomBytes(3 << 20);
  const std::string upload_id(32, '7');
  ASSERT_TRUE(worker->Send(Announce(job, Uploading(upload_id))));
  ASSERT_TRUE(UploadStreaming(upload_id, 0, data, true, Sha256Hex(data), data.size(), nullptr).ok());
  ASSERT_TRUE(WaitBuild(build_id, [](const v1::Build& b) { return b.uploading_artifacts_size() == 1; }));

  // The controller restarts before the worker says the artifact is stored.
  worker.reset();
  StopServer();
  StartServer();
  ASSERT_EQ(Get(build_id).uploading_artifacts(0).upload_id(), upload_id);

  const std::string dir = root_ + "/out";
  std::atomic<bool> ended{false};
  absl::StatusOr<int> exit_code = absl::UnknownError("not run");
  std::thread cli([&] {
    cli::Commands commands(channel_);
    exit_code = commands.Artifacts(build_id, dir, /*force=*/false, /*json=*/false);
    ended = true;
  });
  // The command has asked to follow the upload (its part file is there) and was told it is unknown.
  ASSERT_TRUE(WaitForFile(dir + "/.app.bin." + upload_id.substr(0, 16) + ".part", 10s));

  FakeWorker back(channel_);
  ASSERT_NO_FATAL_FAILURE(Rejoin(back, job));
  const auto announced = std::chrono::steady_clock::now();
  ASSERT_TRUE(back.Send(Announce(job, Stored(data))));

  // Taken by digest at once: well before the 30 s an unknown upload used to be awaited, and while the
  // build still runs.
  const bool arrived = WaitForFile(dir + "/app.bin", 10s);
  const auto took = std::chrono::steady_clock::now() - announced;
  EXPECT_TRUE(arrived) << "the stored artifact was not taken by digest";
  EXPECT_LT(took, 5s);
  EXPECT_FALSE(ended);

  // Once the worker is cleaning up the command ends with the verified file and nothing else.
  ASSERT_TRUE(back.Send(FakeWorker::Progress(job, v1::PHASE_CLEANING_UP)));
  cli.join();
  ASSERT_TRUE(exit_code.ok()) << exit_code.status();
  EXPECT_EQ(*exit_code, cli::kExitOk);
  ExpectOnlyApp(dir, data);
}

TEST_F(ArtifactsFollowTest, AFollowGivenUpWhenTheAttemptFailsLeavesNoPartFile) {
  FakeWorker worker(channel_);
  const std::optional<Taken> taken = TakeBuild(worker);
  ASSERT_TRUE(taken.has_value());
  const std::string& build_id = taken->build_id;
  const v1::BuildJob& job = taken->job;

  const std::string upload_id(32, '8');
  ASSERT_TRUE(worker.Send(Announce(job, Uploading(upload_id))));
  auto upload = StartUpload(upload_id, 0);
  upload->Send(RandomBytes(1 << 20));
  ASSERT_TRUE(WaitBuild(build_id, [](const v1::Build& b) { return b.uploading_artifacts_size() == 1; }));

  const std::string dir = root_ + "/out";
  absl::StatusOr<int> exit_code = absl::UnknownError("not run");
  std::thread cli([&] {
    cli::Commands commands(channel_);
    exit_code = commands.Artifacts(build_id, dir, /*force=*/false, /*json=*/false);
  });
  // The command follows the upload (its part file is there); then the attempt fails mid-upload.
  const std::string part = dir + "/.app.bin." + upload_id.substr(0, 16) + ".part";
  ASSERT_TRUE(WaitForFile(part, 10s));
  const auto failed = std::chrono::steady_clock::now();
  ASSERT_TRUE(worker.Send(FakeWorker::Result(job, v1::JOB_STATE_FAILED, 0)));
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

TEST_F(ArtifactsFollowTest, AFollowCutByAControllerRestartGoesOnWhenTheWorkerResumesItsUpload) {
  auto worker = std::make_unique<FakeWorker>(channel_);
  const std::optional<Taken> taken = TakeBuild(*worker);
  ASSERT_TRUE(taken.has_value());
  const std::string& build_id = taken->build_id;
  const v1::BuildJob& job = taken->job;

  const std::string data = RandomBytes(6 << 20, 3);
  const std::string digest = Sha256Hex(data);
  const size_t first = 2 << 20;  // sent before the restart
  const size_t more = 1 << 20;   // sent after it, before the trailer
  const std::string upload_id(32, '9');
  ASSERT_TRUE(worker->Send(Announce(job, Uploading(upload_id))));
  auto upload = StartUpload(upload_id, 0);
  ASSERT_TRUE(upload->Send(data.substr(0, first)));
  ASSERT_TRUE(WaitBuild(build_id, [](const v1::Build& b) { return b.uploading_artifacts_size() == 1; }));

  // The command keeps its own channel across the restart, as a separate process would.
  const std::string dir = root_ + "/out";
  const std::string part = dir + "/.app.bin." + upload_id.substr(0, 16) + ".part";
  std::shared_ptr<grpc::Channel> cli_channel = channel_;
  absl::StatusOr<int> exit_code = absl::UnknownError("not run");
  std::thread cli([&] {
    cli::Commands commands(cli_channel);
    exit_code = commands.Artifacts(build_id, dir, /*force=*/false, /*json=*/false);
  });
  // Should an assertion end the test early, the command ends too: with the controller stopped it
  // gives up once unreachable for 30 s.
  absl::Cleanup end_cli = [&] {
    if (!cli.joinable()) return;
    StopServer();
    cli.join();
  };
  ASSERT_TRUE(WaitForFile(part, 10s, 1)) << "the command did not follow the upload";

  // The controller restarts mid-upload on the same port: the upload stream and the follow are cut.
  const auto restarted = std::chrono::steady_clock::now();
  RestartServer();
  EXPECT_FALSE(upload->End().ok()) << "the upload stream outlived the controller";
  upload.reset();
  worker.reset();

  // The worker comes back with its attempt and resumes the upload from the partial the controller kept.
  FakeWorker back(channel_);
  ASSERT_NO_FATAL_FAILURE(Rejoin(back, job));
  grpc::ClientContext stat_context;
  v1::StatRequest stat;
  stat.set_upload_id(upload_id);
  v1::BlobInfo partial;
  ASSERT_TRUE(blobs_->Stat(&stat_context, stat, &partial).ok());
  const uint64_t offset = partial.partial_size();
  ASSERT_GT(offset, 0u);
  ASSERT_LE(offset, first);
  upload = StartUpload(upload_id, offset);
  ASSERT_TRUE(upload->Send(data.substr(offset, more)));

  // The command follows again, from the bytes it has: its part file grows with bytes only the new
  // controller received (a follow given up on would leave it as it was until the build ends).
  EXPECT_TRUE(WaitForFile(part, 30s, static_cast<off_t>(offset + more)))
      << "the follow cut by the restart was not taken up again";

  ASSERT_TRUE(upload->Send(data.substr(offset + more)));
  grpc::Status ended = upload->End(digest, data.size());
  ASSERT_TRUE(ended.ok()) << ended.error_message();
  EXPECT_EQ(upload->info.digest(), digest);
  ASSERT_TRUE(back.Send(Announce(job, Stored(data))));
  ASSERT_TRUE(back.Send(FakeWorker::Progress(job, v1::PHASE_CLEANING_UP)));

  cli.join();
  // Bounded by the command's reconnection, far below the 5 min a stalled follow may wait.
  EXPECT_LT(std::chrono::steady_clock::now() - restarted, 60s);
  ASSERT_TRUE(exit_code.ok()) << exit_code.status();
  EXPECT_EQ(*exit_code, cli::kExitOk);
  ExpectOnlyApp(dir, data);
}

}  // namespace
}  // namespace freeagent::controller::testing
