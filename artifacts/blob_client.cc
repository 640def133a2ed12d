#include "artifacts/blob_client.h"

#include <fcntl.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <mutex>

#include <grpcpp/client_context.h>

#include "absl/cleanup/cleanup.h"
#include "absl/strings/str_cat.h"
#include "common/fs.h"
#include "common/sha256.h"
#include "common/status_macros.h"
#include "proto/grpc_status.h"

namespace freeagent::artifacts {

namespace v1 = ::freeagent::v1;

namespace {

// Ties a cancellation token to a gRPC call for the call's lifetime: cancel -> TryCancel, and nothing
// touches the context once the call is over (the token may outlive it and fire later).
class CallCancel {
 public:
  CallCancel(const CancellationToken& cancel, grpc::ClientContext* ctx) : state_(std::make_shared<State>()) {
    state_->ctx = ctx;
    cancel.OnCancel([state = state_] {
      std::lock_guard<std::mutex> lock(state->mu);
      if (state->ctx != nullptr) state->ctx->TryCancel();
    });
  }
  ~CallCancel() {
    std::lock_guard<std::mutex> lock(state_->mu);
    state_->ctx = nullptr;
  }

 private:
  struct State {
    std::mutex mu;
    grpc::ClientContext* ctx = nullptr;
  };
  std::shared_ptr<State> state_;
};

}  // namespace

GrpcBlobClient::GrpcBlobClient(std::shared_ptr<grpc::Channel> channel)
    : GrpcBlobClient(std::move(channel), Options()) {}

GrpcBlobClient::GrpcBlobClient(std::shared_ptr<grpc::Channel> channel, Options options)
    : stub_(v1::BlobService::NewStub(std::move(channel))), options_(std::move(options)) {}

namespace {

// Errors an upload can recover from by resuming: the connection or the controller went away, or the
// controller still holds the previous attempt's stream or disagrees about the partial size.
bool Resumable(const absl::Status& s) {
  switch (s.code()) {
    case absl::StatusCode::kUnavailable:
    case absl::StatusCode::kAborted:
    case absl::StatusCode::kCancelled:  // the server ended the call (shutdown); our own cancel is checked first
    case absl::StatusCode::kDeadlineExceeded:
    case absl::StatusCode::kFailedPrecondition:
    case absl::StatusCode::kUnknown:
    case absl::StatusCode::kInternal:
      return true;
    default:
      return false;
  }
}

}  // namespace

absl::Status GrpcBlobClient::UploadFile(const std::string& local_path, const std::string& digest, uint64_t size,
                                        const CancellationToken& cancel) {
  const auto give_up = std::chrono::steady_clock::now() + options_.retry_for;
  std::chrono::milliseconds backoff = options_.first_backoff;
  for (int attempt = 0;; ++attempt) {
    absl::Status s = UploadOnce(local_path, digest, size, cancel, attempt > 0);
    if (s.ok()) return s;
    if (cancel.IsCancelled()) return absl::CancelledError(cancel.Reason());
    if (!Resumable(s) || std::chrono::steady_clock::now() + backoff > give_up) return s;
    if (options_.on_retry) {
      options_.on_retry(absl::StrCat("upload of ", digest.substr(0, 12), " interrupted (", s.ToString(),
                                     "); retrying in ", backoff.count(), " ms"));
    }
    if (cancel.WaitFor(backoff)) return absl::CancelledError(cancel.Reason());
    backoff = std::min(backoff * 2, options_.max_backoff);
  }
}

absl::Status GrpcBlobClient::UploadOnce(const std::string& local_path, const std::string& digest, uint64_t size,
                                        const CancellationToken& cancel, bool resumed) {
  uint64_t offset = 0;
  {
    grpc::ClientContext ctx;
    ctx.set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(30));
    v1::StatRequest req;
    req.set_digest(digest);
    v1::BlobInfo info;
    grpc::Status s = stub_->Stat(&ctx, req, &info);
    if (!s.ok()) return proto::FromGrpcStatus(s);
    if (info.exists()) return absl::OkStatus();
    if (info.partial_size() <= size) offset = info.partial_size();
  }
  if (resumed && options_.on_retry) {
    options_.on_retry(absl::StrCat("upload of ", digest.substr(0, 12), " resumes at byte ", offset, " of ", size));
  }
  int fd = ::open(local_path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) return ErrnoStatus(errno, "open", local_path);
  absl::Cleanup close_fd = [&] { ::close(fd); };
  if (offset > 0 && ::lseek(fd, static_cast<off_t>(offset), SEEK_SET) < 0) return ErrnoStatus(errno, "seek", local_path);

