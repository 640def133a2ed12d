#include "node/connection.h"

#include <random>

#include <grpcpp/create_channel.h>
#include <grpcpp/security/credentials.h>
#include <grpcpp/support/channel_arguments.h>
#include <spdlog/spdlog.h>

#include "common/clock.h"
#include "proto/channel.h"

namespace freeagent::node {

namespace v1 = ::freeagent::v1;

std::shared_ptr<grpc::Channel> MakeWorkerChannel(const std::string& address,
                                                 const proto::ChannelSecurity& security) {
  grpc::ChannelArguments args = proto::ControllerChannelArguments();
  // Our own loop backs off between streams; keep the channel's reconnects quick behind it.
  args.SetInt(GRPC_ARG_MAX_RECONNECT_BACKOFF_MS, 5000);
  args.SetInt(GRPC_ARG_INITIAL_RECONNECT_BACKOFF_MS, 200);
  absl::StatusOr<std::shared_ptr<grpc::Channel>> channel = proto::MakeControllerChannel(address, security, args);
  if (channel.ok()) return *channel;
  // BuildWorkerConfig read every file already; one that vanished since must not downgrade security:
  // TLS with the system roots, no client certificate, the token kept.
  spdlog::error("controller channel: {}; using TLS with the system roots", std::string(channel.status().message()));
  proto::ChannelSecurity fallback;
  fallback.token = security.token;
  return *proto::MakeControllerChannel(address, fallback, args);
}

// One Connect call. Holds: one for the call as a whole (released when reading ends) and one per write,
// because writes are started from outside reactions too. Deleted by the connect loop after OnDone.
class ControllerConnection::Stream : public grpc::ClientBidiReactor<v1::WorkerMessage, v1::ControllerMessage> {
 public:
  explicit Stream(ControllerConnection* conn) : conn_(conn) {}

  void Begin(v1::WorkerMessage hello) {
    conn_->stub_->async()->Connect(&context, this);  // binds this reactor; holds may be added after it
    AddHold();  // the call's own hold, released in OnReadDone(false)
    StartRead(&read_msg_);
    writing = true;
    write_msg = std::move(hello);
    AddHold();
    StartWrite(&write_msg);
    StartCall();
  }

  void OnReadDone(bool ok) override {
    if (!ok) {
      conn_->OnBroken(this);
      RemoveHold();
      return;
    }
    conn_->OnRead(this, read_msg_);
    StartRead(&read_msg_);
  }

  void OnWriteDone(bool ok) override {
    conn_->OnWriteDone(this, ok);
    RemoveHold();
  }

  // The connect loop deletes the stream, never this reaction: the ClientContext may hold the last
  // reference to the channel, and a channel must not be destroyed on gRPC's own callback threads.
  void OnDone(const grpc::Status& status) override { conn_->OnStreamDone(this, status); }

  grpc::ClientContext context;
  // Guarded by conn_->mu_.
  bool writing = false;
  bool broken = false;
  v1::WorkerMessage write_msg;  // untouched while a write is in flight

