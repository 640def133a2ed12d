// Moving files to and from the controller's content-addressed blob store (BlobService): 1 MiB chunks,
// sha256 verified, uploads resume from the partial size Stat reports. BlobClient is the interface the
// worker uses (fakes in tests); GrpcBlobClient talks to a real controller. UploadGrowing sends a file
// while another thread is still writing it (an artifact being downloaded from the guest), so the two
// transfers overlap instead of running one after the other.
#pragma once

#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <functional>
#include <memory>
#include <mutex>
#include <string>

#include <grpcpp/channel.h>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "common/cancellation.h"
#include "freeagent/v1/blob.grpc.pb.h"
#include "vm/guest.h"

namespace freeagent::artifacts {

inline constexpr size_t kBlobChunkBytes = 1 << 20;

// A host file one thread writes (a download) while another reads it (an upload). The writer appends
// only, then calls Finish (with what it wrote) or Fail exactly once. Thread-safe.
class GrowingFile {
 public:
  struct State {
    bool ended = false;   // Finish or Fail was called
    bool failed = false;  // Fail: the file is incomplete and may be gone
    uint64_t size = 0;    // after Finish
    std::string sha256;   // after Finish
  };
  void Finish(uint64_t size, std::string sha256);
  void Fail();
  State Get() const;
  // Waits until the writer ended or `wait` passed; the state then.
  State WaitForEnd(std::chrono::milliseconds wait) const;

 private:
  mutable std::mutex mu_;
  mutable std::condition_variable cv_;
  State state_;
};

class BlobClient {
 public:
  virtual ~BlobClient() = default;

  // Stores the host file `local_path` whose sha256 is `digest` and size `size`. A blob that already
  // exists is not sent again. DATA_LOSS if the store disagrees with the digest.
  virtual absl::Status UploadFile(const std::string& local_path, const std::string& digest, uint64_t size,
                                  const CancellationToken& cancel) = 0;

  // Fetches blob `digest` into the host file `local_path` (mode 0600) and verifies the sha256
  // (DATA_LOSS and no file on mismatch). NOT_FOUND if the store lacks it.
  virtual absl::StatusOr<vm::TransferResult> DownloadFile(const std::string& digest, const std::string& local_path,
                                                          const CancellationToken& cancel) = 0;

  // Stores the host file `local_path` that `file`'s writer is still producing, as the blob the writer
  // reports at Finish. ABORTED when the writer fails (nothing is stored). This default waits for the
  // writer, then calls UploadFile; GrpcBlobClient sends the bytes as they are written.
  // `on_started`, when set, is called once with the upload's id as soon as the store has the upload,
  // so others can follow it (BlobService.Download by upload_id); the default never calls it.
  virtual absl::Status UploadGrowing(const std::string& local_path, const GrowingFile& file,
                                     const CancellationToken& cancel,
                                     const std::function<void(const std::string& upload_id)>& on_started);
  absl::Status UploadGrowing(const std::string& local_path, const GrowingFile& file, const CancellationToken& cancel) {
    return UploadGrowing(local_path, file, cancel, nullptr);
  }
};

// Uploads survive a lost controller connection: an interrupted upload (the controller restarted, the
// network dropped, another upload of the same blob still held by the controller) is retried with
// backoff for up to `retry_for`, each time resuming from the partial size the controller's Stat
// reports, so the bytes already stored are not sent again.
class GrpcBlobClient : public BlobClient {
 public:
  struct Options {
    std::chrono::milliseconds retry_for{std::chrono::minutes(5)};
    std::chrono::milliseconds first_backoff{200};
    std::chrono::milliseconds max_backoff{5000};
    // Told about each interruption and each resume ("... resumes at byte N of M"); may be null.
    std::function<void(const std::string& text)> on_retry;
  };
  explicit GrpcBlobClient(std::shared_ptr<grpc::Channel> channel);
  GrpcBlobClient(std::shared_ptr<grpc::Channel> channel, Options options);

  absl::Status UploadFile(const std::string& local_path, const std::string& digest, uint64_t size,
                          const CancellationToken& cancel) override;
  absl::StatusOr<vm::TransferResult> DownloadFile(const std::string& digest, const std::string& local_path,
                                                  const CancellationToken& cancel) override;
  // A streaming upload (an upload_id, the digest in the trailer) that resumes like UploadFile.
  absl::Status UploadGrowing(const std::string& local_path, const GrowingFile& file, const CancellationToken& cancel,
                             const std::function<void(const std::string& upload_id)>& on_started) override;
  using BlobClient::UploadGrowing;

 private:
  absl::StatusOr<freeagent::v1::BlobInfo> Stat(const freeagent::v1::StatRequest& request);
  // One streaming attempt from the partial size the controller holds for `upload_id`.
  absl::Status UploadGrowingOnce(const std::string& local_path, const GrowingFile& file, const std::string& upload_id,
                                 const CancellationToken& cancel, bool resumed, const std::function<void()>& on_header);
  // Retries `attempt` with backoff while it fails with a resumable error, for up to retry_for.
  absl::Status WithRetries(const std::string& what, const CancellationToken& cancel,
                           const std::function<absl::Status(bool resumed)>& attempt,
                           const std::function<bool()>& give_up_now);

  // One attempt: Stat, then send from the partial size on. `resumed` says whether it is a retry.
  absl::Status UploadOnce(const std::string& local_path, const std::string& digest, uint64_t size,
                          const CancellationToken& cancel, bool resumed);

  std::unique_ptr<freeagent::v1::BlobService::Stub> stub_;
  Options options_;
};

}  // namespace freeagent::artifacts
