#include "vm/qemu_driver.h"

#include <fcntl.h>
#include <netinet/in.h>
#include <poll.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <csignal>
#include <cstring>
#include <mutex>
#include <thread>

#include <google/protobuf/struct.pb.h>
#include <google/protobuf/util/json_util.h>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "common/clock.h"
#include "common/fs.h"
#include "common/process.h"
#include "common/status_macros.h"
#include "common/watched_process.h"
#include "vm/ssh_guest.h"
#include "vm/workspace.h"

namespace freeagent::vm {
namespace {

using std::chrono::milliseconds;

absl::Status CheckName(const std::string& name) {
  if (name.empty() || name == "." || name == ".." || name.find('/') != std::string::npos) {
    return absl::InvalidArgumentError(absl::StrCat("bad VM name \"", name, "\""));
  }
  return absl::OkStatus();
}

bool FileExists(const std::string& path) {
  struct stat st;
  return ::stat(path.c_str(), &st) == 0 && S_ISREG(st.st_mode);
}

// A free TCP port on 127.0.0.1 (the kernel picks it; QEMU binds it right after, a collision is retried).
absl::StatusOr<int> FreeLoopbackPort() {
  int fd = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (fd < 0) return ErrnoStatus(errno, "socket", "127.0.0.1");
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  addr.sin_port = 0;
  socklen_t len = sizeof addr;
  if (::bind(fd, reinterpret_cast<sockaddr*>(&addr), sizeof addr) != 0 ||
      ::getsockname(fd, reinterpret_cast<sockaddr*>(&addr), &len) != 0) {
    int e = errno;
    ::close(fd);
    return ErrnoStatus(e, "bind", "127.0.0.1:0");
  }
  ::close(fd);
  return static_cast<int>(ntohs(addr.sin_port));
}

// A minimal QMP client: connect, negotiate capabilities, run one command, read its reply.
absl::Status QmpCommand(const std::string& socket_path, const std::string& command, milliseconds timeout) {
  Deadline deadline = Deadline::After(timeout);
  int fd = ::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (fd < 0) return ErrnoStatus(errno, "socket", socket_path);
  auto close_fd = [fd] { ::close(fd); };
  sockaddr_un addr{};
  addr.sun_family = AF_UNIX;
  if (socket_path.size() >= sizeof(addr.sun_path)) {
    close_fd();
    return absl::InvalidArgumentError(absl::StrCat("QMP socket path too long: ", socket_path));
  }
  std::memcpy(addr.sun_path, socket_path.c_str(), socket_path.size() + 1);
  if (::connect(fd, reinterpret_cast<sockaddr*>(&addr), sizeof addr) != 0) {
    int e = errno;
    close_fd();
    return ErrnoStatus(e, "connect QMP", socket_path);
  }
  std::string buffer;
  // Reads until a complete line containing `want` (or an error reply) arrives.
  auto read_until = [&](std::string_view want) -> absl::Status {
    while (true) {
      size_t nl;
      while ((nl = buffer.find('\n')) != std::string::npos) {
        std::string line = buffer.substr(0, nl);
        buffer.erase(0, nl + 1);
        if (line.find("\"error\"") != std::string::npos) {
          return absl::InternalError(absl::StrCat("QMP ", command, ": ", line));
        }
        if (line.find(want) != std::string::npos) return absl::OkStatus();
      }
      auto left = std::chrono::duration_cast<milliseconds>(deadline.Remaining()).count();
      if (left <= 0) return absl::DeadlineExceededError(absl::StrCat("QMP ", command, ": no reply"));
      pollfd p{fd, POLLIN, 0};
      int r = ::poll(&p, 1, static_cast<int>(left));
      if (r < 0 && errno == EINTR) continue;
      if (r <= 0) continue;
      char chunk[4096];
      ssize_t n = ::read(fd, chunk, sizeof chunk);
      if (n < 0 && errno == EINTR) continue;
      if (n <= 0) return absl::UnavailableError(absl::StrCat("QMP ", command, ": connection closed"));
      buffer.append(chunk, static_cast<size_t>(n));
    }
  };
  auto send = [&](const std::string& json) -> absl::Status {
    std::string line = json + "\n";
    if (::send(fd, line.data(), line.size(), MSG_NOSIGNAL) != static_cast<ssize_t>(line.size())) {
      return ErrnoStatus(errno, "QMP send", socket_path);
    }
    return absl::OkStatus();
  };
  absl::Status s = read_until("\"QMP\"");
  if (s.ok()) s = send(R"({"execute":"qmp_capabilities"})");
  if (s.ok()) s = read_until("\"return\"");
  if (s.ok()) s = send(absl::StrCat(R"({"execute":")", command, R"("})"));
  // `quit` may close the socket before its reply is read; that is success.
  if (s.ok()) {
    s = read_until("\"return\"");
    if (command == "quit" && absl::IsUnavailable(s)) s = absl::OkStatus();
  }
  close_fd();
  return s;
}

class QemuVm : public Vm {
 public:
  QemuVm(const QemuDriverConfig& config, std::string name, std::string dir, ImageEntry entry, ImageManifest manifest,
         uint32_t cpus, uint32_t memory_mb)
      : config_(config),
        name_(std::move(name)),
        dir_(std::move(dir)),
        entry_(std::move(entry)),
        manifest_(std::move(manifest)),
        cpus_(cpus),
        memory_mb_(memory_mb) {
    std::string root = !entry_.workspace_root.empty() ? entry_.workspace_root : manifest_.workspace_root;
    if (root.empty()) root = "/tmp/freeagent-jobs";
    workspace_root_ = root;
    workspace_ = absl::StrCat(root, "/", name_);
  }

