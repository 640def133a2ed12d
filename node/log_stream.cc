#include "node/log_stream.h"

#include <fcntl.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>

#include <spdlog/spdlog.h>

#include "absl/strings/str_cat.h"
#include "common/fs.h"

namespace freeagent::node {

namespace v1 = ::freeagent::v1;

namespace {

// The next spool write is tried this long after a failed one (disk full, I/O error).
constexpr std::chrono::seconds kSpoolRetry{1};

absl::Status WriteAt(int fd, std::string_view data, uint64_t offset, const std::string& path) {
  while (!data.empty()) {
    ssize_t n = ::pwrite(fd, data.data(), data.size(), static_cast<off_t>(offset));
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) return ErrnoStatus(errno, "write log spool", path);
    data.remove_prefix(static_cast<size_t>(n));
    offset += static_cast<uint64_t>(n);
  }
  return absl::OkStatus();
}

absl::Status ReadAt(int fd, std::string* out, size_t n, uint64_t offset, const std::string& path) {
  out->resize(n);
  size_t got = 0;
  while (got < n) {
    ssize_t r = ::pread(fd, out->data() + got, n - got, static_cast<off_t>(offset + got));
    if (r < 0 && errno == EINTR) continue;
    if (r < 0) return ErrnoStatus(errno, "read log spool", path);
    if (r == 0) return absl::DataLossError(absl::StrCat("read log spool ", path, ": file is shorter than expected"));
    got += static_cast<size_t>(r);
  }
  return absl::OkStatus();
}

}  // namespace

absl::StatusOr<std::unique_ptr<LogStream>> LogStream::Open(std::string job_id, uint32_t attempt, MessageSink* sink,
                                                           const std::string& spool_path, LogStreamOptions options) {
  int fd = ::open(spool_path.c_str(), O_RDWR | O_CREAT | O_TRUNC | O_CLOEXEC | O_NOFOLLOW, 0600);
  if (fd < 0) return ErrnoStatus(errno, "create log spool", spool_path);
  return std::unique_ptr<LogStream>(new LogStream(std::move(job_id), attempt, sink, spool_path, fd, options));
}

LogStream::LogStream(std::string job_id, uint32_t attempt, MessageSink* sink, std::string spool_path, int fd,
                     LogStreamOptions options)
    : job_id_(std::move(job_id)),
      attempt_(attempt),
      sink_(sink),
      spool_path_(std::move(spool_path)),
      fd_(fd),
      options_(options) {
  flusher_ = std::thread([this] { FlusherLoop(); });
}

LogStream::~LogStream() {
  Close();
  if (flusher_.joinable()) flusher_.join();
  // A writer blocked in Append returned at Close(); the append lock waits for it to leave.
  std::lock_guard<std::mutex> wait_for_writer(append_mu_);
  ::close(fd_);
  ::unlink(spool_path_.c_str());
}

void LogStream::Close() {
  std::lock_guard<std::mutex> lock(mu_);
  closed_ = true;
  cv_.notify_all();
}

uint64_t LogStream::size() const {
  std::lock_guard<std::mutex> lock(mu_);
  return end_;
}

uint64_t LogStream::committed() const {
  std::lock_guard<std::mutex> lock(mu_);
  return committed_;
}

void LogStream::Append(std::string_view bytes) {
  std::lock_guard<std::mutex> writer(append_mu_);
  bool reported = false;
  while (!bytes.empty()) {
    uint64_t offset;
    size_t n;
    {
      std::unique_lock<std::mutex> lock(mu_);
      cv_.wait(lock, [&] { return closed_ || end_ - committed_ < options_.max_unacked_bytes; });
      if (closed_) return;
      n = static_cast<size_t>(std::min<uint64_t>(bytes.size(), options_.max_unacked_bytes - (end_ - committed_)));
      offset = end_;
    }
    // Outside mu_: acks (gRPC threads) never wait for the disk. Only this writer touches [end_, ...).
    absl::Status written = WriteAt(fd_, bytes.substr(0, n), offset, spool_path_);
    std::unique_lock<std::mutex> lock(mu_);
    if (!written.ok()) {
      if (!reported) spdlog::error("{}; retrying every {} s", written.ToString(), kSpoolRetry.count());
      reported = true;
      cv_.wait_for(lock, kSpoolRetry, [&] { return closed_; });
      continue;
    }
    if (sent_ == end_) oldest_unsent_ = std::chrono::steady_clock::now();
    end_ += n;
    bytes.remove_prefix(n);
    cv_.notify_all();
  }
}

