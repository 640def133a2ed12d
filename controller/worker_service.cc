// WorkerService.Connect: one bidirectional stream per worker, as a callback reactor.
//
// Stream contract: at most one read and one write outstanding. Reads are started again only after a
// message has been handled, so a busy controller slows the worker's sender (gRPC flow control) instead
// of buffering. Writes come from any thread through Send(); they wait in a bounded deque and go out
// one at a time. Finish happens once, under the lock; the reactor is released in OnDone.
#include <deque>
#include <memory>
#include <mutex>

#include "absl/strings/str_cat.h"
#include "controller/services.h"
#include "proto/grpc_status.h"
#include "spdlog/spdlog.h"

namespace freeagent::controller {
namespace {

// Far more than a healthy stream ever holds (acks are coalesced); a worker that stops reading is
// disconnected instead of growing the controller's memory.
constexpr size_t kMaxQueuedMessages = 4096;

class ConnectReactor final : public grpc::ServerBidiReactor<v1::WorkerMessage, v1::ControllerMessage>,
                             public WorkerConnection,
                             public std::enable_shared_from_this<ConnectReactor> {
 public:
  ConnectReactor(Controller* controller, std::string peer)
      : controller_(controller), peer_(std::move(peer)) {}

  void Start() {
    self_ = shared_from_this();
    std::lock_guard<std::mutex> lock(mu_);
    StartRead(&in_);
  }

  void Send(v1::ControllerMessage message) override {
    std::lock_guard<std::mutex> lock(mu_);
    if (finished_) return;
    if (message.has_log_ack()) {
      // Acks are cumulative: a queued ack for the same attempt just moves forward.
      const v1::LogAck& ack = message.log_ack();
      for (v1::ControllerMessage& queued : queue_) {
        if (queued.has_log_ack() && queued.log_ack().job_id() == ack.job_id() &&
            queued.log_ack().attempt() == ack.attempt()) {
          if (ack.committed_offset() > queued.log_ack().committed_offset()) {
            queued.mutable_log_ack()->set_committed_offset(ack.committed_offset());
          }
          return;
        }
      }
    }
    if (queue_.size() >= kMaxQueuedMessages) {
      FinishLocked(grpc::Status(grpc::StatusCode::RESOURCE_EXHAUSTED,
                                "worker is not reading its stream; reconnect"));
      return;
    }
    queue_.push_back(std::move(message));
    MaybeWriteLocked();
  }

  void Close(const grpc::Status& status) override {
    std::lock_guard<std::mutex> lock(mu_);
    FinishLocked(status);
  }

  void OnReadDone(bool ok) override {
    if (!ok) {
      std::lock_guard<std::mutex> lock(mu_);
      FinishLocked(grpc::Status::OK);
      return;
    }
    if (worker_id_.empty()) {
      if (!in_.has_hello()) {
        std::lock_guard<std::mutex> lock(mu_);
        FinishLocked(grpc::Status(grpc::StatusCode::INVALID_ARGUMENT,
                                  "the first message on a worker stream must be a hello"));
        return;
      }
      if (absl::Status st = controller_->OnHello(shared_from_this(), in_.hello()); !st.ok()) {
        std::lock_guard<std::mutex> lock(mu_);
        FinishLocked(proto::ToGrpcStatus(st));
        return;
      }
      worker_id_ = in_.hello().worker_id();
    } else {
      // `in_` is left alone until the message is handled: the next read starts only then.
      controller_->OnMessage(shared_from_this(), worker_id_, in_, [self = shared_from_this()] { self->ReadNext(); });
      return;
    }
    ReadNext();
  }

  // Starts the next read (any thread; the shared_ptr the caller holds keeps the reactor alive).
  void ReadNext() {
    std::lock_guard<std::mutex> lock(mu_);
    if (!finished_) StartRead(&in_);
  }

  void OnWriteDone(bool ok) override {
    std::lock_guard<std::mutex> lock(mu_);
    writing_ = false;
    if (!ok) {
      FinishLocked(grpc::Status(grpc::StatusCode::UNAVAILABLE, "write to worker failed"));
      return;
    }
    MaybeWriteLocked();
  }

  void OnCancel() override {
    std::lock_guard<std::mutex> lock(mu_);
    FinishLocked(grpc::Status(grpc::StatusCode::CANCELLED, "stream cancelled"));
  }

  void OnDone() override {
    if (!worker_id_.empty()) controller_->OnDisconnect(this, worker_id_);
    spdlog::debug("worker stream from {} done", peer_);
    self_.reset();  // may delete this: must stay last
  }

 private:
  void MaybeWriteLocked() {
    if (writing_ || finished_ || queue_.empty()) return;
    // `current_` stays untouched until OnWriteDone, as StartWrite requires.
    current_ = std::move(queue_.front());
    queue_.pop_front();
    writing_ = true;
    StartWrite(&current_);
  }

  void FinishLocked(const grpc::Status& status) {
    if (finished_) return;
    finished_ = true;
    queue_.clear();
    Finish(status);
  }

  Controller* const controller_;
  const std::string peer_;
  std::shared_ptr<ConnectReactor> self_;  // keeps the reactor alive until OnDone
  v1::WorkerMessage in_;                  // only touched by the read chain
  std::string worker_id_;                 // set once the hello is accepted

  std::mutex mu_;
  std::deque<v1::ControllerMessage> queue_;
  v1::ControllerMessage current_;
  bool writing_ = false;
  bool finished_ = false;
};

}  // namespace

grpc::ServerBidiReactor<v1::WorkerMessage, v1::ControllerMessage>* WorkerServiceImpl::Connect(
    grpc::CallbackServerContext* context) {
  if (absl::Status st = auth_->Check(*context, {Role::kWorker}); !st.ok()) {
    spdlog::warn("worker stream from {} refused: {}", context->peer(), std::string(st.message()));
    return new RefusedCall<grpc::ServerBidiReactor<v1::WorkerMessage, v1::ControllerMessage>>(proto::ToGrpcStatus(st));
  }
  auto reactor = std::make_shared<ConnectReactor>(controller_, context->peer());
  reactor->Start();
  return reactor.get();
}

}  // namespace freeagent::controller
