// Small filesystem helpers built on POSIX calls, returning absl::Status with the path in the message.
#pragma once

#include <cstdint>

#include <string>
#include <string_view>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"

namespace freeagent {

// Creates `parent`/`prefix`XXXXXX with mode 0700 and returns its path.
absl::StatusOr<std::string> MakePrivateTempDir(const std::string& parent, std::string_view prefix);

// mkdir -p with `mode` for the created directories.
absl::Status MakeDirs(const std::string& path, int mode = 0755);

// rm -rf that never follows symlinks. OK if `path` does not exist.
absl::Status RemoveTree(const std::string& path);

absl::StatusOr<std::string> ReadFile(const std::string& path);

// Writes to `path`.tmp, fsyncs and renames over `path`.
absl::Status WriteFileAtomic(const std::string& path, std::string_view data, int mode = 0644);

// Names in the directory `path`, sorted, without "." and "..". NOT_FOUND if it does not exist.
absl::StatusOr<std::vector<std::string>> ListDirectory(const std::string& path);

// Writes all `size` bytes to `fd` (retrying short writes and EINTR); errors name `path`.
absl::Status WriteAll(int fd, const char* data, size_t size, const std::string& path);

// For a file written from the start in order: once 8 MiB or more past `*started` are written (the
// file holds `written` bytes), starts writing them to disk without waiting and moves `*started` to
// `written`, so that a later fsync of a large file has little left to wait for. Best effort: Linux
// only, errors ignored.
void StartWriteback(int fd, uint64_t written, uint64_t* started);

// Maps an errno to the closest absl code and builds "<what> <path>: <strerror>".
absl::Status ErrnoStatus(int err, std::string_view what, std::string_view path);

}  // namespace freeagent
