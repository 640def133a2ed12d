// The `qemu` driver without booting a guest: manifest and config checks, overlays, a QEMU that cannot
// start, cancel and crash while booting, and reaping of VMs a crashed worker left behind. Real QEMU and
// qemu-img; the boot tests live in qemu_boot_test.cc.
#include "vm/qemu_driver.h"

#include <signal.h>
#include <sys/stat.h>
#include <unistd.h>

#include <chrono>
#include <thread>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "common/fs.h"
#include "common/process.h"
#include "gtest/gtest.h"
#include "tests/vm/test_image.h"

namespace freeagent::vm {
namespace {

using std::chrono::milliseconds;
using std::chrono::seconds;
using Clock = std::chrono::steady_clock;

using testing::PidAlive;
using testing::StartPausedQemu;
bool Exists(const std::string& path) { return testing::PathExists(path); }

ProcessResult RunTool(std::vector<std::string> argv) {
  ProcessOptions o;
  o.argv = std::move(argv);
  o.deadline = Deadline::After(seconds(60));
  auto r = RunProcess(o);
  EXPECT_TRUE(r.ok()) << r.status();
  return r.ok() ? *r : ProcessResult{};
}

class QemuDriverTest : public ::testing::Test {
 protected:
  void SetUp() override {
    auto root = MakePrivateTempDir("/tmp", "fa-qemu-");
    ASSERT_TRUE(root.ok()) << root.status();
    root_ = *root;
    // A small fake image: a real qcow2 base and kernel/initrd files that exist (never booted here).
    ASSERT_TRUE(RunTool({"qemu-img", "create", "-q", "-f", "qcow2", root_ + "/base.qcow2", "2G"}).Succeeded());
    ASSERT_TRUE(WriteFileAtomic(root_ + "/vmlinuz", std::string(4096, 'k')).ok());
    ASSERT_TRUE(WriteFileAtomic(root_ + "/initrd.img", std::string(4096, 'i')).ok());
    ASSERT_TRUE(WriteFileAtomic(root_ + "/key", "not used").ok());
    manifest_ = root_ + "/manifest.json";
    ASSERT_TRUE(WriteFileAtomic(manifest_, ManifestJson({})).ok());
    config_.work_dir = root_ + "/vms";
    config_.images.Add(ImageEntry{.name = "fake", .base = manifest_});
  }
  void TearDown() override { RemoveTree(root_).IgnoreError(); }

  // The manifest with fields replaced (a value of "-" drops the field).
  std::string ManifestJson(const std::map<std::string, std::string>& change) {
    std::map<std::string, std::string> f = {{"name", "\"fake\""},
                                            {"disk", absl::StrCat("\"", root_, "/base.qcow2\"")},
                                            {"disk_gb", "2"},
                                            {"kernel", absl::StrCat("\"", root_, "/vmlinuz\"")},
                                            {"initrd", absl::StrCat("\"", root_, "/initrd.img\"")},
                                            {"append", "\"console=ttyS0\""},
                                            {"user", "\"builder\""},
                                            {"key", absl::StrCat("\"", root_, "/key\"")},
                                            {"host_key_fingerprint", "\"SHA256:abc\""}};
    for (const auto& [k, v] : change) f[k] = v;
    std::string json = "{";
    for (const auto& [k, v] : f) {
      if (v == "-") continue;
      if (json.size() > 1) json += ",";
      json += absl::StrCat("\"", k, "\":", v);
    }
    return json + "}";
  }

