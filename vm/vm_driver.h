// VM lifecycle interfaces: a VmDriver makes Vms from images; a Vm is started, reached through its Guest,
// stopped and destroyed; a VmLease owns a Vm and stops and destroys it on every path.
#pragma once

#include <chrono>
#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "common/cancellation.h"
#include "common/deadline.h"
#include "vm/guest.h"

namespace freeagent::vm {

// What a job asks of its machine (from JobSpec.vm) plus the name the worker gives it.
struct VmSpec {
  std::string name;      // unique per job attempt; carries the prefix "freeagent-<worker>-"
  std::string image;     // catalogue name; empty = driver default
  uint32_t cpus = 0;     // 0 = driver default
  uint32_t memory_mb = 0;
  uint32_t disk_gb = 0;
};

// How to reach a guest over SSH once it is up (drivers without SSH leave it empty).
struct SshEndpoint {
  std::string host;
  int port = 0;
  std::string user;
  std::string host_key_fingerprint;  // pinned, "SHA256:..." as ssh-keygen -lf prints it
};

class Vm {
 public:
  virtual ~Vm() = default;

  virtual const std::string& name() const = 0;

  // Boots the machine. Blocks up to `deadline`; honours `cancel`.
  virtual absl::Status Start(const Deadline& deadline, const CancellationToken& cancel) = 0;

  // Waits until the guest accepts commands; afterwards guest() is usable.
  virtual absl::Status WaitReady(const Deadline& deadline, const CancellationToken& cancel) = 0;

  // Valid after WaitReady succeeded; owned by the Vm.
  virtual Guest* guest() = 0;

  // The guest directory the job's source goes into and steps run in (absolute guest path).
  virtual std::string workspace() const = 0;

  // SSH endpoint of a ready VM, if the driver uses SSH.
  virtual SshEndpoint endpoint() const { return {}; }

  // Where the Vm reports progress worth a line in the job's timeline while it starts or waits (e.g.
  // "ssh: waiting for builder@127.0.0.1:2222 (attempt 3, 2.1 s)"). Set before Start; may be ignored.
  virtual void SetProgressSink(std::function<void(const std::string&)> sink) { (void)sink; }

  // True (with a description) if the machine ended on its own: a crashed VM.
  virtual bool Exited(std::string* why) { (void)why; return false; }

  // Graceful power-down, forced after `grace`. Idempotent.
  virtual absl::Status Stop(std::chrono::milliseconds grace) = 0;

  // Removes everything the Vm left on the host (overlay, job dir). Idempotent; after Stop.
  virtual absl::Status Destroy() = 0;
};

class VmDriver {
 public:
  virtual ~VmDriver() = default;

  virtual std::string name() const = 0;

  // Makes (clones) a Vm for `spec`, not yet started. INVALID_ARGUMENT for an image it does not know.
  virtual absl::StatusOr<std::unique_ptr<Vm>> Create(const VmSpec& spec) = 0;

  // Names of machines this driver made with `prefix` that still exist on the host (for reaping orphans
  // left by a crashed worker).
  virtual absl::StatusOr<std::vector<std::string>> ListOwned(const std::string& prefix) = 0;

  // Removes an orphan found by ListOwned.
  virtual absl::Status DestroyOwned(const std::string& name) = 0;
};

// Owns a Vm; its destructor (or Release()) stops and destroys it, whatever happened before.
class VmLease {
 public:
  VmLease() = default;
  VmLease(std::unique_ptr<Vm> vm, std::chrono::milliseconds stop_grace)
      : vm_(std::move(vm)), stop_grace_(stop_grace) {}
  VmLease(VmLease&&) = default;
  VmLease& operator=(VmLease&& other) {
    if (this != &other) {
      Release().IgnoreError();
      vm_ = std::move(other.vm_);
      stop_grace_ = other.stop_grace_;
    }
    return *this;
  }
  VmLease(const VmLease&) = delete;
  VmLease& operator=(const VmLease&) = delete;
  ~VmLease() { Release().IgnoreError(); }

  Vm* get() const { return vm_.get(); }
  Vm* operator->() const { return vm_.get(); }
  explicit operator bool() const { return vm_ != nullptr; }

  // Stops and destroys now; returns the first error. Safe to call more than once.
  absl::Status Release() {
    if (!vm_) return absl::OkStatus();
    absl::Status stop = vm_->Stop(stop_grace_);
    absl::Status destroy = vm_->Destroy();
    vm_.reset();
    return stop.ok() ? destroy : stop;
  }

 private:
  std::unique_ptr<Vm> vm_;
  std::chrono::milliseconds stop_grace_{10000};
};

}  // namespace freeagent::vm
