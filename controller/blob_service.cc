// BlobService: verified resumable uploads and chunked downloads over BlobStore.
#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cerrno>
#include <chrono>
#include <cstring>
#include <memory>

#include <grpcpp/alarm.h>

#include "absl/strings/str_cat.h"
#include "common/clock.h"
#include "common/sha256.h"
#include "controller/services.h"
#include "proto/grpc_status.h"

namespace freeagent::controller {
namespace {

constexpr size_t kChunkSize = 1 << 20;

// Reads the stream to its end, writing chunks to the partial file as they come; verifies at the end.
class UploadReactor final : public grpc::ServerReadReactor<v1::UploadRequest> {
 public:
  UploadReactor(BlobStore* blobs, v1::BlobInfo* response) : blobs_(blobs), response_(response) {
    StartRead(&request_);
  }

  void OnReadDone(bool ok) override {
    if (!ok) {
      // The client is done sending (or went away): verify what we have.
      if (!writer_) {
        Finish(grpc::Status(grpc::StatusCode::INVALID_ARGUMENT, "upload had no header"));
        return;
      }
      absl::StatusOr<v1::BlobInfo> info =
          writer_->streaming() && has_trailer_ ? writer_->FinishStreaming(trailer_) : writer_->Finish();
      writer_.reset();
      if (info.ok()) *response_ = std::move(*info);
      Finish(proto::ToGrpcStatus(info.status()));
      return;
    }
    absl::Status st = Handle();
    if (!st.ok()) {
      writer_.reset();
      Finish(proto::ToGrpcStatus(st));
      return;
    }
    StartRead(&request_);
  }

  void OnDone() override { delete this; }

 private:
  absl::Status Handle() {
    if (!writer_) {
      if (!request_.has_header()) return absl::InvalidArgumentError("the first upload message must be a header");
      absl::StatusOr<std::unique_ptr<BlobWriter>> writer = blobs_->BeginUpload(request_.header());
      if (!writer.ok()) return writer.status();
      writer_ = std::move(*writer);
      return absl::OkStatus();
    }
    if (request_.has_header()) return absl::InvalidArgumentError("a second upload header");
    if (has_trailer_) return absl::InvalidArgumentError("a message after the upload trailer");
    if (request_.has_trailer()) {
      if (!writer_->streaming()) return absl::InvalidArgumentError("a trailer in an upload by digest");
      trailer_ = request_.trailer();
      has_trailer_ = true;
      return absl::OkStatus();
    }
    return writer_->Write(request_.data());
  }

  BlobStore* const blobs_;
  v1::BlobInfo* const response_;
  v1::UploadRequest request_;
  std::unique_ptr<BlobWriter> writer_;
  v1::UploadTrailer trailer_;
  bool has_trailer_ = false;
};

// Sends the bytes of `fd_` from pos_ on, one chunk in flight. By digest the file is a stored blob of
// known size. By upload_id it is a streaming upload that may still be written: Next() sends what is
// written, waits on an alarm when it has caught up, and ends with a digest-only chunk once the upload
// is stored (or an error when it was abandoned, failed or went idle).
class DownloadReactor final : public grpc::ServerWriteReactor<v1::DownloadChunk> {
 public:
  DownloadReactor(BlobStore* blobs, const v1::DownloadRequest& request)
      : blobs_(blobs),
        upload_id_(request.digest().empty() ? request.upload_id() : ""),
        start_wait_(request.no_start_wait() ? std::chrono::milliseconds(0) : blobs->follow_limits().start_wait),
        pos_(request.offset()) {
    if (!upload_id_.empty()) {
      if (absl::Status st = ValidateUploadId(upload_id_); !st.ok()) {
        Finish(proto::ToGrpcStatus(st));
        return;
      }
      started_ = std::chrono::steady_clock::now();
      Next();
      return;
    }
    if (absl::Status st = BlobStore::ValidateDigest(request.digest()); !st.ok()) {
      Finish(proto::ToGrpcStatus(st));
      return;
    }
    const std::string path = blobs->PathFor(request.digest());
    fd_ = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
    if (fd_ < 0) {
      Finish(grpc::Status(grpc::StatusCode::NOT_FOUND, absl::StrCat("blob ", request.digest(), " not found")));
      return;
    }
    struct stat st {};
    ::fstat(fd_, &st);
    size_ = static_cast<uint64_t>(st.st_size);
    if (pos_ > size_) {
      Finish(grpc::Status(grpc::StatusCode::OUT_OF_RANGE,
                          absl::StrCat("offset ", pos_, " is beyond the blob size ", size_)));
      return;
    }
    Next();
  }