 private:
  ControllerConnection* conn_;
  v1::ControllerMessage read_msg_;
};

ControllerConnection::ControllerConnection(std::shared_ptr<grpc::Channel> channel, ConnectionHandler* handler,
                                           ConnectionOptions options)
    : channel_(std::move(channel)),
      stub_(v1::WorkerService::NewStub(channel_)),
      handler_(handler),
      options_(options) {
  if (options_.heartbeat_interval.count() > 0) heartbeat_interval_ = options_.heartbeat_interval;
}

ControllerConnection::~ControllerConnection() { Stop(); }

void ControllerConnection::Start() {
  connect_thread_ = std::thread([this] { ConnectLoop(); });
  heartbeat_thread_ = std::thread([this] { HeartbeatLoop(); });
}

void ControllerConnection::Stop() {
  {
    std::lock_guard<std::mutex> lock(mu_);
    if (stopping_ && !connect_thread_.joinable()) return;
    stopping_ = true;
    if (stream_ != nullptr) stream_->context.TryCancel();
    cv_.notify_all();
  }
  if (connect_thread_.joinable()) connect_thread_.join();
  if (heartbeat_thread_.joinable()) heartbeat_thread_.join();
}

bool ControllerConnection::connected() const {
  std::lock_guard<std::mutex> lock(mu_);
  return live_;
}

uint64_t ControllerConnection::welcomes() const {
  std::lock_guard<std::mutex> lock(mu_);
  return welcomes_;
}

bool ControllerConnection::Send(v1::WorkerMessage message) {
  size_t size = message.ByteSizeLong();
  {
    std::unique_lock<std::mutex> lock(mu_);
    // A message bigger than the bound still goes, alone, so one huge message cannot wedge a sender.
    cv_.wait(lock, [&] {
      return stopping_ || !live_ || bulk_bytes_ == 0 || bulk_bytes_ + size <= options_.max_bulk_bytes;
    });
    if (stopping_ || !live_) return false;
    bulk_bytes_ += size;
    bulk_.push_back(std::move(message));
  }
  MaybeWrite();
  return true;
}

bool ControllerConnection::SendPriority(v1::WorkerMessage message) {
  {
    std::lock_guard<std::mutex> lock(mu_);
    if (stopping_ || !live_) return false;
    priority_.push_back(std::move(message));
  }
  MaybeWrite();
  return true;
}

void ControllerConnection::MaybeWrite() {
  Stream* stream = nullptr;
  {
    std::lock_guard<std::mutex> lock(mu_);
    stream = stream_;
    if (stream == nullptr || stream->broken || stream->writing || !live_) return;
    if (!priority_.empty()) {
      stream->write_msg = std::move(priority_.front());
      priority_.pop_front();
    } else if (!bulk_.empty()) {
      bulk_bytes_ -= std::min(bulk_bytes_, bulk_.front().ByteSizeLong());
      stream->write_msg = std::move(bulk_.front());
      bulk_.pop_front();
      cv_.notify_all();
    } else {
      return;
    }
    stream->writing = true;
    // The hold keeps the call (and `stream`) alive until OnWriteDone, even if reading ends meanwhile.
    stream->AddHold();
  }
  // Outside the lock: gRPC may run reactions on this thread.
  stream->StartWrite(&stream->write_msg);
}

void ControllerConnection::OnWriteDone(Stream* stream, bool ok) {
  {
    std::lock_guard<std::mutex> lock(mu_);
    stream->writing = false;
    if (!ok && !stream->broken) {
      // The stream is gone; make the read side notice so the call ends.
      stream->context.TryCancel();
    }
  }
  if (ok) MaybeWrite();
}

void ControllerConnection::OnRead(Stream* stream, const v1::ControllerMessage& message) {
  if (message.has_welcome()) {
    std::lock_guard<std::mutex> lock(mu_);
    if (stream_ == stream) {
      live_ = true;
      ++welcomes_;
      if (options_.heartbeat_interval.count() == 0 && message.welcome().heartbeat_interval_ms() > 0) {
        heartbeat_interval_ = std::chrono::milliseconds(message.welcome().heartbeat_interval_ms());
      }
      ++heartbeat_generation_;
      liveness_timeout_ = std::chrono::milliseconds(message.welcome().liveness_timeout_ms());
      cv_.notify_all();
    }
  }
  handler_->OnMessage(message);
}

void ControllerConnection::OnBroken(Stream* stream) {
  std::lock_guard<std::mutex> lock(mu_);
  stream->broken = true;
  if (stream_ == stream) {
    live_ = false;
    // What was queued for this stream is restated by the next Hello / rewind / result resend.
    priority_.clear();
    bulk_.clear();
    bulk_bytes_ = 0;
  }
  cv_.notify_all();
}

void ControllerConnection::OnStreamDone(Stream* stream, const grpc::Status& status) {
  std::lock_guard<std::mutex> lock(mu_);
  if (!stopping_) {
    spdlog::warn("controller stream ended: {} ({})", status.error_message(), static_cast<int>(status.error_code()));
  }
  if (stream_ == stream) {
    stream_ = nullptr;
    live_ = false;
  }
  cv_.notify_all();
}

void ControllerConnection::ConnectLoop() {
  std::mt19937_64 rng(std::random_device{}());
  std::chrono::milliseconds backoff = options_.initial_backoff;
  for (;;) {
    uint64_t welcomes_before;
    {
      std::lock_guard<std::mutex> lock(mu_);
      if (stopping_) break;
      welcomes_before = welcomes_;
    }
    v1::WorkerMessage hello;
    *hello.mutable_hello() = handler_->MakeHello();
    Stream* stream = new Stream(this);
    {
      std::lock_guard<std::mutex> lock(mu_);
      if (stopping_) {
        delete stream;
        break;
      }
      stream_ = stream;
      live_ = false;
      priority_.clear();
      bulk_.clear();
      bulk_bytes_ = 0;
    }
    stream->Begin(std::move(hello));
    bool stop;
    std::chrono::milliseconds max_backoff = options_.max_backoff;
    {
      std::unique_lock<std::mutex> lock(mu_);
      cv_.wait(lock, [&] { return stream_ != stream; });
      stop = stopping_;
      if (welcomes_ != welcomes_before) backoff = options_.initial_backoff;
      // Back within a third of the controller's liveness timeout, so a restarted controller sees us
      // before it gives our running jobs up.
      if (liveness_timeout_.count() > 0) {
        max_backoff = std::min(max_backoff, std::max(options_.initial_backoff, liveness_timeout_ / 3));
      }
    }
    delete stream;  // OnDone has run; nothing of gRPC refers to it any more
    if (stop) break;
    // Full jitter in [backoff/2, backoff], so a restarted controller is not hit by every worker at once.
    backoff = std::min(backoff, max_backoff);
    std::uniform_int_distribution<int64_t> dist(backoff.count() / 2, backoff.count());
    std::chrono::milliseconds wait(dist(rng));
    spdlog::info("reconnecting to the controller in {} ms", wait.count());
    {
      std::unique_lock<std::mutex> lock(mu_);
      cv_.wait_for(lock, wait, [&] { return stopping_; });
      if (stopping_) break;
    }
    backoff = std::min(backoff * 2, max_backoff);
  }
}

void ControllerConnection::HeartbeatLoop() {
  std::unique_lock<std::mutex> lock(mu_);
  while (!stopping_) {
    uint64_t generation = heartbeat_generation_;
    // A new interval from a Welcome restarts the wait, so the first beat is not 5 s late.
    if (cv_.wait_for(lock, heartbeat_interval_, [&] { return stopping_ || heartbeat_generation_ != generation; })) {
      continue;
    }
    if (!live_) continue;
    lock.unlock();
    v1::WorkerMessage msg;
    *msg.mutable_heartbeat() = handler_->MakeHeartbeat();
    msg.mutable_heartbeat()->set_sent_unix_ms(UnixMillis());
    SendPriority(std::move(msg));
    lock.lock();
  }
}

}  // namespace freeagent::node
