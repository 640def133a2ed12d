// End to end: a build's binary log stream goes worker -> controller -> watcher byte for byte.
#include <future>

#include "common/sha256.h"
#include "tests/e2e/e2e_fixture.h"
#include "tests/support/stream_data.h"

namespace freeagent::testing {
namespace {

using namespace std::chrono_literals;

// The step's stdout must be in the log byte for byte: contiguous, once, nothing lost or added.
// The worker frames steps with its own lines starting with "==> "; those are the only other bytes
// allowed (a log equal to the stream passes too).
void ExpectStreamIntact(const std::string& log, const std::string& stream) {
  size_t at = log.find(stream);
  ASSERT_NE(at, std::string::npos) << "the step's byte stream is not in the log intact; log size "
                                   << log.size() << ", stream size " << stream.size();
  EXPECT_EQ(Sha256Hex(log.substr(at, stream.size())), Sha256Hex(stream));
  std::string rest = log.substr(0, at) + log.substr(at + stream.size());
  size_t pos = 0;
  while (pos < rest.size()) {
    size_t nl = rest.find('\n', pos);
    std::string line = rest.substr(pos, nl == std::string::npos ? std::string::npos : nl - pos);
    EXPECT_EQ(line.rfind("==> ", 0), 0u) << "unexpected bytes in the log outside the stream: \""
                                         << line.substr(0, 80) << "\"";
    if (nl == std::string::npos) break;
    pos = nl + 1;
  }
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
  EXPECT_EQ(done.log_size(), replay.size());
  ExpectStreamIntact(replay, expected);

  FA_ASSERT_OK_AND_ASSIGN(std::string live_log, live.get());
  EXPECT_EQ(live_log.size(), replay.size());
  EXPECT_EQ(Sha256Hex(live_log), Sha256Hex(replay)) << "live watch and replay differ";

  const uint64_t middle = replay.size() / 2 + 1;  // deliberately not chunk-aligned
  FA_ASSERT_OK_AND_ASSIGN(std::string tail, client().ReadLog(build.id(), middle));
  EXPECT_EQ(tail.size(), replay.size() - middle);
  EXPECT_TRUE(tail == replay.substr(middle)) << "bytes from the middle differ";
}

}  // namespace
}  // namespace freeagent::testing
