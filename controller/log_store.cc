// Per-attempt log files with coalesced fdatasync.
#include "controller/log_store.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <vector>

#include "absl/strings/str_cat.h"
#include "common/fs.h"
#include "common/status_macros.h"
#include "spdlog/spdlog.h"

namespace freeagent::controller {

struct LogStore::File {
  ~File() {
    if (fd >= 0) ::close(fd);
  }
  int fd = -1;
  uint64_t written = 0;
  uint64_t committed = 0;
  bool released = false;
  CommitCallback on_commit;
};

LogStore::LogStore(std::string dir) : dir_(std::move(dir)) {}

LogStore::~LogStore() { Stop(); }

absl::Status LogStore::Start() {
  RETURN_IF_ERROR(MakeDirs(dir_, 0755));
  sync_thread_ = std::thread([this] { SyncLoop(); });
  return absl::OkStatus();
}

void LogStore::Stop() {
  {
    std::lock_guard<std::mutex> lock(mu_);
    if (stop_) return;
    stop_ = true;
  }
  cv_.notify_all();
  if (sync_thread_.joinable()) sync_thread_.join();
}

std::string LogStore::PathFor(const std::string& job_id, uint32_t attempt) const {
  return absl::StrCat(dir_, "/", job_id, "/", attempt, ".log");
}

absl::StatusOr<std::shared_ptr<LogStore::File>> LogStore::OpenLocked(const Key& key) {
  auto it = files_.find(key);
  if (it != files_.end()) return it->second;
  RETURN_IF_ERROR(MakeDirs(absl::StrCat(dir_, "/", key.first), 0755));
  const std::string path = PathFor(key.first, key.second);
  auto file = std::make_shared<File>();
  file->fd = ::open(path.c_str(), O_WRONLY | O_CREAT | O_CLOEXEC, 0644);
  if (file->fd < 0) return ErrnoStatus(errno, "open log", path);
  struct stat st {};
  if (::fstat(file->fd, &st) != 0) return ErrnoStatus(errno, "stat log", path);
  // Whatever survived a restart counts as committed once it is flushed here. A new, empty file (every
  // new attempt) has nothing to flush, so the common case does not sync under the store's lock.
  if (st.st_size > 0 && ::fdatasync(file->fd) != 0) return ErrnoStatus(errno, "fdatasync log", path);
  file->written = file->committed = static_cast<uint64_t>(st.st_size);
  files_.emplace(key, file);
  return file;
}

absl::StatusOr<LogStore::AppendResult> LogStore::Append(const std::string& job_id, uint32_t attempt,
                                                        uint64_t offset, std::string_view data,
                                                        CommitCallback on_commit) {
  std::lock_guard<std::mutex> lock(mu_);
  const Key key{job_id, attempt};
  ASSIGN_OR_RETURN(std::shared_ptr<File> file, OpenLocked(key));
  AppendResult result;
  if (offset > file->written) {
    result.gap = true;
  } else if (offset + data.size() > file->written) {
    std::string_view tail = data.substr(file->written - offset);
    while (!tail.empty()) {
      ssize_t n = ::pwrite(file->fd, tail.data(), tail.size(), static_cast<off_t>(file->written));
      if (n < 0) {
        if (errno == EINTR) continue;
        return ErrnoStatus(errno, "write log", PathFor(job_id, attempt));
      }
      file->written += static_cast<uint64_t>(n);
      tail.remove_prefix(static_cast<size_t>(n));
    }
  }
  result.written = file->written;
  result.committed = file->committed;
  if (file->written > file->committed) {
    file->on_commit = std::move(on_commit);
    result.pending = true;
    if (dirty_.insert(key).second) cv_.notify_all();
  }
  return result;
}

LogStore::Sizes LogStore::GetSizes(const std::string& job_id, uint32_t attempt) {
  std::lock_guard<std::mutex> lock(mu_);
  auto it = files_.find(Key{job_id, attempt});
  if (it != files_.end()) return Sizes{it->second->written, it->second->committed};
  struct stat st {};
  if (::stat(PathFor(job_id, attempt).c_str(), &st) != 0) return Sizes{};
  return Sizes{static_cast<uint64_t>(st.st_size), static_cast<uint64_t>(st.st_size)};
}

absl::Status LogStore::Flush(const std::string& job_id, uint32_t attempt) {
  std::unique_lock<std::mutex> lock(mu_);
  auto it = files_.find(Key{job_id, attempt});
  if (it == files_.end() || it->second->written == it->second->committed) return absl::OkStatus();
  std::shared_ptr<File> file = it->second;  // stays open while unlocked
  const uint64_t target = file->written;
  lock.unlock();
  if (::fdatasync(file->fd) != 0) return ErrnoStatus(errno, "fdatasync log", PathFor(job_id, attempt));
  lock.lock();
  if (target > file->committed) file->committed = target;
  return absl::OkStatus();
}

void LogStore::Release(const std::string& job_id, uint32_t attempt) {
  std::lock_guard<std::mutex> lock(mu_);
  const Key key{job_id, attempt};
  auto it = files_.find(key);
  if (it == files_.end()) return;
  if (dirty_.count(key) || it->second->written > it->second->committed) {
    it->second->released = true;  // the sync loop closes it
    return;
  }
  files_.erase(it);
}

void LogStore::SyncLoop() {
  std::unique_lock<std::mutex> lock(mu_);
  while (true) {
    cv_.wait(lock, [this] { return stop_ || !dirty_.empty(); });
    if (dirty_.empty() && stop_) return;
    std::vector<std::pair<Key, std::shared_ptr<File>>> batch;
    for (const Key& key : dirty_) {
      auto it = files_.find(key);
      if (it != files_.end()) batch.emplace_back(key, it->second);
    }
    dirty_.clear();
    std::vector<std::pair<uint64_t, CommitCallback>> done;
    for (auto& [key, file] : batch) {
      const uint64_t target = file->written;
      const int fd = file->fd;
      // The file stays open while we sync: `batch` holds a reference.
      lock.unlock();
      const int rc = ::fdatasync(fd);
      const int err = errno;
      lock.lock();
      if (rc != 0) {
        spdlog::error("fdatasync {}: {}", PathFor(key.first, key.second), std::strerror(err));
        continue;  // the next append marks the file dirty again and retries
      }
      if (target > file->committed) file->committed = target;
      if (file->on_commit) done.emplace_back(file->committed, file->on_commit);
      if (file->released && file->written == file->committed && !dirty_.count(key)) files_.erase(key);
    }
    lock.unlock();
    for (auto& [committed, callback] : done) callback(committed);
    batch.clear();
    lock.lock();
  }
}

}  // namespace freeagent::controller
