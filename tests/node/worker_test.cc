// The worker against an in-process controller over real gRPC on 127.0.0.1:0, with the local driver.
#include "node/worker.h"

#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <thread>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "common/archive.h"
#include "common/fs.h"
#include "common/sha256.h"
#include "gtest/gtest.h"
#include "tests/node/fake_controller.h"

namespace freeagent::node {
namespace {

namespace v1 = ::freeagent::v1;
using std::chrono::milliseconds;
using std::chrono::seconds;
using testing::FakeController;

size_t CountEntries(const std::string& dir) {
  absl::StatusOr<std::vector<std::string>> names = ListDirectory(dir);
  return names.ok() ? names->size() : 0;
}

class WorkerTest : public ::testing::Test {
 protected:
  void SetUp() override {
    auto d = MakePrivateTempDir("/tmp", "fa-worker-");
    ASSERT_TRUE(d.ok());
    root_ = *d;
    controller_ = std::make_unique<FakeController>();
  }
  void TearDown() override {
    if (worker_) worker_->Stop();
    worker_.reset();
    controller_.reset();
    RemoveTree(root_).IgnoreError();
  }

  void StartWorker(uint32_t slots = 2, uint32_t log_spool_max_mib = 4096) {
    WorkerConfig config;
    config.log_spool_max_mib = log_spool_max_mib;
    config.controller = controller_->address();
    config.name = "test-worker";
    config.id = "w-test";
    config.slots = slots;
    config.work_dir = root_ + "/work";
    config.labels = {{"os", "linux"}, {"pool", "ci"}};
    config.security.insecure = true;  // the fake controller listens in plaintext on loopback
    ConnectionOptions copts;
    copts.initial_backoff = milliseconds(100);
    copts.max_backoff = milliseconds(400);
    worker_ = std::make_unique<Worker>(config, nullptr, copts);
    ASSERT_TRUE(worker_->Start().ok());
    ASSERT_TRUE(controller_->WaitFor([&] { return !controller_->hellos.empty(); }, seconds(10)));
    ASSERT_TRUE(WaitUntil([&] { return worker_->connected(); }, seconds(5)));
  }

