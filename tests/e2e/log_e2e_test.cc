// End to end: a build's binary log stream goes worker -> controller -> watcher byte for byte.
#include <future>

#include "absl/strings/match.h"
#include "common/sha256.h"
#include "tests/e2e/e2e_fixture.h"
#include "tests/support/stream_data.h"

namespace freeagent::testing {
namespace {

using namespace std::chrono_literals;

// ARCHITECTURE protocol rule 3: the stored log is the guest's output byte for byte. The step's
// stdout is the only output here, so the log must be exactly that stream: nothing lost, repeated or
// added (the worker's own lines are progress notes, never log bytes).
void ExpectLogIsTheStream(const std::string& log, const std::string& stream) {
  ASSERT_EQ(log.size(), stream.size()) << "the log is not the step's byte stream";
  EXPECT_EQ(Sha256Hex(log), Sha256Hex(stream));
}

TEST_F(E2ETest, BinaryLogIsStoredAndReplayedByteForByte) {
  StartController();
  ASSERT_NE(StartWorker(), nullptr);
  FA_ASSERT_OK(client().WaitForWorkers(1, 20s));
  FA_ASSERT_OK_AND_ASSIGN(std::string source, client().UploadTrivialSource(cluster().root()));

  constexpr uint64_t kSeed = 20261127;
  constexpr uint64_t kSize = 5'000'000;
  const std::string expected = DeterministicBytes(kSeed, kSize);
  auto spec = MakeSpec(source, {{"stream", absl::StrCat("'", StreamToolBinary(), "' random ", kSeed,
                                                        " ", kSize)}});
  FA_ASSERT_OK_AND_ASSIGN(auto build, client().Submit(spec));

  // One watcher follows live from the start while the build runs.
  TestClient live_client(cluster().address());
  auto live = std::async(std::launch::async, [&] { return live_client.ReadLog(build.id(), 0); });

  FA_ASSERT_OK_AND_ASSIGN(auto done, client().WaitForTerminal(build.id(), 60s));
  ASSERT_EQ(done.state(), freeagent::v1::JOB_STATE_SUCCEEDED) << done.ShortDebugString();

  FA_ASSERT_OK_AND_ASSIGN(std::string replay, client().ReadLog(build.id(), 0));
  EXPECT_EQ(done.log_size(), kSize);
  ExpectLogIsTheStream(replay, expected);

  FA_ASSERT_OK_AND_ASSIGN(std::string live_log, live.get());
  ExpectLogIsTheStream(live_log, expected);

  const uint64_t middle = kSize / 2 + 1;  // deliberately not chunk-aligned
  FA_ASSERT_OK_AND_ASSIGN(std::string tail, client().ReadLog(build.id(), middle));
  ExpectLogIsTheStream(tail, expected.substr(middle));

  // The worker's own lines went to the build's progress instead.
  EXPECT_EQ(done.message(), "build succeeded");
  FA_ASSERT_OK_AND_ASSIGN(auto record, client().Get(build.id()));
  bool noted = false;
  for (const auto& event : record.events()) {
    noted = noted || absl::StartsWith(event.message(), "step stream done in ");
  }
  EXPECT_TRUE(noted) << record.ShortDebugString();
}

}  // namespace
}  // namespace freeagent::testing
