#include "node/config.h"

#include <unistd.h>

#include <algorithm>
#include <cstdlib>
#include <random>

#include <CLI/CLI.hpp>

#include "absl/strings/str_cat.h"
#include "common/config.h"
#include "common/fs.h"
#include "common/status_macros.h"

namespace freeagent::node {
namespace {

const std::vector<std::string> kKnownKeys = {"controller", "name",   "id",
                                             "labels",     "slots",  "work_dir",
                                             "driver",     "static", "heartbeat_interval_ms",
                                             "disconnected_job_limit_seconds",
                                             "insecure",   "tls_ca", "tls_cert", "tls_key", "tls_server_name",
                                             "token_file", "max_log_mib",          "log_spool_max_mib",
                                             "qemu",       "tart",   "images", "artifact_max_total_mib"};
const std::vector<std::string> kStaticKeys = {"host",      "port",           "user",
                                              "key",       "host_key_fingerprint", "known_hosts",
                                              "workspace_root", "reset_command", "connect_timeout_seconds"};

// The [static] table: an existing machine reached over SSH.
absl::Status ApplyStaticToml(const ConfigReader& r, vm::StaticDriverConfig* c) {
  RETURN_IF_ERROR(r.RejectUnknown("static", kStaticKeys));
  RETURN_IF_ERROR(r.Get("static.host", &c->ssh.host));
  uint32_t port = static_cast<uint32_t>(c->ssh.port);
  RETURN_IF_ERROR(r.Get("static.port", &port));
  if (port == 0 || port > 65535) return r.Error("static.port", absl::StrCat("must be 1..65535, got ", port));
  c->ssh.port = static_cast<int>(port);
  RETURN_IF_ERROR(r.Get("static.user", &c->ssh.user));
  RETURN_IF_ERROR(r.Get("static.key", &c->ssh.private_key_path));
  RETURN_IF_ERROR(r.Get("static.host_key_fingerprint", &c->ssh.host_key_fingerprint));
  RETURN_IF_ERROR(r.Get("static.known_hosts", &c->ssh.known_hosts_path));
  RETURN_IF_ERROR(r.Get("static.workspace_root", &c->workspace_root));
  RETURN_IF_ERROR(r.Get("static.reset_command", &c->reset_command));
  uint32_t connect_s = static_cast<uint32_t>(c->ssh.connect_timeout.count() / 1000);
  RETURN_IF_ERROR(r.Get("static.connect_timeout_seconds", &connect_s));
  c->ssh.connect_timeout = std::chrono::seconds(connect_s);
  return absl::OkStatus();
}

const std::vector<std::string> kQemuKeys = {"binary",         "img_binary",      "accel",
                                            "work_dir",       "max_cpus",        "max_memory_mb",
                                            "max_disk_gb",    "default_cpus",    "default_memory_mb",
                                            "boot_timeout_seconds"};
const std::vector<std::string> kImageKeys = {"manifest", "base",           "user",     "key",       "host_key_fingerprint",
                                             "workspace_root", "cpus",     "memory_mb", "disk_gb"};

// A duration key in whole seconds, at least 1.
absl::Status GetSeconds(const ConfigReader& r, const std::string& key, std::chrono::seconds* value) {
  uint32_t seconds = static_cast<uint32_t>(value->count());
  RETURN_IF_ERROR(r.Get(key, &seconds));
  if (seconds == 0) return r.Error(key, "must be at least 1");
  *value = std::chrono::seconds(seconds);
  return absl::OkStatus();
}

// The [qemu] table: disposable VMs on a Linux host.
absl::Status ApplyQemuToml(const ConfigReader& r, vm::QemuDriverConfig* c) {
  RETURN_IF_ERROR(r.RejectUnknown("qemu", kQemuKeys));
  RETURN_IF_ERROR(r.Get("qemu.binary", &c->binary));
  RETURN_IF_ERROR(r.Get("qemu.img_binary", &c->img_binary));
  RETURN_IF_ERROR(r.Get("qemu.accel", &c->accel));
  RETURN_IF_ERROR(r.Get("qemu.work_dir", &c->work_dir));
  RETURN_IF_ERROR(r.Get("qemu.max_cpus", &c->max_cpus));
  RETURN_IF_ERROR(r.Get("qemu.max_memory_mb", &c->max_memory_mb));
  RETURN_IF_ERROR(r.Get("qemu.max_disk_gb", &c->max_disk_gb));
  RETURN_IF_ERROR(r.Get("qemu.default_cpus", &c->default_cpus));
  RETURN_IF_ERROR(r.Get("qemu.default_memory_mb", &c->default_memory_mb));
  return GetSeconds(r, "qemu.boot_timeout_seconds", &c->boot_timeout);
}

const std::vector<std::string> kTartKeys = {"binary",          "ip_resolver",   "ip_wait_seconds",
                                            "boot_timeout_seconds", "stop_timeout_seconds", "command_timeout_seconds",
                                            "ssh_port",        "work_dir",      "max_cpus",
                                            "max_memory_mb",   "max_disk_gb"};

// The [tart] table: disposable macOS VMs on a Mac host.
absl::Status ApplyTartToml(const ConfigReader& r, vm::TartDriverConfig* c) {
  RETURN_IF_ERROR(r.RejectUnknown("tart", kTartKeys));
  RETURN_IF_ERROR(r.Get("tart.binary", &c->binary));
  RETURN_IF_ERROR(r.Get("tart.ip_resolver", &c->ip_resolver));
  RETURN_IF_ERROR(r.Get("tart.work_dir", &c->work_dir));
  uint32_t ssh_port = static_cast<uint32_t>(c->ssh_port);
  RETURN_IF_ERROR(r.Get("tart.ssh_port", &ssh_port));
  if (ssh_port == 0 || ssh_port > 65535) return r.Error("tart.ssh_port", "must be 1..65535");
  c->ssh_port = static_cast<int>(ssh_port);
  RETURN_IF_ERROR(r.Get("tart.max_cpus", &c->max_cpus));
  RETURN_IF_ERROR(r.Get("tart.max_memory_mb", &c->max_memory_mb));
  RETURN_IF_ERROR(r.Get("tart.max_disk_gb", &c->max_disk_gb));
  RETURN_IF_ERROR(GetSeconds(r, "tart.ip_wait_seconds", &c->ip_wait));
  RETURN_IF_ERROR(GetSeconds(r, "tart.boot_timeout_seconds", &c->boot_timeout));
  RETURN_IF_ERROR(GetSeconds(r, "tart.stop_timeout_seconds", &c->stop_timeout));
  return GetSeconds(r, "tart.command_timeout_seconds", &c->command_timeout);
}

// The [images.<name>] tables.
absl::Status ApplyImagesToml(const ConfigReader& r, vm::ImageCatalog* images) {
  const toml::table* tables = r.table()["images"].as_table();
  if (r.table().contains("images") && tables == nullptr) return r.Error("images", "must be a table of tables");
  if (tables == nullptr) return absl::OkStatus();
  for (const auto& [key, node] : *tables) {
    std::string name(key.str());
    bool good = !name.empty() && std::all_of(name.begin(), name.end(), [](char ch) {
      return (ch >= 'a' && ch <= 'z') || (ch >= 'A' && ch <= 'Z') || (ch >= '0' && ch <= '9') || ch == '-' ||
             ch == '_';
    });
    if (!good) return r.Error("images." + name, "image names may only use letters, digits, '-' and '_'");
    if (!node.is_table()) return r.Error("images." + name, "must be a table");
    std::string prefix = "images." + name;
    RETURN_IF_ERROR(r.RejectUnknown(prefix, kImageKeys));
    vm::ImageEntry e;
    e.name = name;
    std::string manifest;
    RETURN_IF_ERROR(r.Get(prefix + ".manifest", &manifest));
    RETURN_IF_ERROR(r.Get(prefix + ".base", &e.base));
    if (!manifest.empty() && !e.base.empty()) return r.Error(prefix, "give manifest (qemu) or base (tart), not both");
    if (!manifest.empty()) e.base = manifest;
    RETURN_IF_ERROR(r.Get(prefix + ".user", &e.user));
    RETURN_IF_ERROR(r.Get(prefix + ".key", &e.private_key_path));
    RETURN_IF_ERROR(r.Get(prefix + ".host_key_fingerprint", &e.host_key_fingerprint));
    RETURN_IF_ERROR(r.Get(prefix + ".workspace_root", &e.workspace_root));
    RETURN_IF_ERROR(r.Get(prefix + ".cpus", &e.cpus));
    RETURN_IF_ERROR(r.Get(prefix + ".memory_mb", &e.memory_mb));
    RETURN_IF_ERROR(r.Get(prefix + ".disk_gb", &e.disk_gb));
    if (e.base.empty()) return r.Error(prefix, "needs manifest (qemu) or base (tart)");
    images->Add(std::move(e));
  }
  return absl::OkStatus();
}

absl::Status ParseLabel(const std::string& kv, const std::string& source, std::map<std::string, std::string>* out) {
  size_t eq = kv.find('=');
  if (eq == std::string::npos || eq == 0) {
    return absl::InvalidArgumentError(absl::StrCat(source, ": label \"", kv, "\" is not key=value"));
  }
  (*out)[kv.substr(0, eq)] = kv.substr(eq + 1);
  return absl::OkStatus();
}

std::string HostName() {
  char buf[256] = {};
  if (::gethostname(buf, sizeof(buf) - 1) != 0 || buf[0] == '\0') return "worker";
  return buf;
}

absl::StatusOr<std::string> LoadOrMakeId(const std::string& work_dir) {
  std::string path = work_dir + "/worker-id";
  absl::StatusOr<std::string> existing = ReadFile(path);
  if (existing.ok()) {
    std::string id = *existing;
    while (!id.empty() && (id.back() == '\n' || id.back() == ' ')) id.pop_back();
    if (!id.empty()) return id;
  } else if (!absl::IsNotFound(existing.status())) {
    return existing.status();
  }
  std::random_device rd;
  std::string id = "w-";
  static const char kHex[] = "0123456789abcdef";
  for (int i = 0; i < 12; ++i) id += kHex[rd() % 16];
  RETURN_IF_ERROR(WriteFileAtomic(path, id + "\n", 0644));
  return id;
}

}  // namespace

void AddWorkerFlags(CLI::App& app, WorkerFlags* f) {
  app.add_option("--config", f->config, "TOML config file");
  app.add_option("--controller", f->controller, "controller address host:port (default 127.0.0.1:7070)");
  app.add_option("--name", f->name, "display name (default: host name)");
  app.add_option("--id", f->id, "stable worker id (default: generated and kept in the work dir)");
  app.add_option("--label", f->labels, "label k=v (repeatable)");
  app.add_option("--slots", f->slots, "concurrent jobs (default 2)");
  app.add_option("--work-dir", f->work_dir, "work directory (default ./.freeagent-worker)");
  app.add_option("--driver", f->driver,
                 "VM driver: local, static ([static] table), qemu or tart ([qemu] or [tart], and [images.<name>] tables)");
  app.add_flag("--insecure", f->insecure, "plaintext connection to the controller (loopback demos and tests only)");
  app.add_option("--ca-file", f->ca_file, "PEM roots that verify the controller (default: system roots)");
  app.add_option("--cert-file", f->cert_file, "PEM client certificate for mutual TLS");
  app.add_option("--key-file", f->key_file, "PEM key of --cert-file");
  app.add_option("--token-file", f->token_file, "file holding the worker token (else $FREEAGENT_TOKEN)");
  app.add_option("--heartbeat-interval-ms", f->heartbeat_interval_ms,
                 "heartbeat interval (default: what the controller says)");
  app.add_option("--log-spool-max-mib", f->log_spool_max_mib,
                 "unacknowledged log bytes one attempt may spool on disk before its output waits (default 4096)");
  app.add_option("--disconnected-job-limit-seconds", f->disconnected_job_limit_seconds,
                 "how long running jobs go on while the controller is unreachable (default 600)");
}

absl::Status ApplyWorkerToml(const std::string& text, const std::string& source, WorkerConfig* config) {
  ASSIGN_OR_RETURN(toml::table table, ParseToml(text, source));
  ConfigReader r(table, source);
  RETURN_IF_ERROR(r.RejectUnknown("", kKnownKeys));
  RETURN_IF_ERROR(r.Get("controller", &config->controller));
  RETURN_IF_ERROR(r.Get("name", &config->name));
  RETURN_IF_ERROR(r.Get("id", &config->id));
  RETURN_IF_ERROR(r.Get("labels", &config->labels));
  RETURN_IF_ERROR(r.Get("slots", &config->slots));
  RETURN_IF_ERROR(r.Get("work_dir", &config->work_dir));
  RETURN_IF_ERROR(r.Get("driver", &config->driver));
  RETURN_IF_ERROR(r.Get("heartbeat_interval_ms", &config->heartbeat_interval_ms));
  RETURN_IF_ERROR(r.Get("disconnected_job_limit_seconds", &config->disconnected_job_limit_seconds));
  RETURN_IF_ERROR(r.Get("insecure", &config->security.insecure));
  RETURN_IF_ERROR(r.Get("tls_ca", &config->security.ca_file));
  RETURN_IF_ERROR(r.Get("tls_cert", &config->security.cert_file));
  RETURN_IF_ERROR(r.Get("tls_key", &config->security.key_file));
  RETURN_IF_ERROR(r.Get("tls_server_name", &config->security.server_name));
  RETURN_IF_ERROR(r.Get("token_file", &config->token_file));
  RETURN_IF_ERROR(r.Get("max_log_mib", &config->max_log_mib));
  RETURN_IF_ERROR(r.Get("log_spool_max_mib", &config->log_spool_max_mib));
  RETURN_IF_ERROR(r.Get("artifact_max_total_mib", &config->artifact_max_total_mib));
  RETURN_IF_ERROR(ApplyStaticToml(r, &config->static_driver));
  RETURN_IF_ERROR(ApplyQemuToml(r, &config->qemu));
  RETURN_IF_ERROR(ApplyTartToml(r, &config->tart));
  RETURN_IF_ERROR(ApplyImagesToml(r, &config->images));
  return ValidateWorkerConfig(*config, source);
}

absl::Status ValidateWorkerConfig(const WorkerConfig& c, const std::string& source) {
  if (c.controller.empty()) return absl::InvalidArgumentError(absl::StrCat(source, ": key controller: empty"));
  if (c.slots < 1 || c.slots > 64) {
    return absl::InvalidArgumentError(absl::StrCat(source, ": key slots: must be 1..64, got ", c.slots));
  }
  if (c.max_log_mib < 1 || c.max_log_mib > (1u << 20)) {
    return absl::InvalidArgumentError(
        absl::StrCat(source, ": key max_log_mib: must be 1..1048576 (MiB per attempt), got ", c.max_log_mib));
  }
  if (c.log_spool_max_mib < 1 || c.log_spool_max_mib > (1u << 20)) {
    return absl::InvalidArgumentError(absl::StrCat(
        source, ": key log_spool_max_mib: must be 1..1048576 (MiB per attempt), got ", c.log_spool_max_mib));
  }
  if (c.artifact_max_total_mib < 1 || c.artifact_max_total_mib > (1u << 20)) {
    return absl::InvalidArgumentError(absl::StrCat(
        source, ": key artifact_max_total_mib: must be 1..1048576 (MiB per job), got ", c.artifact_max_total_mib));
  }
  if (c.driver != "local" && c.driver != "static" && c.driver != "qemu" && c.driver != "tart") {
    return absl::InvalidArgumentError(absl::StrCat(source, ": key driver: unknown driver \"", c.driver,
                                                   "\" (available: local, static, qemu, tart)"));
  }
  if (c.driver == "tart") {
    vm::TartDriverConfig t = c.tart;
    t.images = c.images;
    if (t.work_dir.empty()) t.work_dir = "/vms";  // defaulted under work_dir later; only its form is checked here
    absl::Status s = vm::TartDriver::Validate(t);
    if (!s.ok()) return absl::InvalidArgumentError(absl::StrCat(source, ": [tart]: ", s.message()));
  }
  if (c.driver == "qemu") {
    vm::QemuDriverConfig q = c.qemu;
    q.images = c.images;
    if (q.work_dir.empty()) q.work_dir = "/vms";  // defaulted under work_dir later; only its form is checked here
    absl::Status s = vm::QemuDriver::Validate(q);
    if (!s.ok()) return absl::InvalidArgumentError(absl::StrCat(source, ": [qemu]: ", s.message()));
  }
  if (c.driver == "static") {
    absl::Status s = vm::StaticDriver::Validate(c.static_driver);
    if (!s.ok()) return absl::InvalidArgumentError(absl::StrCat(source, ": [static]: ", s.message()));
  }
  if (c.work_dir.empty()) return absl::InvalidArgumentError(absl::StrCat(source, ": key work_dir: empty"));
  if (c.disconnected_job_limit_seconds == 0) {
    return absl::InvalidArgumentError(
        absl::StrCat(source, ": key disconnected_job_limit_seconds: must be at least 1, got 0"));
  }
  for (const auto& [k, v] : c.labels) {
    if (k.empty() || k.find('=') != std::string::npos) {
      return absl::InvalidArgumentError(absl::StrCat(source, ": key labels: bad label name \"", k, "\""));
    }
  }
  return absl::OkStatus();
}

absl::StatusOr<WorkerConfig> BuildWorkerConfig(const WorkerFlags& flags) {
  WorkerConfig config;
  if (flags.config) {
    ASSIGN_OR_RETURN(std::string text, ReadFile(*flags.config));
    RETURN_IF_ERROR(ApplyWorkerToml(text, *flags.config, &config));
  }
  if (flags.controller) config.controller = *flags.controller;
  if (flags.name) config.name = *flags.name;
  if (flags.id) config.id = *flags.id;
  for (const std::string& kv : flags.labels) RETURN_IF_ERROR(ParseLabel(kv, "--label", &config.labels));
  if (flags.slots) config.slots = *flags.slots;
  if (flags.work_dir) config.work_dir = *flags.work_dir;
  if (flags.driver) config.driver = *flags.driver;
  if (flags.heartbeat_interval_ms) config.heartbeat_interval_ms = *flags.heartbeat_interval_ms;
  if (flags.disconnected_job_limit_seconds) {
    config.disconnected_job_limit_seconds = *flags.disconnected_job_limit_seconds;
  }
  if (flags.log_spool_max_mib) config.log_spool_max_mib = *flags.log_spool_max_mib;
  if (flags.insecure) config.security.insecure = true;
  if (flags.ca_file) config.security.ca_file = *flags.ca_file;
  if (flags.cert_file) config.security.cert_file = *flags.cert_file;
  if (flags.key_file) config.security.key_file = *flags.key_file;
  if (flags.token_file) config.token_file = *flags.token_file;
  ASSIGN_OR_RETURN(config.security.token, proto::ResolveToken(config.token_file));
  // Every file the channel needs is read once here, so a bad path fails at start-up.
  RETURN_IF_ERROR(proto::MakeControllerChannel(config.controller, config.security).status());
  RETURN_IF_ERROR(ValidateWorkerConfig(config, "command line"));
  if (config.name.empty()) config.name = HostName();
  config.labels.emplace("os", "linux");
  config.labels.emplace("arch", "x86_64");
  RETURN_IF_ERROR(MakeDirs(config.work_dir, 0700));
  char* real = ::realpath(config.work_dir.c_str(), nullptr);
  if (real != nullptr) {
    config.work_dir = real;
    ::free(real);
  }
  if (config.qemu.work_dir.empty()) config.qemu.work_dir = config.work_dir + "/vms";
  config.qemu.images = config.images;
  if (config.tart.work_dir.empty()) config.tart.work_dir = config.work_dir + "/vms";
  config.tart.images = config.images;
  for (const auto& [name, entry] : config.images.entries()) config.labels.emplace("image." + name, "true");
  if (config.id.empty()) {
    ASSIGN_OR_RETURN(config.id, LoadOrMakeId(config.work_dir));
  }
  return config;
}

}  // namespace freeagent::node
