#include "vm/tart_driver.h"

#include <arpa/inet.h>

#include <algorithm>
#include <mutex>
#include <set>

#include <google/protobuf/struct.pb.h>
#include <google/protobuf/util/json_util.h>

#include "absl/strings/ascii.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "common/fs.h"
#include "common/process.h"
#include "common/status_macros.h"
#include "common/watched_process.h"
#include "vm/ssh_guest.h"
#include "vm/workspace.h"

namespace freeagent::vm {
namespace {

using std::chrono::milliseconds;
using std::chrono::seconds;

// What Virtualization.framework says when a third macOS VM is started (older and newer wording).
constexpr const char* kVmLimitMessages[] = {"exceeds the system limit",
                                            "maximum supported number of active virtual machines"};
constexpr size_t kMaxOutputInError = 2048;

bool IsVmLimit(const std::string& text) {
  for (const char* m : kVmLimitMessages) {
    if (absl::StrContains(text, m)) return true;
  }
  return false;
}

int64_t MillisSince(std::chrono::steady_clock::time_point t) {
  return std::chrono::duration_cast<milliseconds>(std::chrono::steady_clock::now() - t).count();
}

// Tart VM names become file names under ~/.tart/vms and arguments of the tart CLI: letters, digits and
// ". _ -", not starting with '-' or '.' (an option, a hidden or relative name).
absl::Status CheckName(const std::string& name) {
  bool ok = !name.empty() && name.size() <= 200 && name[0] != '-' && name[0] != '.';
  for (char c : name) {
    if (!absl::ascii_isalnum(static_cast<unsigned char>(c)) && c != '.' && c != '_' && c != '-') ok = false;
  }
  if (!ok) {
    return absl::InvalidArgumentError(absl::StrCat(
        "bad tart VM name \"", name, "\": letters, digits, '.', '_' and '-' only, not starting with '-' or '.'"));
  }
  return absl::OkStatus();
}

// Everything tart printed (it prints some errors on stdout, others on stderr), trimmed and bounded.
std::string TartOutput(const ProcessResult& r) {
  std::string all = absl::StrCat(absl::StripAsciiWhitespace(r.stdout_data),
                                 r.stdout_data.empty() || r.stderr_data.empty() ? "" : "\n",
                                 absl::StripAsciiWhitespace(r.stderr_data));
  std::string text(absl::StripAsciiWhitespace(all));
  if (text.size() > kMaxOutputInError) text = "..." + text.substr(text.size() - kMaxOutputInError);
  return text;
}

// Runs tart commands: argv vectors through the process runner, output captured.
class TartCli {
 public:
  explicit TartCli(const TartDriverConfig& config) : config_(config) {}

  // Errors only when tart cannot be started; a non-zero exit is a result.
  absl::StatusOr<ProcessResult> Run(const std::vector<std::string>& args, const Deadline& deadline,
                                    const CancellationToken& cancel = CancellationToken()) const {
    ProcessOptions o;
    o.argv.push_back(config_.binary);
    o.argv.insert(o.argv.end(), args.begin(), args.end());
    o.env = config_.env;
    o.deadline = deadline;
    o.cancel = cancel;
    o.kill_grace = seconds(5);
    absl::StatusOr<ProcessResult> r = RunProcess(std::move(o));
    if (absl::IsNotFound(r.status())) {
      return absl::FailedPreconditionError(absl::StrCat(
          "tart driver: cannot run \"", config_.binary, "\": ", r.status().message(),
          " (install Tart on the host: brew install cirruslabs/cli/tart; see deploy/macos/README.md)"));
    }
    return r;
  }

  absl::StatusOr<ProcessResult> Run(const std::vector<std::string>& args) const {
    return Run(args, Deadline::After(config_.command_timeout));
  }

