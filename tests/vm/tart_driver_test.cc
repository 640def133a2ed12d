// The `tart` driver against a fake `tart` (tests/vm/fake_tart/tart) that replays recorded outputs of the
// real CLI and logs its argv; the guest's SSH side is a real OpenSSH server on loopback that the fake
// `tart ip` points at. Tart itself runs only on macOS: these tests check the contract, not Tart.
#include "vm/tart_driver.h"

#include <signal.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <thread>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "common/fs.h"
#include "gtest/gtest.h"
#include "tests/support/sshd_fixture.h"

#ifndef FA_FAKE_TART_DIR
#error "FA_FAKE_TART_DIR must name tests/vm/fake_tart"
#endif

namespace freeagent::vm {
namespace {

using std::chrono::milliseconds;
using std::chrono::seconds;
using Clock = std::chrono::steady_clock;

constexpr const char* kVm = "freeagent-mac1-job7-1";

bool PidAlive(pid_t pid) {
  if (pid <= 0 || ::kill(pid, 0) != 0) return false;
  auto text = ReadFile(absl::StrCat("/proc/", pid, "/stat"));
  return text.ok() && !absl::StrContains(*text, ") Z ");
}

class TartDriverTest : public ::testing::Test {
 protected:
  void SetUp() override {
    auto root = MakePrivateTempDir("/tmp", "fa-tart-");
    ASSERT_TRUE(root.ok()) << root.status();
    root_ = *root;
    state_ = root_ + "/state";
    ASSERT_TRUE(MakeDirs(state_ + "/vms").ok());
    // The fake is installed into a directory of its own, as the real binary would be.
    ASSERT_TRUE(MakeDirs(root_ + "/bin").ok());
    auto script = ReadFile(std::string(FA_FAKE_TART_DIR) + "/tart");
    ASSERT_TRUE(script.ok()) << script.status();
    ASSERT_TRUE(WriteFileAtomic(root_ + "/bin/tart", *script, 0755).ok());
    // The base VM the catalogue clones.
    ASSERT_TRUE(WriteFileAtomic(state_ + "/vms/sonoma-xcode-16", "base").ok());

    config_.binary = root_ + "/bin/tart";
    config_.work_dir = root_ + "/work";
    config_.ip_wait = seconds(30);
    config_.env = {{"FAKE_TART_STATE", state_},
                   {"FAKE_TART_RECORDINGS", std::string(FA_FAKE_TART_DIR) + "/recordings"}};
    ImageEntry image;
    image.name = "macos-sonoma-xcode-16";
    image.base = "sonoma-xcode-16";
    image.user = "admin";
    image.private_key_path = root_ + "/id_ed25519";
    image.host_key_fingerprint = "SHA256:AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA";
    image.workspace_root = root_ + "/guest-jobs";
    image.cpus = 4;
    image.memory_mb = 8192;
    config_.images.Add(image);
  }

  void TearDown() override {
    // Nothing a test started may survive it.
    if (pid_t pid = RunPid(); PidAlive(pid)) {
      ADD_FAILURE() << "fake tart run " << pid << " still running";
      ::kill(pid, SIGKILL);
    }
    RemoveTree(root_).IgnoreError();
  }

  // A real sshd on loopback as the guest: the fake `tart ip` prints 127.0.0.1, the image uses its keys.
  void UseSshdAsGuest() {
    auto f = testing::SshdFixture::Start();
    ASSERT_TRUE(f.ok()) << f.status();
    sshd_ = std::move(*f);
    ImageEntry image = config_.images.entries().at("macos-sonoma-xcode-16");
    image.user = sshd_->user();
    image.private_key_path = sshd_->ed25519_key();
    image.host_key_fingerprint = sshd_->host_key_fingerprint();
    config_.images.Add(image);
    config_.ssh_port = sshd_->port();
    SetMode("ip_override", "127.0.0.1");
  }

