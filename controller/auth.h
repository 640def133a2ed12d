// Who may call what on the controller port: bearer tokens (stored as sha256, compared in constant time)
// with roles, and the TLS settings of the port (plaintext only when explicitly enabled, mutual TLS for
// workers when a client CA is configured).
#pragma once

#include <atomic>
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include <grpcpp/server_context.h>

#include "absl/status/status.h"
#include "absl/status/statusor.h"

namespace freeagent::controller {

// worker: WorkerService and BlobService only. client: submit, read, watch and cancel builds, list
// workers, blobs. admin: everything a client may, plus drain and garbage collection.
enum class Role { kWorker, kClient, kAdmin };

struct SecurityOptions {
  // Plaintext, and no tokens required when none are configured. For loopback demos and tests only.
  bool insecure = false;
  std::string tls_cert_file;   // PEM server certificate chain
  std::string tls_key_file;    // PEM private key
  std::string client_ca_file;  // PEM CA; when set, workers must present a certificate it signed
  // Lowercase hex sha256 of each accepted token (`printf %s TOKEN | sha256sum`).
  std::vector<std::string> worker_token_sha256;
  std::vector<std::string> client_token_sha256;
  std::vector<std::string> admin_token_sha256;
};

class Authorizer {
 public:
  // INVALID_ARGUMENT when a hash is not 64 hex digits, or when neither TLS nor `insecure` is set, or
  // when no token is configured and `insecure` is not set.
  static absl::StatusOr<Authorizer> Create(const SecurityOptions& options);

  // OK when the call's bearer token has one of `allowed` roles (admin counts as client).
  // UNAUTHENTICATED: no or unknown token, or a worker without a verified client certificate under
  // mutual TLS. PERMISSION_DENIED: a known token of another role. Thread-safe.
  absl::Status Check(const grpc::CallbackServerContext& context, std::initializer_list<Role> allowed) const;

  // No tokens configured (only possible with `insecure`): every call is allowed.
  bool open() const { return tokens_.empty(); }
  // Calls refused so far (for logs and tests).
  uint64_t refused() const { return refused_->load(); }

 private:
  absl::Status CheckRoles(const grpc::CallbackServerContext& context, std::initializer_list<Role> allowed) const;

  struct Token {
    std::string sha256;
    Role role;
  };
  std::vector<Token> tokens_;
  bool require_worker_cert_ = false;
  std::shared_ptr<std::atomic<uint64_t>> refused_ = std::make_shared<std::atomic<uint64_t>>(0);
};

// Hex sha256 of a token, as SecurityOptions stores it.
std::string HashToken(const std::string& token);

}  // namespace freeagent::controller
