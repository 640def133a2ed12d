// LogStore: offsets, duplicates, gaps and commit callbacks on a real directory.
#include "controller/log_store.h"

#include <gtest/gtest.h>

#include <future>

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

}  // namespace
}  // namespace freeagent::controller
