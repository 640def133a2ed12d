// The `tart` driver: each job gets a disposable macOS (or Linux) VM on a Mac host, made and run with the
// Tart CLI (Virtualization.framework).
//
// Create = `tart clone BASE NAME` from the image's base VM, then `tart set NAME --cpu --memory
// [--disk-size] --random-mac` (a fresh MAC avoids DHCP lease collisions between clones). Start = `tart run
// NAME --no-graphics` as a watched child process, its output in `<work_dir>/<NAME>/console.log`. Ready =
// `tart ip NAME --wait N --resolver R`, then the SSH guest connects with the image's pinned host key and a
// fresh 0700 workspace is made. Stop = `tart stop NAME --timeout N`, then the child's process group is
// killed if it is still there. Destroy = `tart delete NAME` and the host directory removed. A `tart run`
// that ends on its own is reported by Exited() with its status and the tail of its output.
//
// Tart's own failures become errors that name the VM and the cause: no IP address (DHCP), the
// Virtualization.framework limit of two running macOS VMs per host, a base VM that does not exist.
//
// Tart runs only on macOS; here the driver is tested against a fake `tart` that replays recorded outputs.
#pragma once

#include <chrono>
#include <cstdint>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "vm/image_catalog.h"
#include "vm/vm_driver.h"

namespace freeagent::vm {

struct TartDriverConfig {
  std::string binary = "tart";  // looked up in PATH if it has no '/'
  // How `tart ip` finds the guest: "dhcp" (the host's lease file; default), "arp" (bridged networking),
  // "agent" (the Tart guest agent in the VM).
  std::string ip_resolver = "dhcp";
  std::chrono::seconds ip_wait{120};       // `tart ip --wait`: from `tart run` to an IP address
  std::chrono::seconds boot_timeout{600};  // from `tart run` to SSH ready, IP wait included
  std::chrono::seconds stop_timeout{30};   // upper bound for `tart stop --timeout` (the lease's grace if less)
  std::chrono::seconds command_timeout{900};  // clone/set/delete/list (a clone of a large VM is a copy)
  int ssh_port = 22;                       // the guests' SSH port
  std::string work_dir;                    // host directories of the VMs (console logs); required, absolute
  uint32_t max_cpus = 8;
  uint32_t max_memory_mb = 16384;
  uint32_t max_disk_gb = 200;
  std::map<std::string, std::string> env;  // extra environment for tart (e.g. TART_HOME)
  ImageCatalog images;                     // ImageEntry.base = the local base VM to clone
};

// The fields of one `tart list --format json` entry the driver uses.
struct TartVmInfo {
  std::string name;
  std::string source;  // "local" or "OCI"
  std::string state;   // "running", "stopped", "suspended"
  bool running = false;
};

// Parses `tart list --format json` output (a JSON array of objects). INVALID_ARGUMENT saying what is
// wrong and where for anything that is not such an array.
absl::StatusOr<std::vector<TartVmInfo>> ParseTartList(const std::string& json);

class TartDriver : public VmDriver {
 public:
  explicit TartDriver(TartDriverConfig config) : config_(std::move(config)) {}

  // INVALID_ARGUMENT for a config that cannot work (relative work dir, unknown resolver, no images, an
  // image without base, user, key or pinned host key, a relative workspace root).
  static absl::Status Validate(const TartDriverConfig& config);

  std::string name() const override { return "tart"; }
  // INVALID_ARGUMENT naming the image when the catalogue does not have it (before tart runs);
  // FAILED_PRECONDITION when the base VM does not exist on this host.
  absl::StatusOr<std::unique_ptr<Vm>> Create(const VmSpec& spec) override;
  // Local Tart VMs and host directories under work_dir whose names carry `prefix`.
  absl::StatusOr<std::vector<std::string>> ListOwned(const std::string& prefix) override;
  // Stops and deletes the orphan VM (a missing one is fine) and removes its host directory.
  absl::Status DestroyOwned(const std::string& name) override;

 private:
  TartDriverConfig config_;
};

}  // namespace freeagent::vm
