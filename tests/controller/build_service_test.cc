// BuildService, FleetService and WorkerService together over a real server with scripted workers.
#include <algorithm>
#include <thread>

#include "tests/controller/controller_fixture.h"

namespace freeagent::controller::testing {
namespace {

bool IsState(const v1::Build& b, v1::JobState s) { return b.state() == s; }

class BuildServiceTest : public ControllerTest {
 protected:
  void SetUp() override {
    ControllerTest::SetUp();
    StartServer();
    source_ = UploadSource();
  }

  // Drives `job` to a result through `worker`, sending `log` in chunks of `chunk` bytes.
  void RunJob(FakeWorker& worker, const v1::BuildJob& job, const std::string& log, size_t chunk,
              v1::JobState outcome = v1::JOB_STATE_SUCCEEDED) {
    ASSERT_TRUE(worker.Send(FakeWorker::Accepted(job)));
    ASSERT_TRUE(worker.Send(FakeWorker::Progress(job, v1::PHASE_PREPARING)));
    ASSERT_TRUE(worker.Send(FakeWorker::Progress(job, v1::PHASE_RUNNING, 1)));
    for (size_t pos = 0; pos < log.size(); pos += chunk) {
      ASSERT_TRUE(worker.Send(FakeWorker::Log(job.job_id(), job.attempt(), pos, log.substr(pos, chunk))));
    }
    ASSERT_TRUE(worker.WaitAck(job.job_id(), job.attempt(), log.size()));
    ASSERT_TRUE(worker.Send(FakeWorker::Result(job, outcome, log.size())));
    auto ack = worker.Next([&](const v1::ControllerMessage& m) {
      return m.has_result_ack() && m.result_ack().job_id() == job.job_id();
    });
    ASSERT_TRUE(ack.has_value());
  }

