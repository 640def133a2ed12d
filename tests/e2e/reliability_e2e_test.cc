// End to end: breaking the controller, the network or the worker mid-build loses nothing. Each build
// tees the guest's output into an artifact, so the stored log can be compared with the very byte
// stream the guest wrote (and the artifact with its recorded sha256).
#include <chrono>
#include <cstdlib>
#include <filesystem>
#include <future>
#include <mutex>
#include <thread>

#include <grpcpp/client_context.h>

#include "absl/strings/ascii.h"
#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "common/fs.h"
#include "common/process.h"
#include "common/sha256.h"
#include "tests/e2e/e2e_fixture.h"
#include "tests/support/stream_data.h"
#include "tests/support/tcp_proxy.h"

namespace freeagent::testing {
namespace {

using namespace std::chrono_literals;
using freeagent::v1::Build;
using Clock = std::chrono::steady_clock;

int64_t NowUnixMs() {
  return std::chrono::duration_cast<std::chrono::milliseconds>(std::chrono::system_clock::now().time_since_epoch())
      .count();
}

std::string Tool() { return absl::StrCat("'", StreamToolBinary(), "'"); }

// The whole line a step wrote to a file called `name` somewhere under `dir` (its machine's workspace),
// or "" while there is none.
std::string FindWrittenLine(const std::string& dir, const std::string& name) {
  std::error_code ec;
  for (auto it = std::filesystem::recursive_directory_iterator(dir, ec);
       !ec && it != std::filesystem::recursive_directory_iterator(); it.increment(ec)) {
    if (it->path().filename() != name) continue;
    absl::StatusOr<std::string> text = ReadFile(it->path().string());
    if (text.ok() && absl::EndsWith(*text, "\n")) return *text;
  }
  return "";
}

// A step whose output (`script`'s stdout) is also written to out.log, collected as an artifact.
freeagent::v1::JobSpec TeeSpec(const std::string& source, const std::string& script) {
  auto spec = MakeSpec(source, {{"stream", absl::StrCat("{ ", script, "; } | tee out.log")}});
  spec.add_artifacts()->set_glob("out.log");
  return spec;
}

class ReliabilityTest : public E2ETest {
 protected:
  // The stored log is the guest's stream byte for byte (no loss, no duplicate) and the artifact is
  // what its record says.
  void ExpectLogIsTheArtifact(const Build& done) {
    ASSERT_EQ(done.state(), freeagent::v1::JOB_STATE_SUCCEEDED) << done.ShortDebugString();
    const freeagent::v1::ArtifactInfo* info = Artifact(done, "out.log");
    ASSERT_NE(info, nullptr) << done.ShortDebugString();
    FA_ASSERT_OK_AND_ASSIGN(std::string artifact, client().DownloadBlob(info->sha256()));
    EXPECT_EQ(Sha256Hex(artifact), info->sha256());
    EXPECT_EQ(artifact.size(), info->size());
    FA_ASSERT_OK_AND_ASSIGN(std::string log, client().ReadLog(done.id()));
    ASSERT_EQ(log.size(), artifact.size()) << "the stored log is not the guest's byte stream";
    EXPECT_EQ(Sha256Hex(log), Sha256Hex(artifact));
    EXPECT_EQ(done.log_size(), log.size());
    log_ = std::move(log);
  }

  static const freeagent::v1::ArtifactInfo* Artifact(const Build& build, const std::string& name) {
    for (const auto& a : build.artifacts()) {
      if (a.name() == name) return &a;
    }
    return nullptr;
  }

  absl::StatusOr<freeagent::v1::WorkerInfo> WorkerNamed(const std::string& name) {
    absl::StatusOr<std::vector<freeagent::v1::WorkerInfo>> workers = client().Workers();
    if (!workers.ok()) return workers.status();
    for (const auto& w : *workers) {
      if (w.name() == name) return w;
    }
    return absl::NotFoundError(absl::StrCat("worker ", name, " not listed"));
  }

