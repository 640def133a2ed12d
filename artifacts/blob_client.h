// Moving files to and from the controller's content-addressed blob store (BlobService): 1 MiB chunks,
// sha256 verified, uploads resume from the partial size Stat reports. BlobClient is the interface the
// worker uses (fakes in tests); GrpcBlobClient talks to a real controller.
#pragma once

#include <cstdint>
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

class GrpcBlobClient : public BlobClient {
 public:
  explicit GrpcBlobClient(std::shared_ptr<grpc::Channel> channel);

  absl::Status UploadFile(const std::string& local_path, const std::string& digest, uint64_t size,
                          const CancellationToken& cancel) override;
  absl::StatusOr<vm::TransferResult> DownloadFile(const std::string& digest, const std::string& local_path,
                                                  const CancellationToken& cancel) override;

 private:
  std::unique_ptr<freeagent::v1::BlobService::Stub> stub_;
};

}  // namespace freeagent::artifacts
