// LocalGuest and the local driver against real processes on this host.
#include "vm/local_guest.h"

#include <signal.h>
#include <sys/stat.h>
#include <unistd.h>

#include <chrono>
#include <thread>

#include "absl/strings/ascii.h"
#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "common/fs.h"
#include "common/process.h"
#include "common/sha256.h"
#include "gtest/gtest.h"
#include "vm/local_driver.h"

namespace freeagent::vm {
namespace {

using std::chrono::milliseconds;
using std::chrono::seconds;

class LocalGuestTest : public ::testing::Test {
 protected:
  void SetUp() override {
    auto d = MakePrivateTempDir("/tmp", "fa-localguest-");
    ASSERT_TRUE(d.ok()) << d.status();
    tmp_ = *d;
  }
  void TearDown() override { RemoveTree(tmp_).IgnoreError(); }

  ExecRequest Capture(const std::string& command) {
    ExecRequest r;
    r.command = command;
    r.working_dir = tmp_;
    r.on_stdout = [this](std::string_view b) { out_.append(b.data(), b.size()); };
    r.on_stderr = [this](std::string_view b) { err_.append(b.data(), b.size()); };
    r.kill_grace = milliseconds(1000);
    return r;
  }

  std::string tmp_;
  std::string out_;
  std::string err_;
  LocalGuest guest_;
};

TEST_F(LocalGuestTest, BinaryOutputIsByteExact) {
  ExecRequest r = Capture("head -c 5000000 /dev/urandom | tee \"$COPY\"");
  r.env["COPY"] = tmp_ + "/copy.bin";
  auto result = guest_.Exec(r);
  ASSERT_TRUE(result.ok()) << result.status();
  EXPECT_TRUE(result->Succeeded());
  ASSERT_EQ(out_.size(), 5000000u);
  auto want = Sha256File(tmp_ + "/copy.bin");
  ASSERT_TRUE(want.ok());
  EXPECT_EQ(Sha256Hex(out_), *want);
}

TEST_F(LocalGuestTest, StdoutAndStderrStaySeparate) {
  auto result = guest_.Exec(Capture("printf 'to out\\n'; printf 'to err\\n' >&2; printf 'more out'"));
  ASSERT_TRUE(result.ok()) << result.status();
  EXPECT_EQ(out_, "to out\nmore out");
  EXPECT_EQ(err_, "to err\n");
}

TEST_F(LocalGuestTest, ReportsExitCode) {
  auto result = guest_.Exec(Capture("exit 7"));
  ASSERT_TRUE(result.ok()) << result.status();
  EXPECT_EQ(result->exit_code, 7);
  EXPECT_EQ(result->signal, 0);
  EXPECT_FALSE(result->Succeeded());
}

TEST_F(LocalGuestTest, ReportsSignal) {
  auto result = guest_.Exec(Capture("kill -KILL $$"));
  ASSERT_TRUE(result.ok()) << result.status();
  EXPECT_EQ(result->signal, SIGKILL);
  EXPECT_FALSE(result->Succeeded());
}

TEST_F(LocalGuestTest, PassesEnvWorkingDirAndStdin) {
  ASSERT_TRUE(MakeDirs(tmp_ + "/sub").ok());
  ExecRequest r = Capture("printf '%s|' \"$GREETING\"; pwd; cat");
  r.env["GREETING"] = "hello world";
  r.working_dir = tmp_ + "/sub";
  r.stdin_data = std::string("in\0put", 6);
  auto result = guest_.Exec(r);
  ASSERT_TRUE(result.ok()) << result.status();
  EXPECT_EQ(out_, "hello world|" + tmp_ + "/sub\n" + std::string("in\0put", 6));
}

TEST_F(LocalGuestTest, MissingWorkingDirIsAnError) {
  ExecRequest r = Capture("true");
  r.working_dir = tmp_ + "/nope";
  auto result = guest_.Exec(r);
  EXPECT_EQ(result.status().code(), absl::StatusCode::kNotFound);
}

TEST_F(LocalGuestTest, IdleTimeoutKillsSilentCommand) {
  ExecRequest r = Capture("echo started; sleep 30");
  r.idle_timeout = milliseconds(300);
  auto start = std::chrono::steady_clock::now();
  auto result = guest_.Exec(r);
  ASSERT_TRUE(result.ok()) << result.status();
  EXPECT_TRUE(result->idle_timed_out);
  EXPECT_FALSE(result->Succeeded());
  EXPECT_LT(std::chrono::steady_clock::now() - start, seconds(5));
  EXPECT_EQ(out_, "started\n");
}

TEST_F(LocalGuestTest, TotalTimeoutKillsChattyCommand) {
  ExecRequest r = Capture("while true; do echo tick; sleep 0.05; done");
  r.idle_timeout = milliseconds(2000);
  r.deadline = Deadline::After(milliseconds(500));
  auto start = std::chrono::steady_clock::now();
  auto result = guest_.Exec(r);
  ASSERT_TRUE(result.ok()) << result.status();
  EXPECT_TRUE(result->timed_out);
  EXPECT_FALSE(result->idle_timed_out);
  EXPECT_LT(std::chrono::steady_clock::now() - start, seconds(5));
}

TEST_F(LocalGuestTest, CancelKillsTheWholeProcessGroup) {
  // The shell records its pid, which is also its process group id (own group per command).
  ExecRequest r = Capture("echo $$ > pgid; sleep 1000 & sleep 1000");
  CancellationToken cancel;
  r.cancel = cancel;
  // Cancels once the shell runs (it has written its group), not after a fixed time a busy machine may
  // not have started it in.
  std::chrono::steady_clock::time_point cancelled_at;
  std::thread canceller([&] {
    auto until = std::chrono::steady_clock::now() + seconds(20);
    while (std::chrono::steady_clock::now() < until) {
      absl::StatusOr<std::string> written = ReadFile(tmp_ + "/pgid");
      if (written.ok() && absl::EndsWith(*written, "\n")) break;
      std::this_thread::sleep_for(milliseconds(20));
    }
    cancelled_at = std::chrono::steady_clock::now();
    cancel.Cancel("test cancel");
  });
  auto result = guest_.Exec(r);
  canceller.join();
  ASSERT_TRUE(result.ok()) << result.status();
  EXPECT_TRUE(result->cancelled);
  EXPECT_LT(std::chrono::steady_clock::now() - cancelled_at, seconds(3));
  auto text = ReadFile(tmp_ + "/pgid");
  ASSERT_TRUE(text.ok()) << text.status();
  int pgid = 0;
  ASSERT_TRUE(absl::SimpleAtoi(std::string(absl::StripAsciiWhitespace(*text)), &pgid));
  ASSERT_GT(pgid, 1);
  EXPECT_FALSE(ProcessGroupAlive(pgid));
}

TEST_F(LocalGuestTest, DownloadHashesAndRefusesSymlinks) {
  ASSERT_TRUE(WriteFileAtomic(tmp_ + "/a.txt", "artifact bytes").ok());
  ASSERT_EQ(::symlink("/etc/passwd", (tmp_ + "/link").c_str()), 0);
  auto ok = guest_.Download(tmp_ + "/a.txt", tmp_ + "/copy", 0, CancellationToken());
  ASSERT_TRUE(ok.ok()) << ok.status();
  EXPECT_EQ(ok->size, 14u);
  EXPECT_EQ(ok->sha256, Sha256Hex("artifact bytes"));
  EXPECT_EQ(*ReadFile(tmp_ + "/copy"), "artifact bytes");

  auto link = guest_.Download(tmp_ + "/link", tmp_ + "/copy2", 0, CancellationToken());
  EXPECT_EQ(link.status().code(), absl::StatusCode::kFailedPrecondition);

  auto big = guest_.Download(tmp_ + "/a.txt", tmp_ + "/copy3", 4, CancellationToken());
  EXPECT_EQ(big.status().code(), absl::StatusCode::kResourceExhausted);
  EXPECT_NE(::access((tmp_ + "/copy3").c_str(), F_OK), 0);

  auto missing = guest_.Download(tmp_ + "/none", tmp_ + "/copy4", 0, CancellationToken());
  EXPECT_EQ(missing.status().code(), absl::StatusCode::kNotFound);
}

TEST_F(LocalGuestTest, UploadSetsModeAndHashes) {
  ASSERT_TRUE(WriteFileAtomic(tmp_ + "/src", "#!/bin/sh\necho hi\n").ok());
  auto t = guest_.Upload(tmp_ + "/src", tmp_ + "/dst", 0755, CancellationToken());
  ASSERT_TRUE(t.ok()) << t.status();
  EXPECT_EQ(t->sha256, Sha256Hex("#!/bin/sh\necho hi\n"));
  struct stat st;
  ASSERT_EQ(::stat((tmp_ + "/dst").c_str(), &st), 0);
  EXPECT_EQ(st.st_mode & 0777, 0755u);
}

TEST_F(LocalGuestTest, UploadDirectoryKeepsTree) {
  ASSERT_TRUE(MakeDirs(tmp_ + "/src/d").ok());
  ASSERT_TRUE(WriteFileAtomic(tmp_ + "/src/d/f", "x").ok());
  ASSERT_EQ(::symlink("d/f", (tmp_ + "/src/l").c_str()), 0);
  ASSERT_TRUE(guest_.UploadDirectory(tmp_ + "/src", tmp_ + "/dst", CancellationToken()).ok());
  EXPECT_EQ(*ReadFile(tmp_ + "/dst/d/f"), "x");
  char buf[64] = {};
  ASSERT_GT(::readlink((tmp_ + "/dst/l").c_str(), buf, sizeof(buf) - 1), 0);
  EXPECT_STREQ(buf, "d/f");
}

TEST(LocalDriverTest, WorkspaceIsPrivateAndRemovedByTheLease) {
  auto root = MakePrivateTempDir("/tmp", "fa-localdriver-");
  ASSERT_TRUE(root.ok());
  LocalDriver driver(*root + "/vms");
  std::string workspace;
  {
    VmSpec spec;
    spec.name = "freeagent-w1-b-123-1";
    auto vm = driver.Create(spec);
    ASSERT_TRUE(vm.ok()) << vm.status();
    VmLease lease(std::move(*vm), milliseconds(100));
    ASSERT_TRUE(lease->Start(Deadline::Infinite(), CancellationToken()).ok());
    ASSERT_TRUE(lease->WaitReady(Deadline::Infinite(), CancellationToken()).ok());
    workspace = lease->workspace();
    struct stat st;
    ASSERT_EQ(::stat(workspace.c_str(), &st), 0);
    EXPECT_EQ(st.st_mode & 0777, 0700u);
    ExecRequest r;
    r.command = "mkdir -p out && echo built > out/app.bin";
    auto result = lease->guest()->Exec(r);
    ASSERT_TRUE(result.ok());
    EXPECT_TRUE(result->Succeeded());
    EXPECT_EQ(*ReadFile(workspace + "/out/app.bin"), "built\n");
    auto owned = driver.ListOwned("freeagent-w1-");
    ASSERT_TRUE(owned.ok());
    EXPECT_EQ(owned->size(), 1u);
  }
  EXPECT_NE(::access(workspace.c_str(), F_OK), 0);
  RemoveTree(*root).IgnoreError();
}

TEST(LocalDriverTest, ReapsOrphans) {
  auto root = MakePrivateTempDir("/tmp", "fa-localdriver-");
  ASSERT_TRUE(root.ok());
  LocalDriver driver(*root);
  VmSpec spec;
  spec.name = "freeagent-w2-b-1-1";
  auto vm = driver.Create(spec);
  ASSERT_TRUE(vm.ok());
  std::string ws = (*vm)->workspace();
  vm->reset();  // a crash: nobody destroyed it
  auto owned = driver.ListOwned("freeagent-w2-");
  ASSERT_TRUE(owned.ok());
  ASSERT_EQ(owned->size(), 1u);
  EXPECT_TRUE(driver.DestroyOwned((*owned)[0]).ok());
  EXPECT_NE(::access(ws.c_str(), F_OK), 0);
  EXPECT_FALSE(driver.DestroyOwned("../etc").ok());
  RemoveTree(*root).IgnoreError();
}

}  // namespace
}  // namespace freeagent::vm
