// A long-running child process (a VM monitor such as `tart run` or qemu-system) watched on a thread of its
// own: RunProcess runs it in its own process group with stdout and stderr appended to a log file, its end
// is noticed as it happens (an optional callback fires), and Kill() ends the whole group.
#pragma once

#include <chrono>
#include <condition_variable>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include "absl/status/statusor.h"
#include "common/cancellation.h"

namespace freeagent {

struct WatchedProcessOptions {
  std::vector<std::string> argv;              // argv[0] is looked up in PATH if it has no '/'
  std::map<std::string, std::string> env;     // added to the inherited environment
  std::string log_path;                       // stdout and stderr appended here (created 0600)
  std::chrono::milliseconds kill_grace{2000};  // Kill(): SIGTERM to the group, this long, then SIGKILL
  // Called once, on the watcher thread, when the process has ended (on its own or by Kill()). Must be
  // quick and must not call back into the WatchedProcess.
  std::function<void()> on_exit;
};

// Thread-safe.
class WatchedProcess {
 public:
  // Opens the log and starts the watcher. Errors only when the log cannot be opened; a program that
  // cannot be started shows as an immediate end whose description says why.
  static absl::StatusOr<std::unique_ptr<WatchedProcess>> Start(WatchedProcessOptions options);

  // Kill()s a process that is still running.
  ~WatchedProcess();

  bool exited() const;
  // True once Kill() was called: an end after that is not "on its own".
  bool killed() const;
  // How it ended ("exit status 1", "killed by signal 9", "program not found: tart"); empty while running.
  std::string exit_description() const;
  // The exit status; -1 while running, when killed by a signal or when it never started.
  int exit_code() const;

  // Waits up to `timeout` for the end; true if it has ended.
  bool WaitExit(std::chrono::milliseconds timeout) const;

  // Ends the process group (SIGTERM, kill_grace, SIGKILL) and waits until it is gone. Idempotent.
  void Kill();

  const std::string& log_path() const { return log_path_; }

 private:
  explicit WatchedProcess(std::string log_path) : log_path_(std::move(log_path)) {}
  void Finish(std::string description, int exit_code);

  std::string log_path_;
  CancellationToken kill_;
  std::thread watcher_;
  std::mutex join_mu_;  // serializes joining the watcher

  mutable std::mutex mu_;
  mutable std::condition_variable exit_cv_;
  bool exited_ = false;
  bool killed_ = false;
  int exit_code_ = -1;
  std::string exit_description_;
};

// The last `lines` lines of the file at `path`, keeping only printable ASCII and newlines (console logs
// carry escape sequences); empty if it cannot be read.
std::string LogTail(const std::string& path, int lines);

}  // namespace freeagent
