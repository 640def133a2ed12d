// Starts the real freeagent-controller and freeagent-worker binaries for end-to-end tests and
// benchmarks: loopback port 0 with --port-file, private temp dirs, stderr captured to files, and
// stop by pid (SIGTERM, then SIGKILL). Children die with the test process (PR_SET_PDEATHSIG).
#pragma once

#include <sys/types.h>

#include <chrono>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "absl/status/statusor.h"

namespace freeagent::testing {

// Paths of the programs under test. Each can be overridden by an environment variable
// (FREEAGENT_CONTROLLER_BIN, FREEAGENT_WORKER_BIN, FREEAGENT_CLI_BIN, FREEAGENT_STREAM_TOOL);
// the defaults are the build tree's targets.
std::string ControllerBinary();
std::string WorkerBinary();
std::string CliBinary();
std::string StreamToolBinary();
// The repository root (for examples/).
std::string SourceDir();

// One child process. Not thread-safe.
class ChildProcess {
 public:
  // fork + exec of `argv` with stdout and stderr appended to `log_path`, extra `env` on top of ours.
  static absl::StatusOr<std::unique_ptr<ChildProcess>> Start(
      const std::vector<std::string>& argv, const std::string& log_path,
      const std::map<std::string, std::string>& env = {});
  ~ChildProcess();  // kills (SIGKILL) and reaps if still running

  pid_t pid() const { return pid_; }
  const std::string& log_path() const { return log_path_; }
  const std::string& name() const { return name_; }
  bool Running();
  // SIGTERM, wait up to `grace`, then SIGKILL. Returns the exit code (128+signal if killed).
  int Stop(std::chrono::milliseconds grace = std::chrono::seconds(10));
  // Sends `sig` without waiting.
  void Signal(int sig);
  // SIGKILL and reap.
  void Kill();
  // Waits up to `timeout` for the process to exit on its own; the exit code or nullopt.
  std::optional<int> Wait(std::chrono::milliseconds timeout);
  std::optional<int> exit_code() const { return exit_code_; }

 private:
  ChildProcess(pid_t pid, std::string log_path, std::string name)
      : pid_(pid), log_path_(std::move(log_path)), name_(std::move(name)) {}
  void Reap(int wait_status);

  pid_t pid_;
  std::string log_path_;
  std::string name_;
  std::optional<int> exit_code_;
};

struct ControllerOptions {
  std::string data_dir;             // empty = a fresh dir under the cluster root
  std::string listen = "127.0.0.1:0";
  int liveness_timeout_ms = 0;      // 0 = binary default
  int heartbeat_interval_ms = 0;
  int max_attempts = 0;
  bool plaintext = true;  // --insecure: loopback tests run without TLS unless they configure it
  std::vector<std::string> extra_args;
};

struct WorkerOptions {
  std::string name;
  std::vector<std::string> labels;  // k=v
  int slots = 0;                    // 0 = binary default
  std::string work_dir;             // empty = a fresh dir under the cluster root
  int heartbeat_interval_ms = 0;
  std::string driver = "local";     // "static" needs a [static] table in a --config file
  std::string controller;           // address to dial; empty = the cluster's controller (address())
  bool plaintext = true;  // --insecure: loopback tests run without TLS unless they configure it
  std::vector<std::string> extra_args;
};

// A temp root with controllers and workers started in it; stops everything it started on
// destruction and removes the root (kept when FREEAGENT_KEEP_TEST_DIRS is set).
class Cluster {
 public:
  static absl::StatusOr<std::unique_ptr<Cluster>> Create(const std::string& name = "e2e");
  ~Cluster();

  // Starts a controller and waits (up to 20 s) until its port file appears. Its address is
  // address(); the last started controller is the current one.
  absl::Status StartController(ControllerOptions options = {});
  // SIGTERM and wait; the exit code.
  int StopController();
  ChildProcess* controller() { return controller_.get(); }
  const std::string& address() const { return address_; }
  int port() const { return port_; }
  const std::string& controller_data_dir() const { return controller_data_dir_; }

  // Starts a worker that dials address().
  absl::StatusOr<ChildProcess*> StartWorker(WorkerOptions options);

  const std::string& root() const { return root_; }
  // A new empty directory under the root.
  absl::StatusOr<std::string> MakeDir(const std::string& name);

  // The tail of every process log, for failure messages.
  std::string DumpLogs(size_t max_bytes_per_log = 16384) const;

 private:
  explicit Cluster(std::string root) : root_(std::move(root)) {}

  std::string root_;
  std::unique_ptr<ChildProcess> controller_;
  std::vector<std::unique_ptr<ChildProcess>> workers_;
  std::vector<std::string> logs_;
  std::string address_;
  int port_ = 0;
  std::string controller_data_dir_;
  int controller_starts_ = 0;
};

// Pids (other than ours) whose command line contains `needle`, from /proc.
std::vector<pid_t> ProcessesWithArg(const std::string& needle);

// Peak resident set size (VmHWM) of `pid` in bytes, from /proc/<pid>/status; 0 if unknown.
uint64_t PeakRssBytes(pid_t pid);

}  // namespace freeagent::testing
