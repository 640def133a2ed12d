// Store: group-committed writes on a real SQLite file.
#include "controller/store.h"

#include <gtest/gtest.h>

#include <atomic>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include "common/fs.h"

namespace freeagent::controller {
namespace {

class StoreTest : public ::testing::Test {
 protected:
  void SetUp() override {
    auto dir = MakePrivateTempDir("/tmp", "fa-store-");
    ASSERT_TRUE(dir.ok());
    dir_ = *dir;
  }
  void TearDown() override { RemoveTree(dir_).IgnoreError(); }

  static StoredJob Job(int64_t seq, v1::JobState state) {
    StoredJob job;
    job.seq = seq;
    job.build.set_id("b-" + std::to_string(seq));
    job.build.set_state(state);
    job.build.mutable_spec()->add_steps()->set_run("true");
    return job;
  }

  std::string dir_;
};

TEST_F(StoreTest, ReadsSeeEveryQueuedWrite) {
  auto store = Store::Open(dir_ + "/db");
  ASSERT_TRUE(store.ok()) << store.status();
  for (int i = 1; i <= 500; ++i) (*store)->PutJob(Job(i, v1::JOB_STATE_QUEUED));
  (*store)->PutJob(Job(7, v1::JOB_STATE_SUCCEEDED));  // a later write of the same row wins
  v1::BuildEvent event;
  event.set_message("submitted");
  (*store)->AddEvent("b-7", event);
  auto jobs = (*store)->LoadJobs();
  ASSERT_TRUE(jobs.ok()) << jobs.status();
  ASSERT_EQ(jobs->size(), 500u);
  EXPECT_EQ((*jobs)[6].build.state(), v1::JOB_STATE_SUCCEEDED);
  EXPECT_EQ((*jobs)[6].build.spec().steps(0).run(), "true");
  auto events = (*store)->LoadEvents("b-7");
  ASSERT_TRUE(events.ok());
  ASSERT_EQ(events->size(), 1u);
  EXPECT_EQ((*events)[0].message(), "submitted");
}

TEST_F(StoreTest, AfterCommitRunsInOrderOnceEarlierWritesAreCommitted) {
  auto store = Store::Open(dir_ + "/db");
  ASSERT_TRUE(store.ok()) << store.status();
  std::mutex mu;
  std::vector<int> order;
  std::atomic<bool> bad{false};
  const std::string path = dir_ + "/db";
  for (int i = 1; i <= 200; ++i) {
    (*store)->PutJob(Job(i, v1::JOB_STATE_QUEUED));
    (*store)->AfterCommit([&, i](const absl::Status& st) {
      if (!st.ok()) bad = true;
      std::lock_guard<std::mutex> lock(mu);
      order.push_back(i);
    });
  }
  ASSERT_TRUE((*store)->Sync().ok());
  // Committed means visible to another connection, as it would be after a crash and restart.
  auto other = Store::Open(path);
  ASSERT_TRUE(other.ok()) << other.status();
  auto jobs = (*other)->LoadJobs();
  ASSERT_TRUE(jobs.ok()) << jobs.status();
  EXPECT_EQ(jobs->size(), 200u);
  EXPECT_FALSE(bad.load());
  std::lock_guard<std::mutex> lock(mu);
  ASSERT_EQ(order.size(), 200u);
  for (int i = 0; i < 200; ++i) EXPECT_EQ(order[i], i + 1);
}

TEST_F(StoreTest, WritesAfterStopAreCommittedOnTheCallingThread) {
  auto store = Store::Open(dir_ + "/db");
  ASSERT_TRUE(store.ok()) << store.status();
  (*store)->PutJob(Job(1, v1::JOB_STATE_QUEUED));
  (*store)->Stop();
  (*store)->PutJob(Job(2, v1::JOB_STATE_QUEUED));
  bool ran = false;
  (*store)->AfterCommit([&](const absl::Status& st) { ran = st.ok(); });
  EXPECT_TRUE(ran);  // inline: no writer thread is left to run it
  auto jobs = (*store)->LoadJobs();
  ASSERT_TRUE(jobs.ok()) << jobs.status();
  EXPECT_EQ(jobs->size(), 2u);
}

TEST_F(StoreTest, SecretsAreWrittenAndDeleted) {
  auto store = Store::Open(dir_ + "/db");
  ASSERT_TRUE(store.ok()) << store.status();
  (*store)->PutSecrets("b-1", {{"env/A", "sealed-a"}, {"env/B", "sealed-b"}});
  (*store)->PutSecrets("b-2", {{"env/C", "sealed-c"}});
  (*store)->DeleteSecrets("b-1");
  auto secrets = (*store)->LoadSecrets();
  ASSERT_TRUE(secrets.ok()) << secrets.status();
  EXPECT_EQ(secrets->count("b-1"), 0u);
  ASSERT_EQ(secrets->count("b-2"), 1u);
  EXPECT_EQ(secrets->at("b-2").at("env/C"), "sealed-c");
}

}  // namespace
}  // namespace freeagent::controller
