// A loopback TCP proxy a test controls, for cutting the network between two real processes: it
// forwards every connection to a target port until Cut(). A silent cut stops forwarding (bytes stay
// unread in the socket buffers, new connections are accepted but go nowhere), like a network that
// drops packets; a reset cut resets every connection at once and every new one as it arrives, like a
// peer that is gone. Restore() resets the connections that lived through the cut and forwards again.
// One thread, poll(2), bounded buffers.
#pragma once

#include <atomic>
#include <condition_variable>
#include <cstdint>
#include <memory>
#include <mutex>
#include <string>
#include <thread>

#include "absl/status/statusor.h"

namespace freeagent::testing {

class TcpProxy {
 public:
  // Listens on 127.0.0.1:0 and forwards to 127.0.0.1:`target_port`.
  static absl::StatusOr<std::unique_ptr<TcpProxy>> Start(int target_port);
  ~TcpProxy();  // stops the thread and closes every socket
  TcpProxy(const TcpProxy&) = delete;
  TcpProxy& operator=(const TcpProxy&) = delete;

  int port() const { return port_; }
  std::string address() const { return "127.0.0.1:" + std::to_string(port_); }

  enum class CutMode { kSilent, kReset };
  // Stops forwarding (see the file comment). Thread-safe. Returns once the proxy's thread has taken
  // the cut in: no byte is forwarded after it returns.
  void Cut(CutMode mode = CutMode::kSilent);
  // Resets the connections of the cut and forwards again. Thread-safe.
  void Restore();

  // Connections accepted so far.
  uint64_t accepted() const { return accepted_.load(); }
  // Bytes forwarded in either direction so far.
  uint64_t forwarded_bytes() const { return forwarded_.load(); }

 private:
  TcpProxy(int listen_fd, int port, int target_port, int wake_read, int wake_write);
  void Loop();
  void Wake();

  const int listen_fd_;
  const int port_;
  const int target_port_;
  const int wake_read_;
  const int wake_write_;
  std::mutex mu_;
  bool cut_ = false;            // guarded by mu_
  CutMode mode_ = CutMode::kSilent;  // guarded by mu_
  uint64_t restores_ = 0;       // guarded by mu_: each Restore() resets what came before it
  uint64_t cuts_ = 0;           // guarded by mu_: Cut() calls so far
  uint64_t cuts_applied_ = 0;   // guarded by mu_: those the thread has taken in
  bool stop_ = false;           // guarded by mu_
  bool loop_ended_ = false;     // guarded by mu_
  std::condition_variable applied_cv_;
  std::atomic<uint64_t> accepted_{0};
  std::atomic<uint64_t> forwarded_{0};
  std::thread thread_;
};

}  // namespace freeagent::testing
