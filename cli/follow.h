// Following a build through BuildService.Watch: log bytes in order without gaps or repeats
// (also across attempts and reconnects), status changes and the worker's notes as short "==> " lines.
#pragma once

#include <cstdio>
#include <string>

#include "absl/status/statusor.h"
#include "freeagent/v1/build.grpc.pb.h"

namespace freeagent::cli {

struct FollowOptions {
  bool log = true;            // write log bytes raw to `log_out`
  bool status = true;         // write status and note lines to `status_out`
  bool json = false;          // write every event as a JSON line to `log_out` instead
  // Stop once the log holds this many bytes of `stop_attempt` (for `logs` without -f);
  // -1 = follow until the build ends.
  int64_t stop_at_log_size = -1;
  uint32_t stop_attempt = 0;
  std::FILE* log_out = stdout;
  std::FILE* status_out = stderr;
  // How long to keep retrying when the controller is unreachable mid-watch.
  int reconnect_seconds = 30;
};

// Watches build `id` from log offset 0 until it ends (or the stop condition), and returns its
// last known state. Errors are RPC errors (NOT_FOUND for an unknown build, ...).
absl::StatusOr<freeagent::v1::Build> FollowBuild(freeagent::v1::BuildService::StubInterface* builds,
                                                 const std::string& id,
                                                 const FollowOptions& options);

}  // namespace freeagent::cli
