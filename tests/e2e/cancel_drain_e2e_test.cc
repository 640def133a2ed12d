// End to end: cancel, timeouts and drain take the whole path. A controller and a `static` worker whose
// builds run over SSH on a real OpenSSH server (the sshd fixture) on this host, so the test can look at
// the guest's processes by pid and process group; drain tests use the local driver.
#include <signal.h>

#include <thread>

#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/strip.h"
#include "common/fs.h"
#include "common/process.h"
#include "tests/e2e/e2e_fixture.h"
#include "tests/support/sshd_fixture.h"

namespace freeagent::testing {
namespace {

using namespace std::chrono_literals;
using freeagent::v1::Build;
using Clock = std::chrono::steady_clock;

int64_t Ms(Clock::duration d) { return std::chrono::duration_cast<std::chrono::milliseconds>(d).count(); }

// Waits until `path` exists (a step writes it), up to `timeout`.
bool WaitForFile(const std::string& path, std::chrono::milliseconds timeout) {
  auto until = Clock::now() + timeout;
  while (::access(path.c_str(), F_OK) != 0) {
    if (Clock::now() >= until) return false;
    std::this_thread::sleep_for(20ms);
  }
  return true;
}

// The number in a file a step wrote ("$$" of the step's shell: its process group, see ssh_guest.cc).
pid_t ReadPid(const std::string& path) {
  absl::StatusOr<std::string> text = ReadFile(path);
  int pid = 0;
  if (!text.ok() || !absl::SimpleAtoi(absl::StripAsciiWhitespace(*text), &pid)) return 0;
  return pid;
}

// Running (a zombie not yet reaped by whoever inherited it counts as gone).
bool Running(pid_t pid) {
  std::optional<ProcStat> st = ReadProcStat(pid);
  return st && st->state != 'Z' && st->state != 'X';
}

bool GroupGoneWithin(pid_t pgid, std::chrono::milliseconds timeout) {
  auto until = Clock::now() + timeout;
  while (ProcessGroupAlive(pgid)) {
    if (Clock::now() >= until) return false;
    std::this_thread::sleep_for(20ms);
  }
  return true;
}

class CancelDrainE2ETest : public E2ETest {
 protected:
  // Cancel, retried once if the client's idle connection was dropped meanwhile (UNAVAILABLE).
  absl::Status CancelBuild(const std::string& id) {
    absl::Status st = client().Cancel(id).status();
    if (absl::IsUnavailable(st)) st = client().Cancel(id).status();
    return st;
  }

  // Controller + one static-driver worker over the sshd fixture.
  void StartStaticCluster() {
    auto sshd = SshdFixture::Start();
    ASSERT_TRUE(sshd.ok()) << sshd.status();
    sshd_ = std::move(*sshd);
    FA_ASSERT_OK_AND_ASSIGN(workspace_root_, cluster().MakeDir("machine-jobs"));
    FA_ASSERT_OK_AND_ASSIGN(std::string conf_dir, cluster().MakeDir("conf"));
    const std::string config = conf_dir + "/worker.toml";
    FA_ASSERT_OK(WriteFileAtomic(
        config, absl::StrCat("driver = \"static\"\n\n[static]\nhost = \"127.0.0.1\"\nport = ", sshd_->port(),
                             "\nuser = \"", sshd_->user(), "\"\nkey = \"", sshd_->ed25519_key(),
                             "\"\nhost_key_fingerprint = \"", sshd_->host_key_fingerprint(),
                             "\"\nworkspace_root = \"", workspace_root_, "\"\n")));
    StartController();
    ASSERT_FALSE(HasFatalFailure());
    WorkerOptions w = NamedWorker("mac1");
    w.driver = "static";
    w.extra_args = {"--config", config};
    ASSERT_NE(StartWorker(w), nullptr);
    FA_ASSERT_OK(client().WaitForWorkers(1, 20s));
    FA_ASSERT_OK_AND_ASSIGN(source_, client().UploadTrivialSource(cluster().root()));
    FA_ASSERT_OK_AND_ASSIGN(rec_, cluster().MakeDir("rec"));
  }

