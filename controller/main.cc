// freeagent-controller: serves WorkerService, BuildService, FleetService and BlobService on one port.
#include <signal.h>

#include <cstdio>
#include <string>

#include <CLI/CLI.hpp>

#include "absl/strings/str_cat.h"
#include "common/config.h"
#include "common/fs.h"
#include "common/logging.h"
#include "common/status_macros.h"
#include "controller/server.h"
#include "spdlog/spdlog.h"

namespace {

using freeagent::controller::ServerOptions;

struct Flags {
  std::string config;
  std::string listen = "127.0.0.1:7070";
  std::string data_dir = "./.freeagent";
  std::string port_file;
  int64_t heartbeat_interval_ms = 5000;
  int64_t liveness_timeout_ms = 30000;
  int64_t max_attempts = 2;
  int64_t artifact_retention_days = 30;
  int64_t artifact_max_total_gib = 0;
  std::string log_level;
  freeagent::controller::SecurityOptions security;
};

// Values from the TOML file fill in whatever was not given as a flag.
absl::Status ApplyConfig(const CLI::App& app, Flags& flags) {
  if (flags.config.empty()) return absl::OkStatus();
  ASSIGN_OR_RETURN(toml::table table, freeagent::LoadToml(flags.config));
  freeagent::ConfigReader reader(table, flags.config);
  RETURN_IF_ERROR(reader.RejectUnknown("", {"listen", "data_dir", "heartbeat_interval_ms",
                                            "liveness_timeout_ms", "max_attempts", "log_level",
                                            "artifact_retention_days", "artifact_max_total_gib", "insecure",
                                            "tls_cert", "tls_key", "client_ca", "worker_tokens", "client_tokens",
                                            "admin_tokens"}));
  auto from_file = [&](const char* flag, const char* key, auto* out) -> absl::Status {
    if (app.count(flag) > 0) return absl::OkStatus();
    return reader.Get(key, out);
  };
  RETURN_IF_ERROR(from_file("--listen", "listen", &flags.listen));
  RETURN_IF_ERROR(from_file("--data-dir", "data_dir", &flags.data_dir));
  RETURN_IF_ERROR(from_file("--heartbeat-interval-ms", "heartbeat_interval_ms", &flags.heartbeat_interval_ms));
  RETURN_IF_ERROR(from_file("--liveness-timeout-ms", "liveness_timeout_ms", &flags.liveness_timeout_ms));
  RETURN_IF_ERROR(from_file("--max-attempts", "max_attempts", &flags.max_attempts));
  RETURN_IF_ERROR(from_file("--log-level", "log_level", &flags.log_level));
  RETURN_IF_ERROR(from_file("--artifact-retention-days", "artifact_retention_days", &flags.artifact_retention_days));
  RETURN_IF_ERROR(from_file("--artifact-max-total-gib", "artifact_max_total_gib", &flags.artifact_max_total_gib));
  RETURN_IF_ERROR(from_file("--insecure", "insecure", &flags.security.insecure));
  RETURN_IF_ERROR(from_file("--tls-cert", "tls_cert", &flags.security.tls_cert_file));
  RETURN_IF_ERROR(from_file("--tls-key", "tls_key", &flags.security.tls_key_file));
  RETURN_IF_ERROR(from_file("--client-ca", "client_ca", &flags.security.client_ca_file));
  // Tokens live only in the file (as sha256 hashes), never on a command line.
  RETURN_IF_ERROR(reader.Get("worker_tokens", &flags.security.worker_token_sha256));
  RETURN_IF_ERROR(reader.Get("client_tokens", &flags.security.client_token_sha256));
  RETURN_IF_ERROR(reader.Get("admin_tokens", &flags.security.admin_token_sha256));
  return absl::OkStatus();
}

absl::Status Validate(const Flags& flags) {
  if (flags.heartbeat_interval_ms <= 0) return absl::InvalidArgumentError("heartbeat_interval_ms must be > 0");
  if (flags.liveness_timeout_ms <= flags.heartbeat_interval_ms) {
    return absl::InvalidArgumentError("liveness_timeout_ms must be larger than heartbeat_interval_ms");
  }
  if (flags.max_attempts < 1 || flags.max_attempts > 100) {
    return absl::InvalidArgumentError("max_attempts must be between 1 and 100");
  }
  if (flags.artifact_retention_days < 0 || flags.artifact_retention_days > 36500) {
    return absl::InvalidArgumentError("artifact_retention_days must be between 0 (keep forever) and 36500");
  }
  if (flags.artifact_max_total_gib < 0 || flags.artifact_max_total_gib > (int64_t{1} << 30)) {
    return absl::InvalidArgumentError("artifact_max_total_gib must be 0 (no limit) or a positive number of GiB");
  }
  return absl::OkStatus();
}

}  // namespace

