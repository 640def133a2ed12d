// LogStore: offsets, duplicates, gaps and commit callbacks on a real directory.
#include "controller/log_store.h"

#include <gtest/gtest.h>

#include <future>
#include <mutex>
#include <string>
#include <vector>

#include "common/fs.h"

namespace freeagent::controller {
namespace {

class LogStoreTest : public ::testing::Test {
 protected:
  void SetUp() override {
    auto dir = MakePrivateTempDir("/tmp", "fa-logstore-");
    ASSERT_TRUE(dir.ok());
    dir_ = *dir;
  }
  void TearDown() override { RemoveTree(dir_).IgnoreError(); }
  std::string dir_;
};

TEST_F(LogStoreTest, AppendsDropDuplicatesAndIgnoreGaps) {
  LogStore store(dir_ + "/logs");
  ASSERT_TRUE(store.Start().ok());
  std::promise<uint64_t> committed;
  auto r = store.Append("b-1", 1, 0, "hello ", [&](uint64_t c) {
    if (c == 6) committed.set_value(c);
  });
  ASSERT_TRUE(r.ok());
  EXPECT_EQ(r->written, 6u);
  EXPECT_EQ(committed.get_future().get(), 6u);

  // Overlap: only the new tail is written.
  r = store.Append("b-1", 1, 3, "lo world", nullptr);
  ASSERT_TRUE(r.ok());
  EXPECT_EQ(r->written, 11u);
  // Pure duplicate.
  r = store.Append("b-1", 1, 0, "hel", nullptr);
  ASSERT_TRUE(r.ok());
  EXPECT_EQ(r->written, 11u);
  // Gap.
  r = store.Append("b-1", 1, 20, "zzz", nullptr);
  ASSERT_TRUE(r.ok());
  EXPECT_TRUE(r->gap);
  EXPECT_EQ(r->written, 11u);

  store.Stop();
  auto content = ReadFile(store.PathFor("b-1", 1));
  ASSERT_TRUE(content.ok());
  EXPECT_EQ(*content, "hello world");
}

TEST_F(LogStoreTest, SizesSurviveReopen) {
  {
    LogStore store(dir_ + "/logs");
    ASSERT_TRUE(store.Start().ok());
    ASSERT_TRUE(store.Append("b-2", 2, 0, std::string(1000, 'x'), nullptr).ok());
    store.Stop();
  }
  LogStore store(dir_ + "/logs");
  ASSERT_TRUE(store.Start().ok());
  EXPECT_EQ(store.GetSizes("b-2", 2).committed, 1000u);
  EXPECT_EQ(store.GetSizes("b-2", 3).committed, 0u);
  auto r = store.Append("b-2", 2, 1000, "y", nullptr);
  ASSERT_TRUE(r.ok());
  EXPECT_EQ(r->written, 1001u);
}

TEST_F(LogStoreTest, FlushAsyncCallsBackOnceEveryFileIsDurable) {
  LogStore store(dir_ + "/logs");
  ASSERT_TRUE(store.Start().ok());
  // Nothing written: nothing to wait for.
  EXPECT_TRUE(store.FlushAsync("b-none", 1, [](absl::Status) { ADD_FAILURE() << "called"; }));
  constexpr int kFiles = 64;  // more than the sync threads, so files queue for them
  std::vector<std::promise<absl::Status>> done(kFiles);
  for (int i = 0; i < kFiles; ++i) {
    const std::string id = "b-" + std::to_string(i);
    ASSERT_TRUE(store.Append(id, 1, 0, "line\n", nullptr).ok());
    ASSERT_TRUE(store.Append(id, 1, 5, std::string(i, 'x'), nullptr).ok());
    const bool now = store.FlushAsync(id, 1, [&done, i](absl::Status st) { done[i].set_value(st); });
    if (now) done[i].set_value(absl::OkStatus());  // already synced by the append's own sync
  }
  for (int i = 0; i < kFiles; ++i) {
    const std::string id = "b-" + std::to_string(i);
    auto f = done[i].get_future();
    ASSERT_EQ(f.wait_for(std::chrono::seconds(30)), std::future_status::ready) << id;
    EXPECT_TRUE(f.get().ok());
    const LogStore::Sizes sizes = store.GetSizes(id, 1);
    EXPECT_EQ(sizes.written, 5u + i);
    EXPECT_EQ(sizes.committed, sizes.written) << id;
  }
  store.Stop();
}

TEST_F(LogStoreTest, CommitCallbacksOfOneFileNeverGoBackwards) {
  LogStore store(dir_ + "/logs");
  ASSERT_TRUE(store.Start().ok());
  std::mutex mu;
  std::vector<uint64_t> seen;
  auto record = [&](uint64_t c) {
    std::lock_guard<std::mutex> lock(mu);
    seen.push_back(c);
  };
  uint64_t offset = 0;
  for (int i = 0; i < 200; ++i) {
    ASSERT_TRUE(store.Append("b-order", 1, offset, "0123456789", record).ok());
    offset += 10;
  }
  std::promise<absl::Status> flushed;
  if (store.FlushAsync("b-order", 1, [&](absl::Status st) { flushed.set_value(st); })) {
    flushed.set_value(absl::OkStatus());
  }
  EXPECT_TRUE(flushed.get_future().get().ok());
  store.Stop();
  std::lock_guard<std::mutex> lock(mu);
  ASSERT_FALSE(seen.empty());
  for (size_t i = 1; i < seen.size(); ++i) EXPECT_LE(seen[i - 1], seen[i]);
  EXPECT_EQ(seen.back(), offset);
}

}  // namespace
}  // namespace freeagent::controller