  ~QemuVm() override { Stop(milliseconds(0)).IgnoreError(); }

  const std::string& name() const override { return name_; }
  void SetProgressSink(std::function<void(const std::string&)> sink) override { progress_ = std::move(sink); }

  absl::Status Start(const Deadline& deadline, const CancellationToken& cancel) override {
    std::string accel = QemuDriver::ResolveAccel(config_.accel);
    for (int attempt = 1;; ++attempt) {
      if (cancel.IsCancelled()) return absl::CancelledError(cancel.Reason());
      ASSIGN_OR_RETURN(port_, FreeLoopbackPort());
      auto started = std::chrono::steady_clock::now();
      Launch(accel);
      // QEMU is up once its QMP socket answers; a port taken in between makes it exit at once.
      absl::Status up = WaitForQmp(deadline, cancel);
      if (up.ok()) {
        Progress(absl::StrCat("vm: qemu running (accel ", accel, ", ", cpus_, " cpus, ", memory_mb_,
                              " MB, ssh on 127.0.0.1:", port_, ") after ", MillisSince(started), " ms"));
        return absl::OkStatus();
      }
      std::string log = LogTail(dir_ + "/qemu.log", 5);
      bool port_taken = absl::StrContains(log, "host forwarding") || absl::StrContains(log, "Address already in use");
      Kill();
      if (!port_taken || attempt >= 3) {
        if (cancel.IsCancelled()) return absl::CancelledError(cancel.Reason());
        return absl::UnavailableError(absl::StrCat("VM ", name_, ": qemu did not start: ", up.message(),
                                                   log.empty() ? "" : "; qemu said: ", log));
      }
      Progress(absl::StrCat("vm: port ", port_, " was taken, retrying with another"));
    }
  }

  absl::Status WaitReady(const Deadline& deadline, const CancellationToken& cancel) override {
    // Waiting ends early if the job is cancelled or the VM dies while booting.
    CancellationToken wait;
    cancel.OnCancel([wait, cancel] { wait.Cancel(cancel.Reason()); });
    {
      std::lock_guard<std::mutex> lock(mu_);
      ready_wait_ = wait;
      if (process_ != nullptr && process_->exited()) wait.Cancel("VM exited");
    }
    SshConfig ssh;
    ssh.host = "127.0.0.1";
    ssh.port = port_;
    ssh.user = !entry_.user.empty() ? entry_.user : manifest_.user;
    ssh.private_key_path = !entry_.private_key_path.empty() ? entry_.private_key_path : manifest_.key;
    ssh.host_key_fingerprint =
        !entry_.host_key_fingerprint.empty() ? entry_.host_key_fingerprint : manifest_.host_key_fingerprint;
    ssh.on_progress = progress_;
    Deadline boot = deadline.Min(Deadline::After(config_.boot_timeout));
    ssh.connect_timeout = std::chrono::duration_cast<milliseconds>(boot.Remaining());
    auto started = std::chrono::steady_clock::now();
    absl::StatusOr<std::unique_ptr<SshGuest>> guest = SshGuest::Connect(ssh, wait);
    std::string why;
    if (Exited(&why)) return absl::UnavailableError(why);
    if (!guest.ok()) {
      if (cancel.IsCancelled()) return absl::CancelledError(cancel.Reason());
      std::string console = LogTail(dir_ + "/console.log", 5);
      return absl::Status(guest.status().code(),
                          absl::StrCat("VM ", name_, " did not become reachable over SSH within ",
                                       config_.boot_timeout.count(), " s: ", guest.status().message(),
                                       console.empty() ? "" : "; console: ", console));
    }
    guest_ = std::move(*guest);
    Progress(absl::StrCat("vm: ssh ready after ", MillisSince(started), " ms"));
    return MakeFreshWorkspace(*guest_, workspace_root_, workspace_, cancel);
  }