  ~DownloadReactor() override {
    if (fd_ >= 0) ::close(fd_);
  }

  void OnWriteDone(bool ok) override {
    if (!ok) {
      Finish(grpc::Status(grpc::StatusCode::CANCELLED, "download cancelled"));
      return;
    }
    if (done_) {
      Finish(grpc::Status::OK);
      return;
    }
    Next();
  }

  void OnCancel() override { cancelled_ = true; }

  void OnDone() override { delete this; }

 private:
  void Next() {
    if (!upload_id_.empty()) {
      NextFollowing();
      return;
    }
    if (pos_ >= size_) {
      Finish(grpc::Status::OK);
      return;
    }
    SendUpTo(size_);
  }

  // Reads the next chunk below `limit` and starts its write.
  void SendUpTo(uint64_t limit) {
    poll_ = kFirstPoll;
    const size_t want = static_cast<size_t>(std::min<uint64_t>(kChunkSize, limit - pos_));
    chunk_.Clear();
    chunk_.set_offset(pos_);
    std::string* data = chunk_.mutable_data();
    data->resize(want);
    ssize_t n;
    do {
      n = ::pread(fd_, data->data(), want, static_cast<off_t>(pos_));
    } while (n < 0 && errno == EINTR);
    if (n <= 0) {
      Finish(grpc::Status(grpc::StatusCode::INTERNAL,
                          absl::StrCat("reading blob: ", n < 0 ? std::strerror(errno) : "unexpected end")));
      return;
    }
    data->resize(static_cast<size_t>(n));
    pos_ += static_cast<uint64_t>(n);
    StartWrite(&chunk_);
  }

  void NextFollowing() {
    if (cancelled_) {
      Finish(grpc::Status(grpc::StatusCode::CANCELLED, "download cancelled"));
      return;
    }
    const BlobStore::FollowLimits& limits = blobs_->follow_limits();
    absl::StatusOr<UploadProgress> p = blobs_->FollowUpload(upload_id_);
    if (!p.ok()) {
      if (absl::IsNotFound(p.status()) && std::chrono::steady_clock::now() - started_ < start_wait_) {
        WaitAndRetry();  // announced, but its first bytes have not arrived yet
        return;
      }
      Finish(proto::ToGrpcStatus(p.status()));
      return;
    }
    if (p->state == UploadProgress::State::kFailed) {
      Finish(grpc::Status(grpc::StatusCode::ABORTED,
                          absl::StrCat("upload ", upload_id_, " was not stored: ", p->error)));
      return;
    }
    if (fd_ < 0) {
      // The partial, or the stored blob once the upload has been renamed into place. The open file
      // stays readable across that rename.
      const std::string path = p->state == UploadProgress::State::kStored
                                   ? blobs_->PathFor(p->digest)
                                   : blobs_->PartialPathFor(BlobStore::UploadKey(upload_id_));
      fd_ = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
      if (fd_ < 0) {
        if (errno == ENOENT) {
          WaitAndRetry();
          return;
        }
        Finish(grpc::Status(grpc::StatusCode::INTERNAL, absl::StrCat("open ", path, ": ", std::strerror(errno))));
        return;
      }
    }
    const uint64_t readable = p->state == UploadProgress::State::kStored ? p->size : p->written;
    if (pos_ < readable) {
      SendUpTo(readable);
      return;
    }
    if (p->state == UploadProgress::State::kStored) {
      if (pos_ != p->size) {
        Finish(grpc::Status(grpc::StatusCode::OUT_OF_RANGE,
                            absl::StrCat("offset ", pos_, " is beyond the stored blob's size ", p->size)));
        return;
      }
      chunk_.Clear();
      chunk_.set_offset(pos_);
      chunk_.set_digest(p->digest);
      chunk_.set_size(p->size);
      done_ = true;
      StartWrite(&chunk_);
      return;
    }
    if (!p->sender_connected && UnixMillis() - p->last_change_ms > limits.idle.count()) {
      Finish(grpc::Status(grpc::StatusCode::UNAVAILABLE,
                          absl::StrCat("upload ", upload_id_, " has had no sender and no new bytes for ",
                                       limits.idle.count() / 1000, " s; try again later from offset ", pos_)));
      return;
    }
    WaitAndRetry();
  }

