#include "vm/local_driver.h"


#include <memory>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "common/fs.h"
#include "common/status_macros.h"
#include "vm/local_guest.h"

namespace freeagent::vm {
namespace {

class LocalVm : public Vm {
 public:
  LocalVm(std::string name, std::string dir) : name_(std::move(name)), dir_(std::move(dir)), guest_(dir_) {}

  const std::string& name() const override { return name_; }
  absl::Status Start(const Deadline&, const CancellationToken& cancel) override {
    if (cancel.IsCancelled()) return absl::CancelledError(cancel.Reason());
    return absl::OkStatus();
  }
  absl::Status WaitReady(const Deadline&, const CancellationToken& cancel) override {
    if (cancel.IsCancelled()) return absl::CancelledError(cancel.Reason());
    return absl::OkStatus();
  }
  Guest* guest() override { return &guest_; }
  std::string workspace() const override { return dir_; }
  // Commands are killed by their own Exec (cancel/timeout); there is no machine to power down.
  absl::Status Stop(std::chrono::milliseconds) override { return absl::OkStatus(); }
  absl::Status Destroy() override {
    if (destroyed_) return absl::OkStatus();
    RETURN_IF_ERROR(RemoveTree(dir_));
    destroyed_ = true;
    return absl::OkStatus();
  }

 private:
  std::string name_;
  std::string dir_;
  LocalGuest guest_;
  bool destroyed_ = false;
};

}  // namespace

absl::StatusOr<std::unique_ptr<Vm>> LocalDriver::Create(const VmSpec& spec) {
  if (spec.name.empty() || spec.name.find('/') != std::string::npos) {
    return absl::InvalidArgumentError(absl::StrCat("bad VM name \"", spec.name, "\""));
  }
  RETURN_IF_ERROR(MakeDirs(root_, 0700));
  ASSIGN_OR_RETURN(std::string dir, MakePrivateTempDir(root_, spec.name + "-"));
  return std::unique_ptr<Vm>(std::make_unique<LocalVm>(spec.name, dir));
}

absl::StatusOr<std::vector<std::string>> LocalDriver::ListOwned(const std::string& prefix) {
  std::vector<std::string> names;
  absl::StatusOr<std::vector<std::string>> all = ListDirectory(root_);
  if (!all.ok()) {
    if (absl::IsNotFound(all.status())) return names;
    return all.status();
  }
  for (std::string& n : *all) {
    if (absl::StartsWith(n, prefix)) names.push_back(std::move(n));
  }
  return names;
}

absl::Status LocalDriver::DestroyOwned(const std::string& name) {
  if (name.empty() || name.find('/') != std::string::npos || name == "." || name == "..") {
    return absl::InvalidArgumentError(absl::StrCat("bad VM name \"", name, "\""));
  }
  return RemoveTree(root_ + "/" + name);
}

}  // namespace freeagent::vm
