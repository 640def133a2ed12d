#include "common/process.h"

#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <spawn.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstdlib>
#include <cstdio>
#include <cstring>
#include <thread>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "common/fs.h"

extern char** environ;

namespace freeagent {
namespace {

using Clock = std::chrono::steady_clock;

// Owns a file descriptor.
class Fd {
 public:
  Fd() = default;
  explicit Fd(int fd) : fd_(fd) {}
  Fd(Fd&& o) noexcept : fd_(o.Release()) {}
  Fd& operator=(Fd&& o) noexcept {
    Reset(o.Release());
    return *this;
  }
  ~Fd() { Reset(); }
  int get() const { return fd_; }
  int Release() {
    int f = fd_;
    fd_ = -1;
    return f;
  }
  void Reset(int fd = -1) {
    if (fd_ >= 0) ::close(fd_);
    fd_ = fd;
  }

 private:
  int fd_ = -1;
};

absl::Status MakePipe(Fd* read_end, Fd* write_end) {
  int fds[2];
  if (::pipe2(fds, O_CLOEXEC) != 0) return ErrnoStatus(errno, "pipe", "");
  read_end->Reset(fds[0]);
  write_end->Reset(fds[1]);
  return absl::OkStatus();
}

std::vector<std::string> BuildEnv(const ProcessOptions& o) {
  std::map<std::string, std::string> env;
  if (!o.clear_env) {
    for (char** e = environ; *e != nullptr; ++e) {
      std::string_view kv(*e);
      size_t eq = kv.find('=');
      if (eq == std::string_view::npos) continue;
      env.emplace(std::string(kv.substr(0, eq)), std::string(kv.substr(eq + 1)));
    }
  }
  for (const auto& [k, v] : o.env) env[k] = v;
  std::vector<std::string> out;
  out.reserve(env.size());
  for (const auto& [k, v] : env) out.push_back(absl::StrCat(k, "=", v));
  return out;
}

// Reads what is available from `fd`; returns false at EOF or on error.
bool Drain(int fd, const OutputSink& sink, std::string* capture) {
  char buf[65536];
  while (true) {
    ssize_t n = ::read(fd, buf, sizeof buf);
    if (n > 0) {
      std::string_view data(buf, static_cast<size_t>(n));
      if (sink) {
        sink(data);
      } else {
        capture->append(data);
      }
      continue;
    }
    if (n == 0) return false;
    if (errno == EINTR) continue;
    if (errno == EAGAIN) return true;
    return false;
  }
}

}  // namespace

absl::Status KillProcessGroup(pid_t pgid, int sig) {
  if (pgid <= 1) return absl::InvalidArgumentError(absl::StrCat("refusing to signal process group ", pgid));
  if (::kill(-pgid, sig) != 0 && errno != ESRCH) {
    return ErrnoStatus(errno, absl::StrCat("kill -", sig, " process group"), std::to_string(pgid));
  }
  return absl::OkStatus();
}

bool ProcessGroupAlive(pid_t pgid) {
  if (pgid <= 1) return false;
  if (::kill(-pgid, 0) != 0 && errno != EPERM) return false;
  // kill(0) also succeeds for zombies that nobody reaped yet; only running members count.
  for (pid_t pid : ListPids()) {
    std::optional<ProcStat> st = ReadProcStat(pid);
    if (st && st->pgrp == pgid && st->state != 'Z' && st->state != 'X') return true;
  }
  return false;
}

std::optional<ProcStat> ReadProcStat(pid_t pid) {
  absl::StatusOr<std::string> text = ReadFile(absl::StrCat("/proc/", pid, "/stat"));
  if (!text.ok()) return std::nullopt;
  // Format: pid (comm) state ppid pgrp ...; comm may contain spaces and parentheses.
  size_t close = text->rfind(')');
  if (close == std::string::npos) return std::nullopt;
  ProcStat st;
  int ppid = 0, pgrp = 0;
  if (std::sscanf(text->c_str() + close + 1, " %c %d %d", &st.state, &ppid, &pgrp) != 3) return std::nullopt;
  st.ppid = ppid;
  st.pgrp = pgrp;
  return st;
}

std::vector<pid_t> ListPids() {
  std::vector<pid_t> pids;
  absl::StatusOr<std::vector<std::string>> names = ListDirectory("/proc");
  if (!names.ok()) return pids;
  for (const std::string& n : *names) {
    if (!n.empty() && std::all_of(n.begin(), n.end(), [](char c) { return c >= '0' && c <= '9'; })) {
      pids.push_back(static_cast<pid_t>(std::atoi(n.c_str())));
    }
  }
  return pids;
}

absl::StatusOr<ProcessResult> RunProcess(ProcessOptions o) {
  if (o.argv.empty() || o.argv[0].empty()) return absl::InvalidArgumentError("RunProcess: empty argv");

  Fd out_r, out_w, err_r, err_w, in_r, in_w;
  if (auto s = MakePipe(&out_r, &out_w); !s.ok()) return s;
  if (auto s = MakePipe(&err_r, &err_w); !s.ok()) return s;
  if (o.stdin_data.has_value()) {
    if (auto s = MakePipe(&in_r, &in_w); !s.ok()) return s;
  }

  posix_spawn_file_actions_t actions;
  posix_spawn_file_actions_init(&actions);
  if (o.stdin_data.has_value()) {
    posix_spawn_file_actions_adddup2(&actions, in_r.get(), 0);
  } else {
    posix_spawn_file_actions_addopen(&actions, 0, "/dev/null", O_RDONLY, 0);
  }
  posix_spawn_file_actions_adddup2(&actions, out_w.get(), 1);
  posix_spawn_file_actions_adddup2(&actions, err_w.get(), 2);
  if (!o.cwd.empty()) posix_spawn_file_actions_addchdir_np(&actions, o.cwd.c_str());

  // Own process group (so the whole tree can be signalled), default signal dispositions, empty mask:
  // the caller may block signals in its threads.
  posix_spawnattr_t attr;
  posix_spawnattr_init(&attr);
  sigset_t all, none;
  sigfillset(&all);
  sigemptyset(&none);
  posix_spawnattr_setsigdefault(&attr, &all);
  posix_spawnattr_setsigmask(&attr, &none);
  posix_spawnattr_setpgroup(&attr, 0);
  posix_spawnattr_setflags(&attr, POSIX_SPAWN_SETPGROUP | POSIX_SPAWN_SETSIGDEF | POSIX_SPAWN_SETSIGMASK);

  std::vector<std::string> env_strings = BuildEnv(o);
  std::vector<char*> envp;
  for (auto& e : env_strings) envp.push_back(e.data());
  envp.push_back(nullptr);
  std::vector<char*> argv;
  for (auto& a : o.argv) argv.push_back(a.data());
  argv.push_back(nullptr);

  // posix_spawnp searches the PATH of this process, not the child's environment.
  pid_t pid = -1;
  int rc = posix_spawnp(&pid, argv[0], &actions, &attr, argv.data(), envp.data());
  posix_spawn_file_actions_destroy(&actions);
  posix_spawnattr_destroy(&attr);
  if (rc != 0) {
    if (rc == ENOENT) return absl::NotFoundError(absl::StrCat("program not found: ", o.argv[0]));
    if (rc == ENOTDIR && !o.cwd.empty()) return ErrnoStatus(rc, "chdir", o.cwd);
    return ErrnoStatus(rc, absl::StrCat("start ", o.argv[0]), absl::StrJoin(o.argv, " "));
  }
  out_w.Reset();
  err_w.Reset();
  in_r.Reset();
  ::fcntl(out_r.get(), F_SETFL, O_NONBLOCK);
  ::fcntl(err_r.get(), F_SETFL, O_NONBLOCK);
  if (in_w.get() >= 0) ::fcntl(in_w.get(), F_SETFL, O_NONBLOCK);

  ProcessResult result;
  std::string_view pending_in = o.stdin_data.has_value() ? std::string_view(*o.stdin_data) : "";
  if (pending_in.empty()) in_w.Reset();

  Clock::time_point last_output = Clock::now();
  bool kill_pending = false;                   // SIGTERM sent, SIGKILL due at kill_at
  Clock::time_point kill_at{};
  std::optional<Clock::time_point> exited_at; // leader exit seen (not yet reaped)
  bool term_sent = false;

  auto start_kill = [&](bool* flag) {
    *flag = true;
    if (!term_sent) {
      term_sent = true;
      KillProcessGroup(pid, SIGTERM).IgnoreError();
      kill_at = Clock::now() + o.kill_grace;
      kill_pending = true;
    }
  };

  while (true) {
    // The leader's exit is observed without reaping it, so its pgid cannot be reused while we still
    // signal the group.
    if (!exited_at) {
      siginfo_t info;
      std::memset(&info, 0, sizeof info);
      if (::waitid(P_PID, static_cast<id_t>(pid), &info, WEXITED | WNOHANG | WNOWAIT) == 0 && info.si_pid == pid) {
        exited_at = Clock::now();
      }
    }
    bool out_open = out_r.get() >= 0, err_open = err_r.get() >= 0;
    if (exited_at && !out_open && !err_open) break;
    // Leftover background processes may hold the pipes open after the leader exited: give them a
    // short time to flush, then end the group.
    if (exited_at && Clock::now() - *exited_at > std::chrono::milliseconds(500)) break;

    auto now = Clock::now();
    if (!term_sent) {
      if (o.cancel.IsCancelled()) start_kill(&result.cancelled);
      else if (o.deadline.Expired()) start_kill(&result.timed_out);
      else if (o.idle_timeout.count() > 0 && now - last_output >= o.idle_timeout) start_kill(&result.idle_timed_out);
    }
    if (kill_pending && now >= kill_at) {
      KillProcessGroup(pid, SIGKILL).IgnoreError();
      kill_pending = false;
    }

    pollfd fds[3];
    int nfds = 0;
    int out_idx = -1, err_idx = -1, in_idx = -1;
    if (out_open) { out_idx = nfds; fds[nfds++] = {out_r.get(), POLLIN, 0}; }
    if (err_open) { err_idx = nfds; fds[nfds++] = {err_r.get(), POLLIN, 0}; }
    if (in_w.get() >= 0) { in_idx = nfds; fds[nfds++] = {in_w.get(), POLLOUT, 0}; }
    int timeout_ms = 50;  // bounds the latency of cancel, deadline and exit checks
    int n = ::poll(fds, static_cast<nfds_t>(nfds), timeout_ms);
    if (n < 0 && errno != EINTR) break;
    if (n <= 0) continue;
    if (out_idx >= 0 && fds[out_idx].revents != 0) {
      last_output = Clock::now();
      if (!Drain(out_r.get(), o.on_stdout, &result.stdout_data)) out_r.Reset();
    }
    if (err_idx >= 0 && fds[err_idx].revents != 0) {
      last_output = Clock::now();
      if (!Drain(err_r.get(), o.on_stderr, &result.stderr_data)) err_r.Reset();
    }
    if (in_idx >= 0 && fds[in_idx].revents != 0) {
      ssize_t w = ::write(in_w.get(), pending_in.data(), pending_in.size());
      if (w > 0) pending_in.remove_prefix(static_cast<size_t>(w));
      if ((w < 0 && errno != EAGAIN && errno != EINTR) || pending_in.empty()) in_w.Reset();
    }
  }

  // Nothing of the process may outlive this call.
  KillProcessGroup(pid, SIGKILL).IgnoreError();
  int status = 0;
  while (::waitpid(pid, &status, 0) < 0 && errno == EINTR) {
  }
  // SIGKILL is delivered asynchronously: wait (bounded) until no member of the group still runs.
  for (int i = 0; i < 400 && ProcessGroupAlive(pid); ++i) {
    std::this_thread::sleep_for(std::chrono::milliseconds(5));
  }
  // Output that arrived before the group died.
  if (out_r.get() >= 0) Drain(out_r.get(), o.on_stdout, &result.stdout_data);
  if (err_r.get() >= 0) Drain(err_r.get(), o.on_stderr, &result.stderr_data);
  if (WIFEXITED(status)) {
    result.exit_code = WEXITSTATUS(status);
  } else if (WIFSIGNALED(status)) {
    result.term_signal = WTERMSIG(status);
  }
  return result;
}

}  // namespace freeagent