  // Caught up with the writer: look again shortly, off the reaction. The wait starts at 2 ms and doubles
  // up to 50 ms while nothing new arrives (a stalled upload is not polled 500 times a second); sending
  // a chunk starts it over.
  void WaitAndRetry() {
    alarm_.Set(std::chrono::system_clock::now() + poll_, [this](bool) { NextFollowing(); });
    poll_ = std::min(poll_ * 2, std::chrono::milliseconds(50));
  }

  BlobStore* const blobs_;
  const std::string upload_id_;  // empty: a download by digest
  // How long an upload the store knows nothing of is awaited (0 with DownloadRequest.no_start_wait).
  const std::chrono::milliseconds start_wait_;
  uint64_t pos_;
  uint64_t size_ = 0;
  int fd_ = -1;
  bool done_ = false;  // the last chunk is in flight
  std::atomic<bool> cancelled_{false};
  std::chrono::steady_clock::time_point started_;
  static constexpr std::chrono::milliseconds kFirstPoll{2};
  std::chrono::milliseconds poll_ = kFirstPoll;
  grpc::Alarm alarm_;
  v1::DownloadChunk chunk_;
};

}  // namespace

grpc::ServerReadReactor<v1::UploadRequest>* BlobServiceImpl::Upload(grpc::CallbackServerContext* context,
                                                                    v1::BlobInfo* response) {
  if (absl::Status st = auth_->Check(*context, {Role::kWorker, Role::kClient}); !st.ok()) {
    return new RefusedCall<grpc::ServerReadReactor<v1::UploadRequest>>(proto::ToGrpcStatus(st));
  }
  return new UploadReactor(blobs_, response);
}

grpc::ServerWriteReactor<v1::DownloadChunk>* BlobServiceImpl::Download(grpc::CallbackServerContext* context,
                                                                       const v1::DownloadRequest* request) {
  if (absl::Status st = auth_->Check(*context, {Role::kWorker, Role::kClient}); !st.ok()) {
    return new RefusedCall<grpc::ServerWriteReactor<v1::DownloadChunk>>(proto::ToGrpcStatus(st));
  }
  return new DownloadReactor(blobs_, *request);
}

grpc::ServerUnaryReactor* BlobServiceImpl::Stat(grpc::CallbackServerContext* context,
                                                const v1::StatRequest* request, v1::BlobInfo* response) {
  if (absl::Status st = auth_->Check(*context, {Role::kWorker, Role::kClient}); !st.ok()) {
    grpc::ServerUnaryReactor* reactor = context->DefaultReactor();
    reactor->Finish(proto::ToGrpcStatus(st));
    return reactor;
  }
  absl::StatusOr<v1::BlobInfo> info = request->digest().empty() && !request->upload_id().empty()
                                          ? blobs_->StatUpload(request->upload_id())
                                          : blobs_->Stat(request->digest());
  if (info.ok()) *response = std::move(*info);
  grpc::ServerUnaryReactor* reactor = context->DefaultReactor();
  reactor->Finish(proto::ToGrpcStatus(info.status()));
  return reactor;
}

}  // namespace freeagent::controller
