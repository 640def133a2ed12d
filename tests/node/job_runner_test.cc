// The job runner against the local driver, an in-memory blob store and a recording log: no controller.
#include "node/job_runner.h"

#include <archive.h>
#include <archive_entry.h>
#include <unistd.h>

#include <optional>
#include <thread>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "common/archive.h"
#include "common/fs.h"
#include "common/process.h"
#include "common/sha256.h"
#include "gtest/gtest.h"
#include "tests/node/memory_blobs.h"
#include "vm/local_driver.h"

namespace freeagent::node {
namespace {

namespace v1 = ::freeagent::v1;
using std::chrono::milliseconds;
using std::chrono::seconds;

size_t CountEntries(const std::string& dir) {
  absl::StatusOr<std::vector<std::string>> names = ListDirectory(dir);
  return names.ok() ? names->size() : 0;
}

class JobRunnerTest : public ::testing::Test {
 protected:
  void SetUp() override {
    auto d = MakePrivateTempDir("/tmp", "fa-runner-");
    ASSERT_TRUE(d.ok());
    root_ = *d;
    driver_ = std::make_unique<vm::LocalDriver>(root_ + "/vms");
    options_.jobs_dir = root_ + "/jobs";
    options_.worker_name = "test";
    options_.default_kill_grace = seconds(1);
  }
  void TearDown() override { RemoveTree(root_).IgnoreError(); }

  // Packs a project with the given files into the blob store; returns its digest.
  std::string PutSource(const std::map<std::string, std::string>& files) {
    std::string src = root_ + "/src";
    EXPECT_TRUE(MakeDirs(src).ok());
    for (const auto& [name, body] : files) EXPECT_TRUE(WriteFileAtomic(src + "/" + name, body).ok());
    std::string archive = root_ + "/src.tar.gz";
    EXPECT_TRUE(PackDirectory(src, archive).ok());
    auto data = ReadFile(archive);
    EXPECT_TRUE(data.ok());
    return blobs_.Put(*data);
  }

  v1::BuildJob Job(std::vector<std::pair<std::string, std::string>> steps) {
    v1::BuildJob job;
    job.set_job_id("b-000000000001");
    job.set_attempt(1);
    for (auto& [name, run] : steps) {
      v1::Step* s = job.mutable_spec()->add_steps();
      s->set_name(name);
      s->set_run(run);
    }
    return job;
  }

  std::unique_ptr<JobRunner> Runner(v1::BuildJob job) {
    JobCallbacks cb;
    cb.log = [this](std::string_view b) {
      std::lock_guard<std::mutex> lock(mu_);
      log_.append(b.data(), b.size());
    };
    cb.progress = [this](const v1::JobProgress& p) {
      std::lock_guard<std::mutex> lock(mu_);
      progress_.push_back(p);
    };
    return std::make_unique<JobRunner>(std::move(job), options_, driver_.get(), &blobs_, std::move(cb));
  }

  std::string Log() {
    std::lock_guard<std::mutex> lock(mu_);
    return log_;
  }

  std::vector<v1::JobProgress> Progress() {
    std::lock_guard<std::mutex> lock(mu_);
    return progress_;
  }

  // The progress report whose message is `message`, or null.
  std::optional<v1::JobProgress> FindProgress(const std::string& message) {
    for (const v1::JobProgress& p : Progress()) {
      if (p.message() == message) return p;
    }
    return std::nullopt;
  }

  // The first progress report whose message starts with `prefix`, or null.
  std::optional<v1::JobProgress> FindProgressStartingWith(const std::string& prefix) {
    for (const v1::JobProgress& p : Progress()) {
      if (absl::StartsWith(p.message(), prefix)) return p;
    }
    return std::nullopt;
  }

  std::string Messages() {
    std::string out;
    for (const v1::JobProgress& p : Progress()) {
      absl::StrAppend(&out, v1::Phase_Name(p.phase()), ": ", p.message(), "\n");
    }
    return out;
  }

  void ExpectCleanedUp() {
    EXPECT_EQ(CountEntries(root_ + "/vms"), 0u) << "workspace left behind";
    EXPECT_EQ(CountEntries(root_ + "/jobs"), 0u) << "job dir left behind";
  }

