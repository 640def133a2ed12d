// What the controller acknowledged survives its being killed (SIGKILL) at that moment: builds whose
// Submit returned, and results it acknowledged to a worker. The record's writes are group-committed
// by a writer thread (controller/store.h), so this is what keeps the acknowledgements honest. A real
// controller process, real gRPC on loopback, simulated workers (tests/support/sim_fleet.h).
#include <gtest/gtest.h>

#include <map>
#include <string>
#include <vector>

#include "tests/support/process_fixture.h"
#include "tests/support/sim_fleet.h"
#include "tests/support/test_client.h"

namespace freeagent::testing {
namespace {

using namespace std::chrono_literals;

TEST(ControllerDurability, AcknowledgedSubmissionsAndResultsSurviveKill) {
  auto cluster_or = Cluster::Create("durability");
  ASSERT_TRUE(cluster_or.ok()) << cluster_or.status();
  std::unique_ptr<Cluster> cluster = std::move(*cluster_or);
  ASSERT_TRUE(cluster->StartController().ok()) << cluster->DumpLogs();
  TestClient client(cluster->address());
  auto source = client.UploadTrivialSource(cluster->root());
  ASSERT_TRUE(source.ok()) << source.status();

  constexpr size_t kJobs = 300;
  std::vector<std::string> ids;
  for (size_t i = 0; i < kJobs; ++i) {
    auto b = client.Submit(MakeSpec(*source, {{"short", "true"}}));
    ASSERT_TRUE(b.ok()) << b.status();
    ids.push_back(b->id());
  }

  SimFleetOptions options;
  options.address = cluster->address();
  options.workers = 20;
  auto fleet_or = SimFleet::Start(options, 60s);
  ASSERT_TRUE(fleet_or.ok()) << fleet_or.status() << cluster->DumpLogs();
  std::unique_ptr<SimFleet> fleet = std::move(*fleet_or);
  // Killed while results keep arriving: some are acknowledged, others are in flight.
  ASSERT_TRUE(fleet->WaitCompleted(kJobs / 2, 120s)) << fleet->completed() << " results acknowledged";
  cluster->controller()->Kill();
  const std::map<std::string, int> acknowledged = fleet->CompletedJobs();
  fleet->Stop();
  ASSERT_GE(acknowledged.size(), kJobs / 2);

  ControllerOptions again;
  again.data_dir = cluster->controller_data_dir();
  ASSERT_TRUE(cluster->StartController(again).ok()) << cluster->DumpLogs();
  client.Connect(cluster->address());
  size_t succeeded = 0;
  for (const std::string& id : ids) {
    auto b = client.Get(id);
    ASSERT_TRUE(b.ok()) << "submitted build " << id << " lost: " << b.status();
    if (b->state() == v1::JOB_STATE_SUCCEEDED) ++succeeded;
    if (acknowledged.count(id)) {
      EXPECT_EQ(b->state(), v1::JOB_STATE_SUCCEEDED) << "build " << id << " had its result acknowledged";
    }
  }
  EXPECT_GE(succeeded, acknowledged.size());
}

}  // namespace
}  // namespace freeagent::testing
