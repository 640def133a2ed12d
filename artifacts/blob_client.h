// Moving files to and from the controller's content-addressed blob store (BlobService): 1 MiB chunks,
// sha256 verified, uploads resume from the partial size Stat reports. BlobClient is the interface the
// worker uses (fakes in tests); GrpcBlobClient talks to a real controller.
#pragma once

#include <chrono>
#include <cstdint>
#include <functional>
#include <memory>
#include <string>

#include <grpcpp/channel.h>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "common/cancellation.h"
#include "freeagent/v1/blob.grpc.pb.h"
#include "vm/guest.h"

namespace freeagent::artifacts {

inline constexpr size_t kBlobChunkBytes = 1 << 20;

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

 private:
  // One attempt: Stat, then send from the partial size on. `resumed` says whether it is a retry.
  absl::Status UploadOnce(const std::string& local_path, const std::string& digest, uint64_t size,
                          const CancellationToken& cancel, bool resumed);

  std::unique_ptr<freeagent::v1::BlobService::Stub> stub_;
  Options options_;
};

}  // namespace freeagent::artifacts
