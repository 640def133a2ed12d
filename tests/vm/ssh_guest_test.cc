// SshGuest against a real OpenSSH server (tests/support/sshd_fixture).
#include "vm/ssh_guest.h"

#include <signal.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <unistd.h>

#include <chrono>
#include <fstream>
#include <map>
#include <mutex>
#include <thread>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "common/fs.h"
#include "common/process.h"
#include "common/sha256.h"
#include "gtest/gtest.h"
#include "tests/support/sshd_fixture.h"
#include "tests/support/sshd_guest_config.h"

namespace freeagent::vm {
namespace {

using std::chrono::milliseconds;
using std::chrono::seconds;
using testing::SshdFixture;

class SshGuestTest : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    auto f = SshdFixture::Start();
    ASSERT_TRUE(f.ok()) << f.status();
    sshd_ = f->release();
  }
  static void TearDownTestSuite() {
    delete sshd_;
    sshd_ = nullptr;
  }
  void SetUp() override {
    ASSERT_NE(sshd_, nullptr);
    auto d = MakePrivateTempDir("/tmp", "fa-sshtest-");
    ASSERT_TRUE(d.ok());
    tmp_ = *d;
  }
  void TearDown() override { RemoveTree(tmp_).IgnoreError(); }

  static SshConfig Config() { return freeagent::testing::GuestConfigFor(*sshd_); }
  static std::unique_ptr<SshGuest> MustConnect(SshConfig c = Config()) {
    auto g = SshGuest::Connect(c, CancellationToken());
    EXPECT_TRUE(g.ok()) << g.status() << "\n" << sshd_->LogTail();
    return g.ok() ? std::move(*g) : nullptr;
  }
  // Runs `cmd` and returns its stdout (test helper; fails the test on error).
  static std::string Run(SshGuest& g, const std::string& cmd) {
    ExecRequest r;
    r.command = cmd;
    std::string out;
    r.on_stdout = [&](std::string_view b) { out.append(b); };
    auto res = g.Exec(r);
    EXPECT_TRUE(res.ok()) << res.status();
    return out;
  }

  // Runs `cmd` (a pgrep) until it prints nothing, up to `timeout`; returns its last output. A process
  // that was sent its kill may take a moment to go.
  static std::string RunUntilEmpty(SshGuest& g, const std::string& cmd, std::chrono::milliseconds timeout) {
    auto until = std::chrono::steady_clock::now() + timeout;
    std::string out = Run(g, cmd);
    while (!out.empty() && std::chrono::steady_clock::now() < until) {
      std::this_thread::sleep_for(milliseconds(100));
      out = Run(g, cmd);
    }
    return out;
  }

  static SshdFixture* sshd_;
  std::string tmp_;
};
SshdFixture* SshGuestTest::sshd_ = nullptr;

TEST_F(SshGuestTest, TenMegabytesOfBinaryOutputArriveByteExact) {
  auto g = MustConnect();
  ASSERT_NE(g, nullptr);
  std::string remote = tmp_ + "/out.bin";
  ExecRequest r;
  r.command = "head -c 10000000 /dev/urandom | tee " + ShellQuote(remote);
  Sha256 streamed;
  uint64_t bytes = 0;
  r.on_stdout = [&](std::string_view b) {
    streamed.Update(b);
    bytes += b.size();
  };
  auto res = g->Exec(r);
  ASSERT_TRUE(res.ok()) << res.status();
  EXPECT_EQ(res->exit_code, 0);
  EXPECT_EQ(bytes, 10000000u);
  auto file_sha = Sha256File(remote);  // the guest is this host: compare with the file it wrote
  ASSERT_TRUE(file_sha.ok());
  EXPECT_EQ(streamed.FinishHex(), *file_sha);
}

TEST_F(SshGuestTest, StdoutAndStderrKeepTheirOwnOrder) {
  auto g = MustConnect();
  ExecRequest r;
  r.command = "for i in 1 2 3 4 5; do echo out$i; echo err$i >&2; done";
  std::string out, err;
  r.on_stdout = [&](std::string_view b) { out.append(b); };
  r.on_stderr = [&](std::string_view b) { err.append(b); };
  auto res = g->Exec(r);
  ASSERT_TRUE(res.ok());
  EXPECT_EQ(out, "out1\nout2\nout3\nout4\nout5\n");
  EXPECT_EQ(err, "err1\nerr2\nerr3\nerr4\nerr5\n");
}

