// Content-addressed blob storage on disk: <dir>/<first 2 hex>/<sha256>. Uploads go to
// <dir>/partial/<sha256>, are verified against the digest and only then renamed into place, so a
// stored blob always matches its name. A partial upload is kept for resuming from its size.
// A streaming upload (digest unknown until its last byte) goes to <dir>/partial/upload-<upload_id>
// and is stored under the digest its trailer names once the bytes hash to it. A streaming upload can be
// read while it is written (FollowUpload): readers follow the partial file up to the bytes written and
// learn at the end whether it was stored (and as which digest) or abandoned.
#pragma once

#include <chrono>
#include <cstdint>
#include <map>
#include <memory>
#include <mutex>
#include <set>
#include <string>
#include <string_view>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "common/sha256.h"
#include "freeagent/v1/blob.pb.h"

namespace freeagent::controller {

class BlobStore;

// One upload in progress. Not thread-safe (one per stream); releases its claim on destruction.
class BlobWriter {
 public:
  ~BlobWriter();
  BlobWriter(const BlobWriter&) = delete;
  BlobWriter& operator=(const BlobWriter&) = delete;

  // Appends the next chunk. INVALID_ARGUMENT when it goes past the announced size.
  absl::Status Write(std::string_view data);
  // Verifies size and digest and stores the blob. DATA_LOSS on a digest mismatch (the partial is
  // removed, nothing is stored); FAILED_PRECONDITION when fewer bytes than announced arrived (the
  // partial is kept for a resume).
  absl::StatusOr<v1::BlobInfo> Finish();

  // Streaming uploads: the trailer names the digest and size the bytes must have. Stores the blob
  // (or, when it is stored already, drops the partial). DATA_LOSS on a mismatch (partial removed).
  // An empty trailer digest abandons the upload: CANCELLED, the partial is removed.
  absl::StatusOr<v1::BlobInfo> FinishStreaming(const v1::UploadTrailer& trailer);

  bool streaming() const { return !upload_id_.empty(); }

 private:
  friend class BlobStore;
  BlobWriter(BlobStore* store, std::string digest, uint64_t size) : store_(store), digest_(std::move(digest)), size_(size) {}
  absl::StatusOr<v1::BlobInfo> FinishStreamingInner(const v1::UploadTrailer& trailer);
  // Stores the verified partial as `digest` (rename, or drop it when the blob exists already).
  absl::StatusOr<v1::BlobInfo> Commit(const std::string& partial, const std::string& digest);

  BlobStore* store_;
  std::string digest_;     // empty for a streaming upload until its trailer
  std::string upload_id_;  // streaming uploads only
  std::string key_;        // digest_ or UploadKey(upload_id_): names the partial and the claim
  uint64_t size_;
  uint64_t received_ = 0;  // bytes of the blob so far, including a resumed prefix
  uint64_t written_back_ = 0;  // bytes whose writeback to disk has been started (StartWriteback)
  bool discard_ = false;   // the blob exists already: take the bytes, store nothing
  int fd_ = -1;
  Sha256 hash_;
};

// What a reader of a streaming upload may do next (BlobStore::FollowUpload).
struct UploadProgress {
  enum class State { kRunning, kStored, kFailed };
  State state = State::kRunning;
  uint64_t written = 0;     // bytes of the partial that are written and may be read
  bool sender_connected = false;
  int64_t last_change_ms = 0;  // Unix ms of the last byte written or state change
  std::string digest;       // kStored: the verified digest, readable at PathFor(digest)
  uint64_t size = 0;        // kStored
  std::string error;        // kFailed: why nothing was stored
};

class BlobStore {
 public:
  explicit BlobStore(std::string dir) : dir_(std::move(dir)) {}

  // How long a reader of a streaming upload waits for an upload that has not started yet, and for one
  // that stopped growing while no sender is connected, before it gives up.
  struct FollowLimits {
    std::chrono::milliseconds start_wait{std::chrono::seconds(30)};
    std::chrono::milliseconds idle{std::chrono::minutes(5)};
  };
  void set_follow_limits(FollowLimits limits) { follow_limits_ = limits; }
  const FollowLimits& follow_limits() const { return follow_limits_; }

  absl::Status Init();

  // INVALID_ARGUMENT "<field> is not a sha256 hex digest" unless 64 lowercase hex characters.
  static absl::Status ValidateDigest(std::string_view digest, std::string_view field = "digest");

  absl::StatusOr<v1::BlobInfo> Stat(const std::string& digest);
  // The partial size of streaming upload `upload_id` (0 when there is none).
  absl::StatusOr<v1::BlobInfo> StatUpload(const std::string& upload_id);
  bool Exists(const std::string& digest);

