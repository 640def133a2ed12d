// Client channels to the controller, configured the same way by every client (worker, CLI, tests):
// keepalive so a dead controller is noticed in seconds (protocol rule 7), and the 8 MiB message limit.
#pragma once

#include <memory>
#include <string>

#include <grpcpp/channel.h>
#include <grpcpp/support/channel_arguments.h>

namespace freeagent::proto {

// Largest message either side accepts; blob and log chunks are at most 1 MiB.
inline constexpr int kMaxMessageBytes = 8 * 1024 * 1024;

// Keepalive and message-size arguments; callers may add their own before creating the channel.
grpc::ChannelArguments ControllerChannelArguments();

// A plaintext channel to `address` ("host:port") with ControllerChannelArguments().
std::shared_ptr<grpc::Channel> MakeControllerChannel(const std::string& address,
                                                     grpc::ChannelArguments args = ControllerChannelArguments());

}  // namespace freeagent::proto