  std::string source_;
};

TEST_F(BuildServiceTest, SubmitWithoutSourceIsInvalidArgumentNamingTheField) {
  v1::JobSpec spec = Spec("");
  auto r = Submit(spec);
  EXPECT_EQ(r.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_NE(r.status().message().find("spec.source_digest"), std::string::npos) << r.status();
}

TEST_F(BuildServiceTest, SubmitWithUnknownSourceIsFailedPrecondition) {
  auto r = Submit(Spec(Sha256Hex("never uploaded")));
  EXPECT_EQ(r.status().code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_NE(r.status().message().find("spec.source_digest"), std::string::npos) << r.status();
}

TEST_F(BuildServiceTest, SubmitWithoutStepsIsInvalidArgumentNamingTheField) {
  v1::JobSpec spec = Spec(source_);
  spec.clear_steps();
  auto r = Submit(spec);
  EXPECT_EQ(r.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_NE(r.status().message().find("spec.steps"), std::string::npos) << r.status();

  spec = Spec(source_);
  spec.mutable_steps(0)->clear_run();
  r = Submit(spec);
  EXPECT_EQ(r.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_NE(r.status().message().find("spec.steps[0].run"), std::string::npos) << r.status();
}

TEST_F(BuildServiceTest, UnknownBuildIsNotFound) {
  grpc::Status st;
  Get("b-000000000000", &st);
  EXPECT_EQ(st.error_code(), grpc::StatusCode::NOT_FOUND);
  EXPECT_NE(st.error_message().find("b-000000000000"), std::string::npos);

  grpc::ClientContext ctx;
  v1::CancelBuildRequest req;
  req.set_id("b-000000000000");
  v1::Build b;
  EXPECT_EQ(builds_->Cancel(&ctx, req, &b).error_code(), grpc::StatusCode::NOT_FOUND);

  WatchResult w = Watch("b-000000000000", 0);
  EXPECT_EQ(w.status.error_code(), grpc::StatusCode::NOT_FOUND);
}

TEST_F(BuildServiceTest, OversizedMessageIsResourceExhausted) {
  v1::JobSpec spec = Spec(source_);
  spec.set_name(std::string(9 * 1024 * 1024, 'n'));
  auto r = Submit(spec);
  EXPECT_EQ(r.status().code(), absl::StatusCode::kResourceExhausted) << r.status();
}

TEST_F(BuildServiceTest, SecretsAreNeverReturned) {
  v1::JobSpec spec = Spec(source_);
  (*spec.mutable_secret_env())["API_TOKEN"] = "s3cr3t";
  auto r = Submit(spec);
  ASSERT_TRUE(r.ok()) << r.status();
  EXPECT_EQ(r->spec().secret_env().at("API_TOKEN"), "");
  EXPECT_EQ(Get(r->id()).spec().secret_env().at("API_TOKEN"), "");

  // The worker, and only the worker, gets the value.
  FakeWorker worker(channel_);
  worker.Hello("w1");
  auto job = worker.NextAssign();
  ASSERT_TRUE(job.has_value());
  EXPECT_EQ(job->spec().secret_env().at("API_TOKEN"), "s3cr3t");
}

TEST_F(BuildServiceTest, WorkerRunsBuildAndLogIsExactFromAnyOffset) {
  FakeWorker worker(channel_);
  v1::Welcome welcome = worker.Hello("w1");
  EXPECT_EQ(welcome.heartbeat_interval_ms(), 200u);

  auto build = Submit(Spec(source_));
  ASSERT_TRUE(build.ok()) << build.status();
  EXPECT_EQ(build->id().size(), 14u);
  EXPECT_EQ(build->attempt(), 1u);

  auto job = worker.NextAssign();
  ASSERT_TRUE(job.has_value());
  EXPECT_EQ(job->job_id(), build->id());
  EXPECT_EQ(job->attempt(), 1u);

  const std::string log = RandomBytes(5 * 1000 * 1000 + 3, 42);  // binary, all byte values
  RunJob(worker, *job, log, 64 * 1024);

  ASSERT_TRUE(WaitBuild(build->id(), [](const v1::Build& b) { return IsState(b, v1::JOB_STATE_SUCCEEDED); }));
  v1::Build done = Get(build->id());
  EXPECT_EQ(done.log_size(), log.size());
  EXPECT_EQ(done.worker_id(), "w1");
  EXPECT_GE(done.events_size(), 4);

  WatchResult whole = Watch(build->id(), 0);
  ASSERT_TRUE(whole.status.ok()) << whole.status.error_message();
  ASSERT_FALSE(whole.statuses.empty());
  EXPECT_EQ(whole.statuses.front().state(), v1::JOB_STATE_SUCCEEDED);
  EXPECT_EQ(Sha256Hex(whole.log), Sha256Hex(log));
  for (const auto& c : whole.chunks) EXPECT_EQ(c.attempt(), 1u);

  const uint64_t middle = log.size() / 2 + 17;
  WatchResult tail = Watch(build->id(), middle);
  ASSERT_TRUE(tail.status.ok());
  ASSERT_FALSE(tail.chunks.empty());
  EXPECT_EQ(tail.chunks.front().offset(), middle);
  EXPECT_EQ(tail.log, log.substr(middle));
}

TEST_F(BuildServiceTest, ResultSentRightAfterTheLogReportsTheWholeLog) {
  FakeWorker worker(channel_);
  worker.Hello("w1");
  auto build = Submit(Spec(source_));
  ASSERT_TRUE(build.ok());
  auto job = worker.NextAssign();
  ASSERT_TRUE(job.has_value());
  ASSERT_TRUE(worker.Send(FakeWorker::Accepted(*job)));
  const std::string log = RandomBytes(3 * 1000 * 1000, 11);
  for (size_t pos = 0; pos < log.size(); pos += 64 * 1024) {
    ASSERT_TRUE(worker.Send(FakeWorker::Log(job->job_id(), 1, pos, log.substr(pos, 64 * 1024))));
  }
  // No waiting for acks: the result follows the last chunk at once.
  ASSERT_TRUE(worker.Send(FakeWorker::Result(*job, v1::JOB_STATE_SUCCEEDED, log.size())));
  ASSERT_TRUE(WaitBuild(build->id(), [](const v1::Build& b) { return IsState(b, v1::JOB_STATE_SUCCEEDED); }));
  EXPECT_EQ(Get(build->id()).log_size(), log.size());
  EXPECT_EQ(Watch(build->id(), 0).log, log);
}

TEST_F(BuildServiceTest, LiveWatcherSeesStatusChangesAndLogUntilTheEnd) {
  FakeWorker worker(channel_);
  worker.Hello("w1");
  auto build = Submit(Spec(source_));
  ASSERT_TRUE(build.ok());
  auto job = worker.NextAssign();
  ASSERT_TRUE(job.has_value());

  WatchResult live;
  std::thread watcher([&] { live = Watch(build->id(), 0); });
  std::this_thread::sleep_for(100ms);
  const std::string log = RandomBytes(300 * 1024, 3);
  RunJob(worker, *job, log, 10000);
  watcher.join();

  ASSERT_TRUE(live.status.ok()) << live.status.error_message();
  EXPECT_EQ(live.log, log);
  ASSERT_GE(live.statuses.size(), 2u);
  EXPECT_EQ(live.statuses.back().state(), v1::JOB_STATE_SUCCEEDED);
}

TEST_F(BuildServiceTest, ProgressNoteReachesWatchersAtOnceAndTheEventTimeline) {
  FakeWorker worker(channel_);
  worker.Hello("w1");
  auto build = Submit(Spec(source_));
  ASSERT_TRUE(build.ok());
  auto job = worker.NextAssign();
  ASSERT_TRUE(job.has_value());
  ASSERT_TRUE(worker.Send(FakeWorker::Accepted(*job)));
  ASSERT_TRUE(worker.Send(FakeWorker::Progress(*job, v1::PHASE_RUNNING, 1)));

  // A watcher that records status events as they come.
  grpc::ClientContext ctx;
  ctx.set_deadline(std::chrono::system_clock::now() + 10s);
  v1::WatchRequest req;
  req.set_id(build->id());
  req.set_no_log(true);
  auto reader = builds_->Watch(&ctx, req);
  std::mutex mu;
  std::condition_variable cv;
  std::vector<v1::Build> seen;
  std::thread watcher([&] {
    v1::WatchEvent event;
    while (reader->Read(&event)) {
      if (!event.has_status()) continue;
      std::lock_guard<std::mutex> lock(mu);
      seen.push_back(event.status());
      cv.notify_all();
    }
  });
  auto wait_for_message = [&](const std::string& message) {
    std::unique_lock<std::mutex> lock(mu);
    return cv.wait_for(lock, 5s, [&] {
      return !seen.empty() && seen.back().message() == message && seen.back().state() == v1::JOB_STATE_RUNNING;
    });
  };

  // A note within the same phase and step changes nothing but the message, and still is an event.
  v1::WorkerMessage note = FakeWorker::Progress(*job, v1::PHASE_RUNNING, 1);
  note.mutable_progress()->set_message("step main done in 0.1 s");
  ASSERT_TRUE(worker.Send(note));
  EXPECT_TRUE(wait_for_message("step main done in 0.1 s"));
  note.mutable_progress()->set_message("warning: artifact dist/x is a symlink; skipped");
  ASSERT_TRUE(worker.Send(note));
  EXPECT_TRUE(wait_for_message("warning: artifact dist/x is a symlink; skipped"));
  {
    std::lock_guard<std::mutex> lock(mu);
    EXPECT_EQ(seen.back().phase(), v1::PHASE_RUNNING);
    EXPECT_EQ(seen.back().step_index(), 1u);
  }

  ASSERT_TRUE(worker.Send(FakeWorker::Result(*job, v1::JOB_STATE_SUCCEEDED, 0)));
  watcher.join();
  EXPECT_TRUE(reader->Finish().ok());

  // Every note is in the timeline; the stored log holds none of them.
  v1::Build done = Get(build->id());
  EXPECT_EQ(done.state(), v1::JOB_STATE_SUCCEEDED);
  std::vector<std::string> messages;
  for (const auto& e : done.events()) messages.push_back(e.message());
  EXPECT_NE(std::find(messages.begin(), messages.end(), "step main done in 0.1 s"), messages.end());
  EXPECT_NE(std::find(messages.begin(), messages.end(), "warning: artifact dist/x is a symlink; skipped"),
            messages.end());
  EXPECT_EQ(done.log_size(), 0u);
  EXPECT_EQ(Watch(build->id(), 0).log, "");
}

TEST_F(BuildServiceTest, DuplicateChunksAndResultsAreIdempotent) {
  FakeWorker worker(channel_);
  worker.Hello("w1");
  auto build = Submit(Spec(source_));
  ASSERT_TRUE(build.ok());
  auto job = worker.NextAssign();
  ASSERT_TRUE(job.has_value());
  ASSERT_TRUE(worker.Send(FakeWorker::Accepted(*job)));
  ASSERT_TRUE(worker.Send(FakeWorker::Log(job->job_id(), 1, 0, "abcdef")));
  ASSERT_TRUE(worker.Send(FakeWorker::Log(job->job_id(), 1, 0, "abc")));      // duplicate
  ASSERT_TRUE(worker.Send(FakeWorker::Log(job->job_id(), 1, 4, "efgh")));     // overlap
  ASSERT_TRUE(worker.WaitAck(job->job_id(), 1, 8));
  ASSERT_TRUE(worker.Send(FakeWorker::Result(*job, v1::JOB_STATE_FAILED, 8)));
  ASSERT_TRUE(worker.Send(FakeWorker::Result(*job, v1::JOB_STATE_FAILED, 8)));
  int acks = 0;
  while (worker.Next([](const v1::ControllerMessage& m) { return m.has_result_ack(); }, 1s)) ++acks;
  EXPECT_EQ(acks, 2);
  v1::Build done = Get(build->id());
  EXPECT_EQ(done.state(), v1::JOB_STATE_FAILED);
  EXPECT_EQ(done.log_size(), 8u);
  EXPECT_EQ(Watch(build->id(), 0).log, "abcdefgh");
}

TEST_F(BuildServiceTest, LogGapEndsTheStreamAndTheReconnectResumesFromTheCommittedOffset) {
  auto build = Submit(Spec(source_));
  ASSERT_TRUE(build.ok());
  std::optional<v1::BuildJob> job;
  {
    FakeWorker worker(channel_);
    worker.Hello("w1");
    job = worker.NextAssign();
    ASSERT_TRUE(job.has_value());
    ASSERT_TRUE(worker.Send(FakeWorker::Accepted(*job)));
    ASSERT_TRUE(worker.Send(FakeWorker::Log(job->job_id(), 1, 0, "abcd")));
    ASSERT_TRUE(worker.WaitAck(job->job_id(), 1, 4));
    ASSERT_TRUE(worker.Send(FakeWorker::Log(job->job_id(), 1, 100, "gap")));  // bytes 4..99 never came
    grpc::Status ended = worker.Finish();
    EXPECT_EQ(ended.error_code(), grpc::StatusCode::UNAVAILABLE) << ended.error_message();
  }
  FakeWorker again(channel_);
  v1::RunningJob running;
  running.set_job_id(job->job_id());
  running.set_attempt(1);
  running.set_phase(v1::PHASE_RUNNING);
  running.set_log_bytes(103);
  v1::Welcome welcome = again.Hello("w1", {}, 2, {running});
  ASSERT_EQ(welcome.jobs_size(), 1);
  EXPECT_EQ(welcome.jobs(0).action(), v1::JobDirective::ACTION_CONTINUE);
  EXPECT_EQ(welcome.jobs(0).committed_offset(), 4u);
}

TEST_F(BuildServiceTest, ChunkForJobNotHeldIsIgnoredAndStreamSurvives) {
  FakeWorker worker(channel_);
  worker.Hello("w1");
  auto build = Submit(Spec(source_));
  ASSERT_TRUE(build.ok());
  auto job = worker.NextAssign();
  ASSERT_TRUE(job.has_value());

  ASSERT_TRUE(worker.Send(FakeWorker::Log("b-ffffffffffff", 1, 0, "stray")));
  ASSERT_TRUE(worker.Send(FakeWorker::Log(job->job_id(), 7, 0, "wrong attempt")));
  // The stream still works: the real job completes.
  RunJob(worker, *job, "fine\n", 1024);
  ASSERT_TRUE(WaitBuild(build->id(), [](const v1::Build& b) { return IsState(b, v1::JOB_STATE_SUCCEEDED); }));
  EXPECT_EQ(Watch(build->id(), 0).log, "fine\n");
  grpc::Status st;
  Get("b-ffffffffffff", &st);
  EXPECT_EQ(st.error_code(), grpc::StatusCode::NOT_FOUND);
}

TEST_F(BuildServiceTest, FirstMessageMustBeHello) {
  FakeWorker worker(channel_);
  v1::WorkerMessage hb;
  hb.mutable_heartbeat()->set_sent_unix_ms(1);
  worker.Send(hb);
  grpc::Status st = worker.Finish();
  EXPECT_EQ(st.error_code(), grpc::StatusCode::INVALID_ARGUMENT);
}

TEST_F(BuildServiceTest, LabelsMustMatchAndTheJobWaitsForAMatchingWorker) {
  FakeWorker linux_worker(channel_);
  linux_worker.Hello("linux-1", {{"os", "linux"}});
  v1::JobSpec spec = Spec(source_);
  (*spec.mutable_required_labels())["os"] = "macos";
  auto build = Submit(spec);
  ASSERT_TRUE(build.ok());

  EXPECT_FALSE(linux_worker.NextAssign(300ms).has_value());
  EXPECT_EQ(Get(build->id()).state(), v1::JOB_STATE_QUEUED);

  FakeWorker mac_worker(channel_);
  const auto before = std::chrono::steady_clock::now();
  mac_worker.Hello("mac-1", {{"os", "macos"}, {"arch", "arm64"}});
  auto job = mac_worker.NextAssign();
  ASSERT_TRUE(job.has_value());
  EXPECT_LT(std::chrono::steady_clock::now() - before, 1s);
  EXPECT_EQ(job->job_id(), build->id());
  EXPECT_EQ(Get(build->id()).worker_id(), "mac-1");
  EXPECT_FALSE(linux_worker.NextAssign(100ms).has_value());
}

TEST_F(BuildServiceTest, SlotsArePriorityOrderedAndRespected) {
  auto low = Submit(Spec(source_));
  v1::JobSpec high_spec = Spec(source_);
  high_spec.set_priority(5);
  auto high = Submit(high_spec);
  auto low2 = Submit(Spec(source_));
  ASSERT_TRUE(low.ok() && high.ok() && low2.ok());

  FakeWorker worker(channel_);
  worker.Hello("w1", {}, /*slots=*/2);
  auto first = worker.NextAssign();
  auto second = worker.NextAssign();
  ASSERT_TRUE(first && second);
  EXPECT_EQ(first->job_id(), high->id());
  EXPECT_EQ(second->job_id(), low->id());
  EXPECT_FALSE(worker.NextAssign(200ms).has_value());  // both slots busy

  RunJob(worker, *first, "x", 1);
  auto third = worker.NextAssign();
  ASSERT_TRUE(third.has_value());
  EXPECT_EQ(third->job_id(), low2->id());
}

TEST_F(BuildServiceTest, RejectedJobGoesToAnotherWorker) {
  FakeWorker a(channel_);
  a.Hello("a", {}, 1);
  auto build = Submit(Spec(source_));
  ASSERT_TRUE(build.ok());
  auto job = a.NextAssign();
  ASSERT_TRUE(job.has_value());
  v1::WorkerMessage rej;
  rej.mutable_rejected()->set_job_id(job->job_id());
  rej.mutable_rejected()->set_attempt(job->attempt());
  rej.mutable_rejected()->set_reason("no such image");
  ASSERT_TRUE(a.Send(rej));
  EXPECT_FALSE(a.NextAssign(300ms).has_value());
  EXPECT_EQ(Get(build->id()).state(), v1::JOB_STATE_QUEUED);

  FakeWorker b(channel_);
  b.Hello("b", {}, 1);
  auto again = b.NextAssign();
  ASSERT_TRUE(again.has_value());
  EXPECT_EQ(again->job_id(), build->id());
  EXPECT_EQ(again->attempt(), 1u);
}

TEST_F(BuildServiceTest, CancelQueuedBuildIsImmediate) {
  auto build = Submit(Spec(source_));
  ASSERT_TRUE(build.ok());
  grpc::ClientContext ctx;
  v1::CancelBuildRequest req;
  req.set_id(build->id());
  req.set_reason("not needed");
  v1::Build cancelled;
  ASSERT_TRUE(builds_->Cancel(&ctx, req, &cancelled).ok());
  EXPECT_EQ(cancelled.state(), v1::JOB_STATE_CANCELLED);
  EXPECT_EQ(Get(build->id()).state(), v1::JOB_STATE_CANCELLED);

  // Never offered to a worker afterwards.
  FakeWorker worker(channel_);
  worker.Hello("w1");
  EXPECT_FALSE(worker.NextAssign(300ms).has_value());
  WatchResult w = Watch(build->id(), 0);
  EXPECT_TRUE(w.status.ok());
}

TEST_F(BuildServiceTest, CancelRunningBuildIsForwardedToItsWorker) {
  FakeWorker worker(channel_);
  worker.Hello("w1");
  v1::JobSpec spec = Spec(source_);
  spec.set_cancel_grace_seconds(3);
  auto build = Submit(spec);
  ASSERT_TRUE(build.ok());
  auto job = worker.NextAssign();
  ASSERT_TRUE(job.has_value());
  ASSERT_TRUE(worker.Send(FakeWorker::Accepted(*job)));
  ASSERT_TRUE(WaitBuild(build->id(), [](const v1::Build& b) { return IsState(b, v1::JOB_STATE_RUNNING); }));

  grpc::ClientContext ctx;
  v1::CancelBuildRequest req;
  req.set_id(build->id());
  v1::Build b;
  ASSERT_TRUE(builds_->Cancel(&ctx, req, &b).ok());
  EXPECT_EQ(b.state(), v1::JOB_STATE_RUNNING);
  auto cancel = worker.Next([](const v1::ControllerMessage& m) { return m.has_cancel(); });
  ASSERT_TRUE(cancel.has_value());
  EXPECT_EQ(cancel->cancel().job_id(), build->id());
  EXPECT_EQ(cancel->cancel().grace_seconds(), 3u);
  ASSERT_TRUE(worker.Send(FakeWorker::Result(*job, v1::JOB_STATE_CANCELLED, 0)));
  ASSERT_TRUE(WaitBuild(build->id(), [](const v1::Build& b) { return IsState(b, v1::JOB_STATE_CANCELLED); }));
}

TEST_F(BuildServiceTest, ListIsNewestFirstWithFilterAndPaging) {
  std::vector<std::string> ids;
  for (int i = 0; i < 5; ++i) ids.push_back(Submit(Spec(source_))->id());
  grpc::ClientContext c0;
  v1::CancelBuildRequest cancel;
  cancel.set_id(ids[1]);
  v1::Build b;
  ASSERT_TRUE(builds_->Cancel(&c0, cancel, &b).ok());

  v1::ListBuildsRequest req;
  req.set_page_size(2);
  std::vector<std::string> seen;
  for (int page = 0; page < 5; ++page) {
    grpc::ClientContext ctx;
    v1::ListBuildsResponse resp;
    ASSERT_TRUE(builds_->List(&ctx, req, &resp).ok());
    for (const auto& build : resp.builds()) seen.push_back(build.id());
    if (resp.next_page_token().empty()) break;
    req.set_page_token(resp.next_page_token());
  }
  EXPECT_EQ(seen, (std::vector<std::string>{ids[4], ids[3], ids[2], ids[1], ids[0]}));

  grpc::ClientContext ctx;
  v1::ListBuildsRequest filtered;
  filtered.add_states(v1::JOB_STATE_CANCELLED);
  v1::ListBuildsResponse resp;
  ASSERT_TRUE(builds_->List(&ctx, filtered, &resp).ok());
  ASSERT_EQ(resp.builds_size(), 1);
  EXPECT_EQ(resp.builds(0).id(), ids[1]);
}

TEST_F(BuildServiceTest, DrainStopsNewAssignments) {
  FakeWorker worker(channel_);
  worker.Hello("w1");
  grpc::ClientContext ctx;
  v1::DrainRequest req;
  req.set_worker_id("w1");
  v1::WorkerInfo info;
  ASSERT_TRUE(fleet_->Drain(&ctx, req, &info).ok());
  EXPECT_EQ(info.state(), v1::WORKER_STATE_DRAINING);
  EXPECT_TRUE(worker.Next([](const v1::ControllerMessage& m) { return m.has_drain(); }).has_value());
  auto build = Submit(Spec(source_));
  ASSERT_TRUE(build.ok());
  EXPECT_FALSE(worker.NextAssign(300ms).has_value());

  grpc::ClientContext ctx2;
  v1::ListWorkersResponse workers;
  ASSERT_TRUE(fleet_->ListWorkers(&ctx2, v1::ListWorkersRequest(), &workers).ok());
  ASSERT_EQ(workers.workers_size(), 1);
  EXPECT_EQ(workers.workers(0).state(), v1::WORKER_STATE_DRAINING);
}

// A worker drained by SIGTERM on its machine says so in a heartbeat: it is offered nothing more.
TEST_F(BuildServiceTest, ADrainingHeartbeatStopsNewAssignments) {
  FakeWorker worker(channel_);
  worker.Hello("w1");
  v1::WorkerMessage hb;
  hb.mutable_heartbeat()->set_sent_unix_ms(1);
  hb.mutable_heartbeat()->set_draining(true);
  ASSERT_TRUE(worker.Send(hb));
  v1::WorkerState state = v1::WORKER_STATE_UNSPECIFIED;
  for (auto until = std::chrono::steady_clock::now() + 5s; std::chrono::steady_clock::now() < until;) {
    grpc::ClientContext ctx;
    v1::ListWorkersResponse workers;
    ASSERT_TRUE(fleet_->ListWorkers(&ctx, v1::ListWorkersRequest(), &workers).ok());
    ASSERT_EQ(workers.workers_size(), 1);
    state = workers.workers(0).state();
    if (state == v1::WORKER_STATE_DRAINING) break;
    std::this_thread::sleep_for(20ms);
  }
  EXPECT_EQ(state, v1::WORKER_STATE_DRAINING);
  auto build = Submit(Spec(source_));
  ASSERT_TRUE(build.ok());
  EXPECT_FALSE(worker.NextAssign(300ms).has_value());
  EXPECT_EQ(Get(build->id()).state(), v1::JOB_STATE_QUEUED);
}

TEST_F(BuildServiceTest, NewConnectionOfSameWorkerReplacesTheOld) {
  FakeWorker first(channel_);
  first.Hello("w1");
  FakeWorker second(channel_);
  second.Hello("w1");
  EXPECT_EQ(first.Finish().error_code(), grpc::StatusCode::ABORTED);
  auto build = Submit(Spec(source_));
  ASSERT_TRUE(build.ok());
  EXPECT_TRUE(second.NextAssign().has_value());
}

TEST_F(BuildServiceTest, ShutdownEndsWatchersPromptly) {
  auto build = Submit(Spec(source_));
  ASSERT_TRUE(build.ok());
  WatchResult w;
  std::thread watcher([&] { w = Watch(build->id(), 0, 30s); });
  std::this_thread::sleep_for(200ms);
  const auto start = std::chrono::steady_clock::now();
  server_->Shutdown(10s);
  watcher.join();
  EXPECT_LT(std::chrono::steady_clock::now() - start, 3s);
  EXPECT_EQ(w.status.error_code(), grpc::StatusCode::UNAVAILABLE) << w.status.error_message();
}

class LivenessTest : public BuildServiceTest {
 protected:
  void SetUp() override {
    ControllerTest::SetUp();
    options_.controller.liveness_timeout = 600ms;
    StartServer();
    source_ = UploadSource("other");
  }
};

TEST_F(LivenessTest, SilentWorkerIsOfflineItsJobRequeuedAndAbandonedOnReturn) {
  auto build = Submit(Spec(source_));
  ASSERT_TRUE(build.ok());
  std::optional<v1::BuildJob> job;
  {
    FakeWorker worker(channel_);
    worker.Hello("w1");
    job = worker.NextAssign();
    ASSERT_TRUE(job.has_value());
    ASSERT_TRUE(worker.Send(FakeWorker::Accepted(*job)));
    ASSERT_TRUE(worker.Send(FakeWorker::Log(job->job_id(), 1, 0, "attempt one\n")));
    ASSERT_TRUE(worker.WaitAck(job->job_id(), 1, 12));
    // Silence: the controller ends the stream after the liveness timeout.
    ASSERT_TRUE(worker.Ended(3s));
  }
  ASSERT_TRUE(WaitBuild(build->id(), [](const v1::Build& b) {
    return b.attempt() == 2 && b.state() == v1::JOB_STATE_QUEUED;
  }));
  grpc::ClientContext ctx;
  v1::ListWorkersResponse workers;
  ASSERT_TRUE(fleet_->ListWorkers(&ctx, v1::ListWorkersRequest(), &workers).ok());
  ASSERT_EQ(workers.workers_size(), 1);
  EXPECT_EQ(workers.workers(0).state(), v1::WORKER_STATE_OFFLINE);

  FakeWorker back(channel_);
  v1::RunningJob running;
  running.set_job_id(job->job_id());
  running.set_attempt(1);
  running.set_phase(v1::PHASE_RUNNING);
  running.set_log_bytes(12);
  v1::Welcome welcome = back.Hello("w1", {}, 2, {running});
  ASSERT_EQ(welcome.jobs_size(), 1);
  EXPECT_EQ(welcome.jobs(0).action(), v1::JobDirective::ACTION_ABANDON);
  auto second = back.NextAssign();
  ASSERT_TRUE(second.has_value());
  EXPECT_EQ(second->attempt(), 2u);

  // Attempt 2 has its own log from byte 0; a watcher follows the current attempt.
  RunJob(back, *second, "attempt two\n", 100);
  WatchResult w = Watch(build->id(), 0);
  EXPECT_EQ(w.log, "attempt two\n");
  ASSERT_FALSE(w.chunks.empty());
  EXPECT_EQ(w.chunks.front().attempt(), 2u);
}

TEST_F(LivenessTest, LastAttemptLostEndsInError) {
  auto build = Submit(Spec(source_));
  ASSERT_TRUE(build.ok());
  for (uint32_t attempt = 1; attempt <= 2; ++attempt) {
    FakeWorker worker(channel_);
    worker.Hello("w" + std::to_string(attempt));
    auto job = worker.NextAssign();
    ASSERT_TRUE(job.has_value());
    EXPECT_EQ(job->attempt(), attempt);
    ASSERT_TRUE(worker.Ended(3s));
  }
  ASSERT_TRUE(WaitBuild(build->id(), [](const v1::Build& b) { return IsState(b, v1::JOB_STATE_ERROR); }));
  EXPECT_NE(Get(build->id()).error().find("worker lost"), std::string::npos);
}

TEST_F(LivenessTest, AfterRestartARunningAttemptWhoseWorkerStaysAwayIsRequeued) {
  auto build = Submit(Spec(source_));
  ASSERT_TRUE(build.ok());
  {
    FakeWorker worker(channel_);
    worker.Hello("w1");
    auto job = worker.NextAssign();
    ASSERT_TRUE(job.has_value());
    ASSERT_TRUE(worker.Send(FakeWorker::Accepted(*job)));
    ASSERT_TRUE(WaitBuild(build->id(), [](const v1::Build& b) { return IsState(b, v1::JOB_STATE_RUNNING); }));
  }
  StopServer();
  StartServer();
  EXPECT_EQ(Get(build->id()).state(), v1::JOB_STATE_RUNNING);
  ASSERT_TRUE(WaitBuild(build->id(), [](const v1::Build& b) {
    return b.attempt() == 2 && b.state() == v1::JOB_STATE_QUEUED;
  }, 3s));
}

TEST_F(LivenessTest, HeartbeatsKeepAWorkerOnline) {
  FakeWorker worker(channel_);
  worker.Hello("w1");
  for (int i = 0; i < 10; ++i) {
    v1::WorkerMessage hb;
    hb.mutable_heartbeat()->set_sent_unix_ms(i);
    ASSERT_TRUE(worker.Send(hb));
    std::this_thread::sleep_for(150ms);
  }
  EXPECT_FALSE(worker.Ended(0ms));
  auto build = Submit(Spec(source_));
  EXPECT_TRUE(worker.NextAssign().has_value());
}

TEST_F(BuildServiceTest, RestartKeepsBuildsLogsBlobsAndRunningAttempts) {
  const std::string artifact = RandomBytes(5000, 9);
  const std::string artifact_digest = Upload(artifact);
  std::string finished_id, running_id, queued_id;
  const std::string log = RandomBytes(200000, 5);
  {
    FakeWorker worker(channel_);
    worker.Hello("w1", {}, 2);
    auto done = Submit(Spec(source_));
    ASSERT_TRUE(done.ok());
    finished_id = done->id();
    auto job = worker.NextAssign();
    ASSERT_TRUE(job.has_value());
    RunJob(worker, *job, log, 50000);
    auto running = Submit(Spec(source_));
    running_id = running->id();
    auto rjob = worker.NextAssign();
    ASSERT_TRUE(rjob.has_value());
    ASSERT_TRUE(worker.Send(FakeWorker::Accepted(*rjob)));
    ASSERT_TRUE(worker.Send(FakeWorker::Log(running_id, 1, 0, "half of")));
    ASSERT_TRUE(worker.WaitAck(running_id, 1, 7));
    v1::JobSpec labelled = Spec(source_);
    (*labelled.mutable_required_labels())["os"] = "plan9";
    queued_id = Submit(labelled)->id();
  }
  StopServer();
  StartServer();

  v1::Build finished = Get(finished_id);
  EXPECT_EQ(finished.state(), v1::JOB_STATE_SUCCEEDED);
  EXPECT_EQ(Watch(finished_id, 0).log, log);
  EXPECT_EQ(Get(queued_id).state(), v1::JOB_STATE_QUEUED);
  EXPECT_EQ(Get(running_id).state(), v1::JOB_STATE_RUNNING);
  std::string blob;
  ASSERT_TRUE(Download(artifact_digest, 0, &blob).ok());
  EXPECT_EQ(blob, artifact);

  // The worker returns and continues its attempt from the committed offset.
  FakeWorker worker(channel_);
  v1::RunningJob r;
  r.set_job_id(running_id);
  r.set_attempt(1);
  r.set_phase(v1::PHASE_RUNNING);
  v1::Welcome welcome = worker.Hello("w1", {}, 2, {r});
  ASSERT_EQ(welcome.jobs_size(), 1);
  EXPECT_EQ(welcome.jobs(0).action(), v1::JobDirective::ACTION_CONTINUE);
  EXPECT_EQ(welcome.jobs(0).committed_offset(), 7u);
  ASSERT_TRUE(worker.Send(FakeWorker::Log(running_id, 1, 7, " the log")));
  v1::BuildJob rjob;
  rjob.set_job_id(running_id);
  rjob.set_attempt(1);
  ASSERT_TRUE(worker.WaitAck(running_id, 1, 15));
  ASSERT_TRUE(worker.Send(FakeWorker::Result(rjob, v1::JOB_STATE_SUCCEEDED, 15)));
  ASSERT_TRUE(WaitBuild(running_id, [](const v1::Build& b) { return IsState(b, v1::JOB_STATE_SUCCEEDED); }));
  EXPECT_EQ(Watch(running_id, 0).log, "half of the log");
}

}  // namespace
}  // namespace freeagent::controller::testing
