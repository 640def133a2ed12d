// BlobStore on a temp dir: the files retention looks at (partial uploads, stored blobs), aged by
// their modification times (set with utimensat), and which of them it may remove.
#include "controller/blob_store.h"

#include <sys/stat.h>

#include <algorithm>

#include "common/clock.h"
#include "tests/controller/controller_fixture.h"

namespace freeagent::controller::testing {
namespace {

constexpr int64_t kHour = 3600 * 1000;

class BlobStoreTest : public ::testing::Test {
 protected:
  void SetUp() override {
    auto dir = MakePrivateTempDir("/tmp", "fa-blobstore-test-");
    ASSERT_TRUE(dir.ok()) << dir.status();
    root_ = *dir;
    store_ = std::make_unique<BlobStore>(root_ + "/blobs");
    ASSERT_TRUE(store_->Init().ok());
  }
  void TearDown() override { RemoveTree(root_).IgnoreError(); }

  static bool FileExists(const std::string& path) {
    struct stat st {};
    return ::stat(path.c_str(), &st) == 0;
  }

  // Begins an upload by digest (`upload_id` empty) or a streaming one and writes `data`.
  std::unique_ptr<BlobWriter> Begin(const std::string& digest, const std::string& upload_id, const std::string& data,
                                    uint64_t size = 1000) {
    v1::UploadHeader h;
    h.set_digest(digest);
    h.set_upload_id(upload_id);
    h.set_size(size);
    auto w = store_->BeginUpload(h);
    EXPECT_TRUE(w.ok()) << w.status();
    if (!w.ok()) return nullptr;
    EXPECT_TRUE((*w)->Write(data).ok());
    return std::move(*w);
  }

  // The outcome of a removal (false when it failed, with the failure reported).
  static bool Removed(const absl::StatusOr<bool>& r) {
    EXPECT_TRUE(r.ok()) << r.status();
    return r.ok() && *r;
  }

  static std::vector<std::string> Keys(const std::vector<BlobStore::FileInfo>& files) {
    std::vector<std::string> keys;
    for (const auto& f : files) keys.push_back(f.key);
    std::sort(keys.begin(), keys.end());
    return keys;
  }

