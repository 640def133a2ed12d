// Controller configuration keys and checks.
#include "controller/config.h"

#include "absl/strings/str_cat.h"
#include "common/config.h"
#include "common/status_macros.h"

namespace freeagent::controller {

absl::Status ApplyControllerToml(const toml::table& table, const std::string& source,
                                 const std::function<bool(const std::string& key)>& given_as_flag,
                                 ControllerConfig* c) {
  ConfigReader reader(table, source);
  RETURN_IF_ERROR(reader.RejectUnknown("", {"listen", "data_dir", "heartbeat_interval_ms",
                                            "liveness_timeout_ms", "max_attempts", "log_level",
                                            "artifact_retention_days", "artifact_max_total_gib",
                                            "partial_upload_max_age_hours", "input_retention_days", "insecure",
                                            "tls_cert", "tls_key", "client_ca", "worker_tokens", "client_tokens",
                                            "admin_tokens"}));
  auto from_file = [&](const char* key, auto* out) -> absl::Status {
    if (given_as_flag && given_as_flag(key)) return absl::OkStatus();
    return reader.Get(key, out);
  };
  RETURN_IF_ERROR(from_file("listen", &c->listen));
  RETURN_IF_ERROR(from_file("data_dir", &c->data_dir));
  RETURN_IF_ERROR(from_file("heartbeat_interval_ms", &c->heartbeat_interval_ms));
  RETURN_IF_ERROR(from_file("liveness_timeout_ms", &c->liveness_timeout_ms));
  RETURN_IF_ERROR(from_file("max_attempts", &c->max_attempts));
  RETURN_IF_ERROR(from_file("log_level", &c->log_level));
  RETURN_IF_ERROR(from_file("artifact_retention_days", &c->artifact_retention_days));
  RETURN_IF_ERROR(from_file("artifact_max_total_gib", &c->artifact_max_total_gib));
  RETURN_IF_ERROR(from_file("partial_upload_max_age_hours", &c->partial_upload_max_age_hours));
  RETURN_IF_ERROR(from_file("input_retention_days", &c->input_retention_days));
  RETURN_IF_ERROR(from_file("insecure", &c->security.insecure));
  RETURN_IF_ERROR(from_file("tls_cert", &c->security.tls_cert_file));
  RETURN_IF_ERROR(from_file("tls_key", &c->security.tls_key_file));
  RETURN_IF_ERROR(from_file("client_ca", &c->security.client_ca_file));
  // Tokens live only in the file (as sha256 hashes), never on a command line.
  RETURN_IF_ERROR(reader.Get("worker_tokens", &c->security.worker_token_sha256));
  RETURN_IF_ERROR(reader.Get("client_tokens", &c->security.client_token_sha256));
  RETURN_IF_ERROR(reader.Get("admin_tokens", &c->security.admin_token_sha256));
  return absl::OkStatus();
}

absl::Status ValidateControllerConfig(const ControllerConfig& c) {
  if (c.heartbeat_interval_ms <= 0) return absl::InvalidArgumentError("heartbeat_interval_ms must be > 0");
  if (c.liveness_timeout_ms <= c.heartbeat_interval_ms) {
    return absl::InvalidArgumentError("liveness_timeout_ms must be larger than heartbeat_interval_ms");
  }
  if (c.max_attempts < 1 || c.max_attempts > 100) {
    return absl::InvalidArgumentError("max_attempts must be between 1 and 100");
  }
  if (c.artifact_retention_days < 0 || c.artifact_retention_days > 36500) {
    return absl::InvalidArgumentError("artifact_retention_days must be between 0 (keep forever) and 36500");
  }
  if (c.artifact_max_total_gib < 0 || c.artifact_max_total_gib > (int64_t{1} << 30)) {
    return absl::InvalidArgumentError("artifact_max_total_gib must be 0 (no limit) or a positive number of GiB");
  }
  if (c.partial_upload_max_age_hours < 0 || c.partial_upload_max_age_hours > 876000) {
    return absl::InvalidArgumentError("partial_upload_max_age_hours must be between 0 (keep forever) and 876000");
  }
  if (c.input_retention_days < 0 || c.input_retention_days > 36500) {
    return absl::InvalidArgumentError("input_retention_days must be between 0 (keep forever) and 36500");
  }
  if (c.listen.empty()) return absl::InvalidArgumentError("listen is empty");
  if (c.data_dir.empty()) return absl::InvalidArgumentError("data_dir is empty");
  return Authorizer::Create(c.security).status();
}

}  // namespace freeagent::controller