  grpc::ClientContext ctx;
  CallCancel bind(cancel, &ctx);
  v1::BlobInfo reply;
  std::unique_ptr<grpc::ClientWriter<v1::UploadRequest>> writer = stub_->Upload(&ctx, &reply);
  v1::UploadRequest header;
  header.mutable_header()->set_digest(digest);
  header.mutable_header()->set_size(size);
  header.mutable_header()->set_offset(offset);
  bool ok = writer->Write(header);
  std::string buf(kBlobChunkBytes, '\0');
  v1::UploadRequest chunk;
  while (ok) {
    ssize_t n = ::read(fd, buf.data(), buf.size());
    if (n < 0) {
      if (errno == EINTR) continue;
      int err = errno;
      ctx.TryCancel();
      writer->Finish().ok();
      return ErrnoStatus(err, "read", local_path);
    }
    if (n == 0) break;
    chunk.set_data(buf.data(), static_cast<size_t>(n));
    ok = writer->Write(chunk);
  }
  if (ok) writer->WritesDone();
  grpc::Status s = writer->Finish();
  if (cancel.IsCancelled()) return absl::CancelledError(cancel.Reason());
  if (!s.ok()) return proto::FromGrpcStatus(s);
  if (reply.digest() != digest || reply.size() != size) {
    return absl::DataLossError(absl::StrCat("blob store answered ", reply.digest(), "/", reply.size(),
                                            " for upload of ", digest, "/", size));
  }
  return absl::OkStatus();
}

absl::StatusOr<vm::TransferResult> GrpcBlobClient::DownloadFile(const std::string& digest,
                                                                const std::string& local_path,
                                                                const CancellationToken& cancel) {
  int fd = ::open(local_path.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
  if (fd < 0) return ErrnoStatus(errno, "create", local_path);
  bool keep = false;
  absl::Cleanup close_fd = [&] {
    ::close(fd);
    if (!keep) ::unlink(local_path.c_str());
  };
  grpc::ClientContext ctx;
  CallCancel bind(cancel, &ctx);
  v1::DownloadRequest req;
  req.set_digest(digest);
  std::unique_ptr<grpc::ClientReader<v1::DownloadChunk>> reader = stub_->Download(&ctx, req);
  v1::DownloadChunk chunk;
  Sha256 hash;
  vm::TransferResult result;
  absl::Status write_error;
  while (reader->Read(&chunk)) {
    if (chunk.offset() != result.size) {
      write_error = absl::DataLossError(absl::StrCat("blob ", digest, ": chunk at offset ", chunk.offset(),
                                                     ", expected ", result.size));
      ctx.TryCancel();
      break;
    }
    const std::string& d = chunk.data();
    hash.Update(d);
    write_error = WriteAll(fd, d.data(), d.size(), local_path);
    if (!write_error.ok()) {
      ctx.TryCancel();
      break;
    }
    result.size += d.size();
  }
  grpc::Status s = reader->Finish();
  if (!write_error.ok()) return write_error;
  if (cancel.IsCancelled()) return absl::CancelledError(cancel.Reason());
  if (!s.ok()) return proto::FromGrpcStatus(s);
  result.sha256 = hash.FinishHex();
  if (result.sha256 != digest) {
    return absl::DataLossError(absl::StrCat("blob ", digest, " arrived with sha256 ", result.sha256));
  }
  keep = true;
  return result;
}

}  // namespace freeagent::artifacts
