// The `qemu` driver: each job gets a disposable VM on a Linux host.
//
// Clone = a qcow2 overlay backed by the image's disk, in a directory of its own under the driver's
// work dir (`<work_dir>/<vm name>/`: overlay, console log, QMP socket, pid file). Start =
// qemu-system-x86_64 as a watched child process (direct kernel boot from the image manifest, virtio
// disk and net, user-mode networking with a host-forward from a free 127.0.0.1 port to the guest's
// SSH port). Ready = the SSH guest connects with the image's pinned host key. Stop = a power-off asked
// for over SSH (else QMP system_powerdown), the grace period, QMP quit, then the process group is
// killed. Destroy = the VM's directory is removed. A VM whose QEMU exits on its own is reported by Exited() with its status and console tail.
#pragma once

#include <chrono>
#include <cstdint>
#include <memory>
#include <string>

#include "absl/status/statusor.h"
#include "vm/image_catalog.h"
#include "vm/vm_driver.h"

namespace freeagent::vm {

// What an image's manifest.json (written by deploy/images/<name>/build.sh) says.
struct ImageManifest {
  std::string name;
  std::string disk;    // qcow2 golden image (never written: VMs get overlays)
  std::string kernel;  // direct kernel boot
  std::string initrd;
  std::string append;  // kernel command line
  std::string user;
  std::string key;     // private key of `user` (may be empty when the catalogue entry names one)
  std::string host_key_fingerprint;
  std::string workspace_root;
  uint32_t disk_gb = 0;
  int ssh_port = 22;
};

// Reads and checks a manifest: every path must exist; errors name the file and the field.
absl::StatusOr<ImageManifest> LoadImageManifest(const std::string& path);

struct QemuDriverConfig {
  std::string binary = "qemu-system-x86_64";
  std::string img_binary = "qemu-img";
  // auto | kvm | tcg | hvf. `auto` uses KVM when /dev/kvm answers, else TCG. TCG is the default:
  // under nested virtualization KVM may be present and still hang.
  std::string accel = "tcg";
  std::string work_dir;  // VM directories go here; required, absolute
  uint32_t max_cpus = 4;
  uint32_t max_memory_mb = 8192;
  uint32_t max_disk_gb = 64;
  uint32_t default_cpus = 2;
  uint32_t default_memory_mb = 2048;
  std::chrono::seconds boot_timeout{300};  // start to SSH ready
  ImageCatalog images;                     // ImageEntry.base = manifest path
};

class QemuDriver : public VmDriver {
 public:
  explicit QemuDriver(QemuDriverConfig config) : config_(std::move(config)) {}

  // INVALID_ARGUMENT for a config that cannot work (unknown accel, relative work dir, an image whose
  // manifest is missing or incomplete, no images).
  static absl::Status Validate(const QemuDriverConfig& config);

  std::string name() const override { return "qemu"; }
  absl::StatusOr<std::unique_ptr<Vm>> Create(const VmSpec& spec) override;
  // VM directories under work_dir whose names carry `prefix`.
  absl::StatusOr<std::vector<std::string>> ListOwned(const std::string& prefix) override;
  // Kills the orphan's QEMU (found by its pid file, checked against its command line) and removes its
  // directory.
  absl::Status DestroyOwned(const std::string& name) override;

  // The accelerator `accel` resolves to on this host ("kvm" or "tcg" for auto).
  static std::string ResolveAccel(const std::string& accel);

 private:
  QemuDriverConfig config_;
};

}  // namespace freeagent::vm