  static bool HasEvent(const Build& build, const std::string& text) {
    for (const auto& e : build.events()) {
      if (absl::StrContains(e.message(), text)) return true;
    }
    return false;
  }

  std::string log_;  // the last log checked by ExpectLogIsTheArtifact
};

// Fault test 1: kill -9 the controller mid-build, restart it 5 s later on the same data dir and port.
// Meanwhile the guest writes 64 MB as fast as it can: the worker spools it to disk (its memory stays
// small and the guest is not held up), and sends it once the controller is back. A `freeagent logs -f`
// follower rides through the restart and prints the log exactly once.
TEST_F(ReliabilityTest, ControllerKilledMidBuildLosesNothing) {
  ControllerOptions options;
  options.heartbeat_interval_ms = 500;
  StartController(options);
  ChildProcess* worker = StartWorker();
  ASSERT_NE(worker, nullptr);
  FA_ASSERT_OK(client().WaitForWorkers(1, 20s));
  FA_ASSERT_OK_AND_ASSIGN(std::string source, client().UploadTrivialSource(cluster().root()));

  constexpr uint64_t kBurst = 64'000'000;
  auto spec = TeeSpec(source, absl::StrCat(Tool(), " lines 100000 1.5 100; ", Tool(), " random 11 ", kBurst,
                                           "; date +%s%3N > burst_end.txt; ", Tool(), " lines 100000 6 100"));
  spec.add_artifacts()->set_glob("burst_end.txt");
  FA_ASSERT_OK_AND_ASSIGN(Build build, client().Submit(spec));
  FA_ASSERT_OK_AND_ASSIGN(Build running, client().WaitFor(build.id(), [](const Build& b) {
    return b.phase() == freeagent::v1::PHASE_RUNNING && b.log_size() > 0;
  }, 30s));

  // What the follower printed so far (it prints the log as it arrives).
  std::mutex followed_mu;
  std::string followed_out;
  auto followed_size = [&] {
    std::lock_guard<std::mutex> lock(followed_mu);
    return followed_out.size();
  };
  std::future<ProcessResult> follower = std::async(std::launch::async, [&] {
    ProcessOptions p;
    p.argv = {CliBinary(), "--controller", cluster().address(), "--insecure", "logs", "-f", build.id()};
    p.deadline = Deadline::After(180s);
    p.on_stdout = [&](std::string_view bytes) {
      std::lock_guard<std::mutex> lock(followed_mu);
      followed_out.append(bytes);
    };
    absl::StatusOr<ProcessResult> r = RunProcess(p);
    return r.ok() ? *r : ProcessResult{};
  });
  // The follower is attached before the kill: it has printed log bytes.
  for (auto until = Clock::now() + 30s; followed_size() == 0 && Clock::now() < until;) {
    std::this_thread::sleep_for(20ms);
  }
  ASSERT_GT(followed_size(), 0u) << "the follower printed nothing in 30 s";

  cluster().controller()->Kill();
  std::this_thread::sleep_for(5s);
  // The controller stays away until the guest is through its burst (a fixed time could be too short
  // for 64 MB on a loaded machine); a worker that held the guest up would never let it get there.
  const std::string vms = cluster().root() + "/work-worker-1/vms";
  for (auto until = Clock::now() + 60s; FindWrittenLine(vms, "burst_end.txt").empty() && Clock::now() < until;) {
    std::this_thread::sleep_for(100ms);
  }
  ASSERT_FALSE(FindWrittenLine(vms, "burst_end.txt").empty())
      << "the guest was held up while the controller was away: no burst end under " << vms;
  const int64_t restarted_at = NowUnixMs();
  ControllerOptions again = options;
  again.data_dir = cluster().controller_data_dir();
  again.listen = absl::StrCat("127.0.0.1:", cluster().port());
  StartController(again);

  FA_ASSERT_OK_AND_ASSIGN(Build done, client().WaitForTerminal(build.id(), 120s));
  EXPECT_EQ(done.attempt(), 1u) << "the running attempt was requeued although its worker came back";
  EXPECT_EQ(done.worker_id(), running.worker_id());
  const freeagent::v1::ArtifactInfo* burst_info = Artifact(done, "burst_end.txt");
  ASSERT_NE(burst_info, nullptr) << done.ShortDebugString();
  FA_ASSERT_OK_AND_ASSIGN(std::string burst_end, client().DownloadBlob(burst_info->sha256()));
  ExpectLogIsTheArtifact(done);
  EXPECT_GT(log_.size(), kBurst);

  int64_t burst_end_ms = 0;
  ASSERT_TRUE(absl::SimpleAtoi(absl::StripAsciiWhitespace(burst_end), &burst_end_ms)) << burst_end;
  EXPECT_LT(burst_end_ms, restarted_at) << "the guest was held up while the controller was away";
  const uint64_t worker_peak = PeakRssBytes(worker->pid());
  std::printf("worker peak RSS %.1f MB while spooling %.1f MB for an absent controller\n", worker_peak / 1e6,
              kBurst / 1e6);
  EXPECT_GT(worker_peak, 0u);
  EXPECT_LT(worker_peak, 48'000'000u) << "the worker held the unacknowledged log in memory";

  ProcessResult followed = follower.get();
  EXPECT_EQ(followed.exit_code, 0) << followed.stderr_data;
  std::lock_guard<std::mutex> lock(followed_mu);
  EXPECT_EQ(followed_out.size(), log_.size());
  EXPECT_EQ(Sha256Hex(followed_out), Sha256Hex(log_)) << "the follower lost or repeated bytes";
}

// How long fault test 2 cuts the network: FREEAGENT_CUT_SECONDS (the `slow` label runs it with the
// issue's 30 s; the default run uses 8 s).
int CutSeconds() {
  const char* env = std::getenv("FREEAGENT_CUT_SECONDS");
  int seconds = 0;
  if (env != nullptr && absl::SimpleAtoi(env, &seconds) && seconds > 0) return seconds;
  return 8;
}

// Fault test 2: the worker reaches the controller through a proxy the test cuts silently mid-build
// (packets dropped, nothing reset). The build goes on, the worker comes back on a new connection and
// the log has every byte exactly once.
TEST_F(ReliabilityTest, NetworkCutMidBuildLosesNothing) {
  const int cut = CutSeconds();
  ControllerOptions options;
  options.heartbeat_interval_ms = 500;
  // Longer than the cut plus the reconnect, so the controller keeps the attempt.
  options.liveness_timeout_ms = (cut + 30) * 1000;
  StartController(options);
  FA_ASSERT_OK_AND_ASSIGN(std::unique_ptr<TcpProxy> proxy, TcpProxy::Start(cluster().port()));
  WorkerOptions wopts;
  wopts.controller = proxy->address();
  ASSERT_NE(StartWorker(wopts), nullptr);
  FA_ASSERT_OK(client().WaitForWorkers(1, 20s));
  FA_ASSERT_OK_AND_ASSIGN(std::string source, client().UploadTrivialSource(cluster().root()));

  auto spec = TeeSpec(source, absl::StrCat(Tool(), " lines 200000 2 100; ", Tool(), " random 12 16000000; ", Tool(),
                                           " lines 200000 ", cut + 4, " 100"));
  FA_ASSERT_OK_AND_ASSIGN(Build build, client().Submit(spec));
  FA_ASSERT_OK(client().WaitFor(build.id(), [](const Build& b) {
    return b.phase() == freeagent::v1::PHASE_RUNNING && b.log_size() > 0;
  }, 30s).status());
  const uint64_t accepted_before = proxy->accepted();

  proxy->Cut();
  FA_ASSERT_OK_AND_ASSIGN(Build during, client().Get(build.id()));
  const uint64_t log_at_cut = during.log_size();
  std::this_thread::sleep_for(std::chrono::seconds(cut));
  FA_ASSERT_OK_AND_ASSIGN(during, client().Get(build.id()));
  EXPECT_EQ(during.state(), freeagent::v1::JOB_STATE_RUNNING) << during.ShortDebugString();
  EXPECT_LE(during.log_size(), log_at_cut + 2'000'000) << "log bytes went around the cut";
  proxy->Restore();

  FA_ASSERT_OK_AND_ASSIGN(Build done, client().WaitForTerminal(build.id(), std::chrono::seconds(cut + 90)));
  EXPECT_EQ(done.attempt(), 1u) << done.ShortDebugString();
  ExpectLogIsTheArtifact(done);
  EXPECT_GT(proxy->accepted(), accepted_before) << "the worker never reconnected";
  FA_ASSERT_OK_AND_ASSIGN(Build record, client().Get(build.id()));
  EXPECT_TRUE(HasEvent(record, "step stream done in")) << "a note made during the cut was lost";
}

// Fault test 3: kill -9 the worker mid-build. The controller marks it offline within its liveness
// timeout and runs the build again as attempt 2 elsewhere; the restarted worker (same id and work
// dir) reaps what attempt 1 left and is told to abandon it.
TEST_F(ReliabilityTest, KilledWorkerIsReplacedAndOnRestartAbandonsItsAttempt) {
  ControllerOptions options;
  options.liveness_timeout_ms = 2000;
  options.heartbeat_interval_ms = 300;
  StartController(options);
  FA_ASSERT_OK_AND_ASSIGN(std::string doomed_dir, cluster().MakeDir("doomed-work"));
  WorkerOptions doomed_options = NamedWorker("doomed");
  doomed_options.work_dir = doomed_dir;
  ChildProcess* doomed = StartWorker(doomed_options);
  ASSERT_NE(doomed, nullptr);
  FA_ASSERT_OK(client().WaitForWorkers(1, 20s));
  FA_ASSERT_OK_AND_ASSIGN(std::string source, client().UploadTrivialSource(cluster().root()));

  // Attempt 1 prints for 4 s, then waits silently (at most 60 s) until attempt 2 has started, so it is
  // still running when its worker is killed however long the survivor takes to start. Attempt 2 prints
  // the same way and ends.
  const std::string root = cluster().root();
  auto spec = TeeSpec(source, absl::StrCat("if mkdir ", root, "/first-attempt 2>/dev/null; then ", Tool(),
                                           " lines 50000 4 100; i=0; while [ ! -e ", root,
                                           "/second-attempt ] && [ $i -lt 600 ]; do sleep 0.1; i=$((i+1)); done; ",
                                           "else touch ", root, "/second-attempt; ", Tool(), " lines 50000 4 100; fi"));
  FA_ASSERT_OK_AND_ASSIGN(Build build, client().Submit(spec));
  FA_ASSERT_OK(client().WaitFor(build.id(), [](const Build& b) {
    return b.phase() == freeagent::v1::PHASE_RUNNING && b.log_size() > 0;
  }, 30s).status());
  ASSERT_NE(StartWorker(NamedWorker("survivor")), nullptr);
  FA_ASSERT_OK(client().WaitForWorkers(2, 20s));

  doomed->Kill();
  const auto killed_at = Clock::now();
  const std::string spool = absl::StrCat(doomed_dir, "/jobs/", build.id(), "-1.spool");
  EXPECT_TRUE(ReadFile(spool).ok()) << "attempt 1 left no spool behind: " << spool;
  for (;;) {
    FA_ASSERT_OK_AND_ASSIGN(auto info, WorkerNamed("doomed"));
    if (info.state() == freeagent::v1::WORKER_STATE_OFFLINE) break;
    ASSERT_LT(Clock::now() - killed_at, 6s) << "still " << info.ShortDebugString();
    std::this_thread::sleep_for(50ms);
  }
  const auto offline_after = Clock::now() - killed_at;
  EXPECT_LT(offline_after, 2000ms + 1500ms)
      << "offline only after " << std::chrono::duration_cast<std::chrono::milliseconds>(offline_after).count()
      << " ms";

  FA_ASSERT_OK_AND_ASSIGN(Build done, client().WaitForTerminal(build.id(), 60s));
  EXPECT_EQ(done.attempt(), 2u) << done.ShortDebugString();
  FA_ASSERT_OK_AND_ASSIGN(auto survivor, WorkerNamed("survivor"));
  EXPECT_EQ(done.worker_id(), survivor.id());
  ExpectLogIsTheArtifact(done);

  // The same worker comes back: it states the attempt it lost, is told to abandon it, and its jobs dir
  // (spool and job dir of attempt 1) is gone.
  ChildProcess* again = StartWorker(doomed_options);
  ASSERT_NE(again, nullptr);
  FA_ASSERT_OK(client().WaitForWorkers(2, 20s));
  FA_ASSERT_OK_AND_ASSIGN(auto back, WorkerNamed("doomed"));
  EXPECT_EQ(back.state(), freeagent::v1::WORKER_STATE_ONLINE);
  FA_ASSERT_OK_AND_ASSIGN(Build record, client().WaitFor(build.id(), [](const Build& b) {
    return HasEvent(b, "told to abandon attempt 1");
  }, 10s));
  EXPECT_TRUE(HasEvent(record, "doomed told to abandon attempt 1 (lost when the worker stopped)"));
  absl::StatusOr<std::vector<std::string>> left = ListDirectory(doomed_dir + "/jobs");
  EXPECT_TRUE(!left.ok() || left->empty()) << "the restarted worker left " << left->size() << " entries";
  // Attempt 2's record is untouched by the old attempt.
  FA_ASSERT_OK_AND_ASSIGN(Build after, client().Get(build.id()));
  EXPECT_EQ(after.state(), freeagent::v1::JOB_STATE_SUCCEEDED);
  EXPECT_EQ(after.attempt(), 2u);
}

// Heartbeats run on their own thread: a job blocked for several liveness periods in one guest Exec
// (no output at all) does not make its worker look dead.
TEST_F(ReliabilityTest, WorkerBusyInALongExecStaysAlive) {
  ControllerOptions options;
  options.liveness_timeout_ms = 1500;
  options.heartbeat_interval_ms = 250;
  StartController(options);
  ASSERT_NE(StartWorker(NamedWorker("busy")), nullptr);
  FA_ASSERT_OK(client().WaitForWorkers(1, 20s));
  FA_ASSERT_OK_AND_ASSIGN(std::string source, client().UploadTrivialSource(cluster().root()));

  FA_ASSERT_OK_AND_ASSIGN(Build build, client().Submit(MakeSpec(source, {{"quiet", "sleep 6; echo woke"}})));
  FA_ASSERT_OK(client().WaitFor(build.id(), [](const Build& b) {
    return b.phase() == freeagent::v1::PHASE_RUNNING;
  }, 30s).status());
  const auto until = Clock::now() + 5s;
  int64_t first_beat = 0;
  int64_t last_beat = 0;
  while (Clock::now() < until) {
    FA_ASSERT_OK_AND_ASSIGN(auto info, WorkerNamed("busy"));
    ASSERT_EQ(info.state(), freeagent::v1::WORKER_STATE_ONLINE) << info.ShortDebugString();
    if (first_beat == 0) first_beat = info.last_heartbeat_unix_ms();
    last_beat = info.last_heartbeat_unix_ms();
    EXPECT_LT(NowUnixMs() - last_beat, 1000) << "no heartbeat for a second while the job sleeps";
    std::this_thread::sleep_for(100ms);
  }
  EXPECT_GT(last_beat - first_beat, 3000) << "heartbeats stopped during the long exec";
  FA_ASSERT_OK_AND_ASSIGN(Build done, client().WaitForTerminal(build.id(), 30s));
  EXPECT_EQ(done.state(), freeagent::v1::JOB_STATE_SUCCEEDED) << done.ShortDebugString();
  EXPECT_EQ(done.attempt(), 1u);
}

// Fault test 6: a watcher that stops reading neither slows the build nor another watcher, and later
// gets the rest of the log from where it stopped.
TEST_F(ReliabilityTest, SlowWatcherDoesNotSlowTheBuildOrOtherWatchers) {
  StartController();
  ASSERT_NE(StartWorker(), nullptr);
  FA_ASSERT_OK(client().WaitForWorkers(1, 20s));
  FA_ASSERT_OK_AND_ASSIGN(std::string source, client().UploadTrivialSource(cluster().root()));

  constexpr uint64_t kSeed = 6;
  constexpr uint64_t kSize = 24'000'000;
  const std::string expected = DeterministicBytes(kSeed, kSize);
  FA_ASSERT_OK_AND_ASSIGN(
      Build build, client().Submit(MakeSpec(source, {{"stream", absl::StrCat(Tool(), " random ", kSeed, " ", kSize)}})));

  // The slow watcher reads its first log event, then nothing until the build is over.
  TestClient slow_client(cluster().address());
  grpc::ClientContext slow_context;
  slow_context.set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(170));
  freeagent::v1::WatchRequest request;
  request.set_id(build.id());
  auto slow = slow_client.builds()->Watch(&slow_context, request);
  std::string slow_log;
  freeagent::v1::WatchEvent event;
  while (slow_log.empty() && slow->Read(&event)) {
    if (event.has_log()) slow_log = event.log().data();
  }
  ASSERT_FALSE(slow_log.empty());

