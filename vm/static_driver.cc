#include "vm/static_driver.h"

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "common/status_macros.h"
#include "vm/workspace.h"

namespace freeagent::vm {
namespace {

absl::Status CheckName(const std::string& name) {
  if (name.empty() || name == "." || name == ".." || name.find('/') != std::string::npos) {
    return absl::InvalidArgumentError(absl::StrCat("bad VM name \"", name, "\""));
  }
  return absl::OkStatus();
}

class StaticVm : public Vm {
 public:
  StaticVm(const StaticDriverConfig& config, std::string name)
      : config_(config), name_(std::move(name)), workspace_(absl::StrCat(config.workspace_root, "/", name_)) {}

  const std::string& name() const override { return name_; }

  absl::Status Start(const Deadline&, const CancellationToken& cancel) override {
    if (cancel.IsCancelled()) return absl::CancelledError(cancel.Reason());
    return absl::OkStatus();  // the machine is already running
  }

  void SetProgressSink(std::function<void(const std::string&)> sink) override { progress_ = std::move(sink); }

  absl::Status WaitReady(const Deadline& deadline, const CancellationToken& cancel) override {
    SshConfig ssh = config_.ssh;
    ssh.on_progress = progress_;
    auto left = std::chrono::duration_cast<std::chrono::milliseconds>(deadline.Remaining());
    ssh.connect_timeout = std::min(ssh.connect_timeout, left);
    ASSIGN_OR_RETURN(guest_, SshGuest::Connect(ssh, cancel));
    return MakeFreshWorkspace(*guest_, config_.workspace_root, workspace_, cancel);
  }

  Guest* guest() override { return guest_.get(); }
  std::string workspace() const override { return workspace_; }
  SshEndpoint endpoint() const override {
    return {config_.ssh.host, config_.ssh.port, config_.ssh.user,
            guest_ ? guest_->host_key_fingerprint() : config_.ssh.host_key_fingerprint};
  }

  // Commands are ended by their own Exec (cancel/timeout); the machine itself keeps running.
  absl::Status Stop(std::chrono::milliseconds) override { return absl::OkStatus(); }

  absl::Status Destroy() override {
    if (destroyed_ || !guest_) {
      guest_.reset();
      return absl::OkStatus();
    }
    absl::Status s = RunGuestCommand(*guest_, "rm -rf " + ShellQuote(workspace_), std::chrono::seconds(120)).status();
    if (!config_.reset_command.empty()) {
      s.Update(RunGuestCommand(*guest_, config_.reset_command, config_.reset_timeout).status());
    }
    destroyed_ = true;
    guest_.reset();
    return s;
  }

 private:
  const StaticDriverConfig& config_;
  std::string name_;
  std::string workspace_;
  std::unique_ptr<SshGuest> guest_;
  std::function<void(const std::string&)> progress_;
  bool destroyed_ = false;
};

}  // namespace

absl::Status StaticDriver::Validate(const StaticDriverConfig& c) {
  if (c.workspace_root.empty() || c.workspace_root.front() != '/') {
    return absl::InvalidArgumentError(
        absl::StrCat("static driver: workspace_root must be an absolute path, got \"", c.workspace_root, "\""));
  }
  if (c.workspace_root == "/") return absl::InvalidArgumentError("static driver: workspace_root must not be /");
  if (c.ssh.host.empty()) return absl::InvalidArgumentError("static driver: host is required");
  if (c.ssh.user.empty()) return absl::InvalidArgumentError("static driver: user is required");
  if (c.ssh.private_key_path.empty() && c.ssh.private_key_data.empty()) {
    return absl::InvalidArgumentError("static driver: key is required");
  }
  if (c.ssh.host_key_fingerprint.empty() && c.ssh.known_hosts_path.empty()) {
    return absl::InvalidArgumentError(
        "static driver: host_key_fingerprint or known_hosts is required (host keys are always pinned)");
  }
  return absl::OkStatus();
}

absl::StatusOr<std::unique_ptr<Vm>> StaticDriver::Create(const VmSpec& spec) {
  RETURN_IF_ERROR(CheckName(spec.name));
  return std::unique_ptr<Vm>(std::make_unique<StaticVm>(config_, spec.name));
}

absl::StatusOr<std::unique_ptr<SshGuest>> StaticDriver::Connect(const CancellationToken& cancel) const {
  SshConfig ssh = config_.ssh;
  ssh.connect_timeout = std::min<std::chrono::milliseconds>(ssh.connect_timeout, std::chrono::seconds(20));
  return SshGuest::Connect(ssh, cancel);
}

absl::StatusOr<std::vector<std::string>> StaticDriver::ListOwned(const std::string& prefix) {
  ASSIGN_OR_RETURN(auto guest, Connect(CancellationToken()));
  std::string root = ShellQuote(config_.workspace_root);
  ASSIGN_OR_RETURN(std::string listing, RunGuestCommand(*guest, absl::StrCat("[ ! -d ", root, " ] || ls -1A ", root),
                                                   std::chrono::seconds(60)));
  std::vector<std::string> names;
  for (absl::string_view line : absl::StrSplit(listing, '\n', absl::SkipEmpty())) {
    if (absl::StartsWith(line, prefix)) names.emplace_back(line);
  }
  return names;
}

absl::Status StaticDriver::DestroyOwned(const std::string& name) {
  RETURN_IF_ERROR(CheckName(name));
  ASSIGN_OR_RETURN(auto guest, Connect(CancellationToken()));
  return RunGuestCommand(*guest, "rm -rf " + ShellQuote(absl::StrCat(config_.workspace_root, "/", name)),
                    std::chrono::seconds(120))
      .status();
}

}  // namespace freeagent::vm