TEST_F(SshGuestTest, ReportsExitCodesAndSignals) {
  auto g = MustConnect();
  ExecRequest r;
  r.command = "exit 42";
  auto res = g->Exec(r);
  ASSERT_TRUE(res.ok());
  EXPECT_EQ(res->exit_code, 42);
  EXPECT_EQ(res->signal, 0);
  r.command = "kill -TERM $$";
  res = g->Exec(r);
  ASSERT_TRUE(res.ok());
  EXPECT_EQ(res->signal, SIGTERM);
  EXPECT_FALSE(res->Succeeded());
}

TEST_F(SshGuestTest, ExitCodesAboveOneHundredTwentyEightStayExitCodes) {
  auto g = MustConnect();
  ExecRequest r;
  r.command = "exit 147";  // 128 + SIGSTOP on Linux: must not be turned into a signal
  r.deadline = Deadline::After(seconds(20));
  auto res = g->Exec(r);
  ASSERT_TRUE(res.ok()) << res.status();
  EXPECT_EQ(res->exit_code, 147);
  EXPECT_EQ(res->signal, 0);
  EXPECT_FALSE(res->timed_out);
}

TEST_F(SshGuestTest, OutputHeldOpenOutsideTheGroupDoesNotHangATimedOutCommand) {
  auto g = MustConnect();
  std::string nap = std::to_string(400000 + ::getpid() % 100000);
  ExecRequest r;
  // The setsid'd sleep leaves the command's process group but keeps its stdout open.
  r.command = "setsid sleep " + nap + " & sleep " + nap;
  r.deadline = Deadline::After(milliseconds(800));
  r.kill_grace = milliseconds(300);
  auto start = std::chrono::steady_clock::now();
  auto res = g->Exec(r);
  auto took = std::chrono::steady_clock::now() - start;
  Run(*g, "pkill -x -f '[s]leep " + nap + "' || true");
  ASSERT_TRUE(res.ok()) << res.status();
  EXPECT_TRUE(res->timed_out);
  EXPECT_LT(took, seconds(25));
}

TEST_F(SshGuestTest, StdinEnvAndWorkingDirReachTheCommand) {
  auto g = MustConnect();
  ExecRequest r;
  r.command = "printf '%s|' \"$FA_VALUE\" \"$(pwd)\"; cat | od -An -tx1 | tr -d ' \\n'";
  r.env["FA_VALUE"] = "it's \"quoted\" $HOME `x`";
  r.working_dir = tmp_;
  r.stdin_data = std::string("a\0b\n", 4);
  std::string out;
  r.on_stdout = [&](std::string_view b) { out.append(b); };
  auto res = g->Exec(r);
  ASSERT_TRUE(res.ok()) << res.status();
  EXPECT_EQ(out, absl::StrCat("it's \"quoted\" $HOME `x`|", tmp_, "|6100620a"));
}

TEST_F(SshGuestTest, EnvValuesNeverAppearOnAGuestCommandLine) {
  auto g = MustConnect();
  const std::string secret = "s3cr3t-" + std::to_string(::getpid());
  const std::string sleep = "sleep " + std::to_string(500000 + ::getpid() % 100000);
  ExecRequest r;
  r.command = sleep;
  r.env["FA_SECRET"] = secret;
  CancellationToken cancel;
  r.cancel = cancel;
  std::thread runner([&] { EXPECT_TRUE(g->Exec(r).ok()); });
  // The guest is this host: every process's argv is visible in /proc. Looked at while the command runs
  // (its start over SSH can take a second on a busy machine).
  std::string all;
  auto until = std::chrono::steady_clock::now() + seconds(20);
  do {
    all = Run(*g, "cat /proc/[0-9]*/cmdline 2>/dev/null | tr '\\0' ' '");
  } while (!absl::StrContains(all, sleep) && std::chrono::steady_clock::now() < until);
  cancel.Cancel("seen");
  runner.join();
  EXPECT_TRUE(absl::StrContains(all, sleep));
  EXPECT_FALSE(absl::StrContains(all, secret));
}

