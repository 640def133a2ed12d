// End to end: required labels keep a build queued until a matching worker joins.
#include <thread>

#include "tests/e2e/e2e_fixture.h"

namespace freeagent::testing {
namespace {

using namespace std::chrono_literals;
using freeagent::v1::Build;

TEST_F(E2ETest, BuildNeedingMacosWaitsForAMacosWorker) {
  StartController();
  ASSERT_NE(StartWorker(NamedWorker("linux-box")), nullptr);
  FA_ASSERT_OK(client().WaitForWorkers(1, 20s));
  FA_ASSERT_OK_AND_ASSIGN(std::string source, client().UploadTrivialSource(cluster().root()));

  auto spec = MakeSpec(source, {{"hello", "echo ran-on-mac"}});
  (*spec.mutable_required_labels())["os"] = "macos";
  FA_ASSERT_OK_AND_ASSIGN(Build build, client().Submit(spec));

  // Long enough for any scheduling pass to have happened (assignment takes milliseconds).
  std::this_thread::sleep_for(1500ms);
  FA_ASSERT_OK_AND_ASSIGN(Build waiting, client().Get(build.id()));
  EXPECT_EQ(waiting.state(), freeagent::v1::JOB_STATE_QUEUED) << waiting.ShortDebugString();
  EXPECT_TRUE(waiting.worker_id().empty());

  ASSERT_NE(StartWorker(NamedWorker("mac-box", {"os=macos"})), nullptr);
  FA_ASSERT_OK_AND_ASSIGN(Build done, client().WaitForTerminal(build.id(), 20s));
  EXPECT_EQ(done.state(), freeagent::v1::JOB_STATE_SUCCEEDED) << done.ShortDebugString();

  FA_ASSERT_OK_AND_ASSIGN(auto workers, client().Workers());
  std::string mac_id;
  for (const auto& w : workers) {
    if (w.name() == "mac-box") mac_id = w.id();
  }
  ASSERT_FALSE(mac_id.empty());
  EXPECT_EQ(done.worker_id(), mac_id);
}

}  // namespace
}  // namespace freeagent::testing
