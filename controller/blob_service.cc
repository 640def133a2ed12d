// BlobService: verified resumable uploads and chunked downloads over BlobStore.
#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <memory>

#include "absl/strings/str_cat.h"
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

class DownloadReactor final : public grpc::ServerWriteReactor<v1::DownloadChunk> {
 public:
  DownloadReactor(BlobStore* blobs, const v1::DownloadRequest& request) : pos_(request.offset()) {
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
    Next();
  }

  void OnDone() override { delete this; }

 private:
  void Next() {
    if (pos_ >= size_) {
      Finish(grpc::Status::OK);
      return;
    }
    const size_t want = static_cast<size_t>(std::min<uint64_t>(kChunkSize, size_ - pos_));
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

  uint64_t pos_;
  uint64_t size_ = 0;
  int fd_ = -1;
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
