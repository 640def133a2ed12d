// Fault test 7, the controller under load: a real freeagent-controller, 200 simulated workers in this
// process (gRPC callback clients over loopback speaking the worker protocol) and 2,000 queued one-step
// builds. Every build must end SUCCEEDED exactly once: none lost, none run twice.
#include <atomic>
#include <cstdio>
#include <thread>

#include "tests/e2e/e2e_fixture.h"
#include "tests/support/sim_fleet.h"

namespace freeagent::testing {
namespace {

using namespace std::chrono_literals;
using freeagent::v1::Build;

constexpr int kWorkers = 200;
constexpr size_t kJobs = 2000;

TEST_F(E2ETest, TwoHundredWorkersRunTwoThousandQueuedBuildsEachExactlyOnce) {
  StartController();
  ASSERT_FALSE(HasFatalFailure());
  FA_ASSERT_OK_AND_ASSIGN(std::string source, client().UploadTrivialSource(cluster().root()));

  // Queued before any worker exists, so the whole backlog meets the whole fleet at once.
  std::vector<std::string> ids(kJobs);
  std::vector<std::thread> submitters;
  std::atomic<int> submit_errors{0};
  for (int t = 0; t < 4; ++t) {
    submitters.emplace_back([&, t] {
      TestClient c(cluster().address());
      for (size_t i = t; i < kJobs; i += 4) {
        auto b = c.Submit(MakeSpec(source, {{"short", "true"}}));
        if (!b.ok()) {
          ++submit_errors;
          continue;
        }
        ids[i] = b->id();
      }
    });
  }
  for (auto& t : submitters) t.join();
  ASSERT_EQ(submit_errors.load(), 0);

  SimFleetOptions options;
  options.address = cluster().address();
  options.workers = kWorkers;
  FA_ASSERT_OK_AND_ASSIGN(std::unique_ptr<SimFleet> fleet, SimFleet::Start(options, 60s));
  const bool all_done = fleet->WaitCompleted(kJobs, 90s);
  const double seconds =
      std::chrono::duration<double>(fleet->last_completion() - fleet->first_welcome()).count();
  std::vector<double> latencies = fleet->AssignLatenciesMs();
  std::printf("controller load: %zu builds on %d simulated workers in %.2f s = %.0f jobs/s; assignment "
              "latency p50 %.2f ms, p99 %.2f ms\n",
              fleet->completed(), kWorkers, seconds, static_cast<double>(fleet->completed()) / seconds,
              Percentile(latencies, 50), Percentile(latencies, 99));
  fleet->Stop();
  EXPECT_TRUE(fleet->Failures().empty()) << fleet->Failures().front();
  ASSERT_TRUE(all_done) << fleet->completed() << " of " << kJobs << " builds completed";
  EXPECT_EQ(fleet->duplicate_assigns(), 0u) << "an attempt was assigned twice";
  EXPECT_EQ(fleet->duplicate_results(), 0u);

  // The controller's record agrees: each build SUCCEEDED on its first attempt, run by one worker once.
  std::map<std::string, int> ran = fleet->CompletedJobs();
  EXPECT_EQ(ran.size(), kJobs);
  for (const std::string& id : ids) {
    EXPECT_EQ(ran[id], 1) << id;
    FA_ASSERT_OK_AND_ASSIGN(Build b, client().Get(id));
    EXPECT_EQ(b.state(), freeagent::v1::JOB_STATE_SUCCEEDED) << b.ShortDebugString();
    EXPECT_EQ(b.attempt(), 1u) << id;
  }
}

}  // namespace
}  // namespace freeagent::testing
