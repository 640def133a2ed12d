// The Guest interface: how the worker reaches the machine a job runs on. Every driver hands the job
// runner a Guest; `artifacts` (and later `signing`) only ever talk to the machine through it, so the
// same code drives the worker host itself (LocalGuest) and a VM or bare-metal Mac over SSH.
#pragma once

#include <chrono>
#include <cstdint>
#include <map>
#include <optional>
#include <string>

#include "absl/status/statusor.h"
#include "common/cancellation.h"
#include "common/deadline.h"
#include "common/process.h"

namespace freeagent::vm {

// One command in the guest.
struct ExecRequest {
  // A shell script, run as `/bin/sh -c <command>` in the guest, in its own process group.
  std::string command;
  // Added to (and overriding) the guest's environment. Values may be secrets: implementations must
  // never put them on a command line (host or guest).
  std::map<std::string, std::string> env;
  std::string working_dir;                    // absolute guest path; empty = implementation default
  std::optional<std::string> stdin_data;      // empty optional = no input (EOF at once)
  OutputSink on_stdout;                       // binary-safe, called as bytes arrive; null = discarded
  OutputSink on_stderr;
  std::chrono::milliseconds idle_timeout{0};  // no output for this long -> killed; 0 = none
  Deadline deadline = Deadline::Infinite();   // total time
  CancellationToken cancel;
  std::chrono::milliseconds kill_grace{10000};  // SIGTERM to the group, this long, then SIGKILL
};

// How a command ended. Timeouts and cancel are outcomes, not errors.
struct ExecResult {
  int exit_code = -1;       // valid when signal == 0
  int signal = 0;           // the signal that ended the command, if any
  bool timed_out = false;   // total deadline hit; the process group was killed
  bool idle_timed_out = false;
  bool cancelled = false;   // the cancel token fired; the process group was killed
  bool Succeeded() const {
    return signal == 0 && exit_code == 0 && !timed_out && !idle_timed_out && !cancelled;
  }
};

// What a file transfer moved, measured on the way.
struct TransferResult {
  uint64_t size = 0;
  std::string sha256;  // lowercase hex
};

class Guest {
 public:
  virtual ~Guest() = default;

  // Runs `request.command`. Errors only when it cannot be run at all (the guest is unreachable, the
  // working dir is missing, ...); a non-zero exit, a signal, a timeout or a cancel is an ExecResult.
  // Thread-safe: several commands may run at once on one Guest.
  virtual absl::StatusOr<ExecResult> Exec(const ExecRequest& request) = 0;

  // Copies the host file `local_path` to `remote_path` (created or truncated, then given `mode`).
  virtual absl::StatusOr<TransferResult> Upload(const std::string& local_path, const std::string& remote_path,
                                                int mode, const CancellationToken& cancel) = 0;

  // Copies the guest file `remote_path` to the host file `local_path`. Refuses to follow a symlink at
  // `remote_path` (FAILED_PRECONDITION). More than `max_bytes` (0 = no limit) -> RESOURCE_EXHAUSTED and
  // no local file is left behind. NOT_FOUND names the path.
  virtual absl::StatusOr<TransferResult> Download(const std::string& remote_path, const std::string& local_path,
                                                  uint64_t max_bytes, const CancellationToken& cancel) = 0;

  // Unpacks the host tar.gz `archive_path` into the existing guest directory `remote_dir`, as one tar
  // stream. The archive is checked first (no absolute paths, `..`, devices, writes through symlinks).
  virtual absl::Status UploadArchive(const std::string& archive_path, const std::string& remote_dir,
                                     const CancellationToken& cancel) = 0;

  // Copies the contents of the host directory `local_dir` into the guest directory `remote_dir` (created
  // if missing) as one tar stream, keeping modes and symlinks.
  virtual absl::Status UploadDirectory(const std::string& local_dir, const std::string& remote_dir,
                                       const CancellationToken& cancel) = 0;

  // Human-readable identity for logs, e.g. "local" or "builder@127.0.0.1:2222".
  virtual std::string Describe() const = 0;
};

// Quotes `s` for a POSIX shell: the result is one word whatever `s` contains.
std::string ShellQuote(const std::string& s);

}  // namespace freeagent::vm
