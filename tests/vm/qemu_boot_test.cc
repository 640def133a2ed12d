// The `qemu` driver booting the real Debian 12 image under TCG: two VMs at once, each with its own
// overlay and SSH port, commands and files through the pinned-key SSH guest, a graceful power-down, a
// QEMU killed with -9 detected within 5 s, and nothing left on the host afterwards.
#include <signal.h>
#include <unistd.h>

#include <chrono>
#include <cstdio>
#include <thread>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "common/fs.h"
#include "common/sha256.h"
#include "common/watched_process.h"
#include "gtest/gtest.h"
#include "tests/vm/test_image.h"
#include "vm/qemu_driver.h"

namespace freeagent::vm {
namespace {

using std::chrono::milliseconds;
using std::chrono::seconds;
using Clock = std::chrono::steady_clock;

using testing::PidAlive;
bool Exists(const std::string& path) { return testing::PathExists(path); }

struct Booted {
  std::unique_ptr<Vm> vm;
  absl::Status status;
  double seconds = 0;
  std::vector<std::string> progress;
};

TEST(QemuBootTest, TwoVmsBootRunCommandsAndLeaveNothingBehind) {
  auto manifest = testing::TestImageManifest();
  ASSERT_TRUE(manifest.ok()) << manifest.status();
  auto root = MakePrivateTempDir("/tmp", "fa-qemu-boot-");
  ASSERT_TRUE(root.ok());
  QemuDriverConfig config;
  config.work_dir = *root + "/vms";
  config.default_cpus = 1;
  config.default_memory_mb = 1024;
  config.boot_timeout = seconds(240);
  config.images.Add(ImageEntry{.name = "debian-12", .base = *manifest});
  QemuDriver driver(config);

  const std::string names[2] = {"freeagent-w1-a-1", "freeagent-w1-b-1"};
  Booted booted[2];
  std::thread boots[2];
  for (int i = 0; i < 2; ++i) {
    auto vm = driver.Create({.name = names[i], .image = "debian-12"});
    ASSERT_TRUE(vm.ok()) << vm.status();
    booted[i].vm = std::move(*vm);
    boots[i] = std::thread([&b = booted[i]] {
      b.vm->SetProgressSink([&b](const std::string& line) { b.progress.push_back(line); });
      auto started = Clock::now();
      Deadline deadline = Deadline::After(seconds(300));
      b.status = b.vm->Start(deadline, CancellationToken());
      if (b.status.ok()) b.status = b.vm->WaitReady(deadline, CancellationToken());
      b.seconds = std::chrono::duration<double>(Clock::now() - started).count();
    });
  }
  for (auto& t : boots) t.join();
  for (int i = 0; i < 2; ++i) {
    ASSERT_TRUE(booted[i].status.ok()) << names[i] << ": " << booted[i].status << "\nconsole:\n"
                                       << LogTail(config.work_dir + "/" + names[i] + "/console.log", 30);
    std::printf("%s: start to SSH ready in %.1f s (TCG, two VMs booting at once)\n", names[i].c_str(),
                booted[i].seconds);
  }
  // Each has its own port, and the SSH guest checked the image's pinned host key.
  SshEndpoint a = booted[0].vm->endpoint(), b = booted[1].vm->endpoint();
  EXPECT_NE(a.port, b.port);
  auto m = LoadImageManifest(*manifest);
  ASSERT_TRUE(m.ok());
  EXPECT_EQ(a.host_key_fingerprint, m->host_key_fingerprint);
  EXPECT_EQ(a.user, "builder");

  // Commands, environment and files in the guest's fresh workspace.
  Guest* guest = booted[0].vm->guest();
  ASSERT_NE(guest, nullptr);
  std::string out;
  ExecRequest req;
  req.command = "echo $((6*7)) $(id -un) $(nproc) \"$GREETING\"; pwd; ls -A | wc -l";
  req.env = {{"GREETING", "hello from the host"}};
  req.working_dir = booted[0].vm->workspace();
  req.on_stdout = [&](std::string_view d) { out.append(d); };
  req.deadline = Deadline::After(seconds(60));
  auto r = guest->Exec(req);
  ASSERT_TRUE(r.ok()) << r.status();
  EXPECT_TRUE(r->Succeeded());
  EXPECT_EQ(out, absl::StrCat("42 builder 1 hello from the host\n", booted[0].vm->workspace(), "\n0\n"));

  std::string payload;
  for (int i = 0; i < 200000; ++i) payload += absl::StrCat(i, "\n");
  ASSERT_TRUE(WriteFileAtomic(*root + "/up.txt", payload).ok());
  std::string remote = booted[0].vm->workspace() + "/up.txt";
  auto up = guest->Upload(*root + "/up.txt", remote, 0644, CancellationToken());
  ASSERT_TRUE(up.ok()) << up.status();
  auto down = guest->Download(remote, *root + "/down.txt", 0, CancellationToken());
  ASSERT_TRUE(down.ok()) << down.status();
  EXPECT_EQ(down->sha256, up->sha256);
  EXPECT_EQ(*ReadFile(*root + "/down.txt"), payload);

  // B's QEMU dies: reported within 5 s, with the exit and the console.
  auto pid_text = ReadFile(config.work_dir + "/" + names[1] + "/qemu.pid");
  ASSERT_TRUE(pid_text.ok());
  pid_t b_pid = static_cast<pid_t>(std::atol(pid_text->c_str()));
  auto killed_at = Clock::now();
  ASSERT_EQ(::kill(b_pid, SIGKILL), 0);
  std::string why;
  while (!booted[1].vm->Exited(&why) && Clock::now() - killed_at < seconds(5)) {
    std::this_thread::sleep_for(milliseconds(20));
  }
  EXPECT_TRUE(absl::StrContains(why, "VM exited unexpectedly (qemu killed by signal 9)")) << why;
  EXPECT_TRUE(absl::StrContains(why, "console tail")) << why;
  // A's guest is unaffected.
  out.clear();
  req.command = "echo still here";
  req.env.clear();
  r = guest->Exec(req);
  ASSERT_TRUE(r.ok()) << r.status();
  EXPECT_EQ(out, "still here\n");

  // A powers down cleanly (asked over SSH); the guest's shutdown shows on its console.
  auto pid_a = ReadFile(config.work_dir + "/" + names[0] + "/qemu.pid");
  ASSERT_TRUE(pid_a.ok());
  pid_t a_pid = static_cast<pid_t>(std::atol(pid_a->c_str()));
  auto stop_started = Clock::now();
  ASSERT_TRUE(booted[0].vm->Stop(seconds(30)).ok());
  double stop_seconds = std::chrono::duration<double>(Clock::now() - stop_started).count();
  std::printf("graceful power-down took %.1f s\n", stop_seconds);
  EXPECT_FALSE(PidAlive(a_pid));
  EXPECT_FALSE(booted[0].vm->Exited(nullptr));  // a requested stop is not a crash
  std::string console = LogTail(config.work_dir + "/" + names[0] + "/console.log", 5);
  EXPECT_TRUE(absl::StrContains(console, "reboot: Power down")) << console;

  for (int i = 0; i < 2; ++i) {
    ASSERT_TRUE(booted[i].vm->Stop(milliseconds(1000)).ok());
    ASSERT_TRUE(booted[i].vm->Destroy().ok());
    EXPECT_FALSE(Exists(config.work_dir + "/" + names[i])) << names[i];
  }
  EXPECT_TRUE(driver.ListOwned("freeagent-w1-")->empty());
  RemoveTree(*root).IgnoreError();
}

}  // namespace
}  // namespace freeagent::vm
