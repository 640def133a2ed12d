// Per-attempt log files made durable by a group-committed journal (short logs) or by a pool of sync
// threads that coalesce fdatasync calls per file (the rest of long logs).
#include "controller/log_store.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>
#include <zlib.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <vector>

#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/string_view.h"
#include "absl/strings/strip.h"
#include "common/fs.h"
#include "common/status_macros.h"
#include "spdlog/spdlog.h"

namespace freeagent::controller {
namespace {

// Concurrent fdatasync calls overlap their disk writes: eight files synced at once cost little more
// than one (measured here: one thread ~300 new files/s, eight ~1,200/s).
constexpr int kSyncThreads = 8;

constexpr char kSegmentPrefix[] = ".journal-";

// A journal record: magic, crc32 of everything after it, attempt, job id length, data length, offset
// (host byte order: a journal is only replayed where it was written), then the job id and the data.
constexpr uint32_t kRecordMagic = 0x314a4146;  // "FAJ1"
constexpr size_t kRecordHeader = 28;
constexpr uint32_t kMaxJobIdBytes = 1024;

uint32_t Crc32(const char* data, size_t size) {
  return static_cast<uint32_t>(::crc32(0L, reinterpret_cast<const Bytef*>(data), static_cast<uInt>(size)));
}

template <typename T>
void Put(std::string* out, size_t at, T value) {
  std::memcpy(out->data() + at, &value, sizeof(T));
}

template <typename T>
T Get(std::string_view in, size_t at) {
  T value;
  std::memcpy(&value, in.data() + at, sizeof(T));
  return value;
}

void AppendRecord(std::string* out, const std::string& job_id, uint32_t attempt, uint64_t offset,
                  std::string_view data) {
  const size_t start = out->size();
  out->resize(start + kRecordHeader);
  Put<uint32_t>(out, start, kRecordMagic);
  Put<uint32_t>(out, start + 8, attempt);
  Put<uint32_t>(out, start + 12, static_cast<uint32_t>(job_id.size()));
  Put<uint32_t>(out, start + 16, static_cast<uint32_t>(data.size()));
  Put<uint64_t>(out, start + 20, offset);
  out->append(job_id);
  out->append(data);
  Put<uint32_t>(out, start + 4, Crc32(out->data() + start + 8, out->size() - start - 8));
}

absl::Status PWriteAll(int fd, std::string_view data, uint64_t offset, const std::string& path) {
  while (!data.empty()) {
    ssize_t n = ::pwrite(fd, data.data(), data.size(), static_cast<off_t>(offset));
    if (n < 0) {
      if (errno == EINTR) continue;
      return ErrnoStatus(errno, "write log", path);
    }
    offset += static_cast<uint64_t>(n);
    data.remove_prefix(static_cast<size_t>(n));
  }
  return absl::OkStatus();
}

absl::Status SyncDirectory(const std::string& dir) {
  const int fd = ::open(dir.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  if (fd < 0) return ErrnoStatus(errno, "open directory", dir);
  const int rc = ::fsync(fd);
  const int err = errno;
  ::close(fd);
  return rc == 0 ? absl::OkStatus() : ErrnoStatus(err, "fsync directory", dir);
}

}  // namespace

struct LogStore::File {
  ~File() {
    if (fd >= 0) ::close(fd);
  }

  // What is due once the file's bytes up to `committed` are durable (status ok), or once a sync of
  // the bytes up to `target` failed.
  struct Callbacks {
    CommitCallback on_commit;
    uint64_t committed = 0;
    std::vector<FlushCallback> flushed;
    absl::Status status;

    void Run() {
      if (on_commit) on_commit(committed);
      for (FlushCallback& done : flushed) done(status);
    }
  };

  Callbacks Take(const absl::Status& status, uint64_t target) {
    Callbacks c;
    c.status = status;
    c.committed = committed;
    if (status.ok()) c.on_commit = on_commit;
    const uint64_t due = status.ok() ? committed : target;
    for (auto w = flush_waiters.begin(); w != flush_waiters.end();) {
      if (w->first <= due) {
        c.flushed.push_back(std::move(w->second));
        w = flush_waiters.erase(w);
      } else {
        ++w;
      }
    }
    return c;
  }

