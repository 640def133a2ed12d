// The `static` driver: an existing machine (typically a bare-metal Mac) reached over SSH. There is no
// lifecycle to manage: each job gets a fresh 0700 workspace directory on the machine, removed
// afterwards, and an optional reset command runs after every job (e.g. to wipe caches).
#pragma once

#include <chrono>
#include <string>

#include "vm/ssh_guest.h"
#include "vm/vm_driver.h"

namespace freeagent::vm {

struct StaticDriverConfig {
  SshConfig ssh;                        // host, port, user, key, pinned host key
  std::string workspace_root = "/tmp/freeagent-jobs";  // absolute path on the machine
  std::string reset_command;            // run after every job when non-empty
  std::chrono::seconds reset_timeout{600};
};

class StaticDriver : public VmDriver {
 public:
  explicit StaticDriver(StaticDriverConfig config) : config_(std::move(config)) {}

  std::string name() const override { return "static"; }
  // INVALID_ARGUMENT for a config that cannot work (relative workspace root, no pinned key, ...).
  static absl::Status Validate(const StaticDriverConfig& config);

  absl::StatusOr<std::unique_ptr<Vm>> Create(const VmSpec& spec) override;
  // Workspaces under workspace_root whose names carry `prefix` (left by a crashed worker).
  absl::StatusOr<std::vector<std::string>> ListOwned(const std::string& prefix) override;
  absl::Status DestroyOwned(const std::string& name) override;

 private:
  absl::StatusOr<std::unique_ptr<SshGuest>> Connect(const CancellationToken& cancel) const;

  StaticDriverConfig config_;
};

}  // namespace freeagent::vm
