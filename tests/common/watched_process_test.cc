#include "common/watched_process.h"

#include <atomic>
#include <chrono>
#include <string>
#include <thread>

#include "absl/strings/str_cat.h"
#include "common/fs.h"
#include "common/process.h"
#include "gtest/gtest.h"

namespace freeagent {
namespace {

using std::chrono::milliseconds;

class WatchedProcessTest : public ::testing::Test {
 protected:
  void SetUp() override {
    auto d = MakePrivateTempDir("/tmp", "fa-watched-");
    ASSERT_TRUE(d.ok()) << d.status();
    dir_ = *d;
  }
  void TearDown() override { RemoveTree(dir_).IgnoreError(); }

  WatchedProcessOptions Sh(const std::string& script) {
    WatchedProcessOptions o;
    o.argv = {"/bin/sh", "-c", script};
    o.log_path = dir_ + "/out.log";
    return o;
  }

  std::string dir_;
};

TEST_F(WatchedProcessTest, ReportsAnExitOnItsOwnWithStatusAndLog) {
  std::atomic<int> calls{0};
  WatchedProcessOptions o = Sh("echo booting; echo 'panic: disk gone' >&2; exit 3");
  o.on_exit = [&calls] { ++calls; };
  auto p = WatchedProcess::Start(std::move(o));
  ASSERT_TRUE(p.ok()) << p.status();
  ASSERT_TRUE((*p)->WaitExit(milliseconds(5000)));
  EXPECT_TRUE((*p)->exited());
  EXPECT_FALSE((*p)->killed());
  EXPECT_EQ((*p)->exit_code(), 3);
  EXPECT_EQ((*p)->exit_description(), "exit status 3");
  EXPECT_EQ(LogTail(dir_ + "/out.log", 1), "panic: disk gone");
  EXPECT_EQ(LogTail(dir_ + "/out.log", 5), "booting\npanic: disk gone");
  (*p)->Kill();  // after the end: harmless
  EXPECT_EQ(calls.load(), 1);
}

TEST_F(WatchedProcessTest, KillEndsTheWholeGroup) {
  // A background grandchild writes its pid; it must be gone after Kill().
  std::string pid_file = dir_ + "/grandchild.pid";
  auto p = WatchedProcess::Start(Sh(absl::StrCat("sleep 300 & echo $! > ", pid_file, "; wait")));
  ASSERT_TRUE(p.ok()) << p.status();
  std::string pid_text;
  // Up to 10 s: the shell's start can take a while on a busy machine.
  for (int i = 0; i < 1000 && pid_text.empty(); ++i) {
    auto t = ReadFile(pid_file);
    if (t.ok()) pid_text = *t;
    std::this_thread::sleep_for(milliseconds(10));
  }
  ASSERT_FALSE(pid_text.empty());
  EXPECT_FALSE((*p)->exited());
  EXPECT_FALSE((*p)->WaitExit(milliseconds(100)));
  auto started = std::chrono::steady_clock::now();
  (*p)->Kill();
  EXPECT_LT(std::chrono::steady_clock::now() - started, std::chrono::seconds(5));
  EXPECT_TRUE((*p)->exited());
  EXPECT_TRUE((*p)->killed());
  EXPECT_EQ((*p)->exit_description(), "killed by signal 15");
  pid_t grandchild = static_cast<pid_t>(std::stoi(pid_text));
  auto st = ReadProcStat(grandchild);
  EXPECT_TRUE(!st.has_value() || st->state == 'Z') << "grandchild " << grandchild << " survived";
}

TEST_F(WatchedProcessTest, MissingProgramIsAnImmediateEndThatSaysWhy) {
  WatchedProcessOptions o;
  o.argv = {"/nonexistent/tart", "run", "x"};
  o.log_path = dir_ + "/out.log";
  auto p = WatchedProcess::Start(std::move(o));
  ASSERT_TRUE(p.ok()) << p.status();
  ASSERT_TRUE((*p)->WaitExit(milliseconds(5000)));
  EXPECT_EQ((*p)->exit_code(), -1);
  EXPECT_NE((*p)->exit_description().find("/nonexistent/tart"), std::string::npos) << (*p)->exit_description();
}

TEST_F(WatchedProcessTest, UnwritableLogIsAnError) {
  WatchedProcessOptions o = Sh("true");
  std::string log = dir_ + "/no/such/dir/out.log";
  o.log_path = log;
  auto p = WatchedProcess::Start(std::move(o));
  ASSERT_FALSE(p.ok());
  EXPECT_NE(p.status().message().find(log), std::string::npos) << p.status();
}

TEST(LogTail, KeepsLastLinesAndDropsControlBytes) {
  auto d = MakePrivateTempDir("/tmp", "fa-tail-");
  ASSERT_TRUE(d.ok());
  std::string path = *d + "/console.log";
  std::string text;
  for (int i = 0; i < 20000; ++i) text += absl::StrCat("line ", i, "\r\n");
  text += "\x1b[0mlast\n\n";
  ASSERT_TRUE(WriteFileAtomic(path, text).ok());
  EXPECT_EQ(LogTail(path, 2), "line 19999\n[0mlast");
  EXPECT_EQ(LogTail(path + ".missing", 2), "");
  RemoveTree(*d).IgnoreError();
}

TEST(LogTail, EmptyOrBlankFilesGiveNothing) {
  // A VM that dies before writing a byte leaves empty logs behind; describing it must not throw.
  auto d = MakePrivateTempDir("/tmp", "fa-tail-");
  ASSERT_TRUE(d.ok());
  std::string path = *d + "/qemu.log";
  ASSERT_TRUE(WriteFileAtomic(path, "").ok());
  EXPECT_EQ(LogTail(path, 3), "");
  ASSERT_TRUE(WriteFileAtomic(path, "\n\r\n\n").ok());
  EXPECT_EQ(LogTail(path, 3), "");
  ASSERT_TRUE(WriteFileAtomic(path, "\nonly\n").ok());
  EXPECT_EQ(LogTail(path, 5), "only");
  EXPECT_EQ(LogTail(path, 0), "");
  RemoveTree(*d).IgnoreError();
}

}  // namespace
}  // namespace freeagent