  Guest* guest() override { return guest_.get(); }
  std::string workspace() const override { return workspace_; }
  SshEndpoint endpoint() const override {
    return {"127.0.0.1", port_, !entry_.user.empty() ? entry_.user : manifest_.user,
            guest_ ? guest_->host_key_fingerprint() : manifest_.host_key_fingerprint};
  }

  bool Exited(std::string* why) override {
    std::lock_guard<std::mutex> lock(mu_);
    if (stopping_ || process_ == nullptr || !process_->exited()) return false;
    if (why != nullptr) *why = ExitDescriptionLocked();
    return true;
  }

  absl::Status Stop(milliseconds grace) override {
    {
      std::lock_guard<std::mutex> lock(mu_);
      if (process_ == nullptr || process_->exited()) return absl::OkStatus();
      stopping_ = true;
    }
    auto started = std::chrono::steady_clock::now();
    // A clean power-off is asked for over SSH first: a minimal image has no logind (nor D-Bus) to act
    // on the ACPI power button. The job's commands are over; the session goes once the request is sent.
    bool asked = false;
    if (grace.count() > 0 && guest_ != nullptr) {
      ExecRequest r;
      r.command = "sudo -n systemctl poweroff --no-block";
      r.deadline = Deadline::After(std::min<milliseconds>(grace, milliseconds(5000)));
      r.kill_grace = milliseconds(500);
      absl::StatusOr<ExecResult> res = guest_->Exec(r);
      asked = res.ok() && res->Succeeded();
    }
    guest_.reset();
    auto left = [&] { return grace - std::chrono::duration_cast<milliseconds>(std::chrono::steady_clock::now() - started); };
    if (asked && WaitExit(std::max(left(), milliseconds(0)))) return absl::OkStatus();
    std::string qmp = dir_ + "/qmp.sock";
    if (!asked && grace.count() > 0 && QmpCommand(qmp, "system_powerdown", milliseconds(2000)).ok() &&
        WaitExit(std::max(left(), milliseconds(0)))) {
      return absl::OkStatus();
    }
    if (QmpCommand(qmp, "quit", milliseconds(2000)).ok() && WaitExit(milliseconds(3000))) {
      return absl::OkStatus();
    }
    Kill();
    return absl::OkStatus();
  }

  absl::Status Destroy() override {
    guest_.reset();
    Kill();
    return RemoveTree(dir_);
  }

 private:
  void Progress(const std::string& line) {
    if (progress_) progress_(line);
  }

  std::vector<std::string> Argv(const std::string& accel) const {
    std::vector<std::string> argv = {
        config_.binary,
        "-name", name_,
        "-nodefaults", "-no-user-config", "-no-reboot",
        "-display", "none", "-vga", "none",
        "-machine", "q35",
        "-accel", accel == "tcg" ? "tcg,thread=multi" : accel,
        "-cpu", accel == "tcg" ? "max" : "host",
        "-smp", std::to_string(cpus_),
        "-m", std::to_string(memory_mb_),
        "-kernel", manifest_.kernel,
        "-initrd", manifest_.initrd,
        "-append", manifest_.append,
        // Disposable disks: the overlay is deleted afterwards, so host-side flushes buy nothing.
        "-drive", absl::StrCat("file=", dir_, "/overlay.qcow2,if=virtio,format=qcow2,cache=unsafe,discard=unmap"),
        "-netdev", absl::StrCat("user,id=net0,hostfwd=tcp:127.0.0.1:", port_, "-:", manifest_.ssh_port),
        "-device", "virtio-net-pci,netdev=net0",
        "-device", "virtio-rng-pci",
        "-serial", absl::StrCat("file:", dir_, "/console.log"),
        "-qmp", absl::StrCat("unix:", dir_, "/qmp.sock,server=on,wait=off"),
        "-pidfile", dir_ + "/qemu.pid",
    };
    return argv;
  }

