// Client channels to the controller, configured the same way by every client (worker, CLI, tests):
// keepalive so a dead controller is noticed in seconds (protocol rule 7), the 8 MiB message limit, and
// the connection's security (TLS or explicit plaintext, an optional client certificate, a bearer token).
#pragma once

#include <memory>
#include <string>

#include <grpcpp/channel.h>
#include <grpcpp/support/channel_arguments.h>

#include "absl/status/statusor.h"

namespace freeagent::proto {

// Largest message either side accepts; blob and log chunks are at most 1 MiB.
inline constexpr int kMaxMessageBytes = 8 * 1024 * 1024;

// Environment variables shared by the CLI and the worker.
inline constexpr char kTokenEnv[] = "FREEAGENT_TOKEN";

// How a client reaches the controller.
struct ChannelSecurity {
  bool insecure = false;     // plaintext; only when explicitly asked for (loopback demos, tests)
  std::string ca_file;       // PEM roots that verify the controller; empty: the system roots
  std::string cert_file;     // PEM client certificate for mutual TLS (workers); needs key_file
  std::string key_file;
  std::string server_name;   // overrides the name checked against the controller's certificate
  std::string token;         // bearer token sent on every call as "authorization: Bearer <token>"
};

// Keepalive and message-size arguments; callers may add their own before creating the channel.
grpc::ChannelArguments ControllerChannelArguments();

// A plaintext channel to `address` ("host:port") with ControllerChannelArguments(), no token.
std::shared_ptr<grpc::Channel> MakeControllerChannel(const std::string& address,
                                                     grpc::ChannelArguments args = ControllerChannelArguments());

// A channel with `security`. INVALID_ARGUMENT when a certificate file cannot be read or only half of
// a client key pair is given.
absl::StatusOr<std::shared_ptr<grpc::Channel>> MakeControllerChannel(
    const std::string& address, const ChannelSecurity& security,
    grpc::ChannelArguments args = ControllerChannelArguments());

// The token in `path` (surrounding whitespace removed). Tokens come from a file or the environment,
// never from a command line, where every local user could read them.
absl::StatusOr<std::string> ReadTokenFile(const std::string& path);

// The token to use: the file's when `path` is set, else $FREEAGENT_TOKEN, else empty.
absl::StatusOr<std::string> ResolveToken(const std::string& path);

}  // namespace freeagent::proto