  std::string root_;
  std::string manifest_;
  QemuDriverConfig config_;
};

TEST_F(QemuDriverTest, ManifestErrorsNameTheFileAndTheField) {
  auto ok = LoadImageManifest(manifest_);
  ASSERT_TRUE(ok.ok()) << ok.status();
  EXPECT_EQ(ok->user, "builder");
  EXPECT_EQ(ok->disk_gb, 2u);
  EXPECT_EQ(ok->ssh_port, 22);

  struct Case {
    std::map<std::string, std::string> change;
    absl::StatusCode code;
    std::string words;
  };
  const Case cases[] = {
      {{{"kernel", "-"}}, absl::StatusCode::kInvalidArgument, "\"kernel\" is missing"},
      {{{"host_key_fingerprint", "-"}}, absl::StatusCode::kInvalidArgument, "\"host_key_fingerprint\" is missing"},
      {{{"disk", "\"/nonexistent/disk.qcow2\""}}, absl::StatusCode::kNotFound, "disk /nonexistent/disk.qcow2"},
      {{{"host_key_fingerprint", "\"MD5:aa\""}}, absl::StatusCode::kInvalidArgument, "must be \"SHA256:...\""},
  };
  for (const Case& c : cases) {
    ASSERT_TRUE(WriteFileAtomic(manifest_, ManifestJson(c.change)).ok());
    auto m = LoadImageManifest(manifest_);
    ASSERT_FALSE(m.ok()) << c.words;
    EXPECT_EQ(m.status().code(), c.code) << m.status();
    EXPECT_TRUE(absl::StrContains(m.status().message(), c.words)) << m.status();
    EXPECT_TRUE(absl::StrContains(m.status().message(), manifest_)) << m.status();
  }
  ASSERT_TRUE(WriteFileAtomic(manifest_, "[1, 2").ok());
  auto bad = LoadImageManifest(manifest_);
  EXPECT_TRUE(absl::StrContains(bad.status().message(), "not a JSON object")) << bad.status();
  auto missing = LoadImageManifest(root_ + "/none.json");
  EXPECT_TRUE(absl::StrContains(missing.status().message(), root_ + "/none.json")) << missing.status();
}

TEST_F(QemuDriverTest, ValidateRefusesConfigsThatCannotWork) {
  EXPECT_TRUE(QemuDriver::Validate(config_).ok()) << QemuDriver::Validate(config_);
  QemuDriverConfig c = config_;
  c.accel = "xen";
  EXPECT_TRUE(absl::StrContains(QemuDriver::Validate(c).message(), "accel must be auto, kvm, tcg or hvf"));
  c = config_;
  c.work_dir = "relative/vms";
  EXPECT_TRUE(absl::StrContains(QemuDriver::Validate(c).message(), "work_dir must be an absolute path"));
  c = config_;
  c.images = ImageCatalog();
  EXPECT_TRUE(absl::StrContains(QemuDriver::Validate(c).message(), "no images configured"));
  ASSERT_TRUE(WriteFileAtomic(manifest_, ManifestJson({{"key", "-"}})).ok());
  EXPECT_TRUE(absl::StrContains(QemuDriver::Validate(config_).message(), "names an SSH key"))
      << QemuDriver::Validate(config_);
  EXPECT_EQ(QemuDriver::ResolveAccel("tcg"), "tcg");
  std::string a = QemuDriver::ResolveAccel("auto");
  EXPECT_TRUE(a == "kvm" || a == "tcg") << a;
}

TEST_F(QemuDriverTest, CreateMakesAnOverlayOnTheImageAndDestroyRemovesIt) {
  QemuDriver driver(config_);
  auto unknown = driver.Create({.name = "freeagent-w1-job-1", .image = "debian-13"});
  ASSERT_FALSE(unknown.ok());
  EXPECT_EQ(unknown.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_TRUE(absl::StrContains(unknown.status().message(), "unknown image \"debian-13\": this worker has fake"))
      << unknown.status();
  EXPECT_FALSE(driver.Create({.name = "../escape"}).ok());

  auto vm = driver.Create({.name = "freeagent-w1-job-1", .disk_gb = 5});
  ASSERT_TRUE(vm.ok()) << vm.status();
  std::string overlay = config_.work_dir + "/freeagent-w1-job-1/overlay.qcow2";
  ASSERT_TRUE(Exists(overlay));
  ProcessResult info = RunTool({"qemu-img", "info", "--output=json", overlay});
  EXPECT_TRUE(absl::StrContains(info.stdout_data, "\"backing-filename\": \"" + root_ + "/base.qcow2\""))
      << info.stdout_data;
  EXPECT_TRUE(absl::StrContains(info.stdout_data, "\"virtual-size\": 5368709120")) << info.stdout_data;
  struct stat st;
  ASSERT_EQ(::stat((config_.work_dir + "/freeagent-w1-job-1").c_str(), &st), 0);
  EXPECT_EQ(st.st_mode & 0777, 0700u);
  EXPECT_EQ((*vm)->workspace(), "/tmp/freeagent-jobs/freeagent-w1-job-1");

  auto owned = driver.ListOwned("freeagent-w1-");
  ASSERT_TRUE(owned.ok());
  EXPECT_EQ(*owned, std::vector<std::string>{"freeagent-w1-job-1"});
  EXPECT_TRUE(driver.ListOwned("freeagent-w2-")->empty());

  ASSERT_TRUE((*vm)->Stop(milliseconds(0)).ok());  // never started: nothing to stop
  ASSERT_TRUE((*vm)->Destroy().ok());
  EXPECT_FALSE(Exists(config_.work_dir + "/freeagent-w1-job-1"));
  EXPECT_TRUE(Exists(root_ + "/base.qcow2"));
}

TEST_F(QemuDriverTest, QemuThatCannotBootTheKernelIsAClearStartError) {
  // The fake kernel is not a kernel: QEMU exits at once and says why; Start reports it.
  QemuDriver driver(config_);
  auto vm = driver.Create({.name = "freeagent-w1-bad-1"});
  ASSERT_TRUE(vm.ok()) << vm.status();
  auto started = Clock::now();
  absl::Status s = (*vm)->Start(Deadline::After(seconds(60)), CancellationToken());
  EXPECT_LT(Clock::now() - started, seconds(20));
  ASSERT_FALSE(s.ok());
  EXPECT_TRUE(absl::StrContains(s.message(), "qemu did not start")) << s;
  EXPECT_TRUE(absl::StrContains(s.message(), "kernel")) << s;
  ASSERT_TRUE((*vm)->Destroy().ok());
  EXPECT_FALSE(Exists(config_.work_dir + "/freeagent-w1-bad-1"));
}

TEST_F(QemuDriverTest, ReapsOrphansByPidFileCheckedAgainstTheCommandLine) {
  QemuDriver driver(config_);
  std::string orphan = config_.work_dir + "/freeagent-w1-old-1";
  pid_t qemu = StartPausedQemu(orphan);
  ASSERT_TRUE(PidAlive(qemu));
  // A stale pid file naming a process that is not this VM's QEMU (the pid was reused): left alone.
  std::string stale = config_.work_dir + "/freeagent-w1-old-2";
  ASSERT_TRUE(MakeDirs(stale, 0700).ok());
  pid_t other = ::fork();
  if (other == 0) {
    ::execlp("sleep", "sleep", "300", static_cast<char*>(nullptr));
    ::_exit(127);
  }
  ASSERT_TRUE(WriteFileAtomic(stale + "/qemu.pid", absl::StrCat(other, "\n")).ok());
  // Another worker's VM.
  std::string foreign = config_.work_dir + "/freeagent-w2-job-1";
  ASSERT_TRUE(MakeDirs(foreign, 0700).ok());

  auto owned = driver.ListOwned("freeagent-w1-");
  ASSERT_TRUE(owned.ok());
  std::sort(owned->begin(), owned->end());
  ASSERT_EQ(*owned, (std::vector<std::string>{"freeagent-w1-old-1", "freeagent-w1-old-2"}));
  for (const std::string& name : *owned) ASSERT_TRUE(driver.DestroyOwned(name).ok()) << name;

  int status = 0;
  auto deadline = Clock::now() + seconds(5);
  while (::waitpid(qemu, &status, WNOHANG) == 0 && Clock::now() < deadline) std::this_thread::sleep_for(milliseconds(20));
  EXPECT_FALSE(PidAlive(qemu));
  EXPECT_FALSE(Exists(orphan));
  EXPECT_FALSE(Exists(stale));
  EXPECT_TRUE(PidAlive(other));
  EXPECT_TRUE(Exists(foreign));
  EXPECT_FALSE(driver.DestroyOwned("../x").ok());
  ::kill(other, SIGKILL);
  ::waitpid(other, &status, 0);
}

// The real image from here on: QEMU starts, the guest is not waited for to the end.
class QemuImageTest : public ::testing::Test {
 protected:
  void SetUp() override {
    auto manifest = testing::TestImageManifest();
    ASSERT_TRUE(manifest.ok()) << manifest.status();
    auto root = MakePrivateTempDir("/tmp", "fa-qemu-");
    ASSERT_TRUE(root.ok()) << root.status();
    root_ = *root;
    config_.work_dir = root_ + "/vms";
    config_.images.Add(ImageEntry{.name = "debian-12", .base = *manifest});
    ASSERT_TRUE(QemuDriver::Validate(config_).ok()) << QemuDriver::Validate(config_);
  }
  void TearDown() override { RemoveTree(root_).IgnoreError(); }

  pid_t QemuPid(const std::string& name) {
    auto text = ReadFile(config_.work_dir + "/" + name + "/qemu.pid");
    return text.ok() ? static_cast<pid_t>(std::atol(text->c_str())) : -1;
  }

  std::string root_;
  QemuDriverConfig config_;
};

TEST_F(QemuImageTest, CancelWhileBootingEndsTheWaitAtOnce) {
  QemuDriver driver(config_);
  auto vm = driver.Create({.name = "freeagent-w1-cancel-1"});
  ASSERT_TRUE(vm.ok()) << vm.status();
  std::vector<std::string> progress;
  (*vm)->SetProgressSink([&](const std::string& line) { progress.push_back(line); });
  CancellationToken cancel;
  ASSERT_TRUE((*vm)->Start(Deadline::After(seconds(60)), cancel).ok());
  ASSERT_FALSE(progress.empty());
  EXPECT_TRUE(absl::StrContains(progress.front(), "vm: qemu running (accel tcg")) << progress.front();
  pid_t qemu = QemuPid("freeagent-w1-cancel-1");
  EXPECT_TRUE(PidAlive(qemu));
  std::thread canceller([&] {
    std::this_thread::sleep_for(milliseconds(1500));
    cancel.Cancel("user asked");
  });
  auto started = Clock::now();
  absl::Status s = (*vm)->WaitReady(Deadline::After(seconds(120)), cancel);
  auto waited = Clock::now() - started;
  canceller.join();
  EXPECT_EQ(s.code(), absl::StatusCode::kCancelled) << s;
  EXPECT_LT(waited, seconds(5));
  ASSERT_TRUE((*vm)->Stop(milliseconds(0)).ok());
  EXPECT_FALSE(PidAlive(qemu));
  ASSERT_TRUE((*vm)->Destroy().ok());
  EXPECT_FALSE(Exists(config_.work_dir + "/freeagent-w1-cancel-1"));
}

TEST_F(QemuImageTest, QemuKilledWhileBootingIsReportedAsAnExitedVm) {
  QemuDriver driver(config_);
  auto vm = driver.Create({.name = "freeagent-w1-crash-1"});
  ASSERT_TRUE(vm.ok()) << vm.status();
  ASSERT_TRUE((*vm)->Start(Deadline::After(seconds(60)), CancellationToken()).ok());
  pid_t qemu = QemuPid("freeagent-w1-crash-1");
  ASSERT_TRUE(PidAlive(qemu));
  std::this_thread::sleep_for(milliseconds(1000));
  auto killed_at = Clock::now();
  ASSERT_EQ(::kill(qemu, SIGKILL), 0);
  absl::Status s = (*vm)->WaitReady(Deadline::After(seconds(120)), CancellationToken());
  EXPECT_LT(Clock::now() - killed_at, seconds(5));
  ASSERT_FALSE(s.ok());
  EXPECT_TRUE(absl::StrContains(s.message(), "VM exited unexpectedly (qemu killed by signal 9)")) << s;
  std::string why;
  EXPECT_TRUE((*vm)->Exited(&why));
  EXPECT_TRUE(absl::StrContains(why, "killed by signal 9")) << why;
  ASSERT_TRUE((*vm)->Stop(milliseconds(1000)).ok());
  ASSERT_TRUE((*vm)->Destroy().ok());
  EXPECT_FALSE(Exists(config_.work_dir + "/freeagent-w1-crash-1"));
}

}  // namespace
}  // namespace freeagent::vm
