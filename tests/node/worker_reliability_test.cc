// The worker while its controller is unreachable: jobs go on (up to the configured limit), their log
// waits in the on-disk spool, and progress and results arrive after the reconnect. The worker reaches
// an in-process controller through a TCP proxy the test cuts.
#include <thread>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "common/fs.h"
#include "gtest/gtest.h"
#include "node/worker.h"
#include "tests/node/fake_controller.h"
#include "tests/support/tcp_proxy.h"
#include "vm/local_driver.h"

namespace freeagent::node {
namespace {

namespace v1 = ::freeagent::v1;
using std::chrono::milliseconds;
using std::chrono::seconds;
using testing::FakeController;

// A machine whose start takes `start_time` (like a VM booting or an image being pulled), otherwise
// the local driver's.
class SlowStartVm : public vm::Vm {
 public:
  SlowStartVm(std::unique_ptr<vm::Vm> inner, std::chrono::milliseconds start_time)
      : inner_(std::move(inner)), start_time_(start_time) {}
  const std::string& name() const override { return inner_->name(); }
  absl::Status Start(const Deadline& deadline, const CancellationToken& cancel) override {
    cancel.WaitFor(start_time_);
    return inner_->Start(deadline, cancel);
  }
  absl::Status WaitReady(const Deadline& deadline, const CancellationToken& cancel) override {
    return inner_->WaitReady(deadline, cancel);
  }
  vm::Guest* guest() override { return inner_->guest(); }
  std::string workspace() const override { return inner_->workspace(); }
  absl::Status Stop(std::chrono::milliseconds grace) override { return inner_->Stop(grace); }
  absl::Status Destroy() override { return inner_->Destroy(); }

 private:
  std::unique_ptr<vm::Vm> inner_;
  std::chrono::milliseconds start_time_;
};

class SlowStartDriver : public vm::LocalDriver {
 public:
  SlowStartDriver(std::string root, std::chrono::milliseconds start_time)
      : vm::LocalDriver(std::move(root)), start_time_(start_time) {}
  absl::StatusOr<std::unique_ptr<vm::Vm>> Create(const vm::VmSpec& spec) override {
    absl::StatusOr<std::unique_ptr<vm::Vm>> inner = vm::LocalDriver::Create(spec);
    if (!inner.ok()) return inner.status();
    return std::unique_ptr<vm::Vm>(new SlowStartVm(*std::move(inner), start_time_));
  }

 private:
  std::chrono::milliseconds start_time_;
};

class WorkerReliabilityTest : public ::testing::Test {
 protected:
  void SetUp() override {
    auto d = MakePrivateTempDir("/tmp", "fa-worker-rel-");
    ASSERT_TRUE(d.ok());
    root_ = *d;
    controller_ = std::make_unique<FakeController>();
    int port = std::stoi(controller_->address().substr(controller_->address().rfind(':') + 1));
    auto proxy = freeagent::testing::TcpProxy::Start(port);
    ASSERT_TRUE(proxy.ok()) << proxy.status();
    proxy_ = *std::move(proxy);
  }
  void TearDown() override {
    if (worker_) worker_->Stop();
    worker_.reset();
    proxy_.reset();
    controller_.reset();
    RemoveTree(root_).IgnoreError();
  }

  void StartWorker(uint32_t disconnected_limit_seconds = 600, std::unique_ptr<vm::VmDriver> driver = nullptr) {
    WorkerConfig config;
    config.controller = proxy_->address();
    config.name = "test-worker";
    config.id = "w-rel";
    config.work_dir = root_ + "/work";
    config.security.insecure = true;
    config.disconnected_job_limit_seconds = disconnected_limit_seconds;
    ConnectionOptions copts;
    copts.initial_backoff = milliseconds(100);
    copts.max_backoff = milliseconds(400);
    worker_ = std::make_unique<Worker>(config, std::move(driver), copts);
    ASSERT_TRUE(worker_->Start().ok());
    ASSERT_TRUE(controller_->WaitFor([&] { return !controller_->hellos.empty(); }, seconds(10)));
  }

  // The controller goes away: the stream breaks and every new connection is refused.
  void ControllerAway() {
    proxy_->Cut(freeagent::testing::TcpProxy::CutMode::kReset);
    controller_->BreakStream();
    // A message read just before the break may still be being handled; after this nothing comes.
    EXPECT_TRUE(controller_->WaitStreamGone(seconds(10)));
  }

  v1::BuildJob Job(const std::string& id, const std::string& run) {
    v1::BuildJob job;
    job.set_job_id(id);
    job.set_attempt(1);
    v1::Step* s = job.mutable_spec()->add_steps();
    s->set_name("main");
    s->set_run(run);
    job.mutable_spec()->set_cancel_grace_seconds(1);
    return job;
  }

  // Under controller_->mu().
  const v1::JobResult* ResultFor(const std::string& id) {
    for (const auto& r : controller_->results) {
      if (r.job_id() == id) return &r;
    }
    return nullptr;
  }

