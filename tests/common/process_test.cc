#include "common/process.h"

#include <signal.h>
#include <unistd.h>

#include <chrono>
#include <mutex>
#include <thread>

#include "absl/strings/match.h"
#include "common/sha256.h"
#include "gtest/gtest.h"

namespace freeagent {
namespace {

using std::chrono::milliseconds;

ProcessOptions Sh(const std::string& script) {
  ProcessOptions o;
  o.argv = {"/bin/sh", "-c", script};
  return o;
}

TEST(RunProcess, CapturesBinaryOutputByteExact) {
  // 3 MB of every byte value, produced by the shell tools, hashed on both sides.
  auto o = Sh("head -c 3000000 /dev/urandom | tee out.bin; sha256sum out.bin >&2; rm -f out.bin");
  char dir[] = "/tmp/fa-proc-XXXXXX";
  ASSERT_NE(mkdtemp(dir), nullptr);
  o.cwd = dir;
  Sha256 streamed;
  size_t pieces = 0;
  o.on_stdout = [&](std::string_view b) {
    streamed.Update(b);
    ++pieces;
  };
  auto r = RunProcess(o);
  ASSERT_TRUE(r.ok()) << r.status();
  EXPECT_EQ(r->exit_code, 0);
  EXPECT_GT(pieces, 1u);
  EXPECT_EQ(r->stderr_data.substr(0, 64), streamed.FinishHex());
  rmdir(dir);
}

TEST(RunProcess, SeparatesStdoutAndStderrAndReportsExitCode) {
  auto r = RunProcess(Sh("printf out1; printf err1 >&2; printf out2; exit 7"));
  ASSERT_TRUE(r.ok());
  EXPECT_EQ(r->stdout_data, "out1out2");
  EXPECT_EQ(r->stderr_data, "err1");
  EXPECT_EQ(r->exit_code, 7);
  EXPECT_FALSE(r->Succeeded());
}

TEST(RunProcess, ReportsTerminatingSignal) {
  auto r = RunProcess(Sh("kill -USR1 $$"));
  ASSERT_TRUE(r.ok());
  EXPECT_EQ(r->term_signal, SIGUSR1);
}

TEST(RunProcess, FeedsStdinAndSetsEnvAndCwd) {
  auto o = Sh("cat; printf \"$FA_X\"; pwd");
  o.stdin_data = std::string("hello\0world", 11);
  o.env["FA_X"] = "[x]";
  o.cwd = "/tmp";
  auto r = RunProcess(o);
  ASSERT_TRUE(r.ok());
  EXPECT_EQ(r->stdout_data, std::string("hello\0world[x]/tmp\n", 19));
}

TEST(RunProcess, MissingProgramIsNotFound) {
  ProcessOptions o;
  o.argv = {"freeagent-no-such-program"};
  auto r = RunProcess(o);
  EXPECT_EQ(r.status().code(), absl::StatusCode::kNotFound);
  EXPECT_NE(r.status().message().find("freeagent-no-such-program"), std::string::npos);
}

TEST(RunProcess, TotalTimeoutKillsTheWholeGroup) {
  auto o = Sh("sleep 1000 & echo $! > /tmp/fa-proc-bg.$$; echo $$; sleep 1000");
  o.deadline = Deadline::After(milliseconds(300));
  o.kill_grace = milliseconds(200);
  auto start = std::chrono::steady_clock::now();
  auto r = RunProcess(o);
  ASSERT_TRUE(r.ok());
  EXPECT_TRUE(r->timed_out);
  EXPECT_LT(std::chrono::steady_clock::now() - start, std::chrono::seconds(3));
  pid_t pgid = std::stoi(r->stdout_data);
  EXPECT_FALSE(ProcessGroupAlive(pgid));
}

TEST(RunProcess, IdleTimeoutFiresWhenOutputStops) {
  auto o = Sh("echo started; sleep 1000");
  o.idle_timeout = milliseconds(300);
  o.kill_grace = milliseconds(100);
  auto r = RunProcess(o);
  ASSERT_TRUE(r.ok());
  EXPECT_TRUE(r->idle_timed_out);
  EXPECT_FALSE(r->timed_out);
  EXPECT_EQ(r->stdout_data, "started\n");
}

TEST(RunProcess, CancelTermsThenKillsAfterGrace) {
  // The script ignores TERM, so only the KILL after the grace period ends it.
  auto o = Sh("trap '' TERM; echo $$; while :; do sleep 0.05; done");
  o.kill_grace = milliseconds(300);
  CancellationToken cancel;
  o.cancel = cancel;
  // Cancelled once the script has printed its pid, so its trap is set (a fixed delay could cancel a
  // shell a busy machine has not started yet, which TERM would end).
  std::mutex mu;
  std::string out;
  o.on_stdout = [&](std::string_view b) {
    std::lock_guard<std::mutex> lock(mu);
    out.append(b);
  };
  auto printed = [&] {
    std::lock_guard<std::mutex> lock(mu);
    return out.find('\n') != std::string::npos;
  };
  std::chrono::steady_clock::time_point cancelled_at;
  std::thread canceller([&] {
    auto until = std::chrono::steady_clock::now() + std::chrono::seconds(20);
    while (!printed() && std::chrono::steady_clock::now() < until) std::this_thread::sleep_for(milliseconds(10));
    cancelled_at = std::chrono::steady_clock::now();
    cancel.Cancel("test");
  });
  auto r = RunProcess(o);
  canceller.join();
  ASSERT_TRUE(r.ok());
  EXPECT_TRUE(r->cancelled);
  EXPECT_EQ(r->term_signal, SIGKILL);
  auto took = std::chrono::steady_clock::now() - cancelled_at;
  EXPECT_GE(took, milliseconds(250)) << "killed before the grace was over";
  EXPECT_LT(took, std::chrono::seconds(3));
  std::lock_guard<std::mutex> lock(mu);
  ASSERT_TRUE(absl::EndsWith(out, "\n")) << out;
  EXPECT_FALSE(ProcessGroupAlive(std::stoi(out)));
}

TEST(RunProcess, LeftoverBackgroundProcessesDoNotOutliveTheCall) {
  auto r = RunProcess(Sh("sleep 1000 & echo $$"));
  ASSERT_TRUE(r.ok());
  EXPECT_EQ(r->exit_code, 0);
  EXPECT_FALSE(ProcessGroupAlive(std::stoi(r->stdout_data)));
}

}  // namespace
}  // namespace freeagent