  // A failed `tart <args>` for VM `vm` as a status that names the VM and the cause.
  absl::Status Failure(const std::vector<std::string>& args, const std::string& vm, const ProcessResult& r) const {
    std::string cmd = absl::StrCat("`tart ", absl::StrJoin(args, " "), "`");
    std::string out = TartOutput(r);
    std::string said = out.empty() ? "" : absl::StrCat(": tart said: ", out);
    if (r.cancelled) return absl::CancelledError(absl::StrCat(cmd, " for VM ", vm, " was cancelled"));
    if (r.timed_out) return absl::DeadlineExceededError(absl::StrCat(cmd, " for VM ", vm, " timed out", said));
    if (IsVmLimit(out)) {
      return absl::ResourceExhaustedError(absl::StrCat(
          "VM ", vm, " cannot run: this host already runs as many macOS VMs as Virtualization.framework allows "
          "(2 per host)", said));
    }
    if (absl::StrContains(out, "does not exist")) {
      return absl::NotFoundError(absl::StrCat(cmd, " failed: VM ", vm, " does not exist", said));
    }
    if (absl::StrContains(out, "no IP address found")) {
      return absl::UnavailableError(absl::StrCat("VM ", vm, ": no IP address found", said));
    }
    std::string how = r.term_signal != 0 ? absl::StrCat("signal ", r.term_signal) : absl::StrCat("exit ", r.exit_code);
    return absl::InternalError(absl::StrCat(cmd, " for VM ", vm, " failed (", how, ")", said));
  }

  // Runs `tart <args>` and turns a failure into a status.
  absl::Status Check(const std::vector<std::string>& args, const std::string& vm) const {
    ASSIGN_OR_RETURN(ProcessResult r, Run(args));
    if (r.Succeeded()) return absl::OkStatus();
    return Failure(args, vm, r);
  }

  // Deletes `name`; one that does not exist is already deleted.
  absl::Status Delete(const std::string& name) const {
    absl::Status s = Check({"delete", name}, name);
    return absl::IsNotFound(s) ? absl::OkStatus() : s;
  }

  // `tart stop --timeout N`: SIGINT to its `tart run`, N seconds, then SIGKILL. A VM that is not running or
  // does not exist is stopped.
  absl::Status Stop(const std::string& name, seconds timeout) const {
    std::vector<std::string> args = {"stop", name, "--timeout", std::to_string(timeout.count())};
    ASSIGN_OR_RETURN(ProcessResult r, Run(args, Deadline::After(timeout + seconds(30))));
    if (r.Succeeded()) return absl::OkStatus();
    std::string out = TartOutput(r);
    if (absl::StrContains(out, "is not running") || absl::StrContains(out, "does not exist")) {
      return absl::OkStatus();
    }
    return Failure(args, name, r);
  }

 private:
  const TartDriverConfig& config_;
};

class TartVm : public Vm {
 public:
  TartVm(const TartDriverConfig& config, std::string name, std::string dir, ImageEntry entry)
      : config_(config), tart_(config), name_(std::move(name)), dir_(std::move(dir)), entry_(std::move(entry)) {
    workspace_root_ = !entry_.workspace_root.empty() ? entry_.workspace_root : "/tmp/freeagent-jobs";
    workspace_ = absl::StrCat(workspace_root_, "/", name_);
  }

  // The lease stops and destroys; this only makes sure no `tart run` outlives the object.
  ~TartVm() override {
    if (run_) run_->Kill();
  }

  const std::string& name() const override { return name_; }
  void SetProgressSink(std::function<void(const std::string&)> sink) override { progress_ = std::move(sink); }

  absl::Status Start(const Deadline&, const CancellationToken& cancel) override {
    if (cancel.IsCancelled()) return absl::CancelledError(cancel.Reason());
    if (run_) return absl::FailedPreconditionError(absl::StrCat("VM ", name_, " was already started"));
    WatchedProcessOptions o;
    o.argv = {config_.binary, "run", name_, "--no-graphics"};
    o.env = config_.env;
    o.log_path = dir_ + "/console.log";
    // `tart run` stops the VM on SIGINT; the group kill is the last resort after `tart stop`.
    o.kill_grace = seconds(5);
    CancellationToken wait = ready_wait_;
    o.on_exit = [wait] { wait.Cancel("VM exited"); };
    ASSIGN_OR_RETURN(auto run, WatchedProcess::Start(std::move(o)));
    std::lock_guard<std::mutex> lock(mu_);
    run_ = std::move(run);
    started_ = std::chrono::steady_clock::now();
    return absl::OkStatus();
  }