TEST_F(SshGuestTest, MissingWorkingDirIsNotFound) {
  auto g = MustConnect();
  ExecRequest r;
  r.command = "true";
  r.working_dir = tmp_ + "/nope";
  auto res = g->Exec(r);
  EXPECT_EQ(res.status().code(), absl::StatusCode::kNotFound);
  EXPECT_TRUE(absl::StrContains(res.status().message(), tmp_ + "/nope"));
}

TEST_F(SshGuestTest, IdleAndTotalTimeoutsKillTheCommand) {
  auto g = MustConnect();
  ExecRequest r;
  r.command = "echo hi; sleep 1000";
  r.idle_timeout = milliseconds(500);
  r.kill_grace = milliseconds(500);
  auto start = std::chrono::steady_clock::now();
  auto res = g->Exec(r);
  ASSERT_TRUE(res.ok()) << res.status();
  EXPECT_TRUE(res->idle_timed_out);
  EXPECT_LT(std::chrono::steady_clock::now() - start, seconds(5));

  ExecRequest t;
  t.command = "while :; do echo tick; sleep 0.1; done";
  t.deadline = Deadline::After(milliseconds(700));
  t.kill_grace = milliseconds(500);
  res = g->Exec(t);
  ASSERT_TRUE(res.ok()) << res.status();
  EXPECT_TRUE(res->timed_out);
  EXPECT_FALSE(res->idle_timed_out);
}

TEST_F(SshGuestTest, CancelLeavesNoProcessBehind) {
  auto g = MustConnect();
  // A sleep length no other process uses identifies what this test started.
  std::string marker = "fa_cancel_marker_" + std::to_string(::getpid());
  std::string nap = std::to_string(200000 + ::getpid() % 100000);
  ExecRequest r;
  r.command = "sh -c 'sleep " + nap + " & sleep " + nap + "' " + marker;
  r.kill_grace = milliseconds(1000);
  CancellationToken cancel;
  r.cancel = cancel;
  std::thread canceller([&] {
    std::this_thread::sleep_for(milliseconds(700));
    cancel.Cancel("test");
  });
  auto start = std::chrono::steady_clock::now();
  auto res = g->Exec(r);
  canceller.join();
  ASSERT_TRUE(res.ok()) << res.status();
  EXPECT_TRUE(res->cancelled);
  // Grace is 1 s; the rest is two SSH round trips and process start-up on a busy 2-core machine.
  EXPECT_LT(std::chrono::steady_clock::now() - start, seconds(6));
  // "[f]a_..." keeps pgrep's own shell, whose command line holds the pattern, from matching.
  EXPECT_EQ(RunUntilEmpty(*g, "pgrep -f '[f]" + marker.substr(1) + "' || true", seconds(5)), "");
  EXPECT_EQ(RunUntilEmpty(*g, "pgrep -x -f '[s]leep " + nap + "' || true", seconds(5)), "");
}

// The TERM travels over the session's signal shell: no new command (and no login shell start-up,
// which can alone take a second) stands between the cancel and the signal.
TEST_F(SshGuestTest, CancelSignalsTheStepWithinHalfASecond) {
  auto g = MustConnect();
  ASSERT_NE(g, nullptr);
  // The signal shell starts with the connection; a first command gives it time to be up.
  EXPECT_EQ(Run(*g, "echo up"), "up\n");
  for (int round = 0; round < 3; ++round) {
    ExecRequest r;
    r.command = "trap 'echo TERM; exit 7' TERM; echo ready; while :; do sleep 0.05; done";
    r.kill_grace = milliseconds(5000);
    CancellationToken cancel;
    r.cancel = cancel;
    std::mutex mu;
    std::string out;
    std::chrono::steady_clock::time_point cancelled_at{}, term_at{};
    r.on_stdout = [&](std::string_view b) {
      std::lock_guard<std::mutex> lock(mu);
      out.append(b);
      if (cancelled_at == std::chrono::steady_clock::time_point{} && out.find("ready\n") != std::string::npos) {
        cancelled_at = std::chrono::steady_clock::now();
        cancel.Cancel("test");
      }
      if (term_at == std::chrono::steady_clock::time_point{} && out.find("TERM\n") != std::string::npos) {
        term_at = std::chrono::steady_clock::now();
      }
    };
    auto res = g->Exec(r);
    ASSERT_TRUE(res.ok()) << res.status();
    EXPECT_TRUE(res->cancelled);
    EXPECT_EQ(res->exit_code, 7) << out;
    ASSERT_NE(term_at, std::chrono::steady_clock::time_point{}) << out;
    EXPECT_LT(term_at - cancelled_at, milliseconds(500)) << "round " << round;
  }
}

