// Worker configuration: a TOML file plus command-line flags (flags win). Every error names the file,
// the key and the reason, so a bad config fails at start-up, not in the middle of a job.
#pragma once

#include <cstdint>
#include <map>
#include <optional>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "proto/channel.h"
#include "vm/image_catalog.h"
#include "vm/qemu_driver.h"
#include "vm/static_driver.h"
#include "vm/tart_driver.h"

namespace CLI {
class App;
}

namespace freeagent::node {

struct WorkerConfig {
  std::string controller = "127.0.0.1:7070";
  std::string name;                           // default: host name
  std::string id;                             // default: generated once, kept in work_dir/worker-id
  std::map<std::string, std::string> labels;  // os/arch added unless configured
  uint32_t slots = 2;
  std::string work_dir = "./.freeagent-worker";
  std::string driver = "local";               // local | static | qemu | tart
  uint32_t heartbeat_interval_ms = 0;         // 0 = what the controller's Welcome says
  // Running jobs go on while the controller is unreachable, for at most this long; then they are
  // cancelled (their results are still delivered after the reconnect).
  uint32_t disconnected_job_limit_seconds = 600;
  // Each attempt's log is cut at this size with a final note; later output is dropped (job_runner.h).
  uint32_t max_log_mib = 256;
  // Unacknowledged log bytes of one attempt that its spool (on disk, in work_dir) may hold; past it the
  // step's output waits until the controller acks. 1..1048576; the default never binds below max_log_mib.
  uint32_t log_spool_max_mib = 4096;
  // All artifacts of one job together may not pass this (MiB); the collection fails naming the file
  // and the limit. 1..1048576 (1 TiB).
  uint32_t artifact_max_total_mib = 16384;
  vm::StaticDriverConfig static_driver;       // the [static] table, used when driver = "static"
  // TLS (or explicit plaintext), client certificate and bearer token for the controller connection.
  // The token comes from token_file or $FREEAGENT_TOKEN, never from a flag value.
  proto::ChannelSecurity security;
  std::string token_file;
  vm::QemuDriverConfig qemu;                  // the [qemu] table, used when driver = "qemu"
  vm::TartDriverConfig tart;                  // the [tart] table, used when driver = "tart"
  // The [images.<name>] tables: images jobs may name (vm.image). Each is advertised as the label
  // "image.<name>" = "true", which the controller matches against a job's vm.image.
  vm::ImageCatalog images;
};

// Flags as given; an empty optional means "not on the command line".
struct WorkerFlags {
  std::optional<std::string> config;
  std::optional<std::string> controller;
  std::optional<std::string> name;
  std::optional<std::string> id;
  std::vector<std::string> labels;  // "k=v"
  std::optional<uint32_t> slots;
  std::optional<std::string> work_dir;
  std::optional<std::string> driver;
  std::optional<uint32_t> heartbeat_interval_ms;
  std::optional<uint32_t> disconnected_job_limit_seconds;
  std::optional<uint32_t> log_spool_max_mib;
  bool insecure = false;
  std::optional<std::string> ca_file;
  std::optional<std::string> cert_file;
  std::optional<std::string> key_file;
  std::optional<std::string> token_file;
};

// Registers the worker's flags on `app`, writing into `flags`.
void AddWorkerFlags(CLI::App& app, WorkerFlags* flags);

// Applies the TOML text `text` (named `source` in errors) to `config`. Unknown keys, wrong types and
// syntax errors are INVALID_ARGUMENT naming source, key/line and reason.
absl::Status ApplyWorkerToml(const std::string& text, const std::string& source, WorkerConfig* config);

// Defaults <- config file (if any) <- flags, then validation and defaults that need the host (name, id,
// os/arch labels). Creates the work dir.
absl::StatusOr<WorkerConfig> BuildWorkerConfig(const WorkerFlags& flags);

// Checks values (slots >= 1, known driver, non-empty controller, label syntax).
absl::Status ValidateWorkerConfig(const WorkerConfig& config, const std::string& source);

}  // namespace freeagent::node
