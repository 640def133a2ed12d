// The worker's image catalogue: the names jobs use (`debian-12`, `macos-sonoma-xcode-16`, ...) mapped to
// what a driver boots and how the booted guest is reached. A job naming an image that is not here is
// refused at assignment, before anything boots. Configured as `[images.<name>]` tables.
#pragma once

#include <cstdint>
#include <map>
#include <string>

#include "absl/status/statusor.h"

namespace freeagent::vm {

struct ImageEntry {
  std::string name;  // catalogue name, as jobs say it
  // qemu: path of the image manifest (manifest.json written by deploy/images/<name>/build.sh); the
  //       manifest names the disk, kernel, initrd, user, key and pinned host key.
  // tart: the local base VM to clone (e.g. "sonoma-xcode-16", pulled beforehand with `tart clone`).
  std::string base;
  // SSH settings of the booted guest. For qemu they default to the manifest's; for tart they are required.
  std::string user;
  std::string private_key_path;
  std::string host_key_fingerprint;  // "SHA256:..." (pinned; a different key is refused)
  std::string workspace_root;        // absolute guest path for job workspaces; empty = driver default
  // Defaults for a job that asks for nothing (0 = driver default); a job's own values are capped by the
  // driver's maximums.
  uint32_t cpus = 0;
  uint32_t memory_mb = 0;
  uint32_t disk_gb = 0;
};

class ImageCatalog {
 public:
  ImageCatalog() = default;
  explicit ImageCatalog(std::map<std::string, ImageEntry> entries) : entries_(std::move(entries)) {}

  // The entry for `name`; an empty name means the only entry when there is exactly one.
  // INVALID_ARGUMENT naming the image and the images this worker has.
  absl::StatusOr<ImageEntry> Find(const std::string& name) const;

  const std::map<std::string, ImageEntry>& entries() const { return entries_; }
  bool empty() const { return entries_.empty(); }
  void Add(ImageEntry entry) { entries_[entry.name] = std::move(entry); }

 private:
  std::map<std::string, ImageEntry> entries_;
};

}  // namespace freeagent::vm