  void SetMode(const std::string& file, const std::string& value) {
    ASSERT_TRUE(WriteFileAtomic(state_ + "/" + file, value).ok());
  }

  // The fake's argv log, one invocation a line.
  std::vector<std::string> Argv() const {
    auto text = ReadFile(state_ + "/argv.log");
    if (!text.ok()) return {};
    return absl::StrSplit(*text, '\n', absl::SkipEmpty());
  }

  // The argv log against `want`. `tart run` is started in the background, so its line may come before
  // or after the `tart ip` that follows it; it must come after `set` and before anything else.
  void ExpectSequence(const std::vector<std::string>& want) const {
    std::string run = absl::StrCat("run ", kVm, " --no-graphics");
    auto strip = [&run](std::vector<std::string> v) {
      v.erase(std::remove(v.begin(), v.end(), run), v.end());
      return v;
    };
    std::vector<std::string> got = Argv();
    EXPECT_EQ(strip(got), strip(want));
    auto run_at = std::find(got.begin(), got.end(), run);
    ASSERT_NE(run_at, got.end()) << "no tart run";
    ASSERT_GE(run_at - got.begin(), 2);
    EXPECT_TRUE(absl::StartsWith(*(run_at - 1), "set ") || absl::StartsWith(*(run_at - 1), "ip ")) << *(run_at - 1);
  }

  // Create and Start through a lease, as the job runner does.
  void StartVm(TartDriver& driver, seconds grace, VmLease* lease, const CancellationToken& cancel = CancellationToken()) {
    auto created = driver.Create(Spec());
    ASSERT_TRUE(created.ok()) << created.status();
    *lease = VmLease(std::move(*created), grace);
    ASSERT_TRUE((*lease)->Start(Deadline::After(seconds(30)), cancel).ok());
  }

  // After the lease is released: a `tart run` that already ended gets no `tart stop`; the clone is deleted.
  void ExpectDeletedWithoutStop() const {
    auto argv = Argv();
    ASSERT_FALSE(argv.empty());
    EXPECT_EQ(argv.back(), absl::StrCat("delete ", kVm));
    for (const auto& line : argv) EXPECT_FALSE(absl::StartsWith(line, "stop ")) << line;
    EXPECT_FALSE(VmExists(kVm));
    EXPECT_FALSE(HostDirExists(kVm));
  }

  bool VmExists(const std::string& name) const { return ::access((state_ + "/vms/" + name).c_str(), F_OK) == 0; }
  bool HostDirExists(const std::string& name) const {
    return ::access((config_.work_dir + "/" + name).c_str(), F_OK) == 0;
  }
  pid_t RunPid() const {
    auto text = ReadFile(absl::StrCat(state_, "/vms/", kVm, ".pid"));
    return text.ok() ? static_cast<pid_t>(std::atoi(text->c_str())) : -1;
  }

  VmSpec Spec(uint32_t cpus = 0, uint32_t memory_mb = 0, uint32_t disk_gb = 0) const {
    VmSpec spec;
    spec.name = kVm;
    spec.image = "macos-sonoma-xcode-16";
    spec.cpus = cpus;
    spec.memory_mb = memory_mb;
    spec.disk_gb = disk_gb;
    return spec;
  }

