// Builds the gRPC server around the controller core.
#include "controller/server.h"

#include <grpcpp/ext/proto_server_reflection_plugin.h>
#include <grpcpp/health_check_service_interface.h>
#include <grpcpp/security/server_credentials.h>
#include <grpcpp/server_builder.h>

#include "absl/strings/str_cat.h"
#include "common/status_macros.h"
#include "spdlog/spdlog.h"

namespace freeagent::controller {

absl::StatusOr<std::unique_ptr<ControllerServer>> ControllerServer::Start(ServerOptions options) {
  std::unique_ptr<ControllerServer> s(new ControllerServer());
  ASSIGN_OR_RETURN(s->controller_, Controller::Create(options.controller));
  s->worker_service_ = std::make_unique<WorkerServiceImpl>(s->controller_.get());
  s->build_service_ = std::make_unique<BuildServiceImpl>(s->controller_.get());
  s->fleet_service_ = std::make_unique<FleetServiceImpl>(s->controller_.get());
  s->blob_service_ = std::make_unique<BlobServiceImpl>(&s->controller_->blobs());

  grpc::EnableDefaultHealthCheckService(true);
  grpc::reflection::InitProtoReflectionServerBuilderPlugin();
  grpc::ServerBuilder builder;
  builder.AddListeningPort(options.listen, grpc::InsecureServerCredentials(), &s->port_);
  builder.SetMaxReceiveMessageSize(kMaxMessageBytes);
  builder.SetMaxSendMessageSize(kMaxMessageBytes);
  // Dead workers and watchers are noticed in seconds, not after the TCP default.
  builder.AddChannelArgument(GRPC_ARG_KEEPALIVE_TIME_MS, 10000);
  builder.AddChannelArgument(GRPC_ARG_KEEPALIVE_TIMEOUT_MS, 5000);
  builder.AddChannelArgument(GRPC_ARG_KEEPALIVE_PERMIT_WITHOUT_CALLS, 1);
  builder.AddChannelArgument(GRPC_ARG_HTTP2_MIN_RECV_PING_INTERVAL_WITHOUT_DATA_MS, 5000);
  builder.AddChannelArgument(GRPC_ARG_HTTP2_MAX_PING_STRIKES, 0);
  builder.RegisterService(s->worker_service_.get());
  builder.RegisterService(s->build_service_.get());
  builder.RegisterService(s->fleet_service_.get());
  builder.RegisterService(s->blob_service_.get());
  s->server_ = builder.BuildAndStart();
  if (!s->server_ || s->port_ == 0) {
    s->controller_->Stop();
    return absl::UnavailableError(absl::StrCat("cannot listen on ", options.listen));
  }
  spdlog::info("controller serving on {} (port {}), data in {}", options.listen, s->port_,
               options.controller.data_dir);
  return s;
}

ControllerServer::~ControllerServer() { Shutdown(); }

void ControllerServer::Shutdown(std::chrono::milliseconds grace) {
  if (shut_down_) return;
  shut_down_ = true;
  // Worker streams end first (workers reconnect elsewhere or later); then open calls get `grace`.
  controller_->Stop();
  if (server_) {
    server_->Shutdown(std::chrono::system_clock::now() + grace);
    server_->Wait();
  }
  spdlog::info("controller stopped");
}

}  // namespace freeagent::controller
