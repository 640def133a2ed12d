// Builds the gRPC server around the controller core.
#include "controller/server.h"

#include <grpcpp/ext/proto_server_reflection_plugin.h>
#include <grpcpp/health_check_service_interface.h>
#include <grpcpp/security/server_credentials.h>
#include <grpcpp/server_builder.h>

#include "absl/strings/str_cat.h"
#include "common/fs.h"
#include "common/status_macros.h"
#include "spdlog/spdlog.h"

namespace freeagent::controller {
namespace {

absl::StatusOr<std::string> ReadPem(const std::string& path, const char* what) {
  absl::StatusOr<std::string> text = ReadFile(path);
  if (!text.ok()) return absl::InvalidArgumentError(absl::StrCat(what, " ", path, ": ", text.status().message()));
  if (text->empty()) return absl::InvalidArgumentError(absl::StrCat(what, " ", path, " is empty"));
  return text;
}

// TLS when a certificate is configured (verifying client certificates against client_ca when set),
// plaintext only when explicitly allowed (Authorizer::Create has checked that).
absl::StatusOr<std::shared_ptr<grpc::ServerCredentials>> ServerCredentials(const SecurityOptions& o) {
  if (o.tls_cert_file.empty() && o.tls_key_file.empty()) return grpc::InsecureServerCredentials();
  if (o.tls_cert_file.empty() || o.tls_key_file.empty()) {
    return absl::InvalidArgumentError("TLS needs both tls_cert and tls_key");
  }
  grpc::SslServerCredentialsOptions ssl(GRPC_SSL_DONT_REQUEST_CLIENT_CERTIFICATE);
  grpc::SslServerCredentialsOptions::PemKeyCertPair pair;
  ASSIGN_OR_RETURN(pair.cert_chain, ReadPem(o.tls_cert_file, "tls_cert"));
  ASSIGN_OR_RETURN(pair.private_key, ReadPem(o.tls_key_file, "tls_key"));
  ssl.pem_key_cert_pairs.push_back(std::move(pair));
  if (!o.client_ca_file.empty()) {
    ASSIGN_OR_RETURN(ssl.pem_root_certs, ReadPem(o.client_ca_file, "client_ca"));
    // Clients (the CLI) may come without a certificate; one that is presented must verify, and the
    // worker API demands one (Authorizer::Check).
    ssl.client_certificate_request = GRPC_SSL_REQUEST_CLIENT_CERTIFICATE_AND_VERIFY;
  }
  return grpc::SslServerCredentials(ssl);
}

}  // namespace

absl::StatusOr<std::unique_ptr<ControllerServer>> ControllerServer::Start(ServerOptions options) {
  ASSIGN_OR_RETURN(Authorizer auth, Authorizer::Create(options.security));
  ASSIGN_OR_RETURN(std::shared_ptr<grpc::ServerCredentials> creds, ServerCredentials(options.security));
  std::unique_ptr<ControllerServer> s(new ControllerServer());
  s->auth_ = std::make_unique<Authorizer>(std::move(auth));
  ASSIGN_OR_RETURN(s->controller_, Controller::Create(options.controller));
  s->worker_service_ = std::make_unique<WorkerServiceImpl>(s->controller_.get(), s->auth_.get());
  s->build_service_ = std::make_unique<BuildServiceImpl>(s->controller_.get(), s->auth_.get());
  s->fleet_service_ = std::make_unique<FleetServiceImpl>(s->controller_.get(), s->auth_.get());
  s->blob_service_ = std::make_unique<BlobServiceImpl>(&s->controller_->blobs(), s->auth_.get());

  grpc::EnableDefaultHealthCheckService(true);
  grpc::reflection::InitProtoReflectionServerBuilderPlugin();
  grpc::ServerBuilder builder;
  builder.AddListeningPort(options.listen, creds, &s->port_);
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
  spdlog::info("controller serving on {} (port {}, {}{}), data in {}", options.listen, s->port_,
               options.security.insecure && options.security.tls_cert_file.empty() ? "PLAINTEXT" : "TLS",
               s->auth_->open() ? ", NO TOKENS" : "", options.controller.data_dir);
  return s;
}

ControllerServer::~ControllerServer() { Shutdown(); }

void ControllerServer::Shutdown(std::chrono::milliseconds grace) {
  if (shut_down_) return;
  shut_down_ = true;
  // Worker streams end first (workers reconnect elsewhere or later); then open calls get `grace`.
  if (controller_) controller_->Stop();
  if (server_) {
    server_->Shutdown(std::chrono::system_clock::now() + grace);
    server_->Wait();
  }
  spdlog::info("controller stopped");
}

}  // namespace freeagent::controller
