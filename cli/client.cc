#include "cli/client.h"

#include <chrono>
#include <cstdlib>

#include "proto/channel.h"

namespace freeagent::cli {

std::string ResolveControllerAddress(const std::string& flag) {
  if (!flag.empty()) return flag;
  const char* env = std::getenv("FREEAGENT_CONTROLLER");
  if (env != nullptr && env[0] != '\0') return env;
  return kDefaultController;
}

std::shared_ptr<grpc::Channel> MakeChannel(const std::string& address) {
  return proto::MakeControllerChannel(address);
}

void SetUnaryDeadline(grpc::ClientContext* context) {
  context->set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(30));
}

}  // namespace freeagent::cli
