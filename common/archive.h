// Project sources move as tar.gz (libarchive). Packing skips build junk; unpacking refuses anything
// that could escape the destination.
#pragma once

#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"

namespace freeagent {

struct PackOptions {
  // Names skipped at any depth; defaults match what `freeagent submit` leaves out.
  std::vector<std::string> exclude_names = {".git", "node_modules", "Pods", "build", ".freeagent"};
  // Extra glob patterns (fnmatch, matched against the relative path and the base name),
  // e.g. read from .freeagentignore.
  std::vector<std::string> exclude_globs;
};

struct PackStats {
  uint64_t files = 0;
  uint64_t bytes_in = 0;   // file bytes packed
};

// Packs the contents of `dir` (paths relative to it) into a gzip'd tar at `out_path`. Keeps modes and
// symlinks (as links). Streams; never holds a whole file in memory.
absl::StatusOr<PackStats> PackDirectory(const std::string& dir, const std::string& out_path,
                                        const PackOptions& options = {});

// Reads `.freeagentignore` in `dir` (one glob per line, '#' comments) if present.
absl::StatusOr<std::vector<std::string>> ReadIgnoreFile(const std::string& dir);

// Unpacks `archive_path` into the existing directory `dest`. Refuses (INVALID_ARGUMENT naming the
// entry) absolute paths, `..` components, device/fifo entries, hard links out of the tree, and any
// entry that would be written through a symlink. Nothing is extracted when the check fails.
absl::Status UnpackArchive(const std::string& archive_path, const std::string& dest);

// Only the checks of UnpackArchive, without extracting.
absl::Status CheckArchive(const std::string& archive_path);

}  // namespace freeagent