  std::string root_;
  std::unique_ptr<vm::LocalDriver> driver_;
  testing::MemoryBlobs blobs_;
  JobRunnerOptions options_;
  std::mutex mu_;
  std::string log_;
  std::vector<v1::JobProgress> progress_;
};

TEST_F(JobRunnerTest, BuildsSourceAndUploadsArtifacts) {
  v1::BuildJob job = Job({{"build", "mkdir -p dist && cat input.txt input.txt > dist/out.txt && echo built"},
                          {"check", "test -f dist/out.txt && echo \"secret is $TOKEN, mode $MODE\""}});
  job.mutable_spec()->set_source_digest(PutSource({{"input.txt", "abc\n"}}));
  (*job.mutable_spec()->mutable_secret_env())["TOKEN"] = "s3cr3t";
  (*job.mutable_spec()->mutable_steps(1)->mutable_env())["MODE"] = "release";
  v1::ArtifactRule* rule = job.mutable_spec()->add_artifacts();
  rule->set_glob("dist/*.txt");
  auto runner = Runner(job);
  v1::JobResult result = runner->Run();
  EXPECT_EQ(result.outcome(), v1::JOB_STATE_SUCCEEDED) << result.error() << "\n" << Log();
  EXPECT_EQ(result.job_id(), "b-000000000001");
  EXPECT_EQ(result.attempt(), 1u);
  ASSERT_EQ(result.artifacts_size(), 1);
  EXPECT_EQ(result.artifacts(0).path(), "dist/out.txt");
  EXPECT_EQ(result.artifacts(0).name(), "out.txt");
  EXPECT_EQ(result.artifacts(0).size(), 8u);
  EXPECT_EQ(result.artifacts(0).sha256(), Sha256Hex("abc\nabc\n"));
  EXPECT_EQ(blobs_.Get(result.artifacts(0).sha256()), "abc\nabc\n");
  // The log is the steps' output and nothing else, with the secret redacted.
  EXPECT_EQ(Log(), "built\nsecret is [REDACTED], mode release\n");

  // The worker's own lines are progress notes in the phase and step they belong to.
  auto started = FindProgress("job b-000000000001 attempt 1 on test (local driver)");
  ASSERT_TRUE(started) << Messages();
  EXPECT_EQ(started->phase(), v1::PHASE_PREPARING);
  EXPECT_EQ(started->job_id(), "b-000000000001");
  EXPECT_EQ(started->attempt(), 1u);
  EXPECT_GT(started->unix_ms(), 0);
  auto source = FindProgressStartingWith(absl::StrCat("source ", job.spec().source_digest().substr(0, 12), " ("));
  ASSERT_TRUE(source) << Messages();
  EXPECT_EQ(source->phase(), v1::PHASE_PREPARING);
  auto step_done = FindProgressStartingWith("step check done in ");
  ASSERT_TRUE(step_done) << Messages();
  EXPECT_EQ(step_done->phase(), v1::PHASE_RUNNING);
  EXPECT_EQ(step_done->step_index(), 2u);
  EXPECT_EQ(step_done->step_count(), 2u);
  EXPECT_EQ(step_done->step_name(), "check");
  auto artifact = FindProgress(absl::StrCat("artifact dist/out.txt (8 bytes, sha256 ", Sha256Hex("abc\nabc\n"), ")"));
  ASSERT_TRUE(artifact) << Messages();
  EXPECT_EQ(artifact->phase(), v1::PHASE_COLLECTING_ARTIFACTS);
  EXPECT_EQ(artifact->step_index(), 0u);
  ASSERT_FALSE(progress_.empty());
  EXPECT_EQ(progress_.back().message(), "build succeeded");
  EXPECT_EQ(progress_.back().phase(), v1::PHASE_CLEANING_UP);
  for (const v1::JobProgress& p : progress_) {
    EXPECT_FALSE(absl::StrContains(p.message(), "\n")) << p.message();
    EXPECT_FALSE(absl::StartsWith(p.message(), "==>")) << p.message();
  }

  // Every phase ran, in order, with a timestamp, and was reported as progress.
  std::vector<v1::Phase> phases;
  for (const auto& p : result.phases()) {
    phases.push_back(p.phase());
    EXPECT_GT(p.started_unix_ms(), 0);
    EXPECT_GE(p.duration_ms(), 0);
  }
  std::vector<v1::Phase> want = {v1::PHASE_PREPARING,     v1::PHASE_PROVISIONING_VM,       v1::PHASE_CONNECTING,
                                 v1::PHASE_UPLOADING_SOURCE, v1::PHASE_RUNNING, v1::PHASE_COLLECTING_ARTIFACTS,
                                 v1::PHASE_UPLOADING_ARTIFACTS, v1::PHASE_CLEANING_UP};
  EXPECT_EQ(phases, want);
  bool saw_step2 = false;
  for (const auto& p : progress_) {
    if (p.phase() == v1::PHASE_RUNNING && p.step_index() == 2) {
      saw_step2 = true;
      EXPECT_EQ(p.step_count(), 2u);
      EXPECT_EQ(p.step_name(), "check");
    }
  }
  EXPECT_TRUE(saw_step2);
  ExpectCleanedUp();
}

TEST_F(JobRunnerTest, FailingStepStopsLaterSteps) {
  auto runner = Runner(Job({{"one", "echo first"}, {"two", "echo failing; exit 3"}, {"three", "echo third-ran"}}));
  v1::JobResult result = runner->Run();
  EXPECT_EQ(result.outcome(), v1::JOB_STATE_FAILED);
  EXPECT_EQ(result.exit_code(), 3);
  EXPECT_EQ(result.failed_step(), "two");
  EXPECT_TRUE(absl::StrContains(result.error(), "two")) << result.error();
  EXPECT_EQ(Log(), "first\nfailing\n");
  for (const v1::JobProgress& p : Progress()) EXPECT_NE(p.step_index(), 3u) << p.message();
  auto exited = FindProgressStartingWith("step two exited with 3 after ");
  ASSERT_TRUE(exited) << Messages();
  EXPECT_EQ(exited->step_index(), 2u);
  EXPECT_TRUE(FindProgress("build failed: step two exited with 3")) << Messages();
  // Cleanup is the last phase, timed once, also on the failure path.
  ASSERT_GT(result.phases_size(), 0);
  EXPECT_EQ(result.phases(result.phases_size() - 1).phase(), v1::PHASE_CLEANING_UP);
  int cleanups = 0;
  for (const auto& p : result.phases()) cleanups += p.phase() == v1::PHASE_CLEANING_UP;
  EXPECT_EQ(cleanups, 1);
  ExpectCleanedUp();
}

TEST_F(JobRunnerTest, StepTimeoutIsTimedOut) {
  v1::BuildJob job = Job({{"slow", "sleep 30"}, {"after", "echo after-ran"}});
  job.mutable_spec()->mutable_steps(0)->set_timeout_seconds(1);
  auto runner = Runner(job);
  auto start = std::chrono::steady_clock::now();
  v1::JobResult result = runner->Run();
  EXPECT_LT(std::chrono::steady_clock::now() - start, seconds(5));
  EXPECT_EQ(result.outcome(), v1::JOB_STATE_TIMED_OUT);
  EXPECT_EQ(result.failed_step(), "slow");
  EXPECT_FALSE(absl::StrContains(Log(), "after-ran"));
  ExpectCleanedUp();
}

TEST_F(JobRunnerTest, JobTimeoutIsTimedOut) {
  v1::BuildJob job = Job({{"a", "sleep 0.2"}, {"b", "sleep 30"}});
  job.mutable_spec()->set_timeout_seconds(1);
  auto runner = Runner(job);
  auto start = std::chrono::steady_clock::now();
  v1::JobResult result = runner->Run();
  EXPECT_LT(std::chrono::steady_clock::now() - start, seconds(5));
  EXPECT_EQ(result.outcome(), v1::JOB_STATE_TIMED_OUT);
  EXPECT_TRUE(absl::StrContains(result.error(), "job timed out")) << result.error();
  ExpectCleanedUp();
}

TEST_F(JobRunnerTest, CancelStopsTheStepQuicklyAndKillsItsChildren) {
  v1::BuildJob job = Job({{"wait", "echo $$ > \"$PGID_FILE\"; sleep 1000 & sleep 1000"}});
  (*job.mutable_spec()->mutable_steps(0)->mutable_env())["PGID_FILE"] = root_ + "/pgid";
  job.mutable_spec()->set_cancel_grace_seconds(1);
  auto runner = Runner(job);
  v1::JobResult result;
  std::thread t([&] { result = runner->Run(); });
  // Wait until the step's shell runs (it has written its process group), not only until the step was
  // announced: a cancel before the shell starts would leave nothing to kill.
  auto wait_start = std::chrono::steady_clock::now();
  while (std::chrono::steady_clock::now() - wait_start < seconds(20)) {
    absl::StatusOr<std::string> written = ReadFile(root_ + "/pgid");
    if (written.ok() && absl::EndsWith(*written, "\n")) break;
    std::this_thread::sleep_for(milliseconds(20));
  }
  auto start = std::chrono::steady_clock::now();
  runner->Cancel("user asked");
  t.join();
  // Far below the sleeps; room for a loaded machine on top of the 1 s grace.
  EXPECT_LT(std::chrono::steady_clock::now() - start, seconds(5));
  EXPECT_EQ(result.outcome(), v1::JOB_STATE_CANCELLED);
  EXPECT_TRUE(absl::StrContains(result.error(), "user asked")) << result.error();
  EXPECT_TRUE(FindProgress("build cancelled: user asked")) << Messages();
  EXPECT_EQ(Log(), "");
  auto text = ReadFile(root_ + "/pgid");
  ASSERT_TRUE(text.ok()) << text.status();
  int pgid = std::atoi(text->c_str());
  ASSERT_GT(pgid, 1);
  EXPECT_FALSE(ProcessGroupAlive(pgid)) << "a process of the cancelled step survived";
  ExpectCleanedUp();
}

TEST_F(JobRunnerTest, SymlinkArtifactIsSkippedWithAWarningNoteOutsideTheLog) {
  v1::BuildJob job = Job({{"make", "mkdir -p dist && printf real > dist/a.txt && ln -s /etc/passwd dist/b.txt"}});
  job.mutable_spec()->add_artifacts()->set_glob("dist/*");
  v1::JobResult result = Runner(job)->Run();
  EXPECT_EQ(result.outcome(), v1::JOB_STATE_SUCCEEDED) << result.error();
  ASSERT_EQ(result.artifacts_size(), 1);
  EXPECT_EQ(result.artifacts(0).path(), "dist/a.txt");
  auto warning = FindProgress("warning: artifact dist/b.txt is a symlink; skipped");
  ASSERT_TRUE(warning) << Messages();
  EXPECT_EQ(warning->phase(), v1::PHASE_COLLECTING_ARTIFACTS);
  EXPECT_EQ(Log(), "") << "the step printed nothing, so the log holds nothing";
  ExpectCleanedUp();
}

TEST_F(JobRunnerTest, SigningOnLocalDriverIsAnError) {
  v1::BuildJob job = Job({{"x", "echo never"}});
  job.mutable_spec()->mutable_signing()->set_p12_digest(std::string(64, 'a'));
  auto runner = Runner(job);
  v1::JobResult result = runner->Run();
  EXPECT_EQ(result.outcome(), v1::JOB_STATE_ERROR);
  EXPECT_EQ(result.error(), "signing needs a macOS VM driver");
  EXPECT_FALSE(absl::StrContains(Log(), "never"));
  ExpectCleanedUp();
}

TEST_F(JobRunnerTest, MissingSourceBlobIsAnError) {
  v1::BuildJob job = Job({{"x", "true"}});
  job.mutable_spec()->set_source_digest(std::string(64, 'b'));
  v1::JobResult result = Runner(job)->Run();
  EXPECT_EQ(result.outcome(), v1::JOB_STATE_ERROR);
  EXPECT_TRUE(absl::StrContains(result.error(), "not found")) << result.error();
  ExpectCleanedUp();
}

TEST_F(JobRunnerTest, MissingRequiredArtifactFailsNamingTheRule) {
  v1::BuildJob job = Job({{"x", "true"}});
  job.mutable_spec()->add_artifacts()->set_glob("**/*.ipa");
  v1::JobResult result = Runner(job)->Run();
  EXPECT_EQ(result.outcome(), v1::JOB_STATE_FAILED);
  EXPECT_TRUE(absl::StrContains(result.error(), "**/*.ipa")) << result.error();
  ExpectCleanedUp();
}

TEST_F(JobRunnerTest, ArtifactsPastTheConfiguredJobTotalFailNamingFileAndLimit) {
  options_.artifact_max_total_bytes = 1000;
  v1::BuildJob job = Job({{"x", "mkdir -p dist && head -c 600 /dev/zero > dist/a.bin && head -c 600 /dev/zero > dist/b.bin"}});
  job.mutable_spec()->add_artifacts()->set_glob("dist/*.bin");
  v1::JobResult result = Runner(job)->Run();
  EXPECT_EQ(result.outcome(), v1::JOB_STATE_FAILED);
  EXPECT_TRUE(absl::StrContains(result.error(), "per-job limit of 1000 bytes")) << result.error();
  EXPECT_TRUE(absl::StrContains(result.error(), "dist/b.bin") || absl::StrContains(result.error(), "dist/a.bin"))
      << result.error();
  EXPECT_EQ(result.artifacts_size(), 0);
  ExpectCleanedUp();
}

TEST_F(JobRunnerTest, HostileSourceArchiveIsRefusedBeforeAnyVmWork) {
  // A symlink out of the tree, then a file written through it.
  std::string bytes(1 << 16, '\0');
  size_t used = 0;
  struct archive* a = archive_write_new();
  archive_write_add_filter_gzip(a);
  archive_write_set_format_pax_restricted(a);
  ASSERT_EQ(archive_write_open_memory(a, bytes.data(), bytes.size(), &used), ARCHIVE_OK);
  archive_entry* e = archive_entry_new();
  archive_entry_set_pathname(e, "escape");
  archive_entry_set_filetype(e, AE_IFLNK);
  archive_entry_set_symlink(e, root_.c_str());
  archive_write_header(a, e);
  archive_entry_clear(e);
  archive_entry_set_pathname(e, "escape/planted");
  archive_entry_set_filetype(e, AE_IFREG);
  archive_entry_set_perm(e, 0644);
  archive_entry_set_size(e, 1);
  archive_write_header(a, e);
  archive_write_data(a, "x", 1);
  archive_entry_free(e);
  archive_write_close(a);
  archive_write_free(a);
  bytes.resize(used);

  v1::BuildJob job = Job({{"x", "true"}});
  job.mutable_spec()->set_source_digest(blobs_.Put(bytes));
  v1::JobResult result = Runner(job)->Run();
  EXPECT_EQ(result.outcome(), v1::JOB_STATE_ERROR);
  EXPECT_TRUE(absl::StrContains(result.error(), "escape/planted")) << result.error();
  EXPECT_NE(access((root_ + "/planted").c_str(), F_OK), 0);
  for (const v1::JobProgress& p : Progress()) {
    EXPECT_NE(p.phase(), v1::PHASE_PROVISIONING_VM) << "VM work started: " << p.message();
  }
  ExpectCleanedUp();
}

TEST_F(JobRunnerTest, WorkingDirMustStayInsideTheWorkspace) {
  v1::BuildJob job = Job({{"x", "true"}});
  job.mutable_spec()->mutable_steps(0)->set_working_dir("../..");
  v1::JobResult result = Runner(job)->Run();
  EXPECT_EQ(result.outcome(), v1::JOB_STATE_FAILED);
  EXPECT_TRUE(absl::StrContains(result.error(), "working_dir")) << result.error();
  ExpectCleanedUp();
}

TEST_F(JobRunnerTest, ALogAboveTheLimitIsCutWithANoteAndTheBuildGoesOn) {
  options_.max_log_bytes = 100000;
  // 300 000 bytes of output, then a marker after the cut and a second step that must still run.
  v1::BuildJob job = Job({{"loud", "head -c 300000 /dev/zero | tr '\\0' x; echo after-the-cut"},
                          {"next", "echo second-step > done.txt"}});
  job.mutable_spec()->add_artifacts()->set_glob("done.txt");
  // An active redactor that keeps holding back the x run (it could start this secret) up to the cut.
  (*job.mutable_spec()->mutable_secret_env())["TOKEN"] = "xxxxxxxxxxxxxxxxxxxx-not-in-the-output";
  auto runner = Runner(job);
  v1::JobResult result = runner->Run();
  EXPECT_EQ(result.outcome(), v1::JOB_STATE_SUCCEEDED) << result.error();
  ASSERT_EQ(result.artifacts_size(), 1) << "the step after the cut ran";
  const std::string log = Log();
  const std::string note =
      "\n[freeagent: this attempt's log reached its limit of 100000 bytes; further output is dropped, the build "
      "goes on]\n";
  ASSERT_EQ(log.size(), 100000 + note.size());
  EXPECT_EQ(log.substr(0, 100000), std::string(100000, 'x'));
  EXPECT_EQ(log.substr(100000), note);
  EXPECT_FALSE(absl::StrContains(log, "after-the-cut"));
  EXPECT_TRUE(FindProgress("the log reached its limit of 100000 bytes; further output of this attempt is dropped"))
      << Messages();
  ExpectCleanedUp();
}

}  // namespace
}  // namespace freeagent::node