  int fd = -1;
  uint64_t written = 0;
  uint64_t committed = 0;
  bool released = false;
  // Its bytes are made durable by the sync threads (past kJournalLogBytes, or after the journal
  // failed); before, by the journal.
  bool pooled = false;
  // A thread holds the file (a sync thread from its fdatasync, the journal thread after its commit, to
  // the end of the callbacks): one at a time, so commit callbacks see committed offsets in order.
  bool syncing = false;
  CommitCallback on_commit;
  std::vector<std::pair<uint64_t, FlushCallback>> flush_waiters;  // (bytes to be durable, callback)
};

LogStore::LogStore(std::string dir) : dir_(std::move(dir)) {}

LogStore::~LogStore() { Stop(); }

absl::Status LogStore::Start() {
  RETURN_IF_ERROR(MakeDirs(dir_, 0755));
  // One listing serves both: the migration renames only inside per-build directories, so the
  // journal segments it lists stay as they are.
  ASSIGN_OR_RETURN(const std::vector<std::string> names, ListDirectory(dir_));
  // Before the replay, which writes to the flat names.
  RETURN_IF_ERROR(MigrateJobDirectories(names));
  std::vector<std::string> old_segments;
  uint64_t last = 0;
  RETURN_IF_ERROR(Replay(names, &old_segments, &last));
  RETURN_IF_ERROR(OpenSegment(last + 1));
  if (!old_segments.empty()) {
    const int dir_fd = ::open(dir_.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (dir_fd < 0) return ErrnoStatus(errno, "open directory", dir_);
    checkpoint_running_ = true;
    checkpoint_thread_ = std::thread([this, dir_fd, old_segments] { Retire(dir_fd, old_segments); });
  }
  journal_thread_ = std::thread([this] { JournalLoop(); });
  for (int i = 0; i < kSyncThreads; ++i) sync_threads_.emplace_back([this] { SyncLoop(); });
  return absl::OkStatus();
}

void LogStore::Stop() {
  {
    std::lock_guard<std::mutex> lock(mu_);
    if (stop_journal_) return;
    stop_journal_ = true;
  }
  // The journal first: a failed last commit hands its files to the sync threads.
  journal_cv_.notify_all();
  if (journal_thread_.joinable()) journal_thread_.join();
  {
    std::lock_guard<std::mutex> lock(mu_);
    stop_ = true;
  }
  cv_.notify_all();
  for (std::thread& t : sync_threads_) t.join();
  sync_threads_.clear();
  if (checkpoint_thread_.joinable()) checkpoint_thread_.join();
  if (segment_fd_ >= 0) ::close(segment_fd_);
  segment_fd_ = -1;
}

std::string LogStore::PathFor(const std::string& job_id, uint32_t attempt) const {
  return absl::StrCat(dir_, "/", job_id, ".", attempt, ".log");
}

absl::Status LogStore::MigrateJobDirectories(const std::vector<std::string>& names) {
  size_t moved = 0;
  std::vector<std::string> emptied;
  for (const std::string& job_id : names) {
    if (job_id.empty() || job_id[0] == '.') continue;  // journal segments
    // A log in the flat layout: skipped by name, so a start-up costs no stat per stored log.
    if (absl::EndsWith(job_id, ".log")) continue;
    const std::string job_dir = absl::StrCat(dir_, "/", job_id);
    struct stat st {};
    if (::stat(job_dir.c_str(), &st) != 0) return ErrnoStatus(errno, "stat", job_dir);
    if (!S_ISDIR(st.st_mode)) continue;
    ASSIGN_OR_RETURN(std::vector<std::string> logs, ListDirectory(job_dir));
    size_t left = 0;
    for (const std::string& name : logs) {
      uint32_t attempt = 0;
      absl::string_view stem = name;
      if (!absl::ConsumeSuffix(&stem, ".log") || !absl::SimpleAtoi(stem, &attempt)) {
        spdlog::warn("{}/{}: not a build log (<attempt>.log); left in place", job_dir, name);
        ++left;
        continue;
      }
      const std::string from = absl::StrCat(job_dir, "/", name);
      const std::string to = PathFor(job_id, attempt);
      if (::rename(from.c_str(), to.c_str()) != 0) return ErrnoStatus(errno, "rename log", from);
      ++moved;
    }
    if (left == 0) emptied.push_back(job_dir);
  }
  if (moved == 0 && emptied.empty()) return absl::OkStatus();
  // The new names are durable before the old directories go, so a crash leaves every log findable.
  RETURN_IF_ERROR(SyncDirectory(dir_));
  for (const std::string& job_dir : emptied) {
    if (::rmdir(job_dir.c_str()) != 0) return ErrnoStatus(errno, "remove directory", job_dir);
  }
  RETURN_IF_ERROR(SyncDirectory(dir_));
  spdlog::info("{}: {} log(s) moved out of {} per-build director(ies)", dir_, moved, emptied.size());
  return absl::OkStatus();
}

std::string LogStore::SegmentPath(uint64_t n) const { return absl::StrCat(dir_, "/", kSegmentPrefix, n); }

absl::Status LogStore::Replay(const std::vector<std::string>& names, std::vector<std::string>* segments,
                              uint64_t* last) {
  std::vector<uint64_t> numbers;
  for (const std::string& name : names) {
    uint64_t n = 0;
    if (absl::StartsWith(name, kSegmentPrefix) && absl::SimpleAtoi(name.substr(sizeof(kSegmentPrefix) - 1), &n)) {
      numbers.push_back(n);
    }
  }
  std::sort(numbers.begin(), numbers.end());  // older records first
  for (uint64_t n : numbers) {
    const std::string path = SegmentPath(n);
    ASSIGN_OR_RETURN(std::string content, ReadFile(path));
    const std::string_view in = content;
    size_t pos = 0, records = 0;
    while (pos + kRecordHeader <= in.size()) {
      if (Get<uint32_t>(in, pos) != kRecordMagic) break;
      const uint32_t attempt = Get<uint32_t>(in, pos + 8);
      const uint32_t id_size = Get<uint32_t>(in, pos + 12);
      const uint32_t data_size = Get<uint32_t>(in, pos + 16);
      const uint64_t offset = Get<uint64_t>(in, pos + 20);
      const size_t end = pos + kRecordHeader + id_size + data_size;
      if (id_size == 0 || id_size > kMaxJobIdBytes || end > in.size() || end < pos) break;
      if (Crc32(in.data() + pos + 8, end - pos - 8) != Get<uint32_t>(in, pos + 4)) break;
      const std::string job_id(in.substr(pos + kRecordHeader, id_size));
      if (job_id.find('/') != std::string::npos || job_id[0] == '.') break;
      const std::string log_path = PathFor(job_id, attempt);
      const int fd = ::open(log_path.c_str(), O_WRONLY | O_CREAT | O_CLOEXEC, 0644);
      if (fd < 0) return ErrnoStatus(errno, "open log", log_path);
      absl::Status st = PWriteAll(fd, in.substr(pos + kRecordHeader + id_size, data_size), offset, log_path);
      ::close(fd);
      RETURN_IF_ERROR(st);
      pos = end;
      ++records;
    }
    // Only a write that was never synced (so never acknowledged) can be cut short.
    if (pos < in.size()) spdlog::warn("{}: {} bytes after the last whole record ignored", path, in.size() - pos);
    spdlog::info("log journal {}: {} records replayed", path, records);
    segments->push_back(path);
    *last = n;
  }
  return absl::OkStatus();
}

absl::Status LogStore::OpenSegment(uint64_t n) {
  const std::string path = SegmentPath(n);
  const int fd = ::open(path.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_APPEND | O_CLOEXEC, 0644);
  if (fd < 0) return ErrnoStatus(errno, "open log journal", path);
  // The segment's name must survive a crash along with the records synced into it.
  if (absl::Status st = SyncDirectory(dir_); !st.ok()) {
    ::close(fd);
    return st;
  }
  segment_fd_ = fd;
  segment_n_ = n;
  segment_size_ = 0;
  return absl::OkStatus();
}

void LogStore::Retire(int sync_fd, std::vector<std::string> segments) {
  // Every byte the segments hold was written to its log file before it was queued for the journal:
  // once the file system is synced, the segments are no longer needed.
  if (::syncfs(sync_fd) != 0) {
    spdlog::error("{}; the log journal is kept and replayed at the next start",
                  ErrnoStatus(errno, "syncfs", dir_).ToString());
  } else {
    for (const std::string& path : segments) {
      if (::unlink(path.c_str()) != 0) spdlog::warn("{}", ErrnoStatus(errno, "remove", path).ToString());
    }
  }
  ::close(sync_fd);
  checkpoint_running_ = false;
}

void LogStore::MaybeRotate() {
  if (segment_size_ < kJournalSegmentBytes || checkpoint_running_) return;
  const int old_fd = segment_fd_;
  const std::string old_path = SegmentPath(segment_n_);
  if (absl::Status st = OpenSegment(segment_n_ + 1); !st.ok()) {
    spdlog::warn("{}; the log journal keeps growing", st.ToString());
    return;
  }
  if (checkpoint_thread_.joinable()) checkpoint_thread_.join();  // finished: checkpoint_running_ was false
  checkpoint_running_ = true;
  checkpoint_thread_ = std::thread([this, old_fd, old_path] { Retire(old_fd, {old_path}); });
}

absl::StatusOr<std::shared_ptr<LogStore::File>> LogStore::OpenLocked(const Key& key) {
  auto it = files_.find(key);
  if (it != files_.end()) return it->second;
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

void LogStore::MarkDirtyLocked(const Key& key) {
  if (dirty_.insert(key).second) dirty_order_.push_back(key);
  cv_.notify_all();
}

absl::StatusOr<LogStore::AppendResult> LogStore::Append(const std::string& job_id, uint32_t attempt,
                                                        uint64_t offset, std::string_view data,
                                                        CommitCallback on_commit) {
  std::lock_guard<std::mutex> lock(mu_);
  const Key key{job_id, attempt};
  ASSIGN_OR_RETURN(std::shared_ptr<File> file, OpenLocked(key));
  AppendResult result;
  std::string_view tail;
  const uint64_t tail_offset = file->written;
  if (offset > file->written) {
    result.gap = true;
  } else if (offset + data.size() > file->written) {
    tail = data.substr(file->written - offset);
    RETURN_IF_ERROR(PWriteAll(file->fd, tail, tail_offset, PathFor(job_id, attempt)));
    file->written += tail.size();
  }
  result.written = file->written;
  result.committed = file->committed;
  if (file->written > file->committed) {
    file->on_commit = std::move(on_commit);
    result.pending = true;
    if (journal_failed_ || file->written > kJournalLogBytes) file->pooled = true;
    if (file->pooled) {
      MarkDirtyLocked(key);
    } else if (!tail.empty()) {
      AppendRecord(&journal_queue_, job_id, attempt, tail_offset, tail);
      journal_targets_[key] = file->written;
      journal_cv_.notify_one();
    }
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

bool LogStore::FlushAsync(const std::string& job_id, uint32_t attempt, FlushCallback done) {
  std::lock_guard<std::mutex> lock(mu_);
  const Key key{job_id, attempt};
  auto it = files_.find(key);
  if (it == files_.end() || it->second->written == it->second->committed) return true;
  it->second->flush_waiters.emplace_back(it->second->written, std::move(done));
  // A journaled file's bytes are queued for the journal's next commit, which runs the waiter.
  if (it->second->pooled) MarkDirtyLocked(key);
  return false;
}

void LogStore::Release(const std::string& job_id, uint32_t attempt) {
  std::lock_guard<std::mutex> lock(mu_);
  const Key key{job_id, attempt};
  auto it = files_.find(key);
  if (it == files_.end()) return;
  if (dirty_.count(key) || it->second->syncing || it->second->written > it->second->committed) {
    it->second->released = true;  // closed once its bytes are committed
    return;
  }
  files_.erase(it);
}

void LogStore::FinishLocked(const Key& key, const std::shared_ptr<File>& file) {
  file->syncing = false;
  if (file->released && file->written == file->committed && !dirty_.count(key)) {
    auto current = files_.find(key);
    if (current != files_.end() && current->second == file) files_.erase(current);
  }
}

void LogStore::JournalLoop() {
  std::unique_lock<std::mutex> lock(mu_);
  while (true) {
    journal_cv_.wait(lock, [&] { return stop_journal_ || !journal_queue_.empty(); });
    if (journal_queue_.empty()) return;  // stopping with nothing left
    std::string batch;
    batch.swap(journal_queue_);
    std::map<Key, uint64_t> targets;
    targets.swap(journal_targets_);
    lock.unlock();
    const std::string path = SegmentPath(segment_n_);
    absl::Status status = WriteAll(segment_fd_, batch.data(), batch.size(), path);
    if (status.ok() && ::fdatasync(segment_fd_) != 0) status = ErrnoStatus(errno, "fdatasync log journal", path);
    if (status.ok()) {
      segment_size_ += batch.size();
      MaybeRotate();
    }
    lock.lock();
    if (!status.ok()) {
      // A segment with a torn record cannot take more (replay stops there): every file with bytes in
      // this batch or the next one is synced by the sync threads instead, and so is every later log.
      spdlog::error("{}; log files are synced one by one from now on", status.ToString());
      journal_failed_ = true;
      for (const auto& group : {targets, journal_targets_}) {
        for (const auto& entry : group) {
          auto it = files_.find(entry.first);
          if (it == files_.end()) continue;
          it->second->pooled = true;
          MarkDirtyLocked(entry.first);
        }
      }
      journal_queue_.clear();
      journal_targets_.clear();
      continue;
    }
    std::vector<std::pair<Key, std::shared_ptr<File>>> taken;
    std::vector<File::Callbacks> due;
    for (const auto& [key, target] : targets) {
      auto it = files_.find(key);
      if (it == files_.end()) continue;
      std::shared_ptr<File> file = it->second;
      file->committed = std::max(file->committed, target);
      if (file->syncing) {
        MarkDirtyLocked(key);  // a sync thread has it; it syncs again and reports the new offset
        continue;
      }
      file->syncing = true;
      due.push_back(file->Take(absl::OkStatus(), target));
      taken.emplace_back(key, std::move(file));
    }
    lock.unlock();
    for (File::Callbacks& c : due) c.Run();
    lock.lock();
    for (const auto& [key, file] : taken) FinishLocked(key, file);
    cv_.notify_all();
  }
}

void LogStore::SyncLoop() {
  std::unique_lock<std::mutex> lock(mu_);
  // The oldest dirty file no other thread holds (at most kSyncThreads + 1 are skipped).
  auto next = [this] {
    for (auto it = dirty_order_.begin(); it != dirty_order_.end(); ++it) {
      auto f = files_.find(*it);
      if (f == files_.end() || !f->second->syncing) return it;
    }
    return dirty_order_.end();
  };
  while (true) {
    cv_.wait(lock, [&] { return (stop_ && dirty_.empty()) || next() != dirty_order_.end(); });
    auto pick = next();
    if (pick == dirty_order_.end()) return;  // stopping with nothing left
    const Key key = *pick;
    dirty_order_.erase(pick);
    dirty_.erase(key);
    auto it = files_.find(key);
    if (it == files_.end()) continue;
    std::shared_ptr<File> file = it->second;  // stays open while we sync
    file->syncing = true;
    const uint64_t target = file->written;
    lock.unlock();
    const int rc = ::fdatasync(file->fd);
    const int err = errno;
    lock.lock();
    absl::Status status;
    if (rc != 0) {
      status = ErrnoStatus(err, "fdatasync log", PathFor(key.first, key.second));
      spdlog::error("{}", status.ToString());
      // The next append (or flush) marks the file dirty again and retries.
    } else if (target > file->committed) {
      file->committed = target;
    }
    File::Callbacks due = file->Take(status, target);
    lock.unlock();
    due.Run();
    lock.lock();
    FinishLocked(key, file);
    cv_.notify_all();
  }
}

}  // namespace freeagent::controller