  // Controller + one local-driver worker; returns the worker process.
  ChildProcess* StartLocalCluster(const std::string& name = "w1") {
    StartController();
    if (HasFatalFailure()) return nullptr;
    ChildProcess* worker = StartWorker(NamedWorker(name));
    if (worker == nullptr) return nullptr;
    absl::Status online = client().WaitForWorkers(1, 20s);
    EXPECT_TRUE(online.ok()) << online;
    auto source = client().UploadTrivialSource(cluster().root());
    EXPECT_TRUE(source.ok()) << source.status();
    if (source.ok()) source_ = *source;
    auto rec = cluster().MakeDir("rec");
    EXPECT_TRUE(rec.ok()) << rec.status();
    if (rec.ok()) rec_ = *rec;
    return worker;
  }

  // Waits until the controller lists its only worker in `state` (draining is reported as soon as the
  // worker takes its SIGTERM or the controller's drain in).
  bool WaitForWorkerState(freeagent::v1::WorkerState state, std::chrono::milliseconds timeout) {
    auto until = Clock::now() + timeout;
    for (;;) {
      absl::StatusOr<std::vector<freeagent::v1::WorkerInfo>> workers = client().Workers();
      if (workers.ok() && workers->size() == 1 && (*workers)[0].state() == state) return true;
      if (Clock::now() >= until) return false;
      std::this_thread::sleep_for(20ms);
    }
  }

  // A step that runs until the test creates rec_/release (a fixed sleep could end it before a loaded
  // test got to its checks), then prints "finished".
  std::string UntilReleased() {
    return absl::StrCat("touch ", rec_, "/started; while [ ! -e ", rec_, "/release ]; do sleep 0.05; done; ",
                        "echo finished");
  }
  void Release() { EXPECT_TRUE(WriteFileAtomic(rec_ + "/release", "").ok()); }

  size_t WorkspaceEntries() {
    absl::StatusOr<std::vector<std::string>> names = ListDirectory(workspace_root_);
    return names.ok() ? names->size() : 0;
  }

  // A build whose step records its process group and sleeps (grace 1 s); returns once the step runs.
  absl::StatusOr<Build> StartLongBuild() {
    auto spec = MakeSpec(source_, {{"long", Recorded(absl::StrCat("touch ", rec_, "/started; sleep 300"))}});
    spec.set_cancel_grace_seconds(1);
    absl::StatusOr<Build> build = client().Submit(spec);
    if (build.ok() && !WaitForFile(rec_ + "/started", 20s)) return absl::DeadlineExceededError("step never ran");
    return build;
  }

  // A step that records its process group, then runs `body`.
  std::string Recorded(const std::string& body) { return absl::StrCat("echo $$ > ", rec_, "/pgid; ", body); }

