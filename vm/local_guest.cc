#include "vm/local_guest.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstdio>
#include <cstdlib>

#include "absl/cleanup/cleanup.h"
#include "absl/strings/str_cat.h"
#include "common/archive.h"
#include "common/fs.h"
#include "common/sha256.h"
#include "common/status_macros.h"

namespace freeagent::vm {

std::string ShellQuote(const std::string& s) {
  std::string out = "'";
  for (char c : s) {
    if (c == '\'') {
      out += "'\\''";
    } else {
      out += c;
    }
  }
  out += "'";
  return out;
}

absl::StatusOr<ExecResult> LocalGuest::Exec(const ExecRequest& request) {
  ProcessOptions options;
  options.argv = {"/bin/sh", "-c", request.command};
  options.env = request.env;
  options.cwd = request.working_dir.empty() ? default_dir_ : request.working_dir;
  if (!options.cwd.empty()) {
    struct stat st;
    if (::stat(options.cwd.c_str(), &st) != 0) return ErrnoStatus(errno, "working directory", options.cwd);
    if (!S_ISDIR(st.st_mode)) {
      return absl::FailedPreconditionError(absl::StrCat("working directory ", options.cwd, " is not a directory"));
    }
  }
  options.stdin_data = request.stdin_data;
  // The runner captures output when a sink is null; a guest's caller that passes none wants it dropped.
  options.on_stdout = request.on_stdout ? request.on_stdout : [](std::string_view) {};
  options.on_stderr = request.on_stderr ? request.on_stderr : [](std::string_view) {};
  options.deadline = request.deadline;
  options.idle_timeout = request.idle_timeout;
  options.cancel = request.cancel;
  options.kill_grace = request.kill_grace;
  ASSIGN_OR_RETURN(ProcessResult r, RunProcess(std::move(options)));
  ExecResult result;
  result.exit_code = r.exit_code;
  result.signal = r.term_signal;
  result.timed_out = r.timed_out;
  result.idle_timed_out = r.idle_timed_out;
  result.cancelled = r.cancelled;
  return result;
}

absl::StatusOr<TransferResult> CopyFdToFile(int in_fd, const std::string& what, const std::string& out_path,
                                            int mode, uint64_t max_bytes, const CancellationToken& cancel) {
  int out_fd = ::open(out_path.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC | O_NOFOLLOW, 0600);
  if (out_fd < 0) return ErrnoStatus(errno, "create", out_path);
  bool ok = false;
  absl::Cleanup close_out = [&] {
    ::close(out_fd);
    if (!ok) ::unlink(out_path.c_str());
  };
  Sha256 hash;
  TransferResult result;
  std::string buf(1 << 20, '\0');
  for (;;) {
    if (cancel.IsCancelled()) return absl::CancelledError(absl::StrCat("copy of ", what, ": ", cancel.Reason()));
    ssize_t n = ::read(in_fd, buf.data(), buf.size());
    if (n < 0) {
      if (errno == EINTR) continue;
      return ErrnoStatus(errno, "read", what);
    }
    if (n == 0) break;
    result.size += static_cast<uint64_t>(n);
    if (max_bytes != 0 && result.size > max_bytes) {
      return absl::ResourceExhaustedError(
          absl::StrCat(what, " is larger than the limit of ", max_bytes, " bytes"));
    }
    hash.Update(buf.data(), static_cast<size_t>(n));
    RETURN_IF_ERROR(WriteAll(out_fd, buf.data(), static_cast<size_t>(n), out_path));
  }
  if (::fchmod(out_fd, static_cast<mode_t>(mode)) != 0) return ErrnoStatus(errno, "chmod", out_path);
  result.sha256 = hash.FinishHex();
  ok = true;
  return result;
}

absl::StatusOr<TransferResult> LocalGuest::Upload(const std::string& local_path, const std::string& remote_path,
                                                  int mode, const CancellationToken& cancel) {
  int in_fd = ::open(local_path.c_str(), O_RDONLY | O_CLOEXEC);
  if (in_fd < 0) return ErrnoStatus(errno, "open", local_path);
  absl::Cleanup close_in = [&] { ::close(in_fd); };
  return CopyFdToFile(in_fd, local_path, remote_path, mode, 0, cancel);
}

absl::StatusOr<TransferResult> LocalGuest::Download(const std::string& remote_path, const std::string& local_path,
                                                    uint64_t max_bytes, const CancellationToken& cancel) {
  // O_NOFOLLOW: an artifact is never read through a symlink the build planted.
  int in_fd = ::open(remote_path.c_str(), O_RDONLY | O_CLOEXEC | O_NOFOLLOW | O_NONBLOCK);
  if (in_fd < 0) {
    if (errno == ELOOP) {
      return absl::FailedPreconditionError(absl::StrCat(remote_path, " is a symlink; not followed"));
    }
    return ErrnoStatus(errno, "open", remote_path);
  }
  absl::Cleanup close_in = [&] { ::close(in_fd); };
  struct stat st;
  if (::fstat(in_fd, &st) != 0) return ErrnoStatus(errno, "stat", remote_path);
  if (!S_ISREG(st.st_mode)) {
    return absl::FailedPreconditionError(absl::StrCat(remote_path, " is not a regular file"));
  }
  if (max_bytes != 0 && static_cast<uint64_t>(st.st_size) > max_bytes) {
    return absl::ResourceExhaustedError(absl::StrCat(remote_path, " is ", st.st_size,
                                                     " bytes, larger than the limit of ", max_bytes, " bytes"));
  }
  int flags = ::fcntl(in_fd, F_GETFL);
  ::fcntl(in_fd, F_SETFL, flags & ~O_NONBLOCK);
  return CopyFdToFile(in_fd, remote_path, local_path, 0600, max_bytes, cancel);
}

absl::Status LocalGuest::UploadArchive(const std::string& archive_path, const std::string& remote_dir,
                                       const CancellationToken& cancel) {
  if (cancel.IsCancelled()) return absl::CancelledError(cancel.Reason());
  return UnpackArchive(archive_path, remote_dir);
}

absl::Status LocalGuest::UploadDirectory(const std::string& local_dir, const std::string& remote_dir,
                                         const CancellationToken& cancel) {
  if (cancel.IsCancelled()) return absl::CancelledError(cancel.Reason());
  RETURN_IF_ERROR(MakeDirs(remote_dir, 0700));
  const char* tmp = std::getenv("TMPDIR");
  ASSIGN_OR_RETURN(std::string scratch, MakePrivateTempDir(tmp && *tmp ? tmp : "/tmp", "freeagent-upload-"));
  absl::Cleanup remove_scratch = [&] { RemoveTree(scratch).IgnoreError(); };
  std::string archive = scratch + "/dir.tar.gz";
  PackOptions options;
  options.exclude_names.clear();  // an explicit directory copy takes everything
  RETURN_IF_ERROR(PackDirectory(local_dir, archive, options).status());
  return UnpackArchive(archive, remote_dir);
}

}  // namespace freeagent::vm