  absl::Status WaitReady(const Deadline& deadline, const CancellationToken& cancel) override {
    if (!run_) return absl::FailedPreconditionError(absl::StrCat("VM ", name_, " was not started"));
    // Waiting ends early when the job is cancelled or `tart run` ends.
    CancellationToken wait = ready_wait_;
    cancel.OnCancel([wait] { wait.Cancel("cancelled"); });
    Deadline boot = deadline.Min(Deadline::At(started_ + config_.boot_timeout));

    ASSIGN_OR_RETURN(ip_, ResolveIp(boot, cancel, wait));
    Progress(absl::StrCat("vm: tart ip ", name_, " -> ", ip_, " after ", MillisSince(started_), " ms"));

    SshConfig ssh;
    ssh.host = ip_;
    ssh.port = config_.ssh_port;
    ssh.user = entry_.user;
    ssh.private_key_path = entry_.private_key_path;
    ssh.host_key_fingerprint = entry_.host_key_fingerprint;
    ssh.on_progress = progress_;
    ssh.connect_timeout = std::max(milliseconds(1000), std::chrono::duration_cast<milliseconds>(boot.Remaining()));
    absl::StatusOr<std::unique_ptr<SshGuest>> guest = SshGuest::Connect(ssh, wait);
    std::string why;
    if (Exited(&why)) return absl::UnavailableError(why);
    if (!guest.ok()) {
      if (cancel.IsCancelled()) return absl::CancelledError(cancel.Reason());
      return absl::Status(guest.status().code(),
                          absl::StrCat("VM ", name_, " (", ip_, ") did not become reachable over SSH: ",
                                       guest.status().message()));
    }
    guest_ = std::move(*guest);
    Progress(absl::StrCat("vm: ssh ready after ", MillisSince(started_), " ms"));
    return MakeFreshWorkspace(*guest_, workspace_root_, workspace_, cancel);
  }

  Guest* guest() override { return guest_.get(); }
  std::string workspace() const override { return workspace_; }
  SshEndpoint endpoint() const override {
    return {ip_, config_.ssh_port, entry_.user,
            guest_ ? guest_->host_key_fingerprint() : entry_.host_key_fingerprint};
  }

  bool Exited(std::string* why) override {
    std::lock_guard<std::mutex> lock(mu_);
    if (!run_ || stopping_ || !run_->exited()) return false;
    if (why != nullptr) *why = DescribeExit();
    return true;
  }

  absl::Status Stop(milliseconds grace) override {
    {
      std::lock_guard<std::mutex> lock(mu_);
      if (!run_) return absl::OkStatus();
      stopping_ = true;
    }
    // The SSH session goes first: its commands are over, and a stopped guest cannot answer it.
    guest_.reset();
    absl::Status stop = absl::OkStatus();
    if (!run_->exited()) {
      auto grace_s = std::chrono::duration_cast<seconds>(grace + milliseconds(999));
      seconds timeout = std::clamp(grace_s, seconds(0), config_.stop_timeout);
      stop = tart_.Stop(name_, timeout);
      // `tart stop` returns once the VM is gone; `tart run` exits right after.
      run_->WaitExit(milliseconds(5000));
    }
    bool was_running = !run_->exited();
    run_->Kill();
    // A `tart stop` that failed matters only if the VM had to be killed.
    return was_running ? stop : absl::OkStatus();
  }

