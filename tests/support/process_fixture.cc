#include "tests/support/process_fixture.h"

#include <fcntl.h>
#include <signal.h>
#include <sys/prctl.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <cstdlib>
#include <fstream>
#include <sstream>
#include <thread>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/strip.h"
#include "common/fs.h"
#include "common/process.h"
#include "common/status_macros.h"

extern char** environ;

namespace freeagent::testing {
namespace {

using Clock = std::chrono::steady_clock;

std::string FromEnvOr(const char* var, const char* fallback) {
  const char* v = std::getenv(var);
  if (v != nullptr && v[0] != '\0') return v;
  return fallback;
}

int DecodeWaitStatus(int status) {
  if (WIFEXITED(status)) return WEXITSTATUS(status);
  if (WIFSIGNALED(status)) return 128 + WTERMSIG(status);
  return -1;
}

std::string BaseName(const std::string& path) {
  size_t slash = path.find_last_of('/');
  return slash == std::string::npos ? path : path.substr(slash + 1);
}

}  // namespace

#ifndef FA_CONTROLLER_BIN
#define FA_CONTROLLER_BIN "freeagent-controller"
#endif
#ifndef FA_WORKER_BIN
#define FA_WORKER_BIN "freeagent-worker"
#endif
#ifndef FA_CLI_BIN
#define FA_CLI_BIN "freeagent"
#endif
#ifndef FA_STREAM_TOOL
#define FA_STREAM_TOOL "fa_stream_tool"
#endif
#ifndef FA_SOURCE_DIR
#define FA_SOURCE_DIR "."
#endif

std::string ControllerBinary() { return FromEnvOr("FREEAGENT_CONTROLLER_BIN", FA_CONTROLLER_BIN); }
std::string WorkerBinary() { return FromEnvOr("FREEAGENT_WORKER_BIN", FA_WORKER_BIN); }
std::string CliBinary() { return FromEnvOr("FREEAGENT_CLI_BIN", FA_CLI_BIN); }
std::string StreamToolBinary() { return FromEnvOr("FREEAGENT_STREAM_TOOL", FA_STREAM_TOOL); }
std::string SourceDir() { return FA_SOURCE_DIR; }

// ---------------------------------------------------------------------------------------------
// ChildProcess

absl::StatusOr<std::unique_ptr<ChildProcess>> ChildProcess::Start(
    const std::vector<std::string>& argv, const std::string& log_path,
    const std::map<std::string, std::string>& env) {
  if (argv.empty()) return absl::InvalidArgumentError("empty argv");
  if (access(argv[0].c_str(), X_OK) != 0) return ErrnoStatus(errno, "cannot execute", argv[0]);

  // Everything the child needs is prepared before fork: only async-signal-safe calls after it.
  std::vector<char*> args;
  for (const std::string& a : argv) args.push_back(const_cast<char*>(a.c_str()));
  args.push_back(nullptr);
  std::map<std::string, std::string> merged;
  for (char** e = environ; *e != nullptr; ++e) {
    std::string kv(*e);
    size_t eq = kv.find('=');
    if (eq != std::string::npos) merged[kv.substr(0, eq)] = kv.substr(eq + 1);
  }
  for (const auto& [k, v] : env) merged[k] = v;
  std::vector<std::string> env_strings;
  for (const auto& [k, v] : merged) env_strings.push_back(absl::StrCat(k, "=", v));
  std::vector<char*> envp;
  for (const std::string& e : env_strings) envp.push_back(const_cast<char*>(e.c_str()));
  envp.push_back(nullptr);

  int log_fd = open(log_path.c_str(), O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0644);
  if (log_fd < 0) return ErrnoStatus(errno, "open", log_path);
  int null_fd = open("/dev/null", O_RDONLY | O_CLOEXEC);
  if (null_fd < 0) {
    close(log_fd);
    return ErrnoStatus(errno, "open", "/dev/null");
  }
  pid_t parent = getpid();
  pid_t pid = fork();
  if (pid < 0) {
    close(log_fd);
    close(null_fd);
    return ErrnoStatus(errno, "fork", argv[0]);
  }
  if (pid == 0) {
    prctl(PR_SET_PDEATHSIG, SIGKILL);
    if (getppid() != parent) _exit(127);
    dup2(null_fd, STDIN_FILENO);
    dup2(log_fd, STDOUT_FILENO);
    dup2(log_fd, STDERR_FILENO);
    sigset_t none;
    sigemptyset(&none);
    sigprocmask(SIG_SETMASK, &none, nullptr);
    execve(args[0], args.data(), envp.data());
    _exit(127);
  }
  close(log_fd);
  close(null_fd);
  return std::unique_ptr<ChildProcess>(new ChildProcess(pid, log_path, BaseName(argv[0])));
}

ChildProcess::~ChildProcess() {
  if (!exit_code_.has_value()) Kill();
}

void ChildProcess::Reap(int wait_status) { exit_code_ = DecodeWaitStatus(wait_status); }

bool ChildProcess::Running() {
  if (exit_code_.has_value()) return false;
  int status = 0;
  pid_t r = waitpid(pid_, &status, WNOHANG);
  if (r == pid_) {
    Reap(status);
    return false;
  }
  return r == 0;
}

void ChildProcess::Signal(int sig) {
  if (!exit_code_.has_value()) kill(pid_, sig);
}

std::optional<int> ChildProcess::Wait(std::chrono::milliseconds timeout) {
  auto until = Clock::now() + timeout;
  while (Running()) {
    if (Clock::now() >= until) return std::nullopt;
    std::this_thread::sleep_for(std::chrono::milliseconds(10));
  }
  return exit_code_;
}

int ChildProcess::Stop(std::chrono::milliseconds grace) {
  if (exit_code_.has_value()) return *exit_code_;
  Signal(SIGTERM);
  if (auto code = Wait(grace)) return *code;
  Kill();
  return *exit_code_;
}

void ChildProcess::Kill() {
  if (exit_code_.has_value()) return;
  kill(pid_, SIGKILL);
  int status = 0;
  while (waitpid(pid_, &status, 0) < 0 && errno == EINTR) {
  }
  Reap(status);
}

// ---------------------------------------------------------------------------------------------
// Cluster

absl::StatusOr<std::unique_ptr<Cluster>> Cluster::Create(const std::string& name) {
  const char* tmp = std::getenv("TMPDIR");
  std::string parent = tmp != nullptr && tmp[0] != '\0' ? tmp : "/tmp";
  ASSIGN_OR_RETURN(std::string root, MakePrivateTempDir(parent, absl::StrCat("freeagent-", name, "-")));
  return std::unique_ptr<Cluster>(new Cluster(root));
}

Cluster::~Cluster() {
  // Workers first so they do not spin reconnecting to a dead controller. The first SIGTERM
  // drains; a second one cancels whatever still runs, so no step outlives the test.
  for (auto& worker : workers_) worker->Signal(SIGTERM);
  for (auto& worker : workers_) {
    if (!worker->Wait(std::chrono::seconds(2)).has_value()) worker->Stop(std::chrono::seconds(5));
  }
  if (controller_) controller_->Stop(std::chrono::seconds(5));
  if (std::getenv("FREEAGENT_KEEP_TEST_DIRS") == nullptr) {
    RemoveTree(root_).IgnoreError();
  }
}

absl::StatusOr<std::string> Cluster::MakeDir(const std::string& name) {
  std::string path = absl::StrCat(root_, "/", name);
  RETURN_IF_ERROR(MakeDirs(path, 0700));
  return path;
}

absl::Status Cluster::StartController(ControllerOptions options) {
  if (controller_ && controller_->Running()) {
    return absl::FailedPreconditionError("a controller is already running");
  }
  int n = ++controller_starts_;
  if (options.data_dir.empty()) {
    ASSIGN_OR_RETURN(options.data_dir, MakeDir("controller-data"));
  }
  std::string port_file = absl::StrCat(root_, "/controller-", n, ".port");
  std::string log = absl::StrCat(root_, "/controller-", n, ".log");
  std::vector<std::string> argv = {ControllerBinary(), "--listen", options.listen, "--data-dir",
                                   options.data_dir, "--port-file", port_file};
  if (options.liveness_timeout_ms > 0) {
    argv.insert(argv.end(), {"--liveness-timeout-ms", std::to_string(options.liveness_timeout_ms)});
  }
  if (options.heartbeat_interval_ms > 0) {
    argv.insert(argv.end(), {"--heartbeat-interval-ms", std::to_string(options.heartbeat_interval_ms)});
  }
  if (options.max_attempts > 0) {
    argv.insert(argv.end(), {"--max-attempts", std::to_string(options.max_attempts)});
  }
  if (options.plaintext) argv.push_back("--insecure");
  argv.insert(argv.end(), options.extra_args.begin(), options.extra_args.end());
  ASSIGN_OR_RETURN(controller_, ChildProcess::Start(argv, log));
  logs_.push_back(log);
  controller_data_dir_ = options.data_dir;

  auto until = Clock::now() + std::chrono::seconds(20);
  while (Clock::now() < until) {
    if (!controller_->Running()) {
      return absl::InternalError(absl::StrCat("controller exited with ", *controller_->exit_code(),
                                              " before serving; log:\n", DumpLogs()));
    }
    absl::StatusOr<std::string> text = ReadFile(port_file);
    int port = 0;
    if (text.ok() && absl::SimpleAtoi(absl::StripAsciiWhitespace(*text), &port) && port > 0) {
      port_ = port;
      address_ = absl::StrCat("127.0.0.1:", port);
      return absl::OkStatus();
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
  }
  return absl::DeadlineExceededError(absl::StrCat("controller wrote no port file in 20 s; log:\n", DumpLogs()));
}

int Cluster::StopController() {
  if (!controller_) return -1;
  return controller_->Stop(std::chrono::seconds(10));
}

absl::StatusOr<ChildProcess*> Cluster::StartWorker(WorkerOptions options) {
  if (address_.empty()) return absl::FailedPreconditionError("start a controller first");
  int n = static_cast<int>(workers_.size()) + 1;
  if (options.name.empty()) options.name = absl::StrCat("worker-", n);
  if (options.work_dir.empty()) {
    ASSIGN_OR_RETURN(options.work_dir, MakeDir(absl::StrCat("work-", options.name)));
  }
  std::string log = absl::StrCat(root_, "/worker-", options.name, ".log");
  const std::string& controller = options.controller.empty() ? address_ : options.controller;
  std::vector<std::string> argv = {WorkerBinary(), "--controller", controller, "--name", options.name,
                                   "--work-dir", options.work_dir, "--driver", options.driver};
  for (const std::string& label : options.labels) argv.insert(argv.end(), {"--label", label});
  if (options.slots > 0) argv.insert(argv.end(), {"--slots", std::to_string(options.slots)});
  if (options.heartbeat_interval_ms > 0) {
    argv.insert(argv.end(), {"--heartbeat-interval-ms", std::to_string(options.heartbeat_interval_ms)});
  }
  if (options.plaintext) argv.push_back("--insecure");
  argv.insert(argv.end(), options.extra_args.begin(), options.extra_args.end());
  ASSIGN_OR_RETURN(std::unique_ptr<ChildProcess> worker, ChildProcess::Start(argv, log));
  logs_.push_back(log);
  workers_.push_back(std::move(worker));
  return workers_.back().get();
}

std::string Cluster::DumpLogs(size_t max_bytes_per_log) const {
  std::string out;
  for (const std::string& log : logs_) {
    absl::StatusOr<std::string> text = ReadFile(log);
    std::string body = text.ok() ? *text : std::string(text.status().message());
    if (body.size() > max_bytes_per_log) {
      body = "[...]\n" + body.substr(body.size() - max_bytes_per_log);
    }
    absl::StrAppend(&out, "----- ", log, " -----\n", body, "\n");
  }
  return out;
}

// ---------------------------------------------------------------------------------------------

std::vector<pid_t> ProcessesWithArg(const std::string& needle) {
  std::vector<pid_t> found;
  pid_t self = getpid();
  for (pid_t pid : ListPids()) {
    if (pid == self) continue;
    std::ifstream in(absl::StrCat("/proc/", pid, "/cmdline"), std::ios::binary);
    std::stringstream buffer;
    buffer << in.rdbuf();
    if (buffer.str().find(needle) != std::string::npos) found.push_back(pid);
  }
  return found;
}

uint64_t PeakRssBytes(pid_t pid) {
  std::ifstream in(absl::StrCat("/proc/", pid, "/status"));
  std::string line;
  while (std::getline(in, line)) {
    if (line.rfind("VmHWM:", 0) == 0) {
      std::istringstream fields(line.substr(6));
      uint64_t kb = 0;
      fields >> kb;
      return kb * 1024;
    }
  }
  return 0;
}

}  // namespace freeagent::testing
