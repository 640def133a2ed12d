#include "controller/auth.h"

#include <openssl/crypto.h>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "common/sha256.h"

namespace freeagent::controller {
namespace {

const char* RoleName(Role role) {
  switch (role) {
    case Role::kWorker: return "worker";
    case Role::kClient: return "client";
    case Role::kAdmin: return "admin";
  }
  return "?";
}

}  // namespace

std::string HashToken(const std::string& token) { return Sha256Hex(token); }

absl::StatusOr<Authorizer> Authorizer::Create(const SecurityOptions& options) {
  Authorizer auth;
  auto add = [&](const std::vector<std::string>& hashes, Role role) -> absl::Status {
    for (const std::string& h : hashes) {
      if (!IsSha256Hex(h)) {
        return absl::InvalidArgumentError(absl::StrCat(RoleName(role), " token hash \"", h,
                                                       "\" is not 64 lowercase hex digits (the sha256 of the token)"));
      }
      auth.tokens_.push_back(Token{h, role});
    }
    return absl::OkStatus();
  };
  if (absl::Status st = add(options.worker_token_sha256, Role::kWorker); !st.ok()) return st;
  if (absl::Status st = add(options.client_token_sha256, Role::kClient); !st.ok()) return st;
  if (absl::Status st = add(options.admin_token_sha256, Role::kAdmin); !st.ok()) return st;
  const bool tls = !options.tls_cert_file.empty() || !options.tls_key_file.empty();
  if (!tls && !options.insecure) {
    return absl::InvalidArgumentError(
        "no TLS certificate configured: set tls_cert and tls_key, or insecure = true for plaintext");
  }
  if (auth.tokens_.empty() && !options.insecure) {
    return absl::InvalidArgumentError(
        "no tokens configured: set worker_tokens and client_tokens (sha256 hashes), or insecure = true");
  }
  if (!options.client_ca_file.empty() && !tls) {
    return absl::InvalidArgumentError("client_ca (mutual TLS) needs tls_cert and tls_key");
  }
  auth.require_worker_cert_ = !options.client_ca_file.empty();
  return auth;
}

absl::Status Authorizer::Check(const grpc::CallbackServerContext& context, std::initializer_list<Role> allowed) const {
  absl::Status st = CheckRoles(context, allowed);
  if (!st.ok()) ++*refused_;
  return st;
}

absl::Status Authorizer::CheckRoles(const grpc::CallbackServerContext& context,
                                    std::initializer_list<Role> allowed) const {
  bool worker_call = false;
  for (Role r : allowed) worker_call |= r == Role::kWorker;
  const bool only_worker = worker_call && allowed.size() == 1;
  if (require_worker_cert_ && only_worker) {
    std::shared_ptr<const grpc::AuthContext> peer = context.auth_context();
    if (!peer || !peer->IsPeerAuthenticated()) {
      return absl::UnauthenticatedError("workers must present a client certificate signed by the controller's client CA");
    }
  }
  if (open()) return absl::OkStatus();
  const auto& md = context.client_metadata();
  auto it = md.find("authorization");
  if (it == md.end()) return absl::UnauthenticatedError("missing bearer token (authorization metadata)");
  const std::string value(it->second.data(), it->second.size());
  if (!absl::StartsWith(value, "Bearer ")) return absl::UnauthenticatedError("authorization is not a bearer token");
  const std::string presented = HashToken(value.substr(7));
  // Every stored hash is compared in full, so the time taken does not depend on which one matched.
  const Token* match = nullptr;
  for (const Token& t : tokens_) {
    if (CRYPTO_memcmp(t.sha256.data(), presented.data(), presented.size()) == 0) match = &t;
  }
  if (match == nullptr) return absl::UnauthenticatedError("unknown bearer token");
  for (Role r : allowed) {
    if (match->role == r || (match->role == Role::kAdmin && r == Role::kClient)) return absl::OkStatus();
  }
  return absl::PermissionDeniedError(absl::StrCat("a ", RoleName(match->role), " token may not make this call"));
}

}  // namespace freeagent::controller
