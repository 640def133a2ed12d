// Connection to a Free Agent controller for the CLI: address resolution and a channel configured
// like every other Free Agent peer (keepalive, 8 MiB message limit).
#pragma once

#include <memory>
#include <string>

#include <grpcpp/channel.h>
#include <grpcpp/client_context.h>

#include "absl/status/statusor.h"

namespace freeagent::cli {

inline constexpr char kDefaultController[] = "127.0.0.1:7070";

// The address to dial: `flag` if set, else $FREEAGENT_CONTROLLER if set, else kDefaultController.
std::string ResolveControllerAddress(const std::string& flag);

// How to reach the controller; each unset field falls back to its environment variable.
struct ConnectionFlags {
  bool insecure = false;   // else $FREEAGENT_INSECURE=1
  std::string ca_file;     // else $FREEAGENT_CA_FILE, else the system roots
  std::string token_file;  // else the token in $FREEAGENT_TOKEN (never a flag value: argv is public)
};

// A TLS channel (plaintext only when asked for) carrying the client token, with keepalive (10 s
// ping, 5 s timeout, also without calls) so a dead controller is noticed in seconds, and the
// project's 8 MiB message limit. INVALID_ARGUMENT when a named file cannot be read.
absl::StatusOr<std::shared_ptr<grpc::Channel>> MakeChannel(const std::string& address,
                                                           const ConnectionFlags& flags);

// Applies the deadline used for unary calls (30 s): no CLI command waits forever on a lost peer.
void SetUnaryDeadline(grpc::ClientContext* context);

}  // namespace freeagent::cli
