// End to end: losing a worker mid-build and restarting the controller lose no build.
#include <signal.h>

#include "common/sha256.h"
#include "tests/e2e/e2e_fixture.h"

namespace freeagent::testing {
namespace {

using namespace std::chrono_literals;
using freeagent::v1::Build;

TEST_F(E2ETest, BuildOfKilledWorkerIsRequeuedAndSucceedsOnAnother) {
  ControllerOptions options;
  options.liveness_timeout_ms = 3000;
  options.heartbeat_interval_ms = 500;
  StartController(options);
  ChildProcess* first = StartWorker(NamedWorker("doomed"));
  ASSERT_NE(first, nullptr);
  FA_ASSERT_OK(client().WaitForWorkers(1, 20s));
  FA_ASSERT_OK_AND_ASSIGN(std::string source, client().UploadTrivialSource(cluster().root()));

  // The first attempt runs until the second one has (or 60 s), so it is still running when its worker
  // is killed however long the survivor takes to start; the second attempt ends at once.
  const std::string root = cluster().root();
  auto spec = MakeSpec(
      source, {{"work", absl::StrCat("echo attempt-start; if mkdir ", root, "/first-attempt 2>/dev/null; then i=0; ",
                                     "while [ ! -e ", root, "/second-attempt ] && [ $i -lt 600 ]; do sleep 0.1; ",
                                     "i=$((i+1)); done; else touch ", root, "/second-attempt; fi; echo attempt-done")}});
  FA_ASSERT_OK_AND_ASSIGN(Build build, client().Submit(spec));
  FA_ASSERT_OK_AND_ASSIGN(Build running, client().WaitFor(build.id(), [](const Build& b) {
    return b.state() == freeagent::v1::JOB_STATE_RUNNING && b.phase() == freeagent::v1::PHASE_RUNNING;
  }, 20s));
  const std::string doomed_id = running.worker_id();
  ASSERT_FALSE(doomed_id.empty());

  ASSERT_NE(StartWorker(NamedWorker("survivor")), nullptr);
  FA_ASSERT_OK(client().WaitForWorkers(2, 20s));
  first->Kill();

  FA_ASSERT_OK_AND_ASSIGN(Build done, client().WaitForTerminal(build.id(), 40s));
  EXPECT_EQ(done.state(), freeagent::v1::JOB_STATE_SUCCEEDED) << done.ShortDebugString();
  EXPECT_EQ(done.attempt(), 2u);
  EXPECT_NE(done.worker_id(), doomed_id);
  FA_ASSERT_OK_AND_ASSIGN(std::string log, client().ReadLog(build.id()));
  EXPECT_NE(log.find("attempt-done"), std::string::npos) << log;
}

TEST_F(E2ETest, RestartedControllerStillServesHistoryLogsAndArtifacts) {
  StartController();
  ASSERT_NE(StartWorker(), nullptr);
  FA_ASSERT_OK(client().WaitForWorkers(1, 20s));
  FA_ASSERT_OK_AND_ASSIGN(std::string source, client().UploadTrivialSource(cluster().root()));

  auto spec = MakeSpec(source, {{"make", "echo building; printf 'artifact-content\\n' > out.txt"}});
  spec.add_artifacts()->set_glob("out.txt");
  FA_ASSERT_OK_AND_ASSIGN(Build build, client().Submit(spec));
  FA_ASSERT_OK_AND_ASSIGN(Build before, client().WaitForTerminal(build.id(), 30s));
  ASSERT_EQ(before.state(), freeagent::v1::JOB_STATE_SUCCEEDED) << before.ShortDebugString();
  ASSERT_EQ(before.artifacts_size(), 1);
  FA_ASSERT_OK_AND_ASSIGN(std::string log_before, client().ReadLog(build.id()));
  ASSERT_NE(log_before.find("building"), std::string::npos) << log_before;

  EXPECT_EQ(cluster().StopController(), 0) << "controller did not shut down cleanly on SIGTERM";
  ControllerOptions again;
  again.data_dir = cluster().controller_data_dir();
  again.listen = absl::StrCat("127.0.0.1:", cluster().port());
  StartController(again);

  FA_ASSERT_OK_AND_ASSIGN(Build after, client().Get(build.id()));
  EXPECT_EQ(after.state(), freeagent::v1::JOB_STATE_SUCCEEDED);
  ASSERT_EQ(after.artifacts_size(), 1);
  EXPECT_EQ(after.artifacts(0).sha256(), before.artifacts(0).sha256());

  FA_ASSERT_OK_AND_ASSIGN(auto history, client().List());
  bool listed = false;
  for (const Build& b : history) listed |= b.id() == build.id();
  EXPECT_TRUE(listed) << "build missing from List after restart";

  FA_ASSERT_OK_AND_ASSIGN(std::string log_after, client().ReadLog(build.id()));
  EXPECT_EQ(log_after, log_before);

  FA_ASSERT_OK_AND_ASSIGN(std::string artifact, client().DownloadBlob(after.artifacts(0).sha256()));
  EXPECT_EQ(artifact, "artifact-content\n");
  EXPECT_EQ(Sha256Hex(artifact), after.artifacts(0).sha256());
}

}  // namespace
}  // namespace freeagent::testing