TEST_F(SshGuestTest, BackgroundChildrenDoNotOutliveTheCommand) {
  auto g = MustConnect();
  ExecRequest r;
  std::string nap = std::to_string(300000 + ::getpid() % 100000);
  r.command = "sleep " + nap + " & echo started";
  auto res = g->Exec(r);
  ASSERT_TRUE(res.ok());
  EXPECT_EQ(res->exit_code, 0);
  EXPECT_EQ(RunUntilEmpty(*g, "pgrep -x -f '[s]leep " + nap + "' || true", seconds(5)), "");
}

TEST_F(SshGuestTest, HostKeyMismatchIsRefusedShowingBothFingerprints) {
  SshConfig c = Config();
  c.host_key_fingerprint = "SHA256:AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA";
  c.connect_timeout = seconds(5);
  auto g = SshGuest::Connect(c, CancellationToken());
  ASSERT_FALSE(g.ok());
  EXPECT_EQ(g.status().code(), absl::StatusCode::kPermissionDenied);
  EXPECT_TRUE(absl::StrContains(g.status().message(), c.host_key_fingerprint)) << g.status();
  EXPECT_TRUE(absl::StrContains(g.status().message(), sshd_->host_key_fingerprint())) << g.status();
}

TEST_F(SshGuestTest, KnownHostsFilePinsTheKey) {
  SshConfig c = Config();
  c.host_key_fingerprint.clear();
  c.known_hosts_path = sshd_->known_hosts();
  auto g = MustConnect(c);
  ASSERT_NE(g, nullptr);
  EXPECT_EQ(g->host_key_fingerprint(), sshd_->host_key_fingerprint());

  // A known_hosts file that names another key for this host is refused.
  std::string other = tmp_ + "/known_hosts";
  auto pub = ReadFile(sshd_->stranger_key() + ".pub");
  ASSERT_TRUE(pub.ok());
  ASSERT_TRUE(WriteFileAtomic(other, absl::StrCat("[127.0.0.1]:", sshd_->port(), " ", *pub)).ok());
  c.known_hosts_path = other;
  auto bad = SshGuest::Connect(c, CancellationToken());
  EXPECT_EQ(bad.status().code(), absl::StatusCode::kPermissionDenied);
  EXPECT_TRUE(absl::StrContains(bad.status().message(), sshd_->host_key_fingerprint())) << bad.status();

  // An empty known_hosts file: unknown key, refused.
  std::string empty = tmp_ + "/empty_known_hosts";
  ASSERT_TRUE(WriteFileAtomic(empty, "").ok());
  c.known_hosts_path = empty;
  bad = SshGuest::Connect(c, CancellationToken());
  EXPECT_EQ(bad.status().code(), absl::StatusCode::kPermissionDenied);
  EXPECT_TRUE(absl::StrContains(bad.status().message(), "not in")) << bad.status();
}

TEST_F(SshGuestTest, WrongUserKeyIsPermissionDeniedNamingUserAndKey) {
  SshConfig c = Config();
  c.private_key_path = sshd_->stranger_key();
  auto g = SshGuest::Connect(c, CancellationToken());
  EXPECT_EQ(g.status().code(), absl::StatusCode::kPermissionDenied);
  EXPECT_TRUE(absl::StrContains(g.status().message(), sshd_->user())) << g.status();
  EXPECT_TRUE(absl::StrContains(g.status().message(), sshd_->stranger_key())) << g.status();
}

TEST_F(SshGuestTest, RsaKeyFailsWithTheExactReason) {
  SshConfig c = Config();
  c.private_key_path = sshd_->rsa_key();
  auto g = SshGuest::Connect(c, CancellationToken());
  ASSERT_FALSE(g.ok());
  EXPECT_EQ(g.status().code(), absl::StatusCode::kPermissionDenied);
  EXPECT_TRUE(absl::StrContains(g.status().message(), "OpenSSH >= 8.8")) << g.status();
}