  template <typename F>
  bool WaitUntil(F f, std::chrono::milliseconds timeout) {
    auto end = std::chrono::steady_clock::now() + timeout;
    while (std::chrono::steady_clock::now() < end) {
      if (f()) return true;
      std::this_thread::sleep_for(milliseconds(20));
    }
    return f();
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

  const v1::JobResult* ResultFor(const std::string& id) {
    for (const auto& r : controller_->results) {
      if (r.job_id() == id) return &r;
    }
    return nullptr;
  }

  bool WaitResult(const std::string& id, std::chrono::milliseconds timeout) {
    return controller_->WaitFor([&] { return ResultFor(id) != nullptr; }, timeout);
  }

  std::string root_;
  std::unique_ptr<FakeController> controller_;
  std::unique_ptr<Worker> worker_;
};

TEST_F(WorkerTest, StartRemovesLeftoversOfACrash) {
  ASSERT_TRUE(MakeDirs(root_ + "/work/jobs/b-old-1-abc").ok());
  ASSERT_TRUE(MakeDirs(root_ + "/work/vms/freeagent-test-worker-b-old-1-xyz").ok());
  ASSERT_TRUE(MakeDirs(root_ + "/work/vms/other-thing").ok());
  StartWorker();
  EXPECT_EQ(CountEntries(root_ + "/work/jobs"), 0u);
  EXPECT_EQ(CountEntries(root_ + "/work/vms"), 1u);  // only what carries our prefix is ours
}

TEST_F(WorkerTest, HelloStatesIdentityAndCapacity) {
  StartWorker(3);
  std::lock_guard<std::mutex> lock(controller_->mu());
  const v1::Hello& h = controller_->hellos[0];
  EXPECT_EQ(h.worker_id(), "w-test");
  EXPECT_EQ(h.name(), "test-worker");
  EXPECT_EQ(h.slots(), 3u);
  EXPECT_EQ(h.labels().at("pool"), "ci");
  EXPECT_EQ(h.running_size(), 0);
  EXPECT_FALSE(h.version().empty());
}

TEST_F(WorkerTest, HeartbeatsFollowTheWelcomeInterval) {
  StartWorker();
  // Welcome says 200 ms.
  EXPECT_TRUE(controller_->WaitFor([&] { return controller_->heartbeats >= 3; }, seconds(3)));
}

TEST_F(WorkerTest, RunsAJobWithByteExactLogAndArtifact) {
  StartWorker();
  // Source with a file the step copies into the artifact.
  std::string src = root_ + "/src";
  ASSERT_TRUE(MakeDirs(src).ok());
  ASSERT_TRUE(WriteFileAtomic(src + "/hello.txt", "hello from source\n").ok());
  ASSERT_TRUE(PackDirectory(src, root_ + "/src.tar.gz").ok());
  std::string digest = controller_->PutBlob(*ReadFile(root_ + "/src.tar.gz"));

  v1::BuildJob job = Job("b-aaaaaaaaaaaa",
                         "head -c 5000000 /dev/urandom | tee \"$COPY\"; mkdir -p out; cp hello.txt out/app.txt");
  (*job.mutable_spec()->mutable_steps(0)->mutable_env())["COPY"] = root_ + "/expected.bin";
  job.mutable_spec()->set_source_digest(digest);
  job.mutable_spec()->add_artifacts()->set_glob("out/**");
  ASSERT_TRUE(controller_->Assign(job));
  ASSERT_TRUE(WaitResult("b-aaaaaaaaaaaa", seconds(60)));

  v1::JobResult result;
  std::string log;
  std::vector<v1::WorkerMessage> messages;
  {
    std::lock_guard<std::mutex> lock(controller_->mu());
    result = *ResultFor("b-aaaaaaaaaaaa");
    log = controller_->logs["b-aaaaaaaaaaaa#1"];
    messages = controller_->messages;
  }
  const v1::JobResult* r = &result;
  EXPECT_EQ(r->outcome(), v1::JOB_STATE_SUCCEEDED) << r->error();
  ASSERT_EQ(r->artifacts_size(), 1);
  EXPECT_EQ(r->artifacts(0).path(), "out/app.txt");
  EXPECT_EQ(controller_->Blob(r->artifacts(0).sha256()), "hello from source\n");
  EXPECT_EQ(r->log_size(), log.size());
  // The log is the step's bytes exactly; the worker's own lines travel as progress notes.
  std::string expected = *ReadFile(root_ + "/expected.bin");
  ASSERT_EQ(expected.size(), 5000000u);
  EXPECT_EQ(log.size(), expected.size());
  EXPECT_EQ(Sha256Hex(log), Sha256Hex(expected));
  // Accepted, progress through the phases, then the result.
  bool accepted = false;
  int progress = 0;
  std::vector<std::string> notes;
  for (const auto& m : messages) {
    accepted = accepted || (m.has_accepted() && m.accepted().job_id() == "b-aaaaaaaaaaaa");
    if (m.has_progress()) {
      ++progress;
      notes.push_back(m.progress().message());
    }
  }
  EXPECT_TRUE(accepted);
  EXPECT_GE(progress, 7);
  EXPECT_NE(std::find(notes.begin(), notes.end(), "build succeeded"), notes.end());
  EXPECT_NE(std::find_if(notes.begin(), notes.end(),
                         [](const std::string& n) { return absl::StartsWith(n, "artifact out/app.txt ("); }),
            notes.end());
}

TEST_F(WorkerTest, DuplicateAssignIgnoredAndFullWorkerRejects) {
  StartWorker(1);
  v1::BuildJob job = Job("b-bbbbbbbbbbbb", "sleep 1");
  ASSERT_TRUE(controller_->Assign(job));
  ASSERT_TRUE(controller_->Assign(job));  // same attempt again: ignored
  ASSERT_TRUE(controller_->Assign(Job("b-cccccccccccc", "true")));
  ASSERT_TRUE(WaitResult("b-bbbbbbbbbbbb", seconds(20)));
  std::lock_guard<std::mutex> lock(controller_->mu());
  int accepted = 0;
  std::string rejected_reason;
  for (const auto& m : controller_->messages) {
    if (m.has_accepted()) ++accepted;
    if (m.has_rejected() && m.rejected().job_id() == "b-cccccccccccc") rejected_reason = m.rejected().reason();
  }
  EXPECT_EQ(accepted, 1);
  EXPECT_EQ(rejected_reason, "no free slot");
  int results = 0;
  for (const auto& r : controller_->results) results += r.job_id() == "b-bbbbbbbbbbbb";
  EXPECT_EQ(results, 1);
}

TEST_F(WorkerTest, CancelMessageEndsTheJobQuickly) {
  StartWorker();
  ASSERT_TRUE(controller_->Assign(Job("b-dddddddddddd", "echo running; sleep 600")));
  ASSERT_TRUE(controller_->WaitFor(
      [&] { return absl::StrContains(controller_->logs["b-dddddddddddd#1"], "running\n"); }, seconds(10)));
  v1::ControllerMessage cancel;
  cancel.mutable_cancel()->set_job_id("b-dddddddddddd");
  cancel.mutable_cancel()->set_attempt(1);
  cancel.mutable_cancel()->set_reason("user pressed cancel");
  auto start = std::chrono::steady_clock::now();
  ASSERT_TRUE(controller_->Send(cancel));
  ASSERT_TRUE(WaitResult("b-dddddddddddd", seconds(10)));
  // The step dies on the TERM; 5 s leaves room for a loaded machine and is still far below the 10 s
  // default kill grace and the 600 s sleep.
  EXPECT_LT(std::chrono::steady_clock::now() - start, seconds(5));
  std::lock_guard<std::mutex> lock(controller_->mu());
  EXPECT_EQ(ResultFor("b-dddddddddddd")->outcome(), v1::JOB_STATE_CANCELLED);
}

TEST_F(WorkerTest, ReconnectStatesRunningJobAndResumesTheLog) {
  StartWorker();
  // 40 numbered lines over ~2 s; the stream breaks in the middle.
  ASSERT_TRUE(controller_->Assign(
      Job("b-eeeeeeeeeeee", "i=1; while [ $i -le 40 ]; do echo \"line $i\"; i=$((i+1)); sleep 0.05; done")));
  ASSERT_TRUE(controller_->WaitFor(
      [&] { return absl::StrContains(controller_->logs["b-eeeeeeeeeeee#1"], "line 10\n"); }, seconds(10)));
  controller_->BreakStream();
  ASSERT_TRUE(controller_->WaitFor([&] { return controller_->hellos.size() >= 2; }, seconds(10)));
  {
    std::lock_guard<std::mutex> lock(controller_->mu());
    const v1::Hello& again = controller_->hellos[1];
    ASSERT_EQ(again.running_size(), 1);
    EXPECT_EQ(again.running(0).job_id(), "b-eeeeeeeeeeee");
    EXPECT_EQ(again.running(0).attempt(), 1u);
    EXPECT_GT(again.running(0).log_bytes(), 0u);
  }
  ASSERT_TRUE(WaitResult("b-eeeeeeeeeeee", seconds(20)));
  std::lock_guard<std::mutex> lock(controller_->mu());
  const v1::JobResult* r = ResultFor("b-eeeeeeeeeeee");
  EXPECT_EQ(r->outcome(), v1::JOB_STATE_SUCCEEDED) << r->error();
  const std::string& log = controller_->logs["b-eeeeeeeeeeee#1"];
  EXPECT_EQ(r->log_size(), log.size());
  std::string lines;
  for (int i = 1; i <= 40; ++i) lines += absl::StrCat("line ", i, "\n");
  EXPECT_EQ(log, lines);
}

TEST_F(WorkerTest, OutputWaitsAtTheSpoolBoundUntilTheControllerAcks) {
  StartWorker(2, /*log_spool_max_mib=*/1);
  controller_->set_ack_logs(false);
  const std::string after = root_ + "/after-output";
  // 3,000,000 bytes of output, then a mark the step can only reach once all of it was taken.
  ASSERT_TRUE(controller_->Assign(
      Job("b-ffffffffffff", absl::StrCat("head -c 3000000 /dev/zero | tr '\\0' x; touch ", after))));
  ASSERT_TRUE(controller_->WaitFor(
      [&] { return controller_->logs["b-ffffffffffff#1"].size() >= (1u << 20) - 64 * 1024; }, seconds(20)));
  std::this_thread::sleep_for(seconds(2));
  {
    std::lock_guard<std::mutex> lock(controller_->mu());
    // Nothing acked: the spool holds at most 1 MiB, so the controller got no more and the step waits.
    EXPECT_LE(controller_->logs["b-ffffffffffff#1"].size(), 1u << 20);
    EXPECT_EQ(ResultFor("b-ffffffffffff"), nullptr);
  }
  EXPECT_NE(::access(after.c_str(), F_OK), 0);
  // The next Hello's Welcome states what is committed; from there acks flow and the step finishes.
  controller_->set_ack_logs(true);
  controller_->BreakStream();
  ASSERT_TRUE(WaitResult("b-ffffffffffff", seconds(30)));
  EXPECT_EQ(::access(after.c_str(), F_OK), 0);
  std::lock_guard<std::mutex> lock(controller_->mu());
  EXPECT_EQ(ResultFor("b-ffffffffffff")->outcome(), v1::JOB_STATE_SUCCEEDED);
  EXPECT_EQ(controller_->logs["b-ffffffffffff#1"], std::string(3000000, 'x'));
}

TEST_F(WorkerTest, ResultIsResentUntilAcked) {
  controller_->set_ack_results(false);
  StartWorker();
  ASSERT_TRUE(controller_->Assign(Job("b-ffffffffffff", "echo done")));
  ASSERT_TRUE(WaitResult("b-ffffffffffff", seconds(10)));
  controller_->set_ack_results(true);
  controller_->BreakStream();
  // The new Hello still lists the finished attempt, and the result comes again.
  ASSERT_TRUE(controller_->WaitFor([&] { return controller_->results.size() >= 2; }, seconds(10)));
  {
    std::lock_guard<std::mutex> lock(controller_->mu());
    ASSERT_GE(controller_->hellos.size(), 2u);
    ASSERT_EQ(controller_->hellos[1].running_size(), 1);
    EXPECT_TRUE(controller_->hellos[1].running(0).finished());
  }
  EXPECT_TRUE(WaitUntil([&] { return worker_->JobCount() == 0; }, seconds(5)));
}

TEST_F(WorkerTest, AbandonedAttemptIsStoppedAndCleanedUp) {
  StartWorker();
  ASSERT_TRUE(controller_->Assign(Job("b-111111111111", "echo started; sleep 600")));
  ASSERT_TRUE(controller_->WaitFor(
      [&] { return absl::StrContains(controller_->logs["b-111111111111#1"], "started\n"); }, seconds(10)));
  controller_->AbandonOnNextHello("b-111111111111", 1);
  controller_->BreakStream();
  EXPECT_TRUE(WaitUntil([&] { return worker_->JobCount() == 0; }, seconds(10)));
  // The job leaves the table before its log spool is removed (when the reaped job is destroyed).
  EXPECT_TRUE(WaitUntil([&] { return CountEntries(root_ + "/work/vms") == 0; }, seconds(5)));
  EXPECT_TRUE(WaitUntil([&] { return CountEntries(root_ + "/work/jobs") == 0; }, seconds(5)));
  std::lock_guard<std::mutex> lock(controller_->mu());
  EXPECT_EQ(ResultFor("b-111111111111"), nullptr) << "an abandoned attempt must not report a result";
}

TEST_F(WorkerTest, DrainFinishesRunningJobsThenReturns) {
  StartWorker();
  // Output first, so the drain starts while the step is still running.
  ASSERT_TRUE(controller_->Assign(Job("b-222222222222", "echo started; sleep 1; echo finished")));
  ASSERT_TRUE(controller_->WaitFor(
      [&] { return absl::StrContains(controller_->logs["b-222222222222#1"], "started\n"); }, seconds(10)));
  worker_->Drain();
  ASSERT_TRUE(controller_->Assign(Job("b-333333333333", "true")));
  std::thread waiter([&] { worker_->Wait(); });
  waiter.join();
  // The rejection is sent by the reader as soon as the Assign arrives; it may still be in flight
  // to the controller when Wait returns.
  EXPECT_TRUE(controller_->WaitFor(
      [&] {
        for (const auto& m : controller_->messages) {
          if (m.has_rejected() && m.rejected().job_id() == "b-333333333333" &&
              m.rejected().reason() == "worker is draining") {
            return true;
          }
        }
        return false;
      },
      seconds(5)));
  std::lock_guard<std::mutex> lock(controller_->mu());
  ASSERT_NE(ResultFor("b-222222222222"), nullptr);
  EXPECT_EQ(ResultFor("b-222222222222")->outcome(), v1::JOB_STATE_SUCCEEDED);
  EXPECT_TRUE(absl::StrContains(controller_->logs["b-222222222222#1"], "finished\n"));
}

TEST_F(WorkerTest, ControllerDrainRejectsNewJobsLetsTheRunningOneFinishThenEndsWait) {
  StartWorker();
  // The step runs until the test releases it, so it is still running whatever the machine's load.
  const std::string release = root_ + "/release";
  ASSERT_TRUE(controller_->Assign(Job(
      "b-555555555555", absl::StrCat("while [ ! -e ", release, " ]; do sleep 0.05; done; echo finished"))));
  ASSERT_TRUE(WaitUntil([&] { return worker_->JobCount() == 1; }, seconds(10)));
  std::atomic<bool> waited{false};
  std::thread waiter([&] {
    worker_->Wait();
    waited = true;
  });
  v1::ControllerMessage drain;
  drain.mutable_drain()->set_reason("maintenance");
  EXPECT_TRUE(controller_->Send(drain));
  // EXPECT, not ASSERT: the step is released and the waiter joined below whatever happens here.
  EXPECT_TRUE(WaitUntil(
      [&] {
        controller_->Assign(Job("b-444444444444", "true"));
        std::lock_guard<std::mutex> lock(controller_->mu());
        for (const auto& m : controller_->messages) {
          if (m.has_rejected() && m.rejected().reason() == "worker is draining") return true;
        }
        return false;
      },
      seconds(5)));
  EXPECT_FALSE(waited.load()) << "Wait() returned while a build was still running";
  EXPECT_TRUE(WriteFileAtomic(release, "").ok());
  waiter.join();
  std::lock_guard<std::mutex> lock(controller_->mu());
  ASSERT_NE(ResultFor("b-555555555555"), nullptr);
  EXPECT_EQ(ResultFor("b-555555555555")->outcome(), v1::JOB_STATE_SUCCEEDED);
}

}  // namespace
}  // namespace freeagent::node
