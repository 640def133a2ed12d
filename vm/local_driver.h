// The `local` driver: the "VM" is a private 0700 workspace directory on the worker host and its Guest
// is a LocalGuest. Start and stop are trivial; destroy removes the directory. No isolation.
#pragma once

#include <string>

#include "vm/vm_driver.h"

namespace freeagent::vm {

class LocalDriver : public VmDriver {
 public:
  // Workspaces are made under `root` (created 0700 if missing).
  explicit LocalDriver(std::string root) : root_(std::move(root)) {}

  std::string name() const override { return "local"; }
  absl::StatusOr<std::unique_ptr<Vm>> Create(const VmSpec& spec) override;
  absl::StatusOr<std::vector<std::string>> ListOwned(const std::string& prefix) override;
  absl::Status DestroyOwned(const std::string& name) override;

 private:
  std::string root_;
};

}  // namespace freeagent::vm