TEST_F(SshGuestTest, EcdsaKeyFromMemoryWorks) {
  SshConfig c = Config();
  c.private_key_path.clear();
  auto key = ReadFile(sshd_->ecdsa_key());
  ASSERT_TRUE(key.ok());
  c.private_key_data = *key;
  auto g = MustConnect(c);
  ASSERT_NE(g, nullptr);
  EXPECT_EQ(Run(*g, "echo ok"), "ok\n");
}

TEST_F(SshGuestTest, UnreachableHostIsUnavailableAfterTheDeadline) {
  auto port = testing::FreeLoopbackPort();
  ASSERT_TRUE(port.ok());
  SshConfig c = Config();
  c.port = *port;
  c.connect_timeout = milliseconds(1500);
  auto start = std::chrono::steady_clock::now();
  auto g = SshGuest::Connect(c, CancellationToken());
  auto took = std::chrono::steady_clock::now() - start;
  EXPECT_EQ(g.status().code(), absl::StatusCode::kUnavailable);
  EXPECT_TRUE(absl::StrContains(g.status().message(), absl::StrCat("127.0.0.1:", *port))) << g.status();
  EXPECT_GE(took, milliseconds(1000));
  EXPECT_LT(took, seconds(6));
}

TEST_F(SshGuestTest, MissingRemoteFileIsNotFoundWithThePath) {
  auto g = MustConnect();
  auto r = g->Download(tmp_ + "/absent.bin", tmp_ + "/local.bin", 0, CancellationToken());
  EXPECT_EQ(r.status().code(), absl::StatusCode::kNotFound);
  EXPECT_TRUE(absl::StrContains(r.status().message(), tmp_ + "/absent.bin")) << r.status();
  EXPECT_NE(::access((tmp_ + "/local.bin").c_str(), F_OK), 0);
}

TEST_F(SshGuestTest, DownloadRefusesSymlinksAndOversizedFiles) {
  auto g = MustConnect();
  ASSERT_EQ(::symlink("/etc/passwd", (tmp_ + "/link").c_str()), 0);
  auto r = g->Download(tmp_ + "/link", tmp_ + "/got", 0, CancellationToken());
  EXPECT_EQ(r.status().code(), absl::StatusCode::kFailedPrecondition) << r.status();
  ASSERT_TRUE(WriteFileAtomic(tmp_ + "/big", std::string(5000, 'x')).ok());
  r = g->Download(tmp_ + "/big", tmp_ + "/got", 4000, CancellationToken());
  EXPECT_EQ(r.status().code(), absl::StatusCode::kResourceExhausted) << r.status();
  EXPECT_NE(::access((tmp_ + "/got").c_str(), F_OK), 0);
}

TEST_F(SshGuestTest, LocalWriteFailureRemovesThePartialFile) {
  auto g = MustConnect();
  ASSERT_TRUE(WriteFileAtomic(tmp_ + "/five_mb", std::string(5 << 20, 'y')).ok());
  // A file-size limit makes local writes fail part-way, as a full disk would.
  struct rlimit old;
  ::getrlimit(RLIMIT_FSIZE, &old);
  auto old_handler = ::signal(SIGXFSZ, SIG_IGN);
  struct rlimit small = old;
  small.rlim_cur = 1 << 20;
  ::setrlimit(RLIMIT_FSIZE, &small);
  auto r = g->Download(tmp_ + "/five_mb", tmp_ + "/partial", 0, CancellationToken());
  ::setrlimit(RLIMIT_FSIZE, &old);
  ::signal(SIGXFSZ, old_handler);
  EXPECT_FALSE(r.ok());
  EXPECT_TRUE(absl::StrContains(r.status().message(), tmp_ + "/partial")) << r.status();
  EXPECT_NE(::access((tmp_ + "/partial").c_str(), F_OK), 0);
}

