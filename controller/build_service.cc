// BuildService and FleetService. Watch is a pull-model server-streaming reactor: it produces its next
// message only when the previous write completed, so a slow watcher costs nothing to anyone else.
#include <fcntl.h>
#include <unistd.h>

#include <cerrno>
#include <memory>
#include <mutex>

#include "absl/strings/str_cat.h"
#include "controller/services.h"
#include "proto/grpc_status.h"

namespace freeagent::controller {
namespace {

constexpr size_t kWatchLogChunk = 256 * 1024;

grpc::ServerUnaryReactor* Reply(grpc::CallbackServerContext* context, const absl::Status& status) {
  grpc::ServerUnaryReactor* reactor = context->DefaultReactor();
  reactor->Finish(proto::ToGrpcStatus(status));
  return reactor;
}

template <typename T>
grpc::ServerUnaryReactor* Reply(grpc::CallbackServerContext* context, absl::StatusOr<T> result, T* response) {
  if (result.ok()) *response = std::move(*result);
  return Reply(context, result.status());
}

// The fields whose change is worth a status event.
std::string StatusKey(const v1::Build& b) {
  return absl::StrCat(b.state(), "/", b.phase(), "/", b.attempt(), "/", b.step_index(), "/",
                      b.worker_id(), "/", b.error(), "/", b.artifacts_size(), "/", b.message());
}

class WatchReactor final : public grpc::ServerWriteReactor<v1::WatchEvent>,
                           public BuildWatcher,
                           public std::enable_shared_from_this<WatchReactor> {
 public:
  WatchReactor(Controller* controller, const v1::WatchRequest& request)
      : controller_(controller), request_(request) {}

  ~WatchReactor() override {
    if (fd_ >= 0) ::close(fd_);
  }

  void Start() {
    self_ = shared_from_this();
    controller_->AddWatcher(request_.id(), weak_from_this());
    Notify();
  }

  void Notify() override {
    std::lock_guard<std::mutex> lock(mu_);
    PumpLocked();
  }

  void OnWriteDone(bool ok) override {
    std::lock_guard<std::mutex> lock(mu_);
    writing_ = false;
    if (!ok) {
      FinishLocked(grpc::Status(grpc::StatusCode::CANCELLED, "watcher went away"));
      return;
    }
    PumpLocked();
  }

  void OnCancel() override {
    std::lock_guard<std::mutex> lock(mu_);
    FinishLocked(grpc::Status(grpc::StatusCode::CANCELLED, "watch cancelled"));
  }

  void OnDone() override { self_.reset(); }  // may delete this: must stay last

 private:
  void PumpLocked() {
    if (writing_ || finished_) return;
    absl::StatusOr<WatchSnapshot> snap = controller_->Snapshot(request_.id());
    if (!snap.ok()) {
      FinishLocked(proto::ToGrpcStatus(snap.status()));
      return;
    }
    if (attempt_ == 0) {
      attempt_ = snap->attempt;
      offset_ = request_.log_offset();
    } else if (snap->attempt != attempt_) {
      // A new attempt has its own log, from byte 0.
      attempt_ = snap->attempt;
      offset_ = 0;
      if (fd_ >= 0) ::close(fd_);
      fd_ = -1;
    }
    std::string key = StatusKey(snap->build);
    if (key != last_status_) {
      last_status_ = std::move(key);
      out_.Clear();
      *out_.mutable_status() = std::move(snap->build);
      StartWriteLocked();
      return;
    }
    // Bytes are sent once written, before they are durable: if the controller lost them, the worker
    // (still holding everything unacked) would resend the very same bytes, so watchers never see
    // anything the stored log will not contain. Only acks to the worker wait for fdatasync.
    if (!request_.no_log() && offset_ < snap->log_written) {
      absl::Status st = ReadLogLocked(snap->log_path, snap->log_written);
      if (!st.ok()) {
        FinishLocked(proto::ToGrpcStatus(st));
        return;
      }
      StartWriteLocked();
      return;
    }
    const bool log_done = request_.no_log() || offset_ >= snap->log_written;
    if (snap->terminal && log_done) FinishLocked(grpc::Status::OK);
    // Otherwise idle until Notify().
  }

  absl::Status ReadLogLocked(const std::string& path, uint64_t end) {
    if (fd_ < 0) {
      fd_ = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
      if (fd_ < 0) return absl::InternalError(absl::StrCat("open log ", path, ": ", std::strerror(errno)));
    }
    const size_t want = static_cast<size_t>(std::min<uint64_t>(kWatchLogChunk, end - offset_));
    out_.Clear();
    v1::LogData* log = out_.mutable_log();
    log->set_attempt(attempt_);
    log->set_offset(offset_);
    std::string* data = log->mutable_data();
    data->resize(want);
    size_t got = 0;
    while (got < want) {
      ssize_t n = ::pread(fd_, data->data() + got, want - got, static_cast<off_t>(offset_ + got));
      if (n < 0 && errno == EINTR) continue;
      if (n < 0) return absl::InternalError(absl::StrCat("read log ", path, ": ", std::strerror(errno)));
      if (n == 0) break;
      got += static_cast<size_t>(n);
    }
    data->resize(got);
    if (got == 0) return absl::InternalError(absl::StrCat("log ", path, " is shorter than its written size"));
    offset_ += got;
    return absl::OkStatus();
  }

  void StartWriteLocked() {
    writing_ = true;
    StartWrite(&out_);
  }

  void FinishLocked(const grpc::Status& status) {
    if (finished_) return;
    finished_ = true;
    Finish(status);
  }

  Controller* const controller_;
  const v1::WatchRequest request_;
  std::shared_ptr<WatchReactor> self_;

  std::mutex mu_;
  uint32_t attempt_ = 0;
  uint64_t offset_ = 0;
  int fd_ = -1;
  std::string last_status_;
  v1::WatchEvent out_;
  bool writing_ = false;
  bool finished_ = false;
};

}  // namespace

grpc::ServerUnaryReactor* BuildServiceImpl::Submit(grpc::CallbackServerContext* context,
                                                   const v1::SubmitRequest* request, v1::Build* response) {
  if (absl::Status st = auth_->Check(*context, {Role::kClient}); !st.ok()) return Reply(context, st);
  return Reply(context, controller_->Submit(request->spec()), response);
}

grpc::ServerUnaryReactor* BuildServiceImpl::Get(grpc::CallbackServerContext* context,
                                                const v1::GetBuildRequest* request, v1::Build* response) {
  if (absl::Status st = auth_->Check(*context, {Role::kClient}); !st.ok()) return Reply(context, st);
  if (request->id().empty()) return Reply(context, absl::InvalidArgumentError("id is required"));
  return Reply(context, controller_->Get(request->id()), response);
}

grpc::ServerUnaryReactor* BuildServiceImpl::List(grpc::CallbackServerContext* context,
                                                 const v1::ListBuildsRequest* request,
                                                 v1::ListBuildsResponse* response) {
  if (absl::Status st = auth_->Check(*context, {Role::kClient}); !st.ok()) return Reply(context, st);
  return Reply(context, controller_->List(*request), response);
}

grpc::ServerWriteReactor<v1::WatchEvent>* BuildServiceImpl::Watch(grpc::CallbackServerContext* context,
                                                                  const v1::WatchRequest* request) {
  if (absl::Status st = auth_->Check(*context, {Role::kClient}); !st.ok()) {
    return new RefusedCall<grpc::ServerWriteReactor<v1::WatchEvent>>(proto::ToGrpcStatus(st));
  }
  auto reactor = std::make_shared<WatchReactor>(controller_, *request);
  reactor->Start();
  return reactor.get();
}

grpc::ServerUnaryReactor* BuildServiceImpl::Cancel(grpc::CallbackServerContext* context,
                                                   const v1::CancelBuildRequest* request, v1::Build* response) {
  if (absl::Status st = auth_->Check(*context, {Role::kClient}); !st.ok()) return Reply(context, st);
  if (request->id().empty()) return Reply(context, absl::InvalidArgumentError("id is required"));
  return Reply(context, controller_->Cancel(request->id(), request->reason()), response);
}

grpc::ServerUnaryReactor* BuildServiceImpl::CollectGarbage(grpc::CallbackServerContext* context,
                                                           const v1::CollectGarbageRequest* request,
                                                           v1::CollectGarbageResponse* response) {
  if (absl::Status st = auth_->Check(*context, {Role::kAdmin}); !st.ok()) return Reply(context, st);
  return Reply(context, controller_->CollectGarbage(request->apply()), response);
}

grpc::ServerUnaryReactor* FleetServiceImpl::ListWorkers(grpc::CallbackServerContext* context,
                                                        const v1::ListWorkersRequest* /*request*/,
                                                        v1::ListWorkersResponse* response) {
  if (absl::Status st = auth_->Check(*context, {Role::kClient}); !st.ok()) return Reply(context, st);
  *response = controller_->ListWorkers();
  return Reply(context, absl::OkStatus());
}

grpc::ServerUnaryReactor* FleetServiceImpl::Drain(grpc::CallbackServerContext* context,
                                                  const v1::DrainRequest* request, v1::WorkerInfo* response) {
  if (absl::Status st = auth_->Check(*context, {Role::kAdmin}); !st.ok()) return Reply(context, st);
  if (request->worker_id().empty()) return Reply(context, absl::InvalidArgumentError("worker_id is required"));
  return Reply(context, controller_->Drain(request->worker_id(), request->timeout_seconds()), response);
}

}  // namespace freeagent::controller