  // Starts QEMU, watched; its end on its own cuts a pending SSH wait short.
  void Launch(const std::string& accel) {
    ::unlink((dir_ + "/qmp.sock").c_str());
    WatchedProcessOptions o;
    o.argv = Argv(accel);
    o.log_path = dir_ + "/qemu.log";
    o.kill_grace = milliseconds(2000);
    o.on_exit = [this] {
      std::lock_guard<std::mutex> lock(mu_);
      ready_wait_.Cancel("VM exited");
    };
    absl::StatusOr<std::unique_ptr<WatchedProcess>> started = WatchedProcess::Start(std::move(o));
    std::unique_ptr<WatchedProcess> previous;
    std::lock_guard<std::mutex> lock(mu_);
    previous = std::move(process_);
    stopping_ = false;
    if (started.ok()) {
      process_ = std::move(*started);
    } else {
      launch_error_ = std::string(started.status().message());
    }
  }

  // What ended the VM, with QEMU's own words and the console's tail. Requires mu_.
  std::string ExitDescriptionLocked() const {
    std::string status = process_ != nullptr ? process_->exit_description() : launch_error_;
    std::string console = LogTail(dir_ + "/console.log", 8);
    std::string qemu_log = LogTail(dir_ + "/qemu.log", 3);
    return absl::StrCat("VM exited unexpectedly (qemu ", status, ")", qemu_log.empty() ? "" : "; qemu: " + qemu_log,
                        console.empty() ? "" : "; console tail:\n" + console);
  }

  absl::Status WaitForQmp(const Deadline& deadline, const CancellationToken& cancel) {
    Deadline limit = deadline.Min(Deadline::After(std::chrono::seconds(30)));
    std::string qmp = dir_ + "/qmp.sock";
    while (true) {
      {
        std::lock_guard<std::mutex> lock(mu_);
        if (process_ == nullptr || process_->exited()) return absl::UnavailableError(ExitDescriptionLocked());
      }
      if (cancel.IsCancelled()) return absl::CancelledError(cancel.Reason());
      if (::access(qmp.c_str(), F_OK) == 0 && QmpCommand(qmp, "query-status", milliseconds(2000)).ok()) {
        return absl::OkStatus();
      }
      if (limit.Expired()) return absl::DeadlineExceededError("no QMP answer within 30 s");
      std::this_thread::sleep_for(milliseconds(50));
    }
  }

  // Waits for QEMU to exit; true if it did within `d`.
  bool WaitExit(milliseconds d) { return process_ == nullptr || process_->WaitExit(d); }

  // Ends QEMU's process group (TERM, 2 s, KILL) and waits for it.
  void Kill() {
    {
      std::lock_guard<std::mutex> lock(mu_);
      stopping_ = true;
    }
    if (process_ != nullptr) process_->Kill();
  }

  const QemuDriverConfig& config_;
  std::string name_;
  std::string dir_;
  ImageEntry entry_;
  ImageManifest manifest_;
  uint32_t cpus_;
  uint32_t memory_mb_;
  std::string workspace_root_;
  std::string workspace_;
  int port_ = 0;
  std::function<void(const std::string&)> progress_;
  std::unique_ptr<SshGuest> guest_;