TEST_F(SshGuestTest, TwoHundredMegabyteSftpRoundTripKeepsTheHash) {
  auto g = MustConnect();
  std::string src = tmp_ + "/src.bin";
  ProcessOptions mk;
  mk.argv = {"/bin/sh", "-c", "head -c 200000000 /dev/urandom > " + ShellQuote(src)};
  ASSERT_TRUE(RunProcess(mk).ok());
  auto want = Sha256File(src);
  ASSERT_TRUE(want.ok());
  auto t0 = std::chrono::steady_clock::now();
  auto up = g->Upload(src, tmp_ + "/remote.bin", 0640, CancellationToken());
  auto t1 = std::chrono::steady_clock::now();
  ASSERT_TRUE(up.ok()) << up.status();
  auto down = g->Download(tmp_ + "/remote.bin", tmp_ + "/back.bin", 0, CancellationToken());
  auto t2 = std::chrono::steady_clock::now();
  ASSERT_TRUE(down.ok()) << down.status();
  EXPECT_EQ(up->size, 200000000u);
  EXPECT_EQ(up->sha256, *want);
  EXPECT_EQ(down->sha256, *want);
  EXPECT_EQ(*Sha256File(tmp_ + "/back.bin"), *want);
  struct stat st;
  ASSERT_EQ(::stat((tmp_ + "/remote.bin").c_str(), &st), 0);
  EXPECT_EQ(st.st_mode & 0777, 0640u);
  std::printf("200 MB upload %.2f s, download %.2f s\n", std::chrono::duration<double>(t1 - t0).count(),
              std::chrono::duration<double>(t2 - t1).count());
}

TEST_F(SshGuestTest, TarUploadOfTenThousandFilesKeepsModesAndSymlinks) {
  auto g = MustConnect();
  std::string src = tmp_ + "/tree";
  for (int d = 0; d < 100; ++d) {
    std::string dir = absl::StrCat(src, "/d", d);
    ASSERT_TRUE(MakeDirs(dir).ok());
    for (int f = 0; f < 100; ++f) {
      std::string path = absl::StrCat(dir, "/f", f);
      std::ofstream(path) << "file " << d << "/" << f << "\n";
      ASSERT_EQ(::chmod(path.c_str(), f == 0 ? 0755 : 0644), 0);
    }
  }
  ASSERT_EQ(::symlink("d1/f1", (src + "/link").c_str()), 0);
  std::string dst = tmp_ + "/unpacked";
  auto start = std::chrono::steady_clock::now();
  absl::Status s = g->UploadDirectory(src, dst, CancellationToken());
  ASSERT_TRUE(s.ok()) << s;
  std::printf("10,000 files uploaded in %.2f s\n",
              std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count());
  EXPECT_EQ(Run(*g, "find " + ShellQuote(dst) + " -type f | wc -l"), "10000\n");
  EXPECT_EQ(*ReadFile(dst + "/d42/f7"), "file 42/7\n");
  struct stat st;
  ASSERT_EQ(::stat((dst + "/d3/f0").c_str(), &st), 0);
  EXPECT_EQ(st.st_mode & 0777, 0755u);
  ASSERT_EQ(::stat((dst + "/d3/f1").c_str(), &st), 0);
  EXPECT_EQ(st.st_mode & 0777, 0644u);
  char target[64] = {};
  ASSERT_GT(::readlink((dst + "/link").c_str(), target, sizeof target - 1), 0);
  EXPECT_STREQ(target, "d1/f1");
}

TEST_F(SshGuestTest, SessionsOnSeveralThreadsRunAtOnce) {
  auto g = MustConnect();
  std::vector<std::thread> threads;
  std::vector<std::string> outs(4);
  for (int i = 0; i < 4; ++i) {
    threads.emplace_back([&, i] { outs[i] = Run(*g, "date +%s.%N; sleep 4; date +%s.%N"); });
  }
  for (auto& t : threads) t.join();
  // Each command prints its start and end; they ran at once if every start precedes every end.
  double latest_start = 0, earliest_end = 1e18;
  for (const auto& o : outs) {
    double begin = 0, end = 0;
    ASSERT_EQ(std::sscanf(o.c_str(), "%lf %lf", &begin, &end), 2) << o;
    latest_start = std::max(latest_start, begin);
    earliest_end = std::min(earliest_end, end);
  }
  EXPECT_LT(latest_start, earliest_end) << "commands ran one after another";
}

