// The worker's one long-lived stream to the controller (WorkerService.Connect) on the gRPC callback API.
// Stream contract: the first message on every stream is the handler's full-state Hello; nothing else is
// sent before the controller's Welcome. At most one read and one write are in flight; outgoing messages
// wait in two queues — small control messages ahead of a byte-bounded bulk queue whose full state
// blocks job threads (never a reaction). A broken stream is replaced with exponential backoff and
// jitter (capped at 30 s); queued messages of a broken stream are dropped, because the next Hello,
// the log rewind and the result resend restate everything. Heartbeats run on their own thread.
#pragma once

#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <deque>
#include <functional>
#include <memory>
#include <mutex>
#include <string>
#include <thread>

#include <grpcpp/channel.h>

#include "freeagent/v1/worker.grpc.pb.h"
#include "proto/channel.h"
#include "node/message_sink.h"

namespace freeagent::node {

// What the connection needs from the worker. Called on gRPC threads: must not block.
class ConnectionHandler {
 public:
  virtual ~ConnectionHandler() = default;
  // The full state, for the first message of a new stream.
  virtual freeagent::v1::Hello MakeHello() = 0;
  // Every controller message, in order. A Welcome arrives after the stream is marked live, so the
  // handler may send from here.
  virtual void OnMessage(const freeagent::v1::ControllerMessage& message) = 0;
  // What a heartbeat says (jobs in use, draining); the connection sets the send time.
  virtual freeagent::v1::Heartbeat MakeHeartbeat() = 0;
};

struct ConnectionOptions {
  size_t max_bulk_bytes = 4 * 1024 * 1024;       // bulk queue bound; senders block beyond it
  std::chrono::milliseconds initial_backoff{250};
  std::chrono::milliseconds max_backoff{30000};
  std::chrono::milliseconds heartbeat_interval{0};  // 0 = what Welcome says (default 5 s until then)
};

// Channel with the project's keepalive and 8 MiB message limits.
std::shared_ptr<grpc::Channel> MakeWorkerChannel(const std::string& address,
                                                 const proto::ChannelSecurity& security);

class ControllerConnection : public MessageSink {
 public:
  ControllerConnection(std::shared_ptr<grpc::Channel> channel, ConnectionHandler* handler,
                       ConnectionOptions options = {});
  ~ControllerConnection() override;  // Stop()s

  // Starts the connect loop and the heartbeat thread.
  void Start();
  // Ends the stream, stops reconnecting, wakes blocked senders and joins the threads. Idempotent.
  void Stop();

  bool Send(freeagent::v1::WorkerMessage message) override;
  bool SendPriority(freeagent::v1::WorkerMessage message) override;

  // True while a stream is live (welcomed).
  bool connected() const;
  // Number of streams that received a Welcome so far (for tests and logs).
  uint64_t welcomes() const;

 private:
  class Stream;

  void ConnectLoop();
  void HeartbeatLoop();
  void MaybeWrite();
  // Reactions, called by Stream.
  void OnRead(Stream* stream, const freeagent::v1::ControllerMessage& message);
  void OnWriteDone(Stream* stream, bool ok);
  void OnBroken(Stream* stream);
  void OnStreamDone(Stream* stream, const grpc::Status& status);

  std::shared_ptr<grpc::Channel> channel_;
  std::unique_ptr<freeagent::v1::WorkerService::Stub> stub_;
  ConnectionHandler* handler_;
  ConnectionOptions options_;

  mutable std::mutex mu_;
  std::condition_variable cv_;             // stream done, stop, queue space
  Stream* stream_ = nullptr;               // the live stream object, until its OnDone
  bool live_ = false;                      // welcomed on the current stream
  bool stopping_ = false;
  uint64_t welcomes_ = 0;
  std::deque<freeagent::v1::WorkerMessage> priority_;
  std::deque<freeagent::v1::WorkerMessage> bulk_;
  size_t bulk_bytes_ = 0;
  std::chrono::milliseconds heartbeat_interval_{5000};
  uint64_t heartbeat_generation_ = 0;  // bumped by each Welcome (a new interval, a new stream)
  std::chrono::milliseconds liveness_timeout_{0};  // the last Welcome's; caps the reconnect backoff
  std::thread connect_thread_;
  std::thread heartbeat_thread_;
};

}  // namespace freeagent::node
