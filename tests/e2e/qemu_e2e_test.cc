// End to end with the `qemu` driver: controller + worker whose jobs each run in a fresh Debian 12 VM
// (real QEMU under TCG, the image from deploy/images/debian-12), driven by the `freeagent` command and
// the client API. Checks what the user sees and what is left on the host.
#include <signal.h>
#include <unistd.h>

#include <thread>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "common/archive.h"
#include "common/fs.h"
#include "common/process.h"
#include "common/sha256.h"
#include "common/status_macros.h"
#include "tests/e2e/e2e_fixture.h"
#include "tests/vm/test_image.h"

namespace freeagent::testing {
namespace {

using namespace std::chrono_literals;
using Clock = std::chrono::steady_clock;

size_t Entries(const std::string& dir) {
  absl::StatusOr<std::vector<std::string>> names = ListDirectory(dir);
  return names.ok() ? names->size() : 0;
}

class QemuE2ETest : public E2ETest {
 protected:
  void SetUp() override {
    E2ETest::SetUp();
    ASSERT_FALSE(HasFatalFailure());
    auto manifest = TestImageManifest();
    ASSERT_TRUE(manifest.ok()) << manifest.status();
    FA_ASSERT_OK_AND_ASSIGN(work_dir_, cluster().MakeDir("worker"));
    FA_ASSERT_OK_AND_ASSIGN(std::string conf_dir, cluster().MakeDir("conf"));
    config_path_ = conf_dir + "/worker.toml";
    FA_ASSERT_OK(WriteFileAtomic(
        config_path_, absl::StrCat("driver = \"qemu\"\nslots = 2\n\n[qemu]\naccel = \"tcg\"\ndefault_cpus = 1\n"
                                   "default_memory_mb = 1024\nboot_timeout_seconds = 240\n\n[images.debian-12]\n"
                                   "manifest = \"",
                                   *manifest, "\"\n")));
    StartController();
  }

  ChildProcess* StartQemuWorker() {
    WorkerOptions w = NamedWorker("vm1");
    w.driver = "qemu";
    w.work_dir = work_dir_;
    w.extra_args = {"--config", config_path_};
    ChildProcess* worker = StartWorker(w);
    if (worker != nullptr) {
      absl::Status s = client().WaitForWorkers(1, 20s);
      EXPECT_TRUE(s.ok()) << s;
    }
    return worker;
  }

  ProcessResult RunCli(std::vector<std::string> args) {
    ProcessOptions options;
    options.argv = {CliBinary(), "--controller", cluster().address(), "--insecure"};
    options.argv.insert(options.argv.end(), args.begin(), args.end());
    options.deadline = Deadline::After(600s);
    absl::StatusOr<ProcessResult> result = RunProcess(options);
    EXPECT_TRUE(result.ok()) << result.status();
    return result.ok() ? *result : ProcessResult{};
  }

  // A job of one step that says it started and then sleeps.
  absl::StatusOr<v1::Build> SubmitSleeper(const std::string& name) {
    ASSIGN_OR_RETURN(std::string scratch, cluster().MakeDir("src-" + name));
    ASSIGN_OR_RETURN(std::string digest, client().UploadTrivialSource(scratch));
    v1::JobSpec spec;
    spec.set_name(name);
    spec.set_source_digest(digest);
    spec.set_cancel_grace_seconds(3);
    spec.mutable_vm()->set_image("debian-12");
    v1::Step* step = spec.add_steps();
    step->set_name("sleep");
    step->set_run("echo step-started-in-$(hostname); exec sleep 600");
    return client().Submit(spec);
  }

  // Waits until the build's step runs in the guest: it has printed its first line (the phase alone is
  // reported before the shell starts), and the next thing it does is exec the sleep.
  void WaitStepStarted(const std::string& id) {
    auto running = client().WaitFor(id, [](const v1::Build& b) {
      return b.state() == v1::JOB_STATE_RUNNING && b.phase() == v1::PHASE_RUNNING && b.log_size() > 0;
    }, 400s);
    ASSERT_TRUE(running.ok()) << running.status();
  }

