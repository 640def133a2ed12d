// The `freeagent` commands. Each returns the process exit code: 0 success, 1 a build that did not
// succeed (submit --follow, watch), 2 usage or RPC errors (returned as a Status and printed by
// the caller as "freeagent: <code>: <message>").
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include <grpcpp/channel.h>

#include "absl/status/statusor.h"
#include "cli/project.h"
#include "cli/signing_check.h"

namespace freeagent::cli {

inline constexpr int kExitOk = 0;
inline constexpr int kExitBuildFailed = 1;
inline constexpr int kExitError = 2;

struct SubmitOptions {
  std::string dir = ".";
  SubmitOverrides overrides;
  bool follow = false;
  std::string download_dir;  // empty = no download
  bool force = false;
  bool json = false;
  SigningCheckOptions signing;  // --p12 etc.; empty p12 = no signing material
};

class Commands {
 public:
  explicit Commands(std::shared_ptr<grpc::Channel> channel) : channel_(std::move(channel)) {}

  absl::StatusOr<int> Submit(const SubmitOptions& options);
  absl::StatusOr<int> Watch(const std::string& id, bool json);
  absl::StatusOr<int> Logs(const std::string& id, bool follow);
  absl::StatusOr<int> Show(const std::string& id, bool json);
  absl::StatusOr<int> List(const std::vector<std::string>& states, uint32_t limit, bool json);
  absl::StatusOr<int> Cancel(const std::string& id, const std::string& reason, bool json);
  absl::StatusOr<int> Artifacts(const std::string& id, const std::string& dir, bool force,
                                bool json);
  absl::StatusOr<int> Workers(bool json);
  absl::StatusOr<int> Drain(const std::string& worker, uint32_t timeout_seconds, bool json);
  // Prints what artifact retention would remove, or removes it with `apply`.
  absl::StatusOr<int> Gc(bool apply, bool json);

 private:
  std::shared_ptr<grpc::Channel> channel_;
};

}  // namespace freeagent::cli
