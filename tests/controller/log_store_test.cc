// LogStore: offsets, duplicates, gaps and commit callbacks on a real directory.
#include "controller/log_store.h"

#include <gtest/gtest.h>

#include <sys/stat.h>
#include <unistd.h>

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

// Appends `data` at `offset` and waits until the store reports it durable.
void AppendDurably(LogStore& store, const std::string& id, uint64_t offset, const std::string& data) {
  auto committed = std::make_shared<std::promise<void>>();
  auto once = std::make_shared<std::once_flag>();
  const uint64_t end = offset + data.size();
  auto r = store.Append(id, 1, offset, data, [=](uint64_t c) {
    if (c >= end) std::call_once(*once, [&] { committed->set_value(); });
  });
  ASSERT_TRUE(r.ok()) << r.status();
  if (!r->pending) return;
  ASSERT_EQ(committed->get_future().wait_for(std::chrono::seconds(30)), std::future_status::ready) << id;
}

bool Exists(const std::string& path) {
  struct stat st {};
  return ::stat(path.c_str(), &st) == 0;
}

// Every commit callback of one attempt, in the order they ran.
class CommitRecord {
 public:
  LogStore::CommitCallback Callback() {
    return [this](uint64_t committed) {
      std::lock_guard<std::mutex> lock(mu_);
      seen_.push_back(committed);
    };
  }
  // They never went backwards and the last one reported `end`.
  void ExpectInOrderUpTo(uint64_t end) {
    std::lock_guard<std::mutex> lock(mu_);
    ASSERT_FALSE(seen_.empty());
    for (size_t i = 1; i < seen_.size(); ++i) EXPECT_LE(seen_[i - 1], seen_[i]);
    EXPECT_EQ(seen_.back(), end);
  }

 private:
  std::mutex mu_;
  std::vector<uint64_t> seen_;
};

// FlushAsync of attempt 1, waiting for its callback when there is one.
absl::Status Flush(LogStore& store, const std::string& id) {
  auto flushed = std::make_shared<std::promise<absl::Status>>();
  if (store.FlushAsync(id, 1, [flushed](absl::Status st) { flushed->set_value(st); })) return absl::OkStatus();
  auto f = flushed->get_future();
  if (f.wait_for(std::chrono::seconds(30)) != std::future_status::ready) {
    return absl::DeadlineExceededError("no flush callback in 30 s");
  }
  return f.get();
}

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

TEST_F(LogStoreTest, NoDirectoryIsCreatedPerBuild) {
  LogStore store(dir_ + "/logs");
  ASSERT_TRUE(store.Start().ok());
  AppendDurably(store, "b-flat", 0, "line\n");
  EXPECT_EQ(store.PathFor("b-flat", 1), dir_ + "/logs/b-flat.1.log");
  auto names = ListDirectory(dir_ + "/logs");
  ASSERT_TRUE(names.ok()) << names.status();
  for (const std::string& name : *names) {
    struct stat st {};
    ASSERT_EQ(::stat((dir_ + "/logs/" + name).c_str(), &st), 0) << name;
    EXPECT_FALSE(S_ISDIR(st.st_mode)) << name;
  }
}

TEST_F(LogStoreTest, LogsOfThePerBuildDirectoryLayoutAreMovedAtStart) {
  const std::string dir = dir_ + "/logs";
  ASSERT_TRUE(MakeDirs(dir + "/b-old", 0755).ok());
  ASSERT_TRUE(MakeDirs(dir + "/b-odd", 0755).ok());
  ASSERT_TRUE(WriteFileAtomic(dir + "/b-old/1.log", "first attempt\n").ok());
  ASSERT_TRUE(WriteFileAtomic(dir + "/b-old/2.log", "second\n").ok());
  ASSERT_TRUE(WriteFileAtomic(dir + "/b-odd/notes.txt", "not a log").ok());
  for (int start = 0; start < 2; ++start) {  // a second start finds nothing left to move
    LogStore store(dir);
    ASSERT_TRUE(store.Start().ok()) << start;
    EXPECT_EQ(store.GetSizes("b-old", 1).committed, 14u) << start;
    EXPECT_EQ(store.GetSizes("b-old", 2).committed, 7u) << start;
    auto second = ReadFile(store.PathFor("b-old", 2));
    ASSERT_TRUE(second.ok()) << second.status();
    EXPECT_EQ(*second, "second\n");
    EXPECT_FALSE(Exists(dir + "/b-old")) << "emptied per-build directory kept";
    EXPECT_TRUE(Exists(dir + "/b-odd/notes.txt")) << "a file that is no log was touched";
    store.Stop();
  }
  LogStore store(dir);
  ASSERT_TRUE(store.Start().ok());
  auto r = store.Append("b-old", 1, 14, "more\n", nullptr);
  ASSERT_TRUE(r.ok()) << r.status();
  EXPECT_EQ(r->written, 19u);
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
  CommitRecord record;
  uint64_t offset = 0;
  for (int i = 0; i < 200; ++i) {
    ASSERT_TRUE(store.Append("b-order", 1, offset, "0123456789", record.Callback()).ok());
    offset += 10;
  }
  EXPECT_TRUE(Flush(store, "b-order").ok());
  store.Stop();
  record.ExpectInOrderUpTo(offset);
}

