#include "common/watched_process.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>

#include "absl/strings/str_cat.h"
#include "common/fs.h"
#include "common/process.h"

namespace freeagent {

absl::StatusOr<std::unique_ptr<WatchedProcess>> WatchedProcess::Start(WatchedProcessOptions options) {
  if (options.argv.empty() || options.argv[0].empty()) {
    return absl::InvalidArgumentError("WatchedProcess: empty argv");
  }
  int log_fd = ::open(options.log_path.c_str(), O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0600);
  if (log_fd < 0) return ErrnoStatus(errno, "open log", options.log_path);

  std::unique_ptr<WatchedProcess> p(new WatchedProcess(options.log_path));
  ProcessOptions o;
  o.argv = std::move(options.argv);
  o.env = std::move(options.env);
  o.kill_grace = options.kill_grace;
  o.cancel = p->kill_;
  std::string log_path = options.log_path;
  OutputSink sink = [log_fd, log_path](std::string_view b) {
    WriteAll(log_fd, b.data(), b.size(), log_path).IgnoreError();
  };
  o.on_stdout = sink;
  o.on_stderr = sink;
  WatchedProcess* self = p.get();
  p->watcher_ = std::thread([self, o = std::move(o), log_fd, on_exit = std::move(options.on_exit)]() mutable {
    absl::StatusOr<ProcessResult> r = RunProcess(std::move(o));
    ::close(log_fd);
    if (!r.ok()) {
      self->Finish(std::string(r.status().message()), -1);
    } else if (r->term_signal != 0) {
      self->Finish(absl::StrCat("killed by signal ", r->term_signal), -1);
    } else {
      self->Finish(absl::StrCat("exit status ", r->exit_code), r->exit_code);
    }
    if (on_exit) on_exit();
  });
  return p;
}

WatchedProcess::~WatchedProcess() { Kill(); }

void WatchedProcess::Finish(std::string description, int exit_code) {
  std::lock_guard<std::mutex> lock(mu_);
  exited_ = true;
  exit_code_ = exit_code;
  exit_description_ = std::move(description);
  exit_cv_.notify_all();
}

bool WatchedProcess::exited() const {
  std::lock_guard<std::mutex> lock(mu_);
  return exited_;
}

bool WatchedProcess::killed() const {
  std::lock_guard<std::mutex> lock(mu_);
  return killed_;
}

std::string WatchedProcess::exit_description() const {
  std::lock_guard<std::mutex> lock(mu_);
  return exit_description_;
}

int WatchedProcess::exit_code() const {
  std::lock_guard<std::mutex> lock(mu_);
  return exit_code_;
}

bool WatchedProcess::WaitExit(std::chrono::milliseconds timeout) const {
  std::unique_lock<std::mutex> lock(mu_);
  return exit_cv_.wait_for(lock, timeout, [this] { return exited_; });
}

void WatchedProcess::Kill() {
  {
    std::lock_guard<std::mutex> lock(mu_);
    killed_ = true;
  }
  kill_.Cancel("stop");
  std::lock_guard<std::mutex> lock(join_mu_);
  if (watcher_.joinable()) watcher_.join();
}

std::string LogTail(const std::string& path, int lines) {
  constexpr off_t kMaxRead = 64 * 1024;
  int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) return "";
  struct stat st;
  std::string text;
  if (::fstat(fd, &st) == 0 && st.st_size > 0) {
    off_t start = st.st_size > kMaxRead ? st.st_size - kMaxRead : 0;
    text.resize(static_cast<size_t>(st.st_size - start));
    ssize_t n = ::pread(fd, text.data(), text.size(), start);
    text.resize(n > 0 ? static_cast<size_t>(n) : 0);
  }
  ::close(fd);
  while (!text.empty() && (text.back() == '\n' || text.back() == '\r')) text.pop_back();
  if (text.empty() || lines <= 0) return "";
  size_t pos = text.size();
  for (int i = 0; i < lines && pos != std::string::npos && pos > 0; ++i) pos = text.rfind('\n', pos - 1);
  std::string_view tail = pos == std::string::npos ? std::string_view(text) : std::string_view(text).substr(pos + 1);
  std::string clean;
  for (char c : tail) {
    if (c == '\n' || (c >= 0x20 && c < 0x7f)) clean += c;
  }
  return clean;
}

}  // namespace freeagent