int main(int argc, char** argv) {
  CLI::App app{"Free Agent controller: schedules builds across workers and serves the build API"};
  Flags flags;
  app.add_option("--config", flags.config, "TOML config file (flags win)");
  app.add_option("--listen", flags.listen, "address to serve on (port 0 picks a free one)")
      ->capture_default_str();
  app.add_option("--data-dir", flags.data_dir, "database, logs and blobs")->capture_default_str();
  app.add_option("--port-file", flags.port_file, "write the bound port here once serving");
  app.add_option("--heartbeat-interval-ms", flags.heartbeat_interval_ms, "told to workers")
      ->capture_default_str();
  app.add_option("--liveness-timeout-ms", flags.liveness_timeout_ms,
                 "a worker silent this long is offline")
      ->capture_default_str();
  app.add_option("--max-attempts", flags.max_attempts, "attempts per build when workers are lost")
      ->capture_default_str();
  app.add_option("--artifact-retention-days", flags.artifact_retention_days,
                 "remove artifacts of builds that ended this many days ago (0 = keep)")
      ->capture_default_str();
  app.add_option("--artifact-max-total-gib", flags.artifact_max_total_gib,
                 "remove the oldest artifacts while all of them take more (0 = no limit)")
      ->capture_default_str();
  app.add_flag("--insecure", flags.security.insecure,
               "plaintext, and no tokens needed when none are configured (loopback demos and tests only)");
  app.add_option("--tls-cert", flags.security.tls_cert_file, "PEM certificate chain served on the port");
  app.add_option("--tls-key", flags.security.tls_key_file, "PEM private key of --tls-cert");
  app.add_option("--client-ca", flags.security.client_ca_file, "PEM CA that signs worker certificates (mutual TLS)");
  app.add_option("--log-level", flags.log_level, "trace, debug, info, warn, error (or FREEAGENT_LOG_LEVEL)");
  CLI11_PARSE(app, argc, argv);

  freeagent::InitLogging("controller", flags.log_level);
  if (absl::Status st = ApplyConfig(app, flags); !st.ok()) {
    spdlog::critical("{}", std::string(st.message()));
    return 2;
  }
  if (!flags.log_level.empty()) freeagent::InitLogging("controller", flags.log_level);
  if (absl::Status st = Validate(flags); !st.ok()) {
    spdlog::critical("{}", std::string(st.message()));
    return 2;
  }

  // Signals are taken synchronously by this thread; every other thread inherits the mask.
  sigset_t signals;
  sigemptyset(&signals);
  sigaddset(&signals, SIGTERM);
  sigaddset(&signals, SIGINT);
  pthread_sigmask(SIG_BLOCK, &signals, nullptr);
  signal(SIGPIPE, SIG_IGN);

  ServerOptions options;
  options.listen = flags.listen;
  options.security = flags.security;
  options.controller.data_dir = flags.data_dir;
  options.controller.heartbeat_interval = std::chrono::milliseconds(flags.heartbeat_interval_ms);
  options.controller.liveness_timeout = std::chrono::milliseconds(flags.liveness_timeout_ms);
  options.controller.max_attempts = static_cast<uint32_t>(flags.max_attempts);
  options.controller.retention.max_age_days = static_cast<uint32_t>(flags.artifact_retention_days);
  options.controller.retention.max_total_bytes = static_cast<uint64_t>(flags.artifact_max_total_gib) << 30;
  auto server = freeagent::controller::ControllerServer::Start(options);
  if (!server.ok()) {
    spdlog::critical("{}", std::string(server.status().message()));
    return 1;
  }
  if (!flags.port_file.empty()) {
    if (absl::Status st = freeagent::WriteFileAtomic(flags.port_file, absl::StrCat((*server)->port(), "\n"));
        !st.ok()) {
      spdlog::critical("{}", std::string(st.message()));
      (*server)->Shutdown();
      return 1;
    }
  }
  int sig = 0;
  sigwait(&signals, &sig);
  spdlog::info("{} received, shutting down", sig == SIGTERM ? "SIGTERM" : "SIGINT");
  (*server)->Shutdown(std::chrono::seconds(5));
  return 0;
}
