// Runs host programs from an argv vector (never a shell string) in their own process group, with
// byte-exact streamed output, timeouts and cancellation that kill the whole group.
#pragma once

#include <sys/types.h>

#include <chrono>
#include <functional>
#include <map>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "common/cancellation.h"
#include "common/deadline.h"

namespace freeagent {

// Called with each piece of output as it arrives (binary-safe; no line buffering).
using OutputSink = std::function<void(std::string_view bytes)>;

struct ProcessOptions {
  std::vector<std::string> argv;                // argv[0] is looked up in PATH if it has no '/'
  std::map<std::string, std::string> env;       // added to (and overriding) the inherited environment
  bool clear_env = false;                       // start from an empty environment instead
  std::string cwd;                              // empty = inherit
  std::optional<std::string> stdin_data;        // empty optional = /dev/null
  OutputSink on_stdout;                         // null = captured into ProcessResult::stdout_data
  OutputSink on_stderr;                         // null = captured into ProcessResult::stderr_data
  Deadline deadline = Deadline::Infinite();     // total time
  std::chrono::milliseconds idle_timeout{0};    // no output for this long; 0 = none
  CancellationToken cancel;
  std::chrono::milliseconds kill_grace{10000};  // SIGTERM to the group, then SIGKILL after this
};

struct ProcessResult {
  int exit_code = -1;         // valid when term_signal == 0
  int term_signal = 0;        // signal that ended the process, if any
  bool timed_out = false;     // total deadline hit (the group was killed)
  bool idle_timed_out = false;
  bool cancelled = false;     // cancel token fired (the group was killed)
  std::string stdout_data;    // only when on_stdout was null
  std::string stderr_data;
  bool Succeeded() const { return term_signal == 0 && exit_code == 0 && !timed_out && !cancelled; }
};

// Runs the process to completion. Errors only when it cannot be started (NOT_FOUND for a missing
// program, with the name); a non-zero exit is a result, not an error.
// On timeout or cancel: SIGTERM to the process group, `kill_grace`, then SIGKILL, and waits for it.
absl::StatusOr<ProcessResult> RunProcess(ProcessOptions options);

// Sends `sig` to process group `pgid`; ESRCH is not an error.
absl::Status KillProcessGroup(pid_t pgid, int sig);

// The fields of /proc/<pid>/stat that process control needs.
struct ProcStat {
  char state = 0;  // 'R', 'S', 'Z', ...
  pid_t ppid = 0;
  pid_t pgrp = 0;
};
// nullopt if the process is gone (or /proc is unavailable).
std::optional<ProcStat> ReadProcStat(pid_t pid);

// Pids of all processes, from /proc.
std::vector<pid_t> ListPids();

// True if any process of group `pgid` is still alive.
bool ProcessGroupAlive(pid_t pgid);

}  // namespace freeagent
