#include "tests/support/sshd_fixture.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <pwd.h>
#include <signal.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

#include <chrono>
#include <cstdio>
#include <thread>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_split.h"
#include "common/fs.h"
#include "common/process.h"
#include "common/status_macros.h"

namespace freeagent::testing {
namespace {

absl::Status Run(const std::vector<std::string>& argv) {
  ProcessOptions o;
  o.argv = argv;
  o.deadline = Deadline::After(std::chrono::seconds(30));
  ASSIGN_OR_RETURN(ProcessResult r, RunProcess(o));
  if (!r.Succeeded()) {
    return absl::InternalError(absl::StrCat(argv[0], " failed (exit ", r.exit_code, "): ", r.stderr_data));
  }
  return absl::OkStatus();
}

absl::StatusOr<std::string> Output(const std::vector<std::string>& argv) {
  ProcessOptions o;
  o.argv = argv;
  o.deadline = Deadline::After(std::chrono::seconds(30));
  ASSIGN_OR_RETURN(ProcessResult r, RunProcess(o));
  if (!r.Succeeded()) return absl::InternalError(absl::StrCat(argv[0], " failed: ", r.stderr_data));
  return r.stdout_data;
}

bool PortAccepts(int port) {
  int fd = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_port = htons(static_cast<uint16_t>(port));
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  bool ok = ::connect(fd, reinterpret_cast<sockaddr*>(&addr), sizeof addr) == 0;
  ::close(fd);
  return ok;
}

}  // namespace

absl::StatusOr<int> FreeLoopbackPort() {
  int fd = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  if (::bind(fd, reinterpret_cast<sockaddr*>(&addr), sizeof addr) != 0) {
    ::close(fd);
    return absl::UnavailableError("bind 127.0.0.1:0 failed");
  }
  socklen_t len = sizeof addr;
  ::getsockname(fd, reinterpret_cast<sockaddr*>(&addr), &len);
  ::close(fd);
  return static_cast<int>(ntohs(addr.sin_port));
}

absl::StatusOr<std::unique_ptr<SshdFixture>> SshdFixture::Start(const SshdOptions& options) {
  if (::access("/usr/sbin/sshd", X_OK) != 0) {
    return absl::FailedPreconditionError("/usr/sbin/sshd is missing: run scripts/bootstrap.sh (openssh-server)");
  }
  std::unique_ptr<SshdFixture> f(new SshdFixture());
  ASSIGN_OR_RETURN(f->dir_, MakePrivateTempDir("/tmp", "fa-sshd-"));
  struct passwd* pw = ::getpwuid(::geteuid());
  if (pw == nullptr) return absl::InternalError("no passwd entry for the current user");
  f->user_ = pw->pw_name;
  const std::string& d = f->dir_;
  for (const auto& [type, name] : std::vector<std::pair<std::string, std::string>>{
           {"ed25519", "host_ed25519"}, {"ed25519", "user_ed25519"}, {"ecdsa", "user_ecdsa"},
           {"rsa", "user_rsa"}, {"ed25519", "stranger_ed25519"}}) {
    RETURN_IF_ERROR(Run({"ssh-keygen", "-q", "-t", type, "-N", "", "-C", name, "-f", d + "/" + name}));
  }
  RETURN_IF_ERROR(MakeDirs(d + "/home", 0700));
  std::string bashrc;
  if (options.login_delay.count() > 0) {
    bashrc = absl::StrFormat("sleep %.3f\n", options.login_delay.count() / 1000.0);
  }
  RETURN_IF_ERROR(WriteFileAtomic(d + "/home/.bashrc", bashrc, 0600));
  std::string authorized;
  for (const char* k : {"user_ed25519", "user_ecdsa", "user_rsa"}) {
    ASSIGN_OR_RETURN(std::string pub, ReadFile(absl::StrCat(d, "/", k, ".pub")));
    authorized += pub;
  }
  RETURN_IF_ERROR(WriteFileAtomic(d + "/authorized_keys", authorized, 0600));
  ASSIGN_OR_RETURN(std::string fp, Output({"ssh-keygen", "-lf", d + "/host_ed25519.pub"}));
  std::vector<std::string> parts = absl::StrSplit(fp, ' ');
  if (parts.size() < 2) return absl::InternalError(absl::StrCat("unexpected ssh-keygen -lf output: ", fp));
  f->host_fingerprint_ = parts[1];
  ASSIGN_OR_RETURN(f->port_, FreeLoopbackPort());
  ASSIGN_OR_RETURN(std::string host_pub, ReadFile(d + "/host_ed25519.pub"));
  std::vector<std::string> pub_parts = absl::StrSplit(host_pub, ' ');
  RETURN_IF_ERROR(WriteFileAtomic(
      d + "/known_hosts", absl::StrCat("[127.0.0.1]:", f->port_, " ", pub_parts[0], " ", pub_parts[1], "\n"), 0600));
  if (::geteuid() == 0) {
    // sshd's privilege-separation directory.
    RETURN_IF_ERROR(MakeDirs("/run/sshd", 0755));
  }
  RETURN_IF_ERROR(f->Launch());
  return f;
}

absl::Status SshdFixture::Launch() {
  const std::string& d = dir_;
  std::string config = absl::StrCat(
      "Port ", port_, "\nListenAddress 127.0.0.1\nHostKey ", d, "/host_ed25519\nPidFile ", d,
      "/sshd.pid\nAuthorizedKeysFile ", d,
      "/authorized_keys\nPasswordAuthentication no\nKbdInteractiveAuthentication no\nUsePAM no\n"
      "StrictModes no\nPermitRootLogin prohibit-password\nSubsystem sftp internal-sftp\nLogLevel VERBOSE\n"
      "MaxSessions 64\nMaxStartups 64\nPrintMotd no\nAcceptEnv none\nSetEnv HOME=", d, "/home\n");
  RETURN_IF_ERROR(WriteFileAtomic(d + "/sshd_config", config, 0600));
  RETURN_IF_ERROR(Run({"/usr/sbin/sshd", "-t", "-f", d + "/sshd_config"}));
  ASSIGN_OR_RETURN(sshd_, ChildProcess::Start({"/usr/sbin/sshd", "-D", "-e", "-f", d + "/sshd_config"},
                                              d + "/sshd.log"));
  // Up to 20 s: a process start can take seconds on a loaded machine.
  for (int i = 0; i < 800; ++i) {
    if (PortAccepts(port_)) return absl::OkStatus();
    if (!sshd_->Running()) break;
    std::this_thread::sleep_for(std::chrono::milliseconds(25));
  }
  return absl::UnavailableError(absl::StrCat("sshd did not start on port ", port_, ": ", LogTail()));
}

SshdFixture::~SshdFixture() {
  Stop();
  if (std::getenv("FREEAGENT_KEEP_TEST_DIRS") == nullptr) RemoveTree(dir_).IgnoreError();
}

std::vector<pid_t> SshdFixture::SessionPids() const {
  std::vector<pid_t> out;
  if (!sshd_) return out;
  // Children of the listener, then their children (privilege-separated session processes).
  std::vector<pid_t> parents = {sshd_->pid()};
  for (size_t i = 0; i < parents.size(); ++i) {
    for (pid_t pid : ListPids()) {
      std::optional<ProcStat> st = ReadProcStat(pid);
      if (st && st->ppid == parents[i]) {
        out.push_back(pid);
        parents.push_back(pid);
      }
    }
  }
  return out;
}

void SshdFixture::Stop() {
  if (!sshd_) return;
  std::vector<pid_t> sessions = SessionPids();
  sshd_->Stop(std::chrono::seconds(5));
  for (pid_t p : sessions) ::kill(p, SIGKILL);
  sshd_.reset();
}

absl::Status SshdFixture::Restart() {
  Stop();
  return Launch();
}

std::string SshdFixture::LogTail() const {
  auto log = ReadFile(dir_ + "/sshd.log");
  if (!log.ok()) return "(no sshd log)";
  return log->size() > 4000 ? log->substr(log->size() - 4000) : *log;
}

std::vector<std::string> SshdFixture::SshClientArgs() const {
  return {"-p", std::to_string(port_), "-i", ed25519_key(), "-o", "IdentitiesOnly=yes", "-o",
          "UserKnownHostsFile=" + known_hosts(), "-o", "StrictHostKeyChecking=yes", "-o", "BatchMode=yes",
          "-o", "LogLevel=ERROR"};
}

}  // namespace freeagent::testing
