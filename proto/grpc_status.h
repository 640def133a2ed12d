// Conversion between absl::Status (used everywhere inside Free Agent) and grpc::Status (used only at
// the RPC edge). The canonical codes are numerically identical in both.
#pragma once

#include <grpcpp/support/status.h>

#include "absl/status/status.h"

namespace freeagent::proto {

// Same code and message. OK maps to OK.
grpc::Status ToGrpcStatus(const absl::Status& status);

// Same code and message.
absl::Status FromGrpcStatus(const grpc::Status& status);

}  // namespace freeagent::proto