  // Waits (up to 10 s) until the worker's vms and jobs dirs are empty: the log spool of an attempt is
  // removed once the controller has acknowledged its result, a moment after the build ends.
  void WaitWorkDirsEmpty() {
    auto until = Clock::now() + 10s;
    while ((Entries(work_dir_ + "/vms") > 0 || Entries(work_dir_ + "/jobs") > 0) && Clock::now() < until) {
      std::this_thread::sleep_for(50ms);
    }
  }

  // The build's progress notes (the timeline), one per line.
  std::string Notes(const std::string& id) {
    auto build = client().Get(id);
    EXPECT_TRUE(build.ok()) << build.status();
    std::string notes;
    if (build.ok()) {
      for (const auto& e : build->events()) absl::StrAppend(&notes, e.message(), "\n");
    }
    return notes;
  }

  // The VM directories of running jobs and their QEMU pids.
  std::map<std::string, pid_t> RunningVms() {
    std::map<std::string, pid_t> vms;
    auto names = ListDirectory(work_dir_ + "/vms");
    if (!names.ok()) return vms;
    for (const std::string& n : *names) {
      auto pid = ReadFile(work_dir_ + "/vms/" + n + "/qemu.pid");
      if (pid.ok()) vms[n] = static_cast<pid_t>(std::atol(pid->c_str()));
    }
    return vms;
  }

