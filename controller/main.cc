// freeagent-controller: serves WorkerService, BuildService, FleetService and BlobService on one port.
#include <signal.h>

#include <algorithm>
#include <cstdio>
#include <string>

#include <CLI/CLI.hpp>

#include "absl/strings/str_cat.h"
#include "absl/synchronization/mutex.h"
#include "common/config.h"
#include "common/fs.h"
#include "common/logging.h"
#include "common/status_macros.h"
#include "controller/config.h"
#include "controller/server.h"
#include "spdlog/spdlog.h"

namespace {

using freeagent::controller::ServerOptions;

struct Flags {
  std::string config;
  std::string port_file;
  freeagent::controller::ControllerConfig values;
};

// Values from the TOML file fill in whatever was not given as a flag (flag --a-b is key a_b).
absl::Status ApplyConfigFile(const CLI::App& app, Flags& flags) {
  if (flags.config.empty()) return absl::OkStatus();
  ASSIGN_OR_RETURN(toml::table table, freeagent::LoadToml(flags.config));
  auto given = [&app](const std::string& key) {
    std::string flag = "--" + key;
    std::replace(flag.begin(), flag.end(), '_', '-');
    const CLI::Option* option = app.get_option_no_throw(flag);
    return option != nullptr && option->count() > 0;
  };
  return freeagent::controller::ApplyControllerToml(table, flags.config, given, &flags.values);
}

}  // namespace

int main(int argc, char** argv) {
  CLI::App app{"Free Agent controller: schedules builds across workers and serves the build API"};
  Flags flags;
  freeagent::controller::ControllerConfig& values = flags.values;
  app.add_option("--config", flags.config, "TOML config file (flags win)");
  app.add_option("--listen", values.listen, "address to serve on (port 0 picks a free one)")
      ->capture_default_str();
  app.add_option("--data-dir", values.data_dir, "database, logs and blobs")->capture_default_str();
  app.add_option("--port-file", flags.port_file, "write the bound port here once serving");
  app.add_option("--heartbeat-interval-ms", values.heartbeat_interval_ms, "told to workers")
      ->capture_default_str();
  app.add_option("--liveness-timeout-ms", values.liveness_timeout_ms,
                 "a worker silent this long is offline")
      ->capture_default_str();
  app.add_option("--max-attempts", values.max_attempts, "attempts per build when workers are lost")
      ->capture_default_str();
  app.add_option("--artifact-retention-days", values.artifact_retention_days,
                 "remove artifacts of builds that ended this many days ago (0 = keep)")
      ->capture_default_str();
  app.add_option("--artifact-max-total-gib", values.artifact_max_total_gib,
                 "remove the oldest artifacts while all of them take more (0 = no limit)")
      ->capture_default_str();
  app.add_option("--partial-upload-max-age-hours", values.partial_upload_max_age_hours,
                 "remove partial uploads and blobs no build references once unused this long (0 = keep)")
      ->capture_default_str();
  app.add_option("--input-retention-days", values.input_retention_days,
                 "remove the source archives and signing blobs of builds that ended this many days ago (0 = keep)")
      ->capture_default_str();
  app.add_flag("--insecure", values.security.insecure,
               "plaintext, and no tokens needed when none are configured (loopback demos and tests only)");
  app.add_option("--tls-cert", values.security.tls_cert_file, "PEM certificate chain served on the port");
  app.add_option("--tls-key", values.security.tls_key_file, "PEM private key of --tls-cert");
  app.add_option("--client-ca", values.security.client_ca_file, "PEM CA that signs worker certificates (mutual TLS)");
  app.add_option("--log-level", values.log_level, "trace, debug, info, warn, error (or FREEAGENT_LOG_LEVEL)");
  CLI11_PARSE(app, argc, argv);
  // This system's Abseil is built with lock-cycle detection on, and gRPC takes absl::Mutex on every
  // call: 2-4% of a busy controller's CPU went to maintaining the lock graph.
  absl::SetMutexDeadlockDetectionMode(absl::OnDeadlockCycle::kIgnore);

  freeagent::InitLogging("controller", values.log_level);
  if (absl::Status st = ApplyConfigFile(app, flags); !st.ok()) {
    spdlog::critical("{}", std::string(st.message()));
    return 2;
  }
  if (!values.log_level.empty()) freeagent::InitLogging("controller", values.log_level);
  if (absl::Status st = freeagent::controller::ValidateControllerConfig(values); !st.ok()) {
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
  options.listen = values.listen;
  options.security = values.security;
  options.controller.data_dir = values.data_dir;
  options.controller.heartbeat_interval = std::chrono::milliseconds(values.heartbeat_interval_ms);
  options.controller.liveness_timeout = std::chrono::milliseconds(values.liveness_timeout_ms);
  options.controller.max_attempts = static_cast<uint32_t>(values.max_attempts);
  options.controller.retention.max_age_days = static_cast<uint32_t>(values.artifact_retention_days);
  options.controller.retention.max_total_bytes = static_cast<uint64_t>(values.artifact_max_total_gib) << 30;
  options.controller.retention.partial_upload_max_age_hours = static_cast<uint32_t>(values.partial_upload_max_age_hours);
  options.controller.retention.input_max_age_days = static_cast<uint32_t>(values.input_retention_days);
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