// Last: these stop and restart the shared server.
TEST_F(SshGuestTest, ServerKilledMidExecIsUnavailableNotAHang) {
  auto g = MustConnect();
  ExecRequest r;
  r.command = "sleep 60";
  std::thread killer([&] {
    std::this_thread::sleep_for(milliseconds(800));
    sshd_->Stop();
  });
  auto start = std::chrono::steady_clock::now();
  auto res = g->Exec(r);
  killer.join();
  EXPECT_EQ(res.status().code(), absl::StatusCode::kUnavailable) << res.status();
  EXPECT_LT(std::chrono::steady_clock::now() - start, seconds(20));
  ASSERT_TRUE(sshd_->Restart().ok());
}

TEST_F(SshGuestTest, ConnectRetriesUntilTheServerIsUp) {
  sshd_->Stop();
  std::vector<std::string> progress;
  SshConfig c = Config();
  c.on_progress = [&](const std::string& line) { progress.push_back(line); };
  // sshd is restarted from this thread: the fixture's children die with the thread that started them.
  absl::StatusOr<std::unique_ptr<SshGuest>> g = absl::UnknownError("not run");
  std::thread connector([&] { g = SshGuest::Connect(c, CancellationToken()); });
  std::this_thread::sleep_for(milliseconds(1500));
  absl::Status restarted = sshd_->Restart();
  connector.join();
  ASSERT_TRUE(restarted.ok()) << restarted;
  ASSERT_TRUE(g.ok()) << g.status();
  ASSERT_GE(progress.size(), 2u);
  EXPECT_TRUE(absl::StrContains(progress.front(), "waiting for")) << progress.front();
  EXPECT_TRUE(absl::StrContains(progress.back(), "connected")) << progress.back();
}

// Each command's shell is started while the command before it runs, so slow start-up files (here
// 1.5 s per login) are not paid by the next command.
TEST(SshGuestStandbyTest, ACommandDoesNotWaitForItsLoginShellsStartUpFiles) {
  testing::SshdOptions options;
  options.login_delay = milliseconds(1500);
  auto f = SshdFixture::Start(options);
  ASSERT_TRUE(f.ok()) << f.status();
  SshdFixture& sshd = **f;
  // The delay is real: OpenSSH's client pays it for one command.
  ProcessOptions o;
  o.argv = {"ssh"};
  for (const std::string& a : sshd.SshClientArgs()) o.argv.push_back(a);
  o.argv.push_back(sshd.user() + "@127.0.0.1");
  o.argv.push_back("true");
  o.deadline = Deadline::After(seconds(30));
  auto start = std::chrono::steady_clock::now();
  auto r = RunProcess(o);
  ASSERT_TRUE(r.ok() && r->Succeeded()) << (r.ok() ? r->stderr_data : r.status().ToString());
  if (std::chrono::steady_clock::now() - start < milliseconds(1400)) {
    GTEST_SKIP() << "this account's login shell does not read ~/.bashrc, so logins are not slowed";
  }

  auto g = SshGuest::Connect(freeagent::testing::GuestConfigFor(sshd), CancellationToken());
  ASSERT_TRUE(g.ok()) << g.status();
  auto run = [&](const std::string& cmd, std::map<std::string, std::string> env = {}) {
    ExecRequest req;
    req.command = cmd;
    req.env = std::move(env);
    req.working_dir = "/tmp";
    std::string out;
    req.on_stdout = [&](std::string_view b) { out.append(b); };
    auto t0 = std::chrono::steady_clock::now();
    auto res = (*g)->Exec(req);
    EXPECT_TRUE(res.ok() && res->Succeeded()) << (res.ok() ? "" : res.status().ToString());
    return std::make_pair(out, std::chrono::steady_clock::now() - t0);
  };
  // Back to back: the second command's shell is still starting when it is wanted; it still runs.
  EXPECT_EQ(run("echo one").first, "one\n");
  EXPECT_EQ(run("echo two").first, "two\n");
  // A command long enough for the next shell to be ready, then one that does not wait for it.
  EXPECT_EQ(run("sleep 2; echo three").first, "three\n");
  auto [out, took] = run("echo \"$FA_X $(pwd)\"", {{"FA_X", "four"}});
  EXPECT_EQ(out, "four /tmp\n");
  EXPECT_LT(took, milliseconds(1000)) << "the command waited for its login shell's start-up files";
}

}  // namespace
}  // namespace freeagent::vm