  std::string root_;
  std::string state_;
  TartDriverConfig config_;
  std::unique_ptr<testing::SshdFixture> sshd_;
};

TEST(ParseTartList, ReadsTheRecordedListing) {
  auto text = ReadFile(std::string(FA_FAKE_TART_DIR) + "/recordings/list.stdout");
  ASSERT_TRUE(text.ok());
  auto vms = ParseTartList(*text);
  ASSERT_TRUE(vms.ok()) << vms.status();
  ASSERT_EQ(vms->size(), 6u);
  EXPECT_EQ((*vms)[0].name, "freeagent-mac1-3f2a9c-1");
  EXPECT_EQ((*vms)[0].source, "local");
  EXPECT_TRUE((*vms)[0].running);
  EXPECT_EQ((*vms)[0].state, "running");
  EXPECT_FALSE((*vms)[1].running);
  EXPECT_EQ((*vms)[5].source, "OCI");
}

TEST(ParseTartList, RefusesWhatIsNotAListOfNamedVms) {
  EXPECT_TRUE(ParseTartList("[]").ok());
  EXPECT_TRUE(ParseTartList("[]")->empty());
  // Older tart versions have no Running field: the State decides.
  auto old = ParseTartList(R"([{"Source":"local","Name":"a","Size":20,"State":"running"}])");
  ASSERT_TRUE(old.ok()) << old.status();
  EXPECT_TRUE((*old)[0].running);
  for (const char* bad : {"", "no IP address found", R"({"Name":"a"})", R"([{"Name":"a"},)", "[1]",
                          R"([{"Source":"local"}])"}) {
    auto r = ParseTartList(bad);
    EXPECT_EQ(r.status().code(), absl::StatusCode::kInvalidArgument) << bad;
    EXPECT_TRUE(absl::StrContains(r.status().message(), "tart list")) << r.status();
  }
}

TEST_F(TartDriverTest, ValidateNamesWhatIsWrong) {
  EXPECT_TRUE(TartDriver::Validate(config_).ok()) << TartDriver::Validate(config_);
  auto expect_bad = [](TartDriverConfig c, const std::string& needle) {
    absl::Status s = TartDriver::Validate(c);
    EXPECT_EQ(s.code(), absl::StatusCode::kInvalidArgument) << needle;
    EXPECT_TRUE(absl::StrContains(s.message(), needle)) << s;
  };
  TartDriverConfig c = config_;
  c.ip_resolver = "mdns";
  expect_bad(c, "mdns");
  c = config_;
  c.work_dir = "work";
  expect_bad(c, "work_dir");
  c = config_;
  c.images = ImageCatalog();
  expect_bad(c, "no images");
  c = config_;
  ImageEntry e = c.images.entries().at("macos-sonoma-xcode-16");
  e.host_key_fingerprint.clear();
  c.images.Add(e);
  expect_bad(c, "host_key_fingerprint");
  e = config_.images.entries().at("macos-sonoma-xcode-16");
  e.base = "";
  c.images.Add(e);
  expect_bad(c, "base");
  e = config_.images.entries().at("macos-sonoma-xcode-16");
  e.workspace_root = "jobs";
  c.images.Add(e);
  expect_bad(c, "workspace_root");
}

TEST_F(TartDriverTest, UnknownImageIsRefusedBeforeTartRuns) {
  TartDriver driver(config_);
  VmSpec spec = Spec();
  spec.image = "macos-ventura";
  auto vm = driver.Create(spec);
  EXPECT_EQ(vm.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_TRUE(absl::StrContains(vm.status().message(), "macos-ventura")) << vm.status();
  EXPECT_TRUE(absl::StrContains(vm.status().message(), "macos-sonoma-xcode-16")) << vm.status();
  EXPECT_TRUE(Argv().empty());
  EXPECT_FALSE(HostDirExists(kVm));
}

TEST_F(TartDriverTest, BadNamesAreRefusedBeforeTartRuns) {
  TartDriver driver(config_);
  for (const char* name : {"--help", "../x", "a/b", "", ".hidden", "a b"}) {
    VmSpec spec = Spec();
    spec.name = name;
    EXPECT_EQ(driver.Create(spec).status().code(), absl::StatusCode::kInvalidArgument) << name;
    EXPECT_EQ(driver.DestroyOwned(name).code(), absl::StatusCode::kInvalidArgument) << name;
  }
  EXPECT_TRUE(Argv().empty());
}

TEST_F(TartDriverTest, CreateClonesTheBaseAndSetsResourcesCappedByConfig) {
  config_.max_cpus = 6;
  TartDriver driver(config_);
  auto vm = driver.Create(Spec(/*cpus=*/12, /*memory_mb=*/6144, /*disk_gb=*/120));
  ASSERT_TRUE(vm.ok()) << vm.status();
  std::vector<std::string> want = {
      absl::StrCat("clone sonoma-xcode-16 ", kVm),
      absl::StrCat("set ", kVm, " --cpu 6 --memory 6144 --disk-size 120 --random-mac"),
  };
  EXPECT_EQ(Argv(), want);
  EXPECT_TRUE(VmExists(kVm));
  struct stat st;
  ASSERT_EQ(::stat((config_.work_dir + "/" + kVm).c_str(), &st), 0);
  EXPECT_EQ(st.st_mode & 0777, 0700u);
  // Never started: destroy still deletes the clone and the host dir, once.
  ASSERT_TRUE((*vm)->Stop(seconds(1)).ok());
  ASSERT_TRUE((*vm)->Destroy().ok());
  ASSERT_TRUE((*vm)->Destroy().ok());
  want.push_back(absl::StrCat("delete ", kVm));
  EXPECT_EQ(Argv(), want);
  EXPECT_FALSE(VmExists(kVm));
  EXPECT_FALSE(HostDirExists(kVm));
}

TEST_F(TartDriverTest, ImageDefaultsApplyWhenTheJobAsksForNothing) {
  TartDriver driver(config_);
  auto vm = driver.Create(Spec());
  ASSERT_TRUE(vm.ok()) << vm.status();
  ASSERT_EQ(Argv().size(), 2u);
  EXPECT_EQ(Argv()[1], absl::StrCat("set ", kVm, " --cpu 4 --memory 8192 --random-mac"));
  ASSERT_TRUE((*vm)->Destroy().ok());
}

TEST_F(TartDriverTest, MissingBaseVmIsAFailedPreconditionNamingIt) {
  ASSERT_TRUE(RemoveTree(state_ + "/vms/sonoma-xcode-16").ok());
  TartDriver driver(config_);
  auto vm = driver.Create(Spec());
  EXPECT_EQ(vm.status().code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_TRUE(absl::StrContains(vm.status().message(), "base VM \"sonoma-xcode-16\" does not exist")) << vm.status();
  EXPECT_TRUE(absl::StrContains(vm.status().message(), "macos-sonoma-xcode-16")) << vm.status();
  EXPECT_EQ(Argv(), std::vector<std::string>{absl::StrCat("clone sonoma-xcode-16 ", kVm)});
  EXPECT_FALSE(HostDirExists(kVm));
}

TEST_F(TartDriverTest, FailedSetDeletesTheClone) {
  SetMode("set_mode", "fail");
  TartDriver driver(config_);
  auto vm = driver.Create(Spec());
  EXPECT_EQ(vm.status().code(), absl::StatusCode::kInternal);
  EXPECT_TRUE(absl::StrContains(vm.status().message(), kVm)) << vm.status();
  EXPECT_TRUE(absl::StrContains(vm.status().message(), "Failed to resize the disk")) << vm.status();
  ASSERT_EQ(Argv().size(), 3u);
  EXPECT_EQ(Argv()[2], absl::StrCat("delete ", kVm));
  EXPECT_FALSE(VmExists(kVm));
  EXPECT_FALSE(HostDirExists(kVm));
}

TEST_F(TartDriverTest, MissingTartBinaryIsAClearError) {
  config_.binary = root_ + "/nowhere/tart";
  TartDriver driver(config_);
  auto vm = driver.Create(Spec());
  EXPECT_EQ(vm.status().code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_TRUE(absl::StrContains(vm.status().message(), config_.binary)) << vm.status();
  EXPECT_FALSE(HostDirExists(kVm));
}

TEST_F(TartDriverTest, FullLifecycleReachesTheGuestOverSshAndCleansUp) {
  UseSshdAsGuest();
  TartDriver driver(config_);
  auto created = driver.Create(Spec());
  ASSERT_TRUE(created.ok()) << created.status();
  VmLease lease(std::move(*created), seconds(3));
  std::vector<std::string> progress;
  lease->SetProgressSink([&progress](const std::string& line) { progress.push_back(line); });
  ASSERT_TRUE(lease->Start(Deadline::After(seconds(30)), CancellationToken()).ok());
  absl::Status ready = lease->WaitReady(Deadline::After(seconds(60)), CancellationToken());
  ASSERT_TRUE(ready.ok()) << ready;

  EXPECT_TRUE(PidAlive(RunPid())) << "tart run is running";
  std::string why;
  EXPECT_FALSE(lease->Exited(&why)) << why;
  SshEndpoint ep = lease->endpoint();
  EXPECT_EQ(ep.host, "127.0.0.1");
  EXPECT_EQ(ep.port, sshd_->port());
  EXPECT_EQ(ep.host_key_fingerprint, sshd_->host_key_fingerprint());
  std::string ws = lease->workspace();
  EXPECT_EQ(ws, root_ + "/guest-jobs/" + kVm);
  struct stat st;
  ASSERT_EQ(::stat(ws.c_str(), &st), 0);
  EXPECT_EQ(st.st_mode & 0777, 0700u);
  ExecRequest req;
  req.command = "echo built > out.txt";
  req.working_dir = ws;
  auto r = lease->guest()->Exec(req);
  ASSERT_TRUE(r.ok()) << r.status();
  EXPECT_EQ(*ReadFile(ws + "/out.txt"), "built\n");
  ASSERT_FALSE(progress.empty());
  EXPECT_TRUE(absl::StrContains(progress.front(), "-> 127.0.0.1")) << progress.front();

  pid_t run_pid = RunPid();
  ASSERT_TRUE(lease.Release().ok());
  EXPECT_FALSE(PidAlive(run_pid));
  std::vector<std::string> want = {
      absl::StrCat("clone sonoma-xcode-16 ", kVm),
      absl::StrCat("set ", kVm, " --cpu 4 --memory 8192 --random-mac"),
      absl::StrCat("run ", kVm, " --no-graphics"),
      absl::StrCat("ip ", kVm, " --wait 30"),
      absl::StrCat("stop ", kVm, " --timeout 3"),
      absl::StrCat("delete ", kVm),
  };
  ExpectSequence(want);
  EXPECT_FALSE(VmExists(kVm));
  EXPECT_FALSE(HostDirExists(kVm));
}

TEST_F(TartDriverTest, NoIpAddressIsAClearErrorAndTheVmIsStillCleanedUp) {
  SetMode("ip_mode", "noip");
  config_.ip_resolver = "agent";
  TartDriver driver(config_);
  VmLease lease;
  ASSERT_NO_FATAL_FAILURE(StartVm(driver, seconds(2), &lease));
  absl::Status ready = lease->WaitReady(Deadline::After(seconds(60)), CancellationToken());
  EXPECT_EQ(ready.code(), absl::StatusCode::kDeadlineExceeded) << ready;
  EXPECT_TRUE(absl::StrContains(ready.message(), kVm)) << ready;
  EXPECT_TRUE(absl::StrContains(ready.message(), "no IP address found")) << ready;
  EXPECT_TRUE(absl::StrContains(ready.message(), "resolver agent")) << ready;
  ASSERT_TRUE(lease.Release().ok());
  ExpectSequence({
      absl::StrCat("clone sonoma-xcode-16 ", kVm),
      absl::StrCat("set ", kVm, " --cpu 4 --memory 8192 --random-mac"),
      absl::StrCat("run ", kVm, " --no-graphics"),
      absl::StrCat("ip ", kVm, " --wait 30 --resolver agent"),
      absl::StrCat("stop ", kVm, " --timeout 2"),
      absl::StrCat("delete ", kVm),
  });
  EXPECT_FALSE(VmExists(kVm));
}

TEST_F(TartDriverTest, VmLimitEndsTheWaitAtOnceWithTheCause) {
  SetMode("run_mode", "limit");
  SetMode("ip_mode", "hang");  // the real `tart ip --wait` keeps waiting for a VM that never ran
  TartDriver driver(config_);
  VmLease lease;
  ASSERT_NO_FATAL_FAILURE(StartVm(driver, seconds(2), &lease));
  auto started = Clock::now();
  absl::Status ready = lease->WaitReady(Deadline::After(seconds(60)), CancellationToken());
  EXPECT_LT(Clock::now() - started, seconds(5));
  EXPECT_EQ(ready.code(), absl::StatusCode::kUnavailable) << ready;
  EXPECT_TRUE(absl::StrContains(ready.message(), "VM exited unexpectedly")) << ready;
  EXPECT_TRUE(absl::StrContains(ready.message(), kVm)) << ready;
  EXPECT_TRUE(absl::StrContains(ready.message(), "2 per host")) << ready;
  EXPECT_TRUE(absl::StrContains(ready.message(), "The number of VMs exceeds the system limit")) << ready;
  ASSERT_TRUE(lease.Release().ok());
  ExpectDeletedWithoutStop();
}

TEST_F(TartDriverTest, CrashAfterReadyIsDetectedWithStatusAndOutputTail) {
  UseSshdAsGuest();
  SetMode("run_mode", "crash");
  // Long enough for `tart ip` (a bash script) and the SSH connection to make the VM ready first, even
  // on a busy machine.
  SetMode("crash_after", "8");
  TartDriver driver(config_);
  VmLease lease;
  ASSERT_NO_FATAL_FAILURE(StartVm(driver, seconds(3), &lease));
  absl::Status ready = lease->WaitReady(Deadline::After(seconds(60)), CancellationToken());
  ASSERT_TRUE(ready.ok()) << ready;
  std::string why;
  auto until = Clock::now() + seconds(20);
  while (!lease->Exited(&why) && Clock::now() < until) std::this_thread::sleep_for(milliseconds(50));
  ASSERT_FALSE(why.empty()) << "crash not detected";
  EXPECT_TRUE(absl::StrContains(why, "VM exited unexpectedly")) << why;
  EXPECT_TRUE(absl::StrContains(why, "exit status 1")) << why;
  EXPECT_TRUE(absl::StrContains(why, "guest kernel panic: watchdog timeout")) << why;
  ASSERT_TRUE(lease.Release().ok());
  ExpectDeletedWithoutStop();
}

TEST_F(TartDriverTest, CancelEndsTheWaitForAnIp) {
  SetMode("ip_mode", "hang");
  TartDriver driver(config_);
  CancellationToken cancel;
  VmLease lease;
  ASSERT_NO_FATAL_FAILURE(StartVm(driver, seconds(2), &lease, cancel));
  std::thread canceller([cancel] {
    std::this_thread::sleep_for(milliseconds(300));
    cancel.Cancel("job cancelled by user");
  });
  auto started = Clock::now();
  absl::Status ready = lease->WaitReady(Deadline::After(seconds(60)), cancel);
  canceller.join();
  EXPECT_LT(Clock::now() - started, seconds(5));
  EXPECT_EQ(ready.code(), absl::StatusCode::kCancelled) << ready;
  EXPECT_EQ(ready.message(), "job cancelled by user");
  ASSERT_TRUE(lease.Release().ok());
  EXPECT_EQ(Argv().back(), absl::StrCat("delete ", kVm));
  EXPECT_FALSE(PidAlive(RunPid()));
}

TEST_F(TartDriverTest, StopKillsATartRunThatOutlivesAFailedTartStop) {
  SetMode("run_mode", "stubborn");
  SetMode("stop_mode", "fail");
  TartDriver driver(config_);
  auto created = driver.Create(Spec());
  ASSERT_TRUE(created.ok()) << created.status();
  ASSERT_TRUE((*created)->Start(Deadline::After(seconds(30)), CancellationToken()).ok());
  pid_t pid = -1;
  // The background `tart run` (a bash script) writes its pid once it runs: up to 10 s on a busy machine.
  for (int i = 0; i < 1000 && (pid = RunPid()) <= 0; ++i) std::this_thread::sleep_for(milliseconds(10));
  ASSERT_GT(pid, 0);
  absl::Status stop = (*created)->Stop(seconds(1));
  // The VM is gone either way; the failed `tart stop` is reported, naming the VM.
  EXPECT_FALSE(PidAlive(pid));
  EXPECT_FALSE(stop.ok());
  EXPECT_TRUE(absl::StrContains(stop.message(), kVm)) << stop;
  EXPECT_TRUE(absl::StrContains(stop.message(), "failed to forcefully terminate")) << stop;
  ASSERT_TRUE((*created)->Destroy().ok());
  EXPECT_FALSE(VmExists(kVm));
}

TEST_F(TartDriverTest, OrphansAreListedFromTartAndHostDirsAndReaped) {
  // The recorded listing has two VMs of worker mac1 and one of mac2; a host dir was left by a third.
  for (const char* name : {"freeagent-mac1-3f2a9c-1", "freeagent-mac1-77b0e1-2", "freeagent-mac2-0c11d4-1"}) {
    ASSERT_TRUE(WriteFileAtomic(state_ + "/vms/" + name, "vm").ok());
  }
  ASSERT_TRUE(MakeDirs(config_.work_dir + "/freeagent-mac1-dead00-1").ok());
  TartDriver driver(config_);
  auto owned = driver.ListOwned("freeagent-mac1-");
  ASSERT_TRUE(owned.ok()) << owned.status();
  std::vector<std::string> want = {"freeagent-mac1-3f2a9c-1", "freeagent-mac1-77b0e1-2", "freeagent-mac1-dead00-1"};
  EXPECT_EQ(*owned, want);
  for (const std::string& name : *owned) {
    absl::Status s = driver.DestroyOwned(name);
    EXPECT_TRUE(s.ok()) << name << ": " << s;
  }
  std::vector<std::string> argv = {
      "list --format json",
      "stop freeagent-mac1-3f2a9c-1 --timeout 30", "delete freeagent-mac1-3f2a9c-1",
      "stop freeagent-mac1-77b0e1-2 --timeout 30", "delete freeagent-mac1-77b0e1-2",
      "stop freeagent-mac1-dead00-1 --timeout 30", "delete freeagent-mac1-dead00-1",
  };
  EXPECT_EQ(Argv(), argv);
  EXPECT_FALSE(VmExists("freeagent-mac1-3f2a9c-1"));
  EXPECT_TRUE(VmExists("freeagent-mac2-0c11d4-1")) << "another worker's VM is left alone";
  EXPECT_TRUE(VmExists("sonoma-xcode-16"));
  EXPECT_FALSE(HostDirExists("freeagent-mac1-dead00-1"));
}

TEST_F(TartDriverTest, BrokenListingIsAnError) {
  ASSERT_TRUE(MakeDirs(root_ + "/badrec").ok());
  ASSERT_TRUE(WriteFileAtomic(root_ + "/badrec/list.stdout", "Error: something\n").ok());
  config_.env["FAKE_TART_RECORDINGS"] = root_ + "/badrec";
  TartDriver driver(config_);
  auto owned = driver.ListOwned("freeagent-mac1-");
  EXPECT_EQ(owned.status().code(), absl::StatusCode::kInvalidArgument) << owned.status();
}

}  // namespace
}  // namespace freeagent::vm