  // The largest blob accepted (a source archive, an .ipa with its dSYMs): far above any real build
  // output, it keeps one upload from filling the controller's disk by accident or on purpose.
  static constexpr uint64_t kMaxBlobBytes = uint64_t{20} << 30;

  // Starts (offset 0) or resumes (offset = partial size) an upload, by digest or, for a streaming
  // upload, by upload_id. FAILED_PRECONDITION when the offset does not match the partial, ABORTED when
  // another upload of the digest (upload_id) is running, RESOURCE_EXHAUSTED when the announced size is
  // above kMaxBlobBytes.
  absl::StatusOr<std::unique_ptr<BlobWriter>> BeginUpload(const v1::UploadHeader& header);

  // Removes the stored blob `digest` unless a Stat, Exists or upload touched it at or after
  // `unless_touched_since_ms` (Unix ms): a blob a running build has just found or stored stays. True
  // when it was removed; false when it was kept or absent. Retention's only way to delete a blob.
  // The last touch of a stored blob is its file's mtime, so it survives a controller restart.
  absl::StatusOr<bool> Remove(const std::string& digest, int64_t unless_touched_since_ms);

  // A file of the store as retention sees it (ListPartials, ListStored).
  struct FileInfo {
    std::string key;          // the digest; for a partial of a streaming upload UploadKey(upload_id)
    uint64_t size = 0;
    int64_t last_used_ms = 0;  // Unix ms: a partial's last write (its mtime), a stored blob's last touch
  };
  // The partial uploads no upload is writing now. Files with other names are left out.
  absl::StatusOr<std::vector<FileInfo>> ListPartials();
  // Every stored blob.
  absl::StatusOr<std::vector<FileInfo>> ListStored();
  // Removes partial upload `key` (as ListPartials names it) unless an upload of it is running or it
  // was written at or after `unless_written_since_ms` (Unix ms). True when it was removed. A reader
  // following the streaming upload then learns it failed; its sender, if it ever returns, starts over.
  absl::StatusOr<bool> RemovePartial(const std::string& key, int64_t unless_written_since_ms);

  // The state of streaming upload `upload_id` for a reader following it. NOT_FOUND when the store has
  // neither a record nor a partial of it (it may not have started yet; see FollowLimits::start_wait).
  // After a restart an upload with a partial and no record reads as running with no sender.
  absl::StatusOr<UploadProgress> FollowUpload(const std::string& upload_id);

  // Streaming upload `upload_id` will not be used (the build attempt it belongs to has ended): unless
  // it is already stored, its readers learn now that it failed, with `why`, instead of waiting for
  // bytes that will never come. The sender, if still connected, is not cut off; what it stores is
  // simply not followed.
  void AbandonUpload(const std::string& upload_id, const std::string& why);

  std::string PathFor(const std::string& digest) const;
  // `key`: a digest, or UploadKey(upload_id) for a streaming upload.
  std::string PartialPathFor(const std::string& key) const;
  // "upload-<upload_id>": names a streaming upload's partial and claim.
  static std::string UploadKey(const std::string& upload_id) { return "upload-" + upload_id; }

 private:
  friend class BlobWriter;
  // The writer of `key` (and of streaming upload `upload_id`, empty for an upload by digest) is gone.
  void EndUpload(const std::string& key, const std::string& upload_id);
  // Streaming upload records for readers (FollowUpload). Ended records are kept for a while, then pruned.
  void NoteUploadStarted(const std::string& upload_id, uint64_t written);
  void NoteUploadWritten(const std::string& upload_id, uint64_t written);
  void NoteUploadEnded(const std::string& upload_id, const absl::StatusOr<v1::BlobInfo>& outcome);
  // Records that `digest` was looked at or written now (for Remove): in memory, and as the stored
  // blob's mtime when it exists (the durable copy a restarted controller reads).
  void Touch(const std::string& digest);
  // The last touch of `digest` in Unix ms (the newer of memory and the stored file's mtime); 0 if none.
  // Called with mu_ held.
  int64_t LastTouchLocked(const std::string& digest) const;

  const std::string dir_;
  std::mutex mu_;
  std::set<std::string> uploading_;
  std::map<std::string, int64_t> touched_ms_;  // last Stat/Exists/upload per digest since start, Unix ms
  std::map<std::string, UploadProgress> uploads_;  // streaming uploads by upload_id, under mu_
  FollowLimits follow_limits_;
};

}  // namespace freeagent::controller