void LogStream::Ack(uint64_t committed_offset) {
  std::lock_guard<std::mutex> lock(mu_);
  AckLocked(committed_offset);
}

void LogStream::AckLocked(uint64_t committed_offset) {
  if (committed_offset <= committed_) return;
  committed_ = std::min(committed_offset, end_);
  if (sent_ < committed_) sent_ = committed_;
  cv_.notify_all();
}

void LogStream::Rewind(uint64_t committed_offset) {
  std::lock_guard<std::mutex> lock(mu_);
  ++rewinds_;
  paused_ = false;
  AckLocked(committed_offset);
  // Everything not known durable goes again; the controller drops what it already has.
  sent_ = committed_;
  oldest_unsent_ = std::chrono::steady_clock::now();
  cv_.notify_all();
}

bool LogStream::Flush(std::chrono::milliseconds timeout) {
  std::unique_lock<std::mutex> lock(mu_);
  flush_requested_ = true;
  cv_.notify_all();
  // Without a live stream nothing can be handed over until the next rewind.
  auto all_handed = [&] { return sent_ >= end_ && !sending_; };
  return cv_.wait_for(lock, timeout, [&] { return closed_ || paused_ || all_handed(); }) && all_handed();
}

bool LogStream::WaitAcked(std::chrono::milliseconds timeout) {
  std::unique_lock<std::mutex> lock(mu_);
  return cv_.wait_for(lock, timeout, [&] { return closed_ || committed_ >= end_; }) && committed_ >= end_;
}

void LogStream::Punch(uint64_t up_to) {
  // Whole pages only; a file system without hole punching keeps the bytes (they are still bounded by
  // max_unacked_bytes only in what is unacked, so say so once).
  up_to &= ~static_cast<uint64_t>(4095);
  if (up_to <= punched_) return;
  if (::fallocate(fd_, FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE, static_cast<off_t>(punched_),
                  static_cast<off_t>(up_to - punched_)) != 0 &&
      punched_ == 0) {
    spdlog::warn("log spool {}: acked bytes stay on disk until the job ends ({})", spool_path_,
                 ErrnoStatus(errno, "punch hole", spool_path_).ToString());
  }
  punched_ = up_to;
}

void LogStream::FlusherLoop() {
  std::string buffer;
  std::unique_lock<std::mutex> lock(mu_);
  while (!closed_) {
    if (committed_ >= punched_ + options_.punch_bytes) {
      // Only this thread reads the spool, and it reads at or above committed_: punching below is safe.
      uint64_t up_to = committed_;
      lock.unlock();
      Punch(up_to);
      lock.lock();
      continue;
    }
    uint64_t pending = end_ - sent_;
    if (pending == 0 || paused_) {
      flush_requested_ = flush_requested_ && pending != 0;
      cv_.wait(lock);
      continue;
    }
    auto due = oldest_unsent_ + options_.flush_interval;
    if (pending < options_.chunk_bytes && !flush_requested_ && std::chrono::steady_clock::now() < due) {
      cv_.wait_until(lock, due);
      continue;
    }
    size_t n = static_cast<size_t>(std::min<uint64_t>(pending, options_.chunk_bytes));
    const uint64_t from = sent_;
    sent_ += n;
    oldest_unsent_ = std::chrono::steady_clock::now();
    uint64_t generation = rewinds_;
    sending_ = true;
    lock.unlock();
    // [from, from + n) is below end_, so the writer is done with it and no punch reaches it.
    absl::Status read = ReadAt(fd_, &buffer, n, from, spool_path_);
    bool ok = read.ok();
    if (ok) {
      v1::WorkerMessage msg;
      v1::LogChunk* chunk = msg.mutable_log();
      chunk->set_job_id(job_id_);
      chunk->set_attempt(attempt_);
      chunk->set_offset(from);
      chunk->set_data(buffer);
      ok = sink_->Send(std::move(msg));
    } else {
      spdlog::error("{}; resending from the committed offset after the next reconnect", read.ToString());
    }
    lock.lock();
    sending_ = false;
    if (!ok && generation == rewinds_) paused_ = true;
    if (sent_ >= end_) flush_requested_ = false;
    cv_.notify_all();
  }
}

}  // namespace freeagent::node
