// The log of one job attempt as a byte stream to the controller: bytes are appended by the job thread
// (the guest's stdout/stderr only; the worker's own lines go out as progress notes), written to an
// on-disk spool file first, then cut into LogChunks of at most 64 KiB (or flushed after 20 ms) with
// offsets increasing from 0. The spool keeps every byte the controller has not acked as durable; after
// a reconnect the stream is resent from the committed offset it names. Memory stays bounded however
// fast the guest writes and however long the controller is away: only the chunk being handed over and
// the connection's bounded queue are in memory; acked spool ranges are punched out of the file.
#pragma once

#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <memory>
#include <mutex>
#include <string>
#include <string_view>
#include <thread>

#include "absl/status/statusor.h"
#include "node/message_sink.h"

namespace freeagent::node {

struct LogStreamOptions {
  size_t chunk_bytes = 64 * 1024;
  // Short enough that a quiet step's last line reaches a watcher well inside 50 ms (p99 goal).
  std::chrono::milliseconds flush_interval{20};
  // Unacked bytes the spool may hold on disk; a writer blocks beyond it (the guest's output then waits).
  uint64_t max_unacked_bytes = 4ull << 30;
  // Acked bytes are released from the spool file in steps of this size.
  uint64_t punch_bytes = 1 << 20;
};

class LogStream {
 public:
  // Creates (truncates) the spool file at `spool_path` (0600) and starts the flusher thread, which hands
  // chunks to `sink` (not owned; must outlive the stream). The file is removed when the stream is
  // destroyed. Errors name the spool path.
  static absl::StatusOr<std::unique_ptr<LogStream>> Open(std::string job_id, uint32_t attempt, MessageSink* sink,
                                                         const std::string& spool_path,
                                                         LogStreamOptions options = {});
  ~LogStream();  // Close()s, joins the flusher and removes the spool file.
  LogStream(const LogStream&) = delete;
  LogStream& operator=(const LogStream&) = delete;

  // Appends bytes to the spool. Blocks only while max_unacked_bytes are unacknowledged (or the spool
  // cannot be written, retried each second); returns at once after Close().
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
  const std::string& spool_path() const { return spool_path_; }

 private:
  LogStream(std::string job_id, uint32_t attempt, MessageSink* sink, std::string spool_path, int fd,
            LogStreamOptions options);
  void FlusherLoop();
  void AckLocked(uint64_t committed_offset);
  // Releases acked bytes from the spool file; called by the flusher (the only reader) without mu_.
  void Punch(uint64_t up_to);

  const std::string job_id_;
  const uint32_t attempt_;
  MessageSink* const sink_;
  const std::string spool_path_;
  const int fd_;
  const LogStreamOptions options_;

  std::mutex append_mu_;  // one writer at a time; the spool is written outside mu_
  mutable std::mutex mu_;
  std::condition_variable cv_;
  uint64_t committed_ = 0;
  uint64_t sent_ = 0;  // bytes below this were handed to the sink on the current stream
  uint64_t end_ = 0;   // bytes below this are in the spool file
  uint64_t punched_ = 0;       // spool bytes below this were released (flusher only)
  uint64_t rewinds_ = 0;       // generation: a failed send before a rewind must not pause after it
  bool paused_ = false;        // no live stream: wait for the next Rewind
  bool flush_requested_ = false;
  bool sending_ = false;       // a chunk is being handed to the sink (outside the lock)
  bool closed_ = false;
  std::chrono::steady_clock::time_point oldest_unsent_;
  std::thread flusher_;
};

}  // namespace freeagent::node