  absl::Status Destroy() override {
    if (destroyed_) return absl::OkStatus();
    guest_.reset();
    if (run_) {
      std::lock_guard<std::mutex> lock(mu_);
      stopping_ = true;
    }
    if (run_) run_->Kill();
    absl::Status s = tart_.Delete(name_);
    s.Update(RemoveTree(dir_));
    if (s.ok()) destroyed_ = true;
    return s;
  }

 private:
  void Progress(const std::string& line) {
    if (progress_) progress_(line);
  }

  // Called with mu_ held, after `tart run` ended.
  std::string DescribeExit() const {
    std::string tail = LogTail(run_->log_path(), 8);
    std::string cause = IsVmLimit(tail)
                            ? ": this host already runs as many macOS VMs as Virtualization.framework allows (2 per host)"
                            : "";
    return absl::StrCat("VM exited unexpectedly (VM ", name_, ", tart run ", run_->exit_description(), ")", cause,
                        tail.empty() ? "" : "; output tail:\n" + tail);
  }

  // `tart ip NAME --wait N [--resolver R]`: the guest's IPv4 address.
  absl::StatusOr<std::string> ResolveIp(const Deadline& boot, const CancellationToken& cancel,
                                        const CancellationToken& wait) {
    auto left = std::chrono::duration_cast<seconds>(boot.Remaining());
    int64_t wait_s = std::clamp<int64_t>(std::min(left, config_.ip_wait).count(), 1, 65535);
    std::vector<std::string> args = {"ip", name_, "--wait", std::to_string(wait_s)};
    // "dhcp" is tart's default; leaving it out keeps older tart versions (without --resolver) working.
    if (config_.ip_resolver != "dhcp") {
      args.push_back("--resolver");
      args.push_back(config_.ip_resolver);
    }
    ASSIGN_OR_RETURN(ProcessResult r, tart_.Run(args, Deadline::After(seconds(wait_s + 30)), wait));
    std::string why;
    if (Exited(&why)) return absl::UnavailableError(why);
    if (cancel.IsCancelled()) return absl::CancelledError(cancel.Reason());
    if (!r.Succeeded()) {
      absl::Status s = tart_.Failure(args, name_, r);
      if (absl::StrContains(s.message(), "no IP address found")) {
        return absl::DeadlineExceededError(absl::StrCat(
            "VM ", name_, " got no IP address within ", wait_s, " s (resolver ", config_.ip_resolver,
            "): tart said: ", TartOutput(r),
            " (with the dhcp resolver, exhausted DHCP leases are a common cause: deploy/macos/setup-host.sh sets "
            "the lease time to 600 s)"));
      }
      return s;
    }
    std::string ip(absl::StripAsciiWhitespace(r.stdout_data));
    if (size_t nl = ip.find('\n'); nl != std::string::npos) ip = std::string(absl::StripAsciiWhitespace(ip.substr(0, nl)));
    in_addr a4;
    in6_addr a6;
    if (inet_pton(AF_INET, ip.c_str(), &a4) != 1 && inet_pton(AF_INET6, ip.c_str(), &a6) != 1) {
      return absl::InternalError(
          absl::StrCat("`tart ", absl::StrJoin(args, " "), "` printed no IP address for VM ", name_, ": ",
                       TartOutput(r)));
    }
    return ip;
  }

  const TartDriverConfig& config_;
  TartCli tart_;
  std::string name_;
  std::string dir_;
  ImageEntry entry_;
  std::string workspace_root_;
  std::string workspace_;
  std::string ip_;
  std::function<void(const std::string&)> progress_;
  std::unique_ptr<SshGuest> guest_;
  CancellationToken ready_wait_;
  std::chrono::steady_clock::time_point started_{};
  bool destroyed_ = false;

