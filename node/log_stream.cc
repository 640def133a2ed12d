#include "node/log_stream.h"

#include <algorithm>

namespace freeagent::node {

namespace v1 = ::freeagent::v1;

LogStream::LogStream(std::string job_id, uint32_t attempt, MessageSink* sink, LogStreamOptions options)
    : job_id_(std::move(job_id)), attempt_(attempt), sink_(sink), options_(options) {
  flusher_ = std::thread([this] { FlusherLoop(); });
}

LogStream::~LogStream() {
  Close();
  if (flusher_.joinable()) flusher_.join();
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
  std::unique_lock<std::mutex> lock(mu_);
  while (!bytes.empty() && !closed_) {
    size_t held = static_cast<size_t>(end_ - committed_);
    if (held >= options_.max_unacked_bytes) {
      cv_.wait(lock, [&] { return closed_ || end_ - committed_ < options_.max_unacked_bytes; });
      continue;
    }
    size_t n = std::min(bytes.size(), options_.max_unacked_bytes - held);
    if (sent_ == end_) oldest_unsent_ = std::chrono::steady_clock::now();
    buf_.append(bytes.data(), n);
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
  committed_offset = std::min(committed_offset, end_);
  head_ += static_cast<size_t>(committed_offset - committed_);
  committed_ = committed_offset;
  if (sent_ < committed_) sent_ = committed_;
  // Compact lazily so each ack is amortised O(1).
  if (head_ > buf_.size() / 2) {
    buf_.erase(0, head_);
    head_ = 0;
  }
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

std::string_view LogStream::PendingLocked(uint64_t from, size_t n) const {
  return std::string_view(buf_).substr(head_ + static_cast<size_t>(from - committed_), n);
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

void LogStream::FlusherLoop() {
  std::unique_lock<std::mutex> lock(mu_);
  while (!closed_) {
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
    v1::WorkerMessage msg;
    v1::LogChunk* chunk = msg.mutable_log();
    chunk->set_job_id(job_id_);
    chunk->set_attempt(attempt_);
    chunk->set_offset(sent_);
    std::string_view data = PendingLocked(sent_, n);
    chunk->set_data(data.data(), data.size());
    sent_ += n;
    oldest_unsent_ = std::chrono::steady_clock::now();
    uint64_t generation = rewinds_;
    sending_ = true;
    lock.unlock();
    bool ok = sink_->Send(std::move(msg));
    lock.lock();
    sending_ = false;
    if (!ok && generation == rewinds_) paused_ = true;
    if (sent_ >= end_) flush_requested_ = false;
    cv_.notify_all();
  }
}

}  // namespace freeagent::node
