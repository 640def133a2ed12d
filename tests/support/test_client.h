// A small synchronous gRPC client for end-to-end tests and benchmarks: upload a source, submit,
// wait for states, read logs through Watch, download blobs.
#pragma once

#include <chrono>
#include <functional>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include <grpcpp/channel.h>

#include "absl/status/statusor.h"
#include "freeagent/v1/blob.grpc.pb.h"
#include "freeagent/v1/build.grpc.pb.h"
#include "freeagent/v1/fleet.grpc.pb.h"

namespace freeagent::testing {

// A spec with the given (name, run) steps.
freeagent::v1::JobSpec MakeSpec(const std::string& source_digest,
                                const std::vector<std::pair<std::string, std::string>>& steps);

bool IsTerminal(freeagent::v1::JobState state);

class TestClient {
 public:
  explicit TestClient(const std::string& address);

  // Re-dials (after a controller restart on another port).
  void Connect(const std::string& address);

  absl::StatusOr<std::string> UploadBytes(const std::string& bytes);
  // Packs `dir` (tar.gz) and uploads it; the digest.
  absl::StatusOr<std::string> UploadDirectory(const std::string& dir);
  // A source with one small file, for steps that need no project.
  absl::StatusOr<std::string> UploadTrivialSource(const std::string& scratch_dir);

  absl::StatusOr<freeagent::v1::Build> Submit(const freeagent::v1::JobSpec& spec);
  absl::StatusOr<freeagent::v1::Build> Get(const std::string& id);
  absl::StatusOr<freeagent::v1::Build> Cancel(const std::string& id);
  absl::StatusOr<std::vector<freeagent::v1::Build>> List();
  absl::StatusOr<std::vector<freeagent::v1::WorkerInfo>> Workers();

  // Polls Get every 20 ms until `done(build)` or `timeout` (DEADLINE_EXCEEDED with the last state).
  absl::StatusOr<freeagent::v1::Build> WaitFor(
      const std::string& id, const std::function<bool(const freeagent::v1::Build&)>& done,
      std::chrono::milliseconds timeout);
  absl::StatusOr<freeagent::v1::Build> WaitForTerminal(const std::string& id,
                                                       std::chrono::milliseconds timeout);
  // Waits until ListWorkers shows `count` ONLINE workers.
  absl::Status WaitForWorkers(size_t count, std::chrono::milliseconds timeout);

  // Watch from `offset` until the stream ends: the log bytes of the attempt it reports, in order.
  // Fails on a gap or overlap so a test sees protocol errors, not just wrong bytes.
  absl::StatusOr<std::string> ReadLog(const std::string& id, uint64_t offset = 0);

  absl::StatusOr<std::string> DownloadBlob(const std::string& digest, uint64_t offset = 0);

  freeagent::v1::BuildService::Stub* builds() { return builds_.get(); }
  freeagent::v1::BlobService::Stub* blobs() { return blobs_.get(); }
  freeagent::v1::FleetService::Stub* fleet() { return fleet_.get(); }

 private:
  std::shared_ptr<grpc::Channel> channel_;
  std::unique_ptr<freeagent::v1::BuildService::Stub> builds_;
  std::unique_ptr<freeagent::v1::BlobService::Stub> blobs_;
  std::unique_ptr<freeagent::v1::FleetService::Stub> fleet_;
};

}  // namespace freeagent::testing
