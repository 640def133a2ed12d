// A running controller: the core plus a gRPC server with every service, health checking and
// reflection. Used by main and by the tests (listen on 127.0.0.1:0 and read port()).
#pragma once

#include <chrono>
#include <memory>
#include <string>

#include <grpcpp/server.h>

#include "absl/status/statusor.h"
#include "controller/auth.h"
#include "controller/controller.h"
#include "controller/services.h"

namespace freeagent::controller {

struct ServerOptions {
  std::string listen = "127.0.0.1:7070";
  ControllerOptions controller;
  // TLS and tokens; Start refuses plaintext unless security.insecure is set.
  SecurityOptions security;
};

// The most a single message may be, either way (chunks are at most 1 MiB).
inline constexpr int kMaxMessageBytes = 8 * 1024 * 1024;

class ControllerServer {
 public:
  // Opens the data dir and starts serving. UNAVAILABLE when the address cannot be bound;
  // INVALID_ARGUMENT for bad security settings (see Authorizer::Create) or unreadable certificates.
  static absl::StatusOr<std::unique_ptr<ControllerServer>> Start(ServerOptions options);
  ~ControllerServer();

  int port() const { return port_; }
  Controller& controller() { return *controller_; }
  const Authorizer& auth() const { return *auth_; }

  // Stops accepting calls, ends streams, waits up to `grace` for calls to finish. Idempotent.
  void Shutdown(std::chrono::milliseconds grace = std::chrono::seconds(5));

 private:
  ControllerServer() = default;

  std::unique_ptr<Controller> controller_;
  std::unique_ptr<Authorizer> auth_;
  std::unique_ptr<WorkerServiceImpl> worker_service_;
  std::unique_ptr<BuildServiceImpl> build_service_;
  std::unique_ptr<FleetServiceImpl> fleet_service_;
  std::unique_ptr<BlobServiceImpl> blob_service_;
  std::unique_ptr<grpc::Server> server_;
  int port_ = 0;
  bool shut_down_ = false;
};

}  // namespace freeagent::controller