  std::string root_;
  std::unique_ptr<BlobStore> store_;
};

TEST_F(BlobStoreTest, StalePartialsAreRemovedButNotOnesBeingWrittenOrRecentlyWritten) {
  const int64_t now = UnixMillis();
  const int64_t cutoff = now - 24 * kHour;
  const std::string by_digest = Sha256Hex("a blob whose sender never came back");
  const std::string gone(32, '1'), recent(32, '2'), writing(32, '3');
  Begin(by_digest, "", "0123456789").reset();
  Begin("", gone, "streamed bytes").reset();
  Begin("", recent, "fresh bytes").reset();
  std::unique_ptr<BlobWriter> in_progress = Begin("", writing, "still coming");
  ASSERT_TRUE(in_progress);
  SetMtime(store_->PartialPathFor(by_digest), now - 48 * kHour);
  SetMtime(store_->PartialPathFor(BlobStore::UploadKey(gone)), now - 25 * kHour);
  SetMtime(store_->PartialPathFor(BlobStore::UploadKey(writing)), now - 48 * kHour);
  // Not a partial upload's name: never listed, never removed.
  ASSERT_TRUE(WriteFileAtomic(root_ + "/blobs/partial/notes.txt", "x").ok());
  SetMtime(root_ + "/blobs/partial/notes.txt", now - 48 * kHour);

  auto partials = store_->ListPartials();
  ASSERT_TRUE(partials.ok()) << partials.status();
  EXPECT_EQ(Keys(*partials), (std::vector<std::string>{by_digest, BlobStore::UploadKey(gone),
                                                       BlobStore::UploadKey(recent)}))
      << "the upload in progress is not listed";
  for (const auto& p : *partials) {
    if (p.key == by_digest) {
      EXPECT_EQ(p.size, 10u);
      EXPECT_NEAR(static_cast<double>(p.last_used_ms), static_cast<double>(now - 48 * kHour), 1000.0);
    }
  }

  EXPECT_TRUE(Removed(store_->RemovePartial(by_digest, cutoff)));
  EXPECT_TRUE(Removed(store_->RemovePartial(BlobStore::UploadKey(gone), cutoff)));
  EXPECT_FALSE(Removed(store_->RemovePartial(BlobStore::UploadKey(recent), cutoff))) << "written just now";
  EXPECT_FALSE(Removed(store_->RemovePartial(BlobStore::UploadKey(writing), cutoff))) << "an upload is writing it";
  EXPECT_FALSE(Removed(store_->RemovePartial(by_digest, cutoff))) << "already gone";
  EXPECT_TRUE(absl::IsInvalidArgument(store_->RemovePartial("notes.txt", cutoff).status()));
  EXPECT_TRUE(absl::IsInvalidArgument(store_->RemovePartial("../../etc/passwd", cutoff).status()));
  EXPECT_FALSE(FileExists(store_->PartialPathFor(by_digest)));
  EXPECT_FALSE(FileExists(store_->PartialPathFor(BlobStore::UploadKey(gone))));
  EXPECT_TRUE(FileExists(store_->PartialPathFor(BlobStore::UploadKey(recent))));
  EXPECT_TRUE(FileExists(store_->PartialPathFor(BlobStore::UploadKey(writing))));
  EXPECT_TRUE(FileExists(root_ + "/blobs/partial/notes.txt"));

  // A reader of the removed streaming upload learns it will not be stored.
  auto followed = store_->FollowUpload(gone);
  ASSERT_TRUE(followed.ok()) << followed.status();
  EXPECT_EQ(followed->state, UploadProgress::State::kFailed);
  EXPECT_NE(followed->error.find("removed"), std::string::npos) << followed->error;

  // The upload in progress ends normally once its writer is done.
  v1::UploadTrailer t;
  t.set_digest(Sha256Hex("still coming"));
  t.set_size(12);
  ASSERT_TRUE(in_progress->FinishStreaming(t).ok());
  in_progress.reset();
  EXPECT_TRUE(store_->Exists(Sha256Hex("still coming")));

  // A sender that resumes a removed partial is told to start over, and can.
  v1::UploadHeader resume;
  resume.set_digest(by_digest);
  resume.set_size(1000);
  resume.set_offset(10);
  EXPECT_TRUE(absl::IsFailedPrecondition(store_->BeginUpload(resume).status()));
  resume.set_offset(0);
  EXPECT_TRUE(store_->BeginUpload(resume).ok());
}

TEST_F(BlobStoreTest, AnAbandonedUploadFailsForItsReadersUnlessItIsStored) {
  const std::string running(32, '4'), stored(32, '5'), not_begun(32, '6');
  std::unique_ptr<BlobWriter> writer = Begin("", running, "half of it");
  ASSERT_TRUE(writer);
  std::unique_ptr<BlobWriter> done = Begin("", stored, "all of it");
  ASSERT_TRUE(done);
  v1::UploadTrailer t;
  t.set_digest(Sha256Hex("all of it"));
  t.set_size(9);
  ASSERT_TRUE(done->FinishStreaming(t).ok());
  done.reset();

  store_->AbandonUpload(running, "attempt 1 of build b-1 ended JOB_STATE_FAILED");
  store_->AbandonUpload(stored, "attempt 1 of build b-1 ended JOB_STATE_FAILED");
  store_->AbandonUpload(not_begun, "attempt 1 of build b-1 ended JOB_STATE_FAILED");
  store_->AbandonUpload("../../etc", "not an upload id: ignored");

  auto p = store_->FollowUpload(running);
  ASSERT_TRUE(p.ok()) << p.status();
  EXPECT_EQ(p->state, UploadProgress::State::kFailed) << "its writer is still connected";
  EXPECT_EQ(p->error, "attempt 1 of build b-1 ended JOB_STATE_FAILED");
  // More bytes from the sender do not make it followable again.
  ASSERT_TRUE(writer->Write(" and more").ok());
  EXPECT_EQ(store_->FollowUpload(running)->state, UploadProgress::State::kFailed);

  p = store_->FollowUpload(stored);
  ASSERT_TRUE(p.ok()) << p.status();
  EXPECT_EQ(p->state, UploadProgress::State::kStored) << "a stored upload stays readable";
  EXPECT_EQ(p->digest, Sha256Hex("all of it"));

  // A reader waiting for an upload whose first bytes never came learns it failed instead of NOT_FOUND.
  p = store_->FollowUpload(not_begun);
  ASSERT_TRUE(p.ok()) << p.status();
  EXPECT_EQ(p->state, UploadProgress::State::kFailed);
}

TEST_F(BlobStoreTest, StoredBlobsAreListedWithTheirLastTouchWhichOutlivesARestart) {
  const int64_t now = UnixMillis();
  const std::string old_data = "stored two days ago";
  const std::string new_data = "stored a minute ago";
  const std::string old_digest = Sha256Hex(old_data);
  const std::string new_digest = Sha256Hex(new_data);
  ASSERT_TRUE(Begin(old_digest, "", old_data, old_data.size())->Finish().ok());
  ASSERT_TRUE(Begin(new_digest, "", new_data, new_data.size())->Finish().ok());
  Begin(Sha256Hex("partial"), "", "par").reset();  // a partial is not a stored blob
  SetMtime(store_->PathFor(old_digest), now - 48 * kHour);
  SetMtime(store_->PathFor(new_digest), now - 60 * 1000);
  ASSERT_TRUE(MakeDirs(root_ + "/blobs/ab").ok());
  ASSERT_TRUE(WriteFileAtomic(root_ + "/blobs/ab/not-a-digest", "x").ok());

  // A restarted store has only the files' times.
  BlobStore restarted(root_ + "/blobs");
  auto stored = restarted.ListStored();
  ASSERT_TRUE(stored.ok()) << stored.status();
  ASSERT_EQ(Keys(*stored), (std::vector<std::string>{std::min(old_digest, new_digest), std::max(old_digest, new_digest)}));
  for (const auto& b : *stored) {
    const bool is_old = b.key == old_digest;
    EXPECT_EQ(b.size, (is_old ? old_data : new_data).size());
    EXPECT_NEAR(static_cast<double>(b.last_used_ms), static_cast<double>(is_old ? now - 48 * kHour : now - 60 * 1000),
                1000.0);
  }

  // A Stat is a use: the old blob is now recent and Remove keeps it.
  ASSERT_TRUE(restarted.Stat(old_digest).ok());
  stored = restarted.ListStored();
  ASSERT_TRUE(stored.ok());
  for (const auto& b : *stored) {
    if (b.key == old_digest) {
      EXPECT_GE(b.last_used_ms, now);
    }
  }
  EXPECT_FALSE(Removed(restarted.Remove(old_digest, now - 24 * kHour)));
  EXPECT_TRUE(FileExists(restarted.PathFor(old_digest)));
  SetMtime(restarted.PathFor(new_digest), now - 48 * kHour);
  BlobStore again(root_ + "/blobs");
  EXPECT_TRUE(Removed(again.Remove(new_digest, now - 24 * kHour)));
  EXPECT_FALSE(FileExists(again.PathFor(new_digest)));
}

}  // namespace
}  // namespace freeagent::controller::testing
