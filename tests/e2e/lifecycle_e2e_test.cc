// End to end: how builds end — cancel, step timeout, failing step.
#include <sys/stat.h>

#include <random>
#include <thread>

#include "tests/e2e/e2e_fixture.h"

namespace freeagent::testing {
namespace {

using namespace std::chrono_literals;
using freeagent::v1::Build;

class LifecycleTest : public E2ETest {
 protected:
  void SetUp() override {
    E2ETest::SetUp();
    ASSERT_FALSE(HasFatalFailure());
    StartController();
    ASSERT_FALSE(HasFatalFailure());
    ASSERT_NE(StartWorker(), nullptr);
    FA_ASSERT_OK(client().WaitForWorkers(1, 20s));
    FA_ASSERT_OK_AND_ASSIGN(source_, client().UploadTrivialSource(cluster().root()));
  }

  std::string source_;
};

TEST_F(LifecycleTest, CancelOfRunningSleepEndsQuicklyAndLeavesNoProcess) {
  // A unique argument lets us find the step's processes (the shell and sleep) in /proc.
  std::mt19937_64 rng(std::random_device{}());
  const std::string marker = absl::StrCat("600.", rng() % 1000000000);
  auto spec = MakeSpec(source_, {{"sleep", "sleep " + marker}});
  // sleep dies on the TERM: the build must end long before this grace would run out.
  spec.set_cancel_grace_seconds(10);
  FA_ASSERT_OK_AND_ASSIGN(Build build, client().Submit(spec));

  auto until = std::chrono::steady_clock::now() + 20s;
  while (ProcessesWithArg(marker).empty() && std::chrono::steady_clock::now() < until) {
    std::this_thread::sleep_for(20ms);
  }
  ASSERT_FALSE(ProcessesWithArg(marker).empty()) << "the step never started";

  auto start = std::chrono::steady_clock::now();
  FA_ASSERT_OK(client().Cancel(build.id()).status());
  FA_ASSERT_OK_AND_ASSIGN(Build done, client().WaitForTerminal(build.id(), 30s));
  auto elapsed = std::chrono::steady_clock::now() - start;
  EXPECT_EQ(done.state(), freeagent::v1::JOB_STATE_CANCELLED) << done.ShortDebugString();
  // Controller, worker and back on a loaded machine, against at least the 10 s grace if it waited.
  EXPECT_LT(elapsed, 5s) << "cancel took "
                         << std::chrono::duration_cast<std::chrono::milliseconds>(elapsed).count() << " ms";

  // The worker reports CANCELLED only after the group is gone; allow for the last reap.
  auto gone_until = std::chrono::steady_clock::now() + 5s;
  while (!ProcessesWithArg(marker).empty() && std::chrono::steady_clock::now() < gone_until) {
    std::this_thread::sleep_for(20ms);
  }
  EXPECT_TRUE(ProcessesWithArg(marker).empty()) << "a process of the cancelled step is still running";
}

TEST_F(LifecycleTest, StepTimeoutEndsTimedOut) {
  auto spec = MakeSpec(source_, {{"slow", "echo started; sleep 30"}});
  spec.mutable_steps(0)->set_timeout_seconds(1);
  spec.set_cancel_grace_seconds(1);
  auto start = std::chrono::steady_clock::now();
  FA_ASSERT_OK_AND_ASSIGN(Build build, client().Submit(spec));
  FA_ASSERT_OK_AND_ASSIGN(Build done, client().WaitForTerminal(build.id(), 20s));
  EXPECT_EQ(done.state(), freeagent::v1::JOB_STATE_TIMED_OUT) << done.ShortDebugString();
  EXPECT_LT(std::chrono::steady_clock::now() - start, 10s);
  FA_ASSERT_OK_AND_ASSIGN(std::string log, client().ReadLog(build.id()));
  EXPECT_NE(log.find("started"), std::string::npos) << log;
}

TEST_F(LifecycleTest, FailingStepEndsFailedWithItsExitCodeAndStopsTheBuild) {
  const std::string marker = cluster().root() + "/later-step-ran";
  auto spec = MakeSpec(source_, {{"first", "echo first-output; exit 3"},
                                 {"second", "touch '" + marker + "'"}});
  FA_ASSERT_OK_AND_ASSIGN(Build build, client().Submit(spec));
  FA_ASSERT_OK_AND_ASSIGN(Build done, client().WaitForTerminal(build.id(), 20s));
  EXPECT_EQ(done.state(), freeagent::v1::JOB_STATE_FAILED) << done.ShortDebugString();
  EXPECT_EQ(done.exit_code(), 3);
  EXPECT_EQ(done.failed_step(), "first");
  struct stat st;
  EXPECT_NE(stat(marker.c_str(), &st), 0) << "the step after the failing one ran";
  FA_ASSERT_OK_AND_ASSIGN(std::string log, client().ReadLog(build.id()));
  EXPECT_NE(log.find("first-output"), std::string::npos) << log;
}

}  // namespace
}  // namespace freeagent::testing
