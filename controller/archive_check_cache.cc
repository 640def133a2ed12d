#include "controller/archive_check_cache.h"

#include "common/archive.h"
#include "common/status_macros.h"

namespace freeagent::controller {

absl::Status ArchiveCheckCache::Check(const std::string& digest, const std::string& path) {
  {
    std::lock_guard<std::mutex> lock(mu_);
    if (auto it = ok_.find(digest); it != ok_.end()) {
      order_.splice(order_.begin(), order_, it->second);
      return absl::OkStatus();
    }
    ++scans_;
  }
  RETURN_IF_ERROR(CheckArchive(path));
  std::lock_guard<std::mutex> lock(mu_);
  if (capacity_ == 0 || ok_.count(digest)) return absl::OkStatus();  // a concurrent check stored it
  if (ok_.size() >= capacity_) {
    ok_.erase(order_.back());
    order_.pop_back();
  }
  order_.push_front(digest);
  ok_.emplace(digest, order_.begin());
  return absl::OkStatus();
}

uint64_t ArchiveCheckCache::scans() const {
  std::lock_guard<std::mutex> lock(mu_);
  return scans_;
}

}  // namespace freeagent::controller
