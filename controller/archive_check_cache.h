// Verdicts of source archives already scanned by CheckArchive, by blob digest.
//
// Blobs are content-addressed and immutable, so an archive found safe once is safe every time it is
// submitted again; rescanning it (libarchive reads the whole archive) was the largest cost of Submit.
// Only OK verdicts are kept: a refused archive is scanned (and refused) again on every submission.
#pragma once

#include <cstddef>
#include <cstdint>
#include <list>
#include <mutex>
#include <string>
#include <unordered_map>

#include "absl/status/status.h"

namespace freeagent::controller {

class ArchiveCheckCache {
 public:
  // Digests remembered at most; the least recently used one is forgotten first.
  static constexpr size_t kDefaultCapacity = 4096;

  explicit ArchiveCheckCache(size_t capacity = kDefaultCapacity) : capacity_(capacity) {}
  ArchiveCheckCache(const ArchiveCheckCache&) = delete;
  ArchiveCheckCache& operator=(const ArchiveCheckCache&) = delete;

  // CheckArchive(path) for the blob `digest` stored at `path`, unless that digest passed before.
  // Returns CheckArchive's error for a refused archive. Thread-safe; the scan runs without the lock.
  absl::Status Check(const std::string& digest, const std::string& path);

  // Archives opened and scanned so far (cache misses). Thread-safe.
  uint64_t scans() const;

 private:
  mutable std::mutex mu_;
  const size_t capacity_;
  std::list<std::string> order_;  // most recently used first
  std::unordered_map<std::string, std::list<std::string>::iterator> ok_;
  uint64_t scans_ = 0;
};

}  // namespace freeagent::controller