  std::mutex mu_;
  std::unique_ptr<WatchedProcess> run_;  // set once by Start
  bool stopping_ = false;
};

absl::Status CheckImage(const ImageEntry& e) {
  auto missing = [&e](const char* field) {
    return absl::InvalidArgumentError(
        absl::StrCat("tart driver: image \"", e.name, "\" has no ", field, " (set it in [images.", e.name, "])"));
  };
  if (e.base.empty()) return missing("base (the local Tart VM to clone)");
  if (e.base[0] == '-') {
    return absl::InvalidArgumentError(absl::StrCat("tart driver: image \"", e.name, "\": bad base \"", e.base, "\""));
  }
  if (e.user.empty()) return missing("user");
  if (e.private_key_path.empty()) return missing("key");
  if (e.host_key_fingerprint.empty()) return missing("host_key_fingerprint (host keys are always pinned)");
  if (!e.workspace_root.empty() && (e.workspace_root[0] != '/' || e.workspace_root == "/")) {
    return absl::InvalidArgumentError(absl::StrCat("tart driver: image \"", e.name,
                                                   "\": workspace_root must be an absolute path other than /, got \"",
                                                   e.workspace_root, "\""));
  }
  return absl::OkStatus();
}

uint32_t Pick(uint32_t asked, uint32_t image_default, uint32_t max) {
  uint32_t v = asked != 0 ? asked : image_default;
  return max != 0 ? std::min(v, max) : v;
}

std::string JsonString(const google::protobuf::Struct& s, const std::string& key) {
  auto it = s.fields().find(key);
  if (it == s.fields().end() || !it->second.has_string_value()) return "";
  return it->second.string_value();
}

}  // namespace

absl::StatusOr<std::vector<TartVmInfo>> ParseTartList(const std::string& json) {
  google::protobuf::ListValue list;
  auto parsed = google::protobuf::util::JsonStringToMessage(json, &list);
  if (!parsed.ok()) {
    return absl::InvalidArgumentError(
        absl::StrCat("`tart list --format json`: not a JSON array: ", std::string(parsed.message())));
  }
  std::vector<TartVmInfo> vms;
  for (int i = 0; i < list.values_size(); ++i) {
    const google::protobuf::Value& v = list.values(i);
    if (!v.has_struct_value()) {
      return absl::InvalidArgumentError(absl::StrCat("`tart list --format json`: entry ", i, " is not an object"));
    }
    const google::protobuf::Struct& s = v.struct_value();
    TartVmInfo info;
    info.name = JsonString(s, "Name");
    if (info.name.empty()) {
      return absl::InvalidArgumentError(absl::StrCat("`tart list --format json`: entry ", i, " has no Name"));
    }
    info.source = JsonString(s, "Source");
    info.state = JsonString(s, "State");
    auto running = s.fields().find("Running");
    info.running = running != s.fields().end() && running->second.has_bool_value()
                       ? running->second.bool_value()
                       : info.state == "running";
    vms.push_back(std::move(info));
  }
  return vms;
}

absl::Status TartDriver::Validate(const TartDriverConfig& c) {
  if (c.binary.empty()) return absl::InvalidArgumentError("tart driver: binary must not be empty");
  if (c.ip_resolver != "dhcp" && c.ip_resolver != "arp" && c.ip_resolver != "agent") {
    return absl::InvalidArgumentError(
        absl::StrCat("tart driver: ip_resolver must be dhcp, arp or agent, got \"", c.ip_resolver, "\""));
  }
  if (c.work_dir.empty() || c.work_dir[0] != '/') {
    return absl::InvalidArgumentError(
        absl::StrCat("tart driver: work_dir must be an absolute path, got \"", c.work_dir, "\""));
  }
  if (c.ip_wait.count() <= 0 || c.boot_timeout.count() <= 0) {
    return absl::InvalidArgumentError("tart driver: ip_wait and boot_timeout must be positive");
  }
  if (c.ssh_port <= 0 || c.ssh_port > 65535) {
    return absl::InvalidArgumentError(absl::StrCat("tart driver: bad ssh_port ", c.ssh_port));
  }
  if (c.images.empty()) {
    return absl::InvalidArgumentError("tart driver: no images configured (add an [images.<name>] table)");
  }
  for (const auto& [name, entry] : c.images.entries()) RETURN_IF_ERROR(CheckImage(entry));
  return absl::OkStatus();
}

absl::StatusOr<std::unique_ptr<Vm>> TartDriver::Create(const VmSpec& spec) {
  RETURN_IF_ERROR(CheckName(spec.name));
  ASSIGN_OR_RETURN(ImageEntry entry, config_.images.Find(spec.image));
  RETURN_IF_ERROR(CheckImage(entry));
  uint32_t cpus = Pick(spec.cpus, entry.cpus, config_.max_cpus);
  uint32_t memory_mb = Pick(spec.memory_mb, entry.memory_mb, config_.max_memory_mb);
  uint32_t disk_gb = Pick(spec.disk_gb, entry.disk_gb, config_.max_disk_gb);

  std::string dir = absl::StrCat(config_.work_dir, "/", spec.name);
  RETURN_IF_ERROR(RemoveTree(dir));
  RETURN_IF_ERROR(MakeDirs(dir, 0700));
  TartCli tart(config_);
  absl::Status cloned = tart.Check({"clone", entry.base, spec.name}, spec.name);
  if (!cloned.ok()) {
    RemoveTree(dir).IgnoreError();
    if (absl::IsNotFound(cloned)) {
      return absl::FailedPreconditionError(absl::StrCat(
          "image \"", entry.name, "\": its base VM \"", entry.base, "\" does not exist on this host (",
          cloned.message(), "); pull it first, e.g. `tart clone ghcr.io/cirruslabs/<image>:<tag> ", entry.base, "`"));
    }
    return cloned;
  }
  std::vector<std::string> set = {"set", spec.name};
  if (cpus != 0) set.insert(set.end(), {"--cpu", std::to_string(cpus)});
  if (memory_mb != 0) set.insert(set.end(), {"--memory", std::to_string(memory_mb)});
  if (disk_gb != 0) set.insert(set.end(), {"--disk-size", std::to_string(disk_gb)});
  set.push_back("--random-mac");
  if (absl::Status s = tart.Check(set, spec.name); !s.ok()) {
    tart.Delete(spec.name).IgnoreError();
    RemoveTree(dir).IgnoreError();
    return s;
  }
  return std::unique_ptr<Vm>(std::make_unique<TartVm>(config_, spec.name, dir, std::move(entry)));
}

absl::StatusOr<std::vector<std::string>> TartDriver::ListOwned(const std::string& prefix) {
  TartCli tart(config_);
  std::vector<std::string> args = {"list", "--format", "json"};
  ASSIGN_OR_RETURN(ProcessResult r, tart.Run(args));
  if (!r.Succeeded()) return tart.Failure(args, "(all)", r);
  ASSIGN_OR_RETURN(std::vector<TartVmInfo> vms, ParseTartList(r.stdout_data));
  std::set<std::string> names;
  for (const TartVmInfo& vm : vms) {
    // OCI entries are the image cache, never a VM the worker made.
    if (vm.source == "local" && absl::StartsWith(vm.name, prefix)) names.insert(vm.name);
  }
  absl::StatusOr<std::vector<std::string>> dirs = ListDirectory(config_.work_dir);
  if (!dirs.ok() && !absl::IsNotFound(dirs.status())) return dirs.status();
  if (dirs.ok()) {
    for (const std::string& d : *dirs) {
      if (absl::StartsWith(d, prefix)) names.insert(d);
    }
  }
  return std::vector<std::string>(names.begin(), names.end());
}

absl::Status TartDriver::DestroyOwned(const std::string& name) {
  RETURN_IF_ERROR(CheckName(name));
  TartCli tart(config_);
  absl::Status s = tart.Stop(name, config_.stop_timeout);
  s.Update(tart.Delete(name));
  s.Update(RemoveTree(absl::StrCat(config_.work_dir, "/", name)));
  return s;
}

}  // namespace freeagent::vm