  std::string work_dir_;
  std::string config_path_;
};

TEST_F(QemuE2ETest, HelloBuildsInAFreshVmAndNothingIsLeftAfterwards) {
  ASSERT_NE(StartQemuWorker(), nullptr);
  FA_ASSERT_OK_AND_ASSIGN(std::string out, cluster().MakeDir("out"));
  ProcessResult run = RunCli({"submit", SourceDir() + "/examples/hello", "--follow", "--download", out});
  ASSERT_EQ(run.exit_code, 0) << "stdout:\n" << run.stdout_data << "\nstderr:\n" << run.stderr_data;
  EXPECT_TRUE(absl::StrContains(run.stdout_data, "hello, free agent")) << run.stdout_data;

  FA_ASSERT_OK_AND_ASSIGN(auto builds, client().List());
  ASSERT_EQ(builds.size(), 1u);
  const v1::Build& build = builds.front();
  ASSERT_EQ(build.state(), v1::JOB_STATE_SUCCEEDED) << build.ShortDebugString();
  ASSERT_EQ(build.artifacts_size(), 1) << build.ShortDebugString();
  FA_ASSERT_OK_AND_ASSIGN(std::string digest, Sha256File(out + "/" + build.artifacts(0).name()));
  EXPECT_EQ(digest, build.artifacts(0).sha256());
  // The build ran in the guest, which the timeline shows booting.
  std::string notes = Notes(build.id());
  EXPECT_TRUE(absl::StrContains(notes, "vm: qemu running (accel tcg")) << notes;
  EXPECT_TRUE(absl::StrContains(notes, "vm: ssh ready after")) << notes;
  WaitWorkDirsEmpty();
  EXPECT_EQ(Entries(work_dir_ + "/vms"), 0u);
  EXPECT_EQ(Entries(work_dir_ + "/jobs"), 0u);
  EXPECT_TRUE(ProcessesWithArg(work_dir_ + "/vms/").empty());
}

TEST_F(QemuE2ETest, TwoJobsGetTheirOwnVmsCancelAndAKilledVmEndCleanly) {
  ASSERT_NE(StartQemuWorker(), nullptr);
  FA_ASSERT_OK_AND_ASSIGN(v1::Build a, SubmitSleeper("cancelled"));
  FA_ASSERT_OK_AND_ASSIGN(v1::Build b, SubmitSleeper("crashed"));
  WaitStepStarted(a.id());
  WaitStepStarted(b.id());
  ASSERT_FALSE(HasFailure());

  // Two VMs, each with its own overlay directory, QEMU and SSH port.
  std::map<std::string, pid_t> vms = RunningVms();
  ASSERT_EQ(vms.size(), 2u);
  std::string a_vm, b_vm;
  for (const auto& [name, pid] : vms) {
    EXPECT_TRUE(PidAlive(pid)) << name;
    (absl::StrContains(name, a.id()) ? a_vm : b_vm) = name;
  }
  ASSERT_FALSE(a_vm.empty());
  ASSERT_FALSE(b_vm.empty());
  std::string a_log = Notes(a.id()), b_log = Notes(b.id());
  auto port_of = [](const std::string& log) {
    size_t at = log.find("ssh on 127.0.0.1:");
    return at == std::string::npos ? std::string() : log.substr(at + 17, log.find(')', at) - at - 17);
  };
  EXPECT_FALSE(port_of(a_log).empty()) << a_log;
  EXPECT_NE(port_of(a_log), port_of(b_log));

  // Cancel A: CANCELLED, and its VM is gone within the grace period (3 s) + 5 s.
  auto cancelled_at = Clock::now();
  FA_ASSERT_OK(client().Cancel(a.id()).status());
  FA_ASSERT_OK_AND_ASSIGN(v1::Build a_end, client().WaitForTerminal(a.id(), 60s));
  EXPECT_EQ(a_end.state(), v1::JOB_STATE_CANCELLED) << a_end.ShortDebugString();
  FA_ASSERT_OK_AND_ASSIGN(std::string a_log_bytes, client().ReadLog(a.id()));
  EXPECT_TRUE(absl::StrContains(a_log_bytes, "step-started-in-freeagent-guest")) << a_log_bytes;
  while ((PidAlive(vms[a_vm]) || ::access((work_dir_ + "/vms/" + a_vm).c_str(), F_OK) == 0) &&
         Clock::now() - cancelled_at < 8s) {
    std::this_thread::sleep_for(50ms);
  }
  EXPECT_FALSE(PidAlive(vms[a_vm]));
  EXPECT_NE(::access((work_dir_ + "/vms/" + a_vm).c_str(), F_OK), 0);
  std::printf("cancel to VM gone: %.1f s\n",
              std::chrono::duration<double>(Clock::now() - cancelled_at).count());

  // kill -9 B's QEMU: ERROR "VM exited unexpectedly" within 5 s, then cleanup.
  auto killed_at = Clock::now();
  ASSERT_EQ(::kill(vms[b_vm], SIGKILL), 0);
  FA_ASSERT_OK_AND_ASSIGN(v1::Build b_end, client().WaitForTerminal(b.id(), 30s));
  double took = std::chrono::duration<double>(Clock::now() - killed_at).count();
  std::printf("qemu killed to build ERROR: %.1f s\n", took);
  EXPECT_LT(took, 5.0);
  EXPECT_EQ(b_end.state(), v1::JOB_STATE_ERROR) << b_end.ShortDebugString();
  EXPECT_TRUE(absl::StrContains(b_end.error(), "VM exited unexpectedly (qemu killed by signal 9)")) << b_end.error();
  WaitWorkDirsEmpty();
  EXPECT_EQ(Entries(work_dir_ + "/vms"), 0u);
  EXPECT_EQ(Entries(work_dir_ + "/jobs"), 0u);
}

TEST_F(QemuE2ETest, WorkerReapsAVmLeftBehindByACrash) {
  // What `kill -9` of a worker leaves: a VM directory with its overlay and a running QEMU.
  std::string dir = work_dir_ + "/vms/freeagent-vm1-b-old-1";
  std::string other = work_dir_ + "/vms/freeagent-vm2-b-other-1";  // not this worker's
  FA_ASSERT_OK(MakeDirs(other, 0700));
  pid_t qemu = StartPausedQemu(dir);
  ASSERT_TRUE(PidAlive(qemu));

  ASSERT_NE(StartQemuWorker(), nullptr);
  int status = 0;
  auto until = Clock::now() + 10s;
  while (::waitpid(qemu, &status, WNOHANG) == 0 && Clock::now() < until) std::this_thread::sleep_for(20ms);
  EXPECT_FALSE(PidAlive(qemu));
  EXPECT_NE(::access(dir.c_str(), F_OK), 0);
  EXPECT_EQ(::access(other.c_str(), F_OK), 0);
  if (PidAlive(qemu)) ::kill(qemu, SIGKILL);
}

}  // namespace
}  // namespace freeagent::testing