  std::unique_ptr<SshdFixture> sshd_;
  std::string workspace_root_;
  std::string source_;
  std::string rec_;
};

TEST_F(CancelDrainE2ETest, CancelTermsTheGuestStepGroupAndHonoursTheGraceOfItsTrap) {
  StartStaticCluster();
  ASSERT_FALSE(HasFatalFailure());
  // The trap takes 2 s of a 12 s grace to shut down; it must be allowed to finish, and the build must
  // end when the step does, not when the grace does.
  auto spec = MakeSpec(source_, {{"serve", Recorded(absl::StrCat(
                                               "trap 'echo term >> ", rec_, "/trap; sleep 2; echo tidied >> ", rec_,
                                               "/trap; exit 143' TERM; sleep 300 & echo $! > ", rec_,
                                               "/child; touch ", rec_, "/ready; wait"))}});
  spec.set_cancel_grace_seconds(12);
  FA_ASSERT_OK_AND_ASSIGN(Build build, client().Submit(spec));
  ASSERT_TRUE(WaitForFile(rec_ + "/ready", 30s)) << "the step never started";
  const pid_t pgid = ReadPid(rec_ + "/pgid");
  const pid_t child = ReadPid(rec_ + "/child");
  ASSERT_GT(pgid, 1);
  ASSERT_GT(child, 1);
  ASSERT_TRUE(ProcessGroupAlive(pgid));

  auto start = Clock::now();
  FA_ASSERT_OK(CancelBuild(build.id()));
  // The TERM goes to the machine as a new SSH command (1-3 s on a loaded machine); time the rest from
  // its arrival.
  ASSERT_TRUE(WaitForFile(rec_ + "/trap", 10s)) << "no SIGTERM reached the step";
  auto term_at = Clock::now();
  FA_ASSERT_OK_AND_ASSIGN(Build done, client().WaitForTerminal(build.id(), 30s));
  auto elapsed = Clock::now() - start;
  auto after_term = Clock::now() - term_at;
  EXPECT_EQ(done.state(), freeagent::v1::JOB_STATE_CANCELLED) << done.ShortDebugString();
  EXPECT_EQ(done.failed_step(), "serve");

  absl::StatusOr<std::string> trap = ReadFile(rec_ + "/trap");
  ASSERT_TRUE(trap.ok()) << "the step's TERM trap never ran: " << trap.status();
  EXPECT_EQ(*trap, "term\ntidied\n") << "the trap was cut short: the grace period was not honoured";
  EXPECT_GE(Ms(elapsed), 1900) << "the build ended before its step's trap finished";
  // The 2 s trap plus the cleanup over SSH, against at least the 12 s grace had the worker waited it out.
  EXPECT_LT(Ms(after_term), 10000) << "the worker waited for the whole grace although the step had exited";
  EXPECT_TRUE(GroupGoneWithin(pgid, 2s)) << "a process of the cancelled step's group survived";
  EXPECT_FALSE(Running(child)) << "the step's background child " << child << " survived";
  EXPECT_EQ(WorkspaceEntries(), 0u) << "the job's workspace on the machine was not removed";
}

TEST_F(CancelDrainE2ETest, CancelKillsAStepThatIgnoresTermOnceTheGraceIsOver) {
  StartStaticCluster();
  ASSERT_FALSE(HasFatalFailure());
  auto spec = MakeSpec(source_, {{"stubborn", Recorded(absl::StrCat("trap 'echo term >> ", rec_,
                                                                    "/trap' TERM; touch ", rec_,
                                                                    "/ready; while :; do sleep 0.1; done"))}});
  spec.set_cancel_grace_seconds(2);
  FA_ASSERT_OK_AND_ASSIGN(Build build, client().Submit(spec));
  ASSERT_TRUE(WaitForFile(rec_ + "/ready", 30s)) << "the step never started";
  const pid_t pgid = ReadPid(rec_ + "/pgid");
  ASSERT_GT(pgid, 1);

  auto start = Clock::now();
  FA_ASSERT_OK(CancelBuild(build.id()));
  ASSERT_TRUE(WaitForFile(rec_ + "/trap", 5s)) << "no SIGTERM reached the step";
  const int64_t term_ms = Ms(Clock::now() - start);
  EXPECT_TRUE(ProcessGroupAlive(pgid)) << "the step died at once although its grace is 2 s";
  FA_ASSERT_OK_AND_ASSIGN(Build done, client().WaitForTerminal(build.id(), 30s));
  auto elapsed = Clock::now() - start;
  EXPECT_EQ(done.state(), freeagent::v1::JOB_STATE_CANCELLED) << done.ShortDebugString();
  // Only bounds against a lost cancel or kill: each of TERM, KILL and the workspace cleanup runs as a
  // new command over SSH, 1-3 s each on a loaded 2-core machine (bench_cancel_latency measures it).
  EXPECT_LT(term_ms, 10000) << "SIGTERM took " << term_ms << " ms to arrive";
  EXPECT_GE(Ms(elapsed), 1900) << "SIGKILL came before the grace period ended";
  EXPECT_LT(Ms(elapsed), 20000);
  EXPECT_TRUE(GroupGoneWithin(pgid, 2s)) << "a process of the killed step's group survived";
  EXPECT_EQ(WorkspaceEntries(), 0u) << "the job's workspace on the machine was not removed";
}

TEST_F(CancelDrainE2ETest, StepTimeoutTakesTheCancelPathThroughTheTrap) {
  StartStaticCluster();
  ASSERT_FALSE(HasFatalFailure());
  auto spec = MakeSpec(source_, {{"slow", Recorded(absl::StrCat("trap 'echo term >> ", rec_,
                                                                "/trap; exit 143' TERM; sleep 300 & wait"))}});
  spec.mutable_steps(0)->set_timeout_seconds(2);
  spec.set_cancel_grace_seconds(3);
  FA_ASSERT_OK_AND_ASSIGN(Build build, client().Submit(spec));
  FA_ASSERT_OK_AND_ASSIGN(Build done, client().WaitForTerminal(build.id(), 40s));
  EXPECT_EQ(done.state(), freeagent::v1::JOB_STATE_TIMED_OUT) << done.ShortDebugString();
  EXPECT_EQ(done.failed_step(), "slow");
  FA_ASSERT_OK_AND_ASSIGN(std::string trap, ReadFile(rec_ + "/trap"));
  EXPECT_EQ(trap, "term\n") << "the timed-out step did not get SIGTERM first";
  EXPECT_TRUE(GroupGoneWithin(ReadPid(rec_ + "/pgid"), 2s)) << "a process of the timed-out step survived";
  EXPECT_EQ(WorkspaceEntries(), 0u);
}

// Fault test 5: the guest process stops producing output and never exits.
TEST_F(CancelDrainE2ETest, StalledStepEndsTimedOutByTheIdleTimeoutNamingItAndLeavesNothing) {
  StartStaticCluster();
  ASSERT_FALSE(HasFatalFailure());
  auto spec = MakeSpec(source_, {{"fetch", "echo fetching"},
                                 {"stall", Recorded(absl::StrCat("for i in 1 2 3 4 5 6; do echo tick $i; sleep 0.5; "
                                                                 "done; sleep 600 & echo $! > ",
                                                                 rec_, "/child; wait"))}});
  spec.set_idle_timeout_seconds(2);  // longer than the ticks' gaps, so only the stall trips it
  spec.set_cancel_grace_seconds(1);
  auto start = Clock::now();
  FA_ASSERT_OK_AND_ASSIGN(Build build, client().Submit(spec));
  FA_ASSERT_OK_AND_ASSIGN(Build done, client().WaitForTerminal(build.id(), 40s));
  EXPECT_EQ(done.state(), freeagent::v1::JOB_STATE_TIMED_OUT) << done.ShortDebugString();
  EXPECT_EQ(done.failed_step(), "stall");
  EXPECT_TRUE(absl::StrContains(done.error(), "step stall produced no output for 2 s")) << done.error();
  EXPECT_GE(Ms(Clock::now() - start), 4000) << "the idle timeout fired while the step was still printing";
  FA_ASSERT_OK_AND_ASSIGN(std::string log, client().ReadLog(build.id()));
  EXPECT_TRUE(absl::StrContains(log, "tick 6\n")) << log;
  const pid_t pgid = ReadPid(rec_ + "/pgid");
  const pid_t child = ReadPid(rec_ + "/child");
  ASSERT_GT(pgid, 1);
  ASSERT_GT(child, 1);
  EXPECT_TRUE(GroupGoneWithin(pgid, 2s)) << "a process of the stalled step's group survived";
  EXPECT_FALSE(Running(child)) << "the stalled sleep " << child << " survived";
  EXPECT_EQ(WorkspaceEntries(), 0u);
}

// Drain: the first SIGTERM lets the running build finish, gives the worker no new one, then exits 0.
TEST_F(CancelDrainE2ETest, SigtermDrainsTheWorkerWhichFinishesItsBuildThenExitsZero) {
  ChildProcess* worker = StartLocalCluster();
  ASSERT_NE(worker, nullptr);
  ASSERT_FALSE(HasFailure());
  FA_ASSERT_OK_AND_ASSIGN(Build running, client().Submit(MakeSpec(source_, {{"work", UntilReleased()}})));
  ASSERT_TRUE(WaitForFile(rec_ + "/started", 20s));
  worker->Signal(SIGTERM);
  // Submitted only once the controller knows, so it is not offered to the worker and turned down.
  EXPECT_TRUE(WaitForWorkerState(freeagent::v1::WORKER_STATE_DRAINING, 20s));
  FA_ASSERT_OK_AND_ASSIGN(Build later, client().Submit(MakeSpec(source_, {{"later", "true"}})));
  EXPECT_FALSE(worker->Wait(1s).has_value()) << "the worker exited while its build was running";
  Release();

  FA_ASSERT_OK_AND_ASSIGN(Build done, client().WaitForTerminal(running.id(), 20s));
  EXPECT_EQ(done.state(), freeagent::v1::JOB_STATE_SUCCEEDED) << done.ShortDebugString();
  std::optional<int> exit_code = worker->Wait(15s);
  ASSERT_TRUE(exit_code.has_value()) << "the drained worker did not exit";
  EXPECT_EQ(*exit_code, 0);
  FA_ASSERT_OK_AND_ASSIGN(Build queued, client().Get(later.id()));
  EXPECT_EQ(queued.state(), freeagent::v1::JOB_STATE_QUEUED) << "a draining worker took a new build: "
                                                             << queued.ShortDebugString();
  FA_ASSERT_OK_AND_ASSIGN(std::string log, client().ReadLog(running.id()));
  EXPECT_EQ(log, "finished\n");
}

// Drain through the controller: `freeagent drain NAME` does what SIGTERM does.
TEST_F(CancelDrainE2ETest, CliDrainLetsTheRunningBuildFinishAndTheWorkerExitsZero) {
  ChildProcess* worker = StartLocalCluster("drained");
  ASSERT_NE(worker, nullptr);
  ASSERT_FALSE(HasFailure());
  FA_ASSERT_OK_AND_ASSIGN(Build running, client().Submit(MakeSpec(source_, {{"work", UntilReleased()}})));
  ASSERT_TRUE(WaitForFile(rec_ + "/started", 20s));

  ProcessOptions cli;
  cli.argv = {CliBinary(), "--controller", cluster().address(), "--insecure", "drain", "drained"};
  cli.deadline = Deadline::After(30s);
  FA_ASSERT_OK_AND_ASSIGN(ProcessResult drained, RunProcess(cli));
  ASSERT_EQ(drained.exit_code, 0) << drained.stdout_data << drained.stderr_data;
  FA_ASSERT_OK_AND_ASSIGN(auto workers, client().Workers());
  ASSERT_EQ(workers.size(), 1u);
  EXPECT_EQ(workers[0].state(), freeagent::v1::WORKER_STATE_DRAINING);
  FA_ASSERT_OK_AND_ASSIGN(Build later, client().Submit(MakeSpec(source_, {{"later", "true"}})));
  EXPECT_FALSE(worker->Wait(1s).has_value()) << "the worker exited while its build was running";
  Release();

  FA_ASSERT_OK_AND_ASSIGN(Build done, client().WaitForTerminal(running.id(), 20s));
  EXPECT_EQ(done.state(), freeagent::v1::JOB_STATE_SUCCEEDED) << done.ShortDebugString();
  std::optional<int> exit_code = worker->Wait(15s);
  ASSERT_TRUE(exit_code.has_value()) << "the drained worker did not exit";
  EXPECT_EQ(*exit_code, 0);
  FA_ASSERT_OK_AND_ASSIGN(Build queued, client().Get(later.id()));
  EXPECT_EQ(queued.state(), freeagent::v1::JOB_STATE_QUEUED) << queued.ShortDebugString();
}

TEST_F(CancelDrainE2ETest, CliDrainTimeoutCancelsTheRunningBuildThenTheWorkerExitsZero) {
  ChildProcess* worker = StartLocalCluster("drained");
  ASSERT_NE(worker, nullptr);
  ASSERT_FALSE(HasFailure());
  FA_ASSERT_OK_AND_ASSIGN(Build running, StartLongBuild());
  const pid_t pgid = ReadPid(rec_ + "/pgid");

  ProcessOptions cli;
  cli.argv = {CliBinary(), "--controller", cluster().address(), "--insecure", "drain", "drained", "--timeout", "1"};
  cli.deadline = Deadline::After(30s);
  FA_ASSERT_OK_AND_ASSIGN(ProcessResult drained, RunProcess(cli));
  ASSERT_EQ(drained.exit_code, 0) << drained.stdout_data << drained.stderr_data;
  auto start = Clock::now();
  FA_ASSERT_OK_AND_ASSIGN(Build done, client().WaitForTerminal(running.id(), 20s));
  EXPECT_EQ(done.state(), freeagent::v1::JOB_STATE_CANCELLED) << done.ShortDebugString();
  EXPECT_TRUE(absl::StrContains(done.error(), "drain timed out")) << done.error();
  EXPECT_LT(Ms(Clock::now() - start), 8000);
  std::optional<int> exit_code = worker->Wait(15s);
  ASSERT_TRUE(exit_code.has_value()) << "the drained worker did not exit";
  EXPECT_EQ(*exit_code, 0);
  EXPECT_TRUE(GroupGoneWithin(pgid, 2s)) << "a process of the cancelled build survived";
}

// A second SIGTERM cancels at once; the build still cleans up and the worker exits 0.
TEST_F(CancelDrainE2ETest, SecondSigtermCancelsTheRunningBuildAtOnceAndStillCleansUp) {
  ChildProcess* worker = StartLocalCluster();
  ASSERT_NE(worker, nullptr);
  ASSERT_FALSE(HasFailure());
  FA_ASSERT_OK_AND_ASSIGN(Build running, StartLongBuild());
  const pid_t pgid = ReadPid(rec_ + "/pgid");
  ASSERT_GT(pgid, 1);

  worker->Signal(SIGTERM);
  // Taken in (two signals sent before the worker takes the first would count as one).
  EXPECT_TRUE(WaitForWorkerState(freeagent::v1::WORKER_STATE_DRAINING, 20s));
  std::this_thread::sleep_for(500ms);
  EXPECT_TRUE(ProcessGroupAlive(pgid)) << "the first SIGTERM must let the build run on";
  auto start = Clock::now();
  worker->Signal(SIGTERM);
  std::optional<int> exit_code = worker->Wait(20s);
  ASSERT_TRUE(exit_code.has_value()) << "the worker did not exit after the second SIGTERM";
  EXPECT_EQ(*exit_code, 0);
  EXPECT_LT(Ms(Clock::now() - start), 10000);
  EXPECT_FALSE(ProcessGroupAlive(pgid)) << "a process of the cancelled build survived the worker";
  FA_ASSERT_OK_AND_ASSIGN(Build done, client().WaitForTerminal(running.id(), 20s));
  EXPECT_EQ(done.state(), freeagent::v1::JOB_STATE_CANCELLED) << done.ShortDebugString();
  // The worker removed the build's private directory before it exited.
  absl::StatusOr<std::vector<std::string>> jobs = ListDirectory(cluster().root() + "/work-w1/jobs");
  if (jobs.ok()) EXPECT_TRUE(jobs->empty());
}

}  // namespace
}  // namespace freeagent::testing
