// An in-memory BlobClient for worker tests that need no controller.
#pragma once

#include <map>
#include <mutex>
#include <string>

#include "artifacts/blob_client.h"
#include "common/fs.h"
#include "common/sha256.h"

namespace freeagent::node::testing {

class MemoryBlobs : public artifacts::BlobClient {
 public:
  absl::Status UploadFile(const std::string& local_path, const std::string& digest, uint64_t size,
                          const CancellationToken&) override {
    auto data = ReadFile(local_path);
    if (!data.ok()) return data.status();
    if (Sha256Hex(*data) != digest || data->size() != size) return absl::DataLossError("digest mismatch");
    std::lock_guard<std::mutex> lock(mu_);
    blobs_[digest] = *data;
    return absl::OkStatus();
  }
  absl::StatusOr<vm::TransferResult> DownloadFile(const std::string& digest, const std::string& local_path,
                                                  const CancellationToken&) override {
    std::string data;
    {
      std::lock_guard<std::mutex> lock(mu_);
      auto it = blobs_.find(digest);
      if (it == blobs_.end()) return absl::NotFoundError("blob " + digest + " not found");
      data = it->second;
    }
    absl::Status s = WriteFileAtomic(local_path, data, 0600);
    if (!s.ok()) return s;
    return vm::TransferResult{data.size(), Sha256Hex(data)};
  }
  std::string Put(const std::string& data) {
    std::string digest = Sha256Hex(data);
    std::lock_guard<std::mutex> lock(mu_);
    blobs_[digest] = data;
    return digest;
  }
  bool Has(const std::string& digest) {
    std::lock_guard<std::mutex> lock(mu_);
    return blobs_.count(digest) != 0;
  }
  std::string Get(const std::string& digest) {
    std::lock_guard<std::mutex> lock(mu_);
    return blobs_[digest];
  }

 private:
  std::mutex mu_;
  std::map<std::string, std::string> blobs_;
};

}  // namespace freeagent::node::testing
