// The log of one job attempt as a byte stream to the controller: bytes are appended by the job thread
// (the guest's stdout/stderr only; the worker's own lines go out as progress notes), cut into LogChunks
// of at most 64 KiB or flushed after 20 ms, with offsets increasing from 0. Bytes stay in memory until
// the controller acks them as durable; after a reconnect they are resent from the committed offset it
// names. Memory is bounded: a writer blocks while too many bytes are unacknowledged.
#pragma once

#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <mutex>
#include <string>
#include <string_view>
#include <thread>

#include "node/message_sink.h"

namespace freeagent::node {

struct LogStreamOptions {
  size_t chunk_bytes = 64 * 1024;
  // Short enough that a quiet step's last line reaches a watcher well inside 50 ms (p99 goal).
  std::chrono::milliseconds flush_interval{20};
  size_t max_unacked_bytes = 16 * 1024 * 1024;
};

class LogStream {
 public:
  // Starts the flusher thread, which hands chunks to `sink` (not owned; must outlive this).
  LogStream(std::string job_id, uint32_t attempt, MessageSink* sink, LogStreamOptions options = {});
  ~LogStream();  // Close()s and joins the flusher.
  LogStream(const LogStream&) = delete;
  LogStream& operator=(const LogStream&) = delete;

  // Appends bytes. Blocks while the unacked bytes exceed the bound; returns at once after Close().
  void Append(std::string_view bytes);

  // The controller has everything below `committed_offset`: those bytes are released.
  void Ack(uint64_t committed_offset);

  // After a (re)connect: the controller has everything below `committed_offset`; send again from there.
  void Rewind(uint64_t committed_offset);

  // Sends whatever is pending now and waits until every appended byte was handed to the sink (or the
  // stream is closed, or `timeout`). Returns true if all bytes were handed over.
  bool Flush(std::chrono::milliseconds timeout);

  // Waits until the controller acked every appended byte. True if it did within `timeout`.
  bool WaitAcked(std::chrono::milliseconds timeout);

  // Stops the flusher; blocked writers return.
  void Close();

  uint64_t size() const;       // bytes appended so far (the next offset)
  uint64_t committed() const;  // highest acked offset

 private:
  void FlusherLoop();
  void AckLocked(uint64_t committed_offset);
  std::string_view PendingLocked(uint64_t from, size_t n) const;

  const std::string job_id_;
  const uint32_t attempt_;
  MessageSink* const sink_;
  const LogStreamOptions options_;

  mutable std::mutex mu_;
  std::condition_variable cv_;
  // buf_[head_..] holds the bytes from offset committed_ to end_.
  std::string buf_;
  size_t head_ = 0;
  uint64_t committed_ = 0;
  uint64_t sent_ = 0;  // bytes below this were handed to the sink on the current stream
  uint64_t end_ = 0;
  uint64_t rewinds_ = 0;       // generation: a failed send before a rewind must not pause after it
  bool paused_ = false;        // no live stream: wait for the next Rewind
  bool flush_requested_ = false;
  bool sending_ = false;       // a chunk is being handed to the sink (outside the lock)
  bool closed_ = false;
  std::chrono::steady_clock::time_point oldest_unsent_;
  std::thread flusher_;
};

}  // namespace freeagent::node