  std::string root_;
  std::unique_ptr<FakeController> controller_;
  std::unique_ptr<freeagent::testing::TcpProxy> proxy_;
  std::unique_ptr<Worker> worker_;
};

TEST_F(WorkerReliabilityTest, JobFinishesWhileTheControllerIsAwayAndReportsAfterTheReconnect) {
  StartWorker();
  const std::string id = "b-aaaaaaaaaaaa";
  // 2 MB while the controller is away, then the job ends before it is back. The pause gives the test
  // time to cut after "before" arrives, even when a busy machine runs it late.
  ASSERT_TRUE(controller_->Assign(Job(id, "echo before; sleep 2; head -c 2000000 /dev/zero | tr '\\0' x; echo; "
                                          "echo after")));
  ASSERT_TRUE(controller_->WaitFor([&] { return absl::StrContains(controller_->logs[id + "#1"], "before\n"); },
                                   seconds(10)));
  ControllerAway();
  const size_t messages_at_cut = [&] {
    std::lock_guard<std::mutex> lock(controller_->mu());
    return controller_->messages.size();
  }();
  // The job ends on its own meanwhile (its spool holds the log).
  const std::string spool = absl::StrCat(root_, "/work/jobs/", id, "-1.spool");
  auto until = std::chrono::steady_clock::now() + seconds(20);
  while (worker_->SlotsUsed() != 0 && std::chrono::steady_clock::now() < until) {
    std::this_thread::sleep_for(milliseconds(50));
  }
  ASSERT_EQ(worker_->SlotsUsed(), 0u) << "the job did not finish while the controller was away";
  absl::StatusOr<std::string> spooled = ReadFile(spool);
  ASSERT_TRUE(spooled.ok()) << spooled.status();
  EXPECT_TRUE(absl::EndsWith(*spooled, "x\nafter\n"));
  {
    std::lock_guard<std::mutex> lock(controller_->mu());
    EXPECT_EQ(controller_->messages.size(), messages_at_cut) << "something got through the cut";
    EXPECT_EQ(ResultFor(id), nullptr);
  }

  proxy_->Restore();
  ASSERT_TRUE(controller_->WaitFor([&] { return ResultFor(id) != nullptr; }, seconds(20)));
  std::lock_guard<std::mutex> lock(controller_->mu());
  EXPECT_EQ(ResultFor(id)->outcome(), v1::JOB_STATE_SUCCEEDED) << ResultFor(id)->error();
  const std::string& log = controller_->logs[id + "#1"];
  EXPECT_EQ(log, "before\n" + std::string(2000000, 'x') + "\nafter\n");
  EXPECT_EQ(ResultFor(id)->log_size(), log.size());
  // The second Hello stated the finished attempt, and the notes made during the cut came after it,
  // before the result.
  ASSERT_GE(controller_->hellos.size(), 2u);
  bool stated = false;
  for (const auto& r : controller_->hellos.back().running()) stated = stated || (r.job_id() == id && r.finished());
  EXPECT_TRUE(stated);
  bool cleanup_reported = false;
  bool done_note = false;
  for (size_t i = messages_at_cut; i < controller_->messages.size(); ++i) {
    const auto& m = controller_->messages[i];
    if (m.has_result()) break;
    if (!m.has_progress()) continue;
    cleanup_reported = cleanup_reported || m.progress().phase() == v1::PHASE_CLEANING_UP;
    done_note = done_note || m.progress().message() == "build succeeded";
  }
  EXPECT_TRUE(cleanup_reported) << "phase changes made during the cut were not delivered";
  EXPECT_TRUE(done_note);
}

TEST_F(WorkerReliabilityTest, JobIsCancelledAfterTheDisconnectedLimitAndItsResultStillArrives) {
  StartWorker(/*disconnected_limit_seconds=*/1);
  const std::string id = "b-bbbbbbbbbbbb";
  ASSERT_TRUE(controller_->Assign(Job(id, "echo started; sleep 60")));
  ASSERT_TRUE(controller_->WaitFor([&] { return absl::StrContains(controller_->logs[id + "#1"], "started\n"); },
                                   seconds(10)));
  ControllerAway();
  auto until = std::chrono::steady_clock::now() + seconds(15);
  while (worker_->SlotsUsed() != 0 && std::chrono::steady_clock::now() < until) {
    std::this_thread::sleep_for(milliseconds(50));
  }
  EXPECT_EQ(worker_->SlotsUsed(), 0u) << "the job outlived the disconnected limit";
  proxy_->Restore();
  ASSERT_TRUE(controller_->WaitFor([&] { return ResultFor(id) != nullptr; }, seconds(20)));
  std::lock_guard<std::mutex> lock(controller_->mu());
  EXPECT_EQ(ResultFor(id)->outcome(), v1::JOB_STATE_CANCELLED);
  EXPECT_NE(ResultFor(id)->error().find("the controller was unreachable for more than 1 s"), std::string::npos)
      << ResultFor(id)->error();
}

TEST_F(WorkerReliabilityTest, JobWithinTheLimitIsNotCancelled) {
  StartWorker(/*disconnected_limit_seconds=*/30);
  const std::string id = "b-cccccccccccc";
  ASSERT_TRUE(controller_->Assign(Job(id, "echo started; sleep 3; echo finished")));
  ASSERT_TRUE(controller_->WaitFor([&] { return absl::StrContains(controller_->logs[id + "#1"], "started\n"); },
                                   seconds(10)));
  ControllerAway();
  std::this_thread::sleep_for(seconds(2));
  proxy_->Restore();
  ASSERT_TRUE(controller_->WaitFor([&] { return ResultFor(id) != nullptr; }, seconds(20)));
  std::lock_guard<std::mutex> lock(controller_->mu());
  EXPECT_EQ(ResultFor(id)->outcome(), v1::JOB_STATE_SUCCEEDED) << ResultFor(id)->error();
  EXPECT_EQ(controller_->logs[id + "#1"], "started\nfinished\n");
}

// Heartbeats have their own thread: a job stuck for 6 s in a machine start (30 heartbeat intervals of
// the fake controller's Welcome) does not delay them. The start outlasts the 2 s the test watches by
// far, so the job is still starting then even if the test thread runs late on a busy machine.
TEST_F(WorkerReliabilityTest, HeartbeatsGoOnWhileAJobWaitsForASlowMachineStart) {
  StartWorker(600, std::make_unique<SlowStartDriver>(root_ + "/vms", seconds(6)));
  const std::string id = "b-eeeeeeeeeeee";
  ASSERT_TRUE(controller_->Assign(Job(id, "echo booted")));
  ASSERT_TRUE(controller_->WaitFor(
      [&] {
        for (const auto& m : controller_->messages) {
          if (m.has_progress() && m.progress().phase() == v1::PHASE_PROVISIONING_VM) return true;
        }
        return false;
      },
      seconds(10)));
  int before = 0;
  {
    std::lock_guard<std::mutex> lock(controller_->mu());
    before = controller_->heartbeats;
  }
  std::this_thread::sleep_for(milliseconds(2000));
  {
    std::lock_guard<std::mutex> lock(controller_->mu());
    EXPECT_EQ(ResultFor(id), nullptr) << "the machine start was not slow";
    // 10 intervals of 200 ms passed; allow for scheduling on a busy machine (held back by the start,
    // they would be none).
    EXPECT_GE(controller_->heartbeats - before, 5) << "heartbeats waited for the machine start";
  }
  ASSERT_TRUE(controller_->WaitFor([&] { return ResultFor(id) != nullptr; }, seconds(20)));
  std::lock_guard<std::mutex> lock(controller_->mu());
  EXPECT_EQ(ResultFor(id)->outcome(), v1::JOB_STATE_SUCCEEDED) << ResultFor(id)->error();
}

TEST_F(WorkerReliabilityTest, SpoolOfACrashedRunIsStatedAsOrphanThenReaped) {
  ASSERT_TRUE(MakeDirs(root_ + "/work/jobs", 0700).ok());
  ASSERT_TRUE(WriteFileAtomic(root_ + "/work/jobs/b-dddddddddddd-3.spool", "old log", 0600).ok());
  ASSERT_TRUE(MakeDirs(root_ + "/work/jobs/b-dddddddddddd-3-abcdef", 0700).ok());
  controller_->AbandonOnNextHello("b-dddddddddddd", 3);
  StartWorker();
  {
    std::lock_guard<std::mutex> lock(controller_->mu());
    const v1::Hello& hello = controller_->hellos.front();
    ASSERT_EQ(hello.running_size(), 1);
    EXPECT_EQ(hello.running(0).job_id(), "b-dddddddddddd");
    EXPECT_EQ(hello.running(0).attempt(), 3u);
    EXPECT_TRUE(hello.running(0).orphaned());
  }
  absl::StatusOr<std::vector<std::string>> left = ListDirectory(root_ + "/work/jobs");
  EXPECT_TRUE(!left.ok() || left->empty());
  // The worker reads its messages in order, so once it turns down an Assign sent after the Welcome it
  // has taken the Welcome's answer in (breaking the stream before could lose the Welcome in flight).
  v1::BuildJob marker = Job("../not-a-job", "true");
  ASSERT_TRUE(controller_->Assign(marker));
  ASSERT_TRUE(controller_->WaitFor(
      [&] {
        for (const auto& m : controller_->messages) {
          if (m.has_rejected() && m.rejected().job_id() == marker.job_id()) return true;
        }
        return false;
      },
      seconds(10)));
  // Answered once: the next Hello no longer states it.
  controller_->BreakStream();
  ASSERT_TRUE(controller_->WaitFor([&] { return controller_->hellos.size() >= 2; }, seconds(10)));
  std::lock_guard<std::mutex> lock(controller_->mu());
  EXPECT_EQ(controller_->hellos[1].running_size(), 0);
}

}  // namespace
}  // namespace freeagent::node
