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

absl::StatusOr<std::shared_ptr<grpc::Channel>> MakeChannel(const std::string& address, const ConnectionFlags& flags) {
  proto::ChannelSecurity security;
  const char* insecure = std::getenv("FREEAGENT_INSECURE");
  security.insecure = flags.insecure || (insecure != nullptr && std::string(insecure) == "1");
  security.ca_file = flags.ca_file;
  const char* ca = std::getenv("FREEAGENT_CA_FILE");
  if (security.ca_file.empty() && ca != nullptr) security.ca_file = ca;
  absl::StatusOr<std::string> token = proto::ResolveToken(flags.token_file);
  if (!token.ok()) return token.status();
  security.token = *token;
  return proto::MakeControllerChannel(address, security);
}

void SetUnaryDeadline(grpc::ClientContext* context) {
  context->set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(30));
}

}  // namespace freeagent::cli