TEST_F(LogStoreTest, JournalRestoresCommittedBytesTheFilesLost) {
  const std::string dir = dir_ + "/logs";
  std::string lost_path, cut_path;
  {
    LogStore store(dir);
    ASSERT_TRUE(store.Start().ok());
    AppendDurably(store, "b-lost", 0, "first line\n");
    AppendDurably(store, "b-lost", 11, "second line\n");
    AppendDurably(store, "b-cut", 0, std::string(5000, 'c'));
    lost_path = store.PathFor("b-lost", 1);
    cut_path = store.PathFor("b-cut", 1);
    store.Stop();
  }
  // What a power cut can do to files that were never synced themselves: gone, or cut short.
  ASSERT_EQ(::unlink(lost_path.c_str()), 0);
  ASSERT_EQ(::truncate(cut_path.c_str(), 100), 0);
  LogStore store(dir);
  ASSERT_TRUE(store.Start().ok());
  EXPECT_EQ(store.GetSizes("b-lost", 1).committed, 23u);
  EXPECT_EQ(store.GetSizes("b-cut", 1).committed, 5000u);
  auto lost = ReadFile(lost_path);
  ASSERT_TRUE(lost.ok()) << lost.status();
  EXPECT_EQ(*lost, "first line\nsecond line\n");
  auto cut = ReadFile(cut_path);
  ASSERT_TRUE(cut.ok()) << cut.status();
  EXPECT_EQ(*cut, std::string(5000, 'c'));
  // The log goes on from its restored end, into the new segment.
  AppendDurably(store, "b-lost", 23, "third\n");
  store.Stop();  // waits for the old segment's retirement
  EXPECT_FALSE(Exists(store.SegmentPath(1))) << "replayed segment kept after its files were synced";
  EXPECT_TRUE(Exists(store.SegmentPath(2)));
}

TEST_F(LogStoreTest, TornJournalTailIsIgnored) {
  const std::string dir = dir_ + "/logs";
  std::string path;
  {
    LogStore store(dir);
    ASSERT_TRUE(store.Start().ok());
    AppendDurably(store, "b-torn", 0, "kept");
    path = store.PathFor("b-torn", 1);
    store.Stop();
    // A record whose write was cut off: a header with no body.
    auto segment = ReadFile(store.SegmentPath(1));
    ASSERT_TRUE(segment.ok());
    ASSERT_FALSE(segment->empty());
    ASSERT_TRUE(WriteFileAtomic(store.SegmentPath(1), *segment + segment->substr(0, 20)).ok());
  }
  ASSERT_EQ(::unlink(path.c_str()), 0);
  LogStore store(dir);
  ASSERT_TRUE(store.Start().ok());
  auto content = ReadFile(path);
  ASSERT_TRUE(content.ok()) << content.status();
  EXPECT_EQ(*content, "kept");
  EXPECT_EQ(store.GetSizes("b-torn", 1).committed, 4u);
}

TEST_F(LogStoreTest, LogPastTheJournalLimitIsSyncedInOrder) {
  LogStore store(dir_ + "/logs");
  ASSERT_TRUE(store.Start().ok());
  CommitRecord record;
  // Chunks on both sides of the limit: the journal and the sync threads both report this file.
  const std::string chunk(1000, 'z');
  uint64_t offset = 0;
  while (offset < 2 * LogStore::kJournalLogBytes) {
    ASSERT_TRUE(store.Append("b-long", 1, offset, chunk, record.Callback()).ok());
    offset += chunk.size();
  }
  EXPECT_TRUE(Flush(store, "b-long").ok());
  EXPECT_EQ(store.GetSizes("b-long", 1).committed, offset);
  store.Stop();
  record.ExpectInOrderUpTo(offset);
}

}  // namespace
}  // namespace freeagent::controller