  TestClient fast_client(cluster().address());
  auto fast = std::async(std::launch::async, [&] { return fast_client.ReadLog(build.id(), 0); });
  const auto started = Clock::now();
  FA_ASSERT_OK_AND_ASSIGN(Build done, client().WaitForTerminal(build.id(), 90s));
  ASSERT_EQ(done.state(), freeagent::v1::JOB_STATE_SUCCEEDED) << done.ShortDebugString();
  ASSERT_EQ(fast.wait_for(60s), std::future_status::ready) << "the other watcher was held up";
  const auto fast_done = Clock::now() - started;
  FA_ASSERT_OK_AND_ASSIGN(std::string fast_log, fast.get());
  EXPECT_EQ(fast_log.size(), kSize);
  EXPECT_EQ(Sha256Hex(fast_log), Sha256Hex(expected));
  std::printf("24 MB build and a reading watcher done in %.2f s with a stalled watcher attached\n",
              std::chrono::duration<double>(fast_done).count());
  const uint64_t controller_peak = PeakRssBytes(cluster().controller()->pid());
  std::printf("controller peak RSS %.1f MB\n", controller_peak / 1e6);

  // A new Watch from the slow watcher's offset gives exactly the rest.
  const uint64_t offset = slow_log.size();
  FA_ASSERT_OK_AND_ASSIGN(std::string rest, client().ReadLog(build.id(), offset));
  EXPECT_EQ(offset + rest.size(), kSize);
  EXPECT_EQ(Sha256Hex(slow_log + rest), Sha256Hex(expected));

  // And the stalled stream itself, read on, continues where it stopped.
  uint64_t next = offset;
  bool in_order = true;
  while (slow->Read(&event)) {
    if (!event.has_log()) continue;
    in_order = in_order && event.log().offset() == next;
    slow_log += event.log().data();
    next += event.log().data().size();
  }
  EXPECT_TRUE(slow->Finish().ok());
  EXPECT_TRUE(in_order);
  EXPECT_EQ(slow_log.size(), kSize);
  EXPECT_EQ(Sha256Hex(slow_log), Sha256Hex(expected));
}

}  // namespace
}  // namespace freeagent::testing