  mutable std::mutex mu_;
  bool stopping_ = false;  // an end after Stop()/Kill() is not a crash
  std::string launch_error_;  // why QEMU's watcher could not start (its log could not be opened)
  CancellationToken ready_wait_;
  // Last: destroyed (its watcher joined) before the state its exit callback touches.
  std::unique_ptr<WatchedProcess> process_;
};

std::string StructString(const google::protobuf::Struct& s, const std::string& key) {
  auto it = s.fields().find(key);
  if (it == s.fields().end() || !it->second.has_string_value()) return "";
  return it->second.string_value();
}

double StructNumber(const google::protobuf::Struct& s, const std::string& key, double fallback) {
  auto it = s.fields().find(key);
  if (it == s.fields().end() || !it->second.has_number_value()) return fallback;
  return it->second.number_value();
}

}  // namespace

absl::StatusOr<ImageManifest> LoadImageManifest(const std::string& path) {
  absl::StatusOr<std::string> text = ReadFile(path);
  if (!text.ok()) {
    return absl::Status(text.status().code(), absl::StrCat("image manifest ", path, ": ", text.status().message()));
  }
  google::protobuf::Struct doc;
  auto parsed = google::protobuf::util::JsonStringToMessage(*text, &doc);
  if (!parsed.ok()) {
    return absl::InvalidArgumentError(
        absl::StrCat("image manifest ", path, ": not a JSON object: ", std::string(parsed.message())));
  }
  ImageManifest m;
  m.name = StructString(doc, "name");
  m.disk = StructString(doc, "disk");
  m.kernel = StructString(doc, "kernel");
  m.initrd = StructString(doc, "initrd");
  m.append = StructString(doc, "append");
  m.user = StructString(doc, "user");
  m.key = StructString(doc, "key");
  m.host_key_fingerprint = StructString(doc, "host_key_fingerprint");
  m.workspace_root = StructString(doc, "workspace_root");
  m.disk_gb = static_cast<uint32_t>(StructNumber(doc, "disk_gb", 0));
  m.ssh_port = static_cast<int>(StructNumber(doc, "ssh_port", 22));
  const std::pair<const char*, const std::string*> required[] = {
      {"disk", &m.disk}, {"kernel", &m.kernel}, {"initrd", &m.initrd},
      {"user", &m.user}, {"host_key_fingerprint", &m.host_key_fingerprint}};
  for (const auto& [field, value] : required) {
    if (value->empty()) {
      return absl::InvalidArgumentError(absl::StrCat("image manifest ", path, ": \"", field, "\" is missing"));
    }
  }
  for (const auto& [field, value] : {std::pair{"disk", m.disk}, {"kernel", m.kernel}, {"initrd", m.initrd}}) {
    if (!FileExists(value)) {
      return absl::NotFoundError(absl::StrCat("image manifest ", path, ": ", field, " ", value, " does not exist"));
    }
  }
  if (!absl::StartsWith(m.host_key_fingerprint, "SHA256:")) {
    return absl::InvalidArgumentError(
        absl::StrCat("image manifest ", path, ": host_key_fingerprint must be \"SHA256:...\", got \"",
                     m.host_key_fingerprint, "\""));
  }
  return m;
}

std::string QemuDriver::ResolveAccel(const std::string& accel) {
  if (accel != "auto") return accel;
  int fd = ::open("/dev/kvm", O_RDWR | O_CLOEXEC);
  if (fd < 0) return "tcg";
  ::close(fd);
  return "kvm";
}

absl::Status QemuDriver::Validate(const QemuDriverConfig& c) {
  static const char* kAccels[] = {"auto", "kvm", "tcg", "hvf"};
  if (std::find_if(std::begin(kAccels), std::end(kAccels), [&](const char* a) { return c.accel == a; }) ==
      std::end(kAccels)) {
    return absl::InvalidArgumentError(
        absl::StrCat("qemu driver: accel must be auto, kvm, tcg or hvf, got \"", c.accel, "\""));
  }
  if (c.work_dir.empty() || c.work_dir.front() != '/') {
    return absl::InvalidArgumentError(
        absl::StrCat("qemu driver: work_dir must be an absolute path, got \"", c.work_dir, "\""));
  }
  if (c.images.empty()) {
    return absl::InvalidArgumentError("qemu driver: no images configured (add an [images.<name>] table)");
  }
  for (const auto& [name, entry] : c.images.entries()) {
    if (entry.base.empty()) {
      return absl::InvalidArgumentError(absl::StrCat("qemu driver: image ", name, " names no manifest"));
    }
    ASSIGN_OR_RETURN(ImageManifest m, LoadImageManifest(entry.base));
    if (m.key.empty() && entry.private_key_path.empty()) {
      return absl::InvalidArgumentError(
          absl::StrCat("qemu driver: image ", name, ": neither the manifest nor the config names an SSH key"));
    }
  }
  return absl::OkStatus();
}

absl::StatusOr<std::unique_ptr<Vm>> QemuDriver::Create(const VmSpec& spec) {
  RETURN_IF_ERROR(CheckName(spec.name));
  ASSIGN_OR_RETURN(ImageEntry entry, config_.images.Find(spec.image));
  ASSIGN_OR_RETURN(ImageManifest manifest, LoadImageManifest(entry.base));
  auto pick = [](uint32_t asked, uint32_t image_default, uint32_t driver_default, uint32_t max) {
    uint32_t v = asked > 0 ? asked : (image_default > 0 ? image_default : driver_default);
    return std::max<uint32_t>(1, std::min(v, max));
  };
  uint32_t cpus = pick(spec.cpus, entry.cpus, config_.default_cpus, config_.max_cpus);
  uint32_t memory = pick(spec.memory_mb, entry.memory_mb, config_.default_memory_mb, config_.max_memory_mb);
  uint32_t disk = pick(spec.disk_gb, entry.disk_gb, manifest.disk_gb, config_.max_disk_gb);
  disk = std::max(disk, manifest.disk_gb);  // an overlay cannot be smaller than its base

  RETURN_IF_ERROR(MakeDirs(config_.work_dir, 0700));
  std::string dir = absl::StrCat(config_.work_dir, "/", spec.name);
  RemoveTree(dir).IgnoreError();  // an earlier attempt's leftovers
  if (::mkdir(dir.c_str(), 0700) != 0) return ErrnoStatus(errno, "mkdir", dir);
  ProcessOptions o;
  o.argv = {config_.img_binary, "create", "-q", "-f", "qcow2", "-b", manifest.disk, "-F", "qcow2",
            dir + "/overlay.qcow2", absl::StrCat(disk, "G")};
  o.deadline = Deadline::After(std::chrono::seconds(60));
  absl::StatusOr<ProcessResult> r = RunProcess(o);
  if (!r.ok() || !r->Succeeded()) {
    RemoveTree(dir).IgnoreError();
    std::string why = r.ok() ? r->stderr_data : std::string(r.status().message());
    return absl::InternalError(absl::StrCat("VM ", spec.name, ": cannot create the overlay of ", manifest.disk, ": ", why));
  }
  return std::unique_ptr<Vm>(
      std::make_unique<QemuVm>(config_, spec.name, std::move(dir), std::move(entry), std::move(manifest), cpus, memory));
}

absl::StatusOr<std::vector<std::string>> QemuDriver::ListOwned(const std::string& prefix) {
  absl::StatusOr<std::vector<std::string>> all = ListDirectory(config_.work_dir);
  if (!all.ok()) {
    if (absl::IsNotFound(all.status())) return std::vector<std::string>{};
    return all.status();
  }
  std::vector<std::string> names;
  for (const std::string& n : *all) {
    if (absl::StartsWith(n, prefix)) names.push_back(n);
  }
  return names;
}

absl::Status QemuDriver::DestroyOwned(const std::string& name) {
  RETURN_IF_ERROR(CheckName(name));
  std::string dir = absl::StrCat(config_.work_dir, "/", name);
  absl::StatusOr<std::string> pid_text = ReadFile(dir + "/qemu.pid");
  if (pid_text.ok()) {
    pid_t pid = static_cast<pid_t>(std::atol(pid_text->c_str()));
    // Only a QEMU started for this directory is killed (the pid may have been reused since).
    absl::StatusOr<std::string> cmdline = ReadFile(absl::StrCat("/proc/", pid, "/cmdline"));
    if (pid > 1 && cmdline.ok() && absl::StrContains(*cmdline, dir + "/qmp.sock")) {
      ::kill(pid, SIGKILL);
      for (int i = 0; i < 100 && ReadProcStat(pid).has_value() && ReadProcStat(pid)->state != 'Z'; ++i) {
        std::this_thread::sleep_for(milliseconds(50));
      }
    }
  }
  return RemoveTree(dir);
}

}  // namespace freeagent::vm
