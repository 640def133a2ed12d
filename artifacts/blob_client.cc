#include "artifacts/blob_client.h"

#include <fcntl.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <mutex>
#include <random>

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

std::string RandomUploadId() {
  std::random_device rd;
  std::string id;
  static constexpr char kHex[] = "0123456789abcdef";
  for (int i = 0; i < 4; ++i) {  // 128 bits
    uint32_t v = rd();
    for (int j = 0; j < 4; ++j, v >>= 8) {
      id.push_back(kHex[(v >> 4) & 0xf]);
      id.push_back(kHex[v & 0xf]);
    }
  }
  return id;
}

}  // namespace

void GrowingFile::Finish(uint64_t size, std::string sha256) {
  std::lock_guard<std::mutex> lock(mu_);
  state_.ended = true;
  state_.size = size;
  state_.sha256 = std::move(sha256);
  cv_.notify_all();
}

void GrowingFile::Fail() {
  std::lock_guard<std::mutex> lock(mu_);
  state_.ended = true;
  state_.failed = true;
  cv_.notify_all();
}

GrowingFile::State GrowingFile::Get() const {
  std::lock_guard<std::mutex> lock(mu_);
  return state_;
}

GrowingFile::State GrowingFile::WaitForEnd(std::chrono::milliseconds wait) const {
  std::unique_lock<std::mutex> lock(mu_);
  cv_.wait_for(lock, wait, [this] { return state_.ended; });
  return state_;
}

absl::Status BlobClient::UploadGrowing(const std::string& local_path, const GrowingFile& file,
                                       const CancellationToken& cancel,
                                       const std::function<void(const std::string& upload_id)>& /*on_started*/) {
  GrowingFile::State st;
  while (!(st = file.WaitForEnd(std::chrono::milliseconds(100))).ended) {
    if (cancel.IsCancelled()) return absl::CancelledError(cancel.Reason());
  }
  if (st.failed) return absl::AbortedError(absl::StrCat(local_path, " was not completed; nothing uploaded"));
  return UploadFile(local_path, st.sha256, st.size, cancel);
}

absl::Status GrpcBlobClient::WithRetries(const std::string& what, const CancellationToken& cancel,
                                         const std::function<absl::Status(bool resumed)>& attempt,
                                         const std::function<bool()>& give_up_now) {
  const auto give_up = std::chrono::steady_clock::now() + options_.retry_for;
  std::chrono::milliseconds backoff = options_.first_backoff;
  for (int n = 0;; ++n) {
    absl::Status s = attempt(n > 0);
    if (s.ok()) return s;
    if (cancel.IsCancelled()) return absl::CancelledError(cancel.Reason());
    if (give_up_now && give_up_now()) return s;
    if (!Resumable(s) || std::chrono::steady_clock::now() + backoff > give_up) return s;
    if (options_.on_retry) {
      options_.on_retry(absl::StrCat("upload of ", what, " interrupted (", s.ToString(), "); retrying in ",
                                     backoff.count(), " ms"));
    }
    if (cancel.WaitFor(backoff)) return absl::CancelledError(cancel.Reason());
    backoff = std::min(backoff * 2, options_.max_backoff);
  }
}

absl::Status GrpcBlobClient::UploadFile(const std::string& local_path, const std::string& digest, uint64_t size,
                                        const CancellationToken& cancel) {
  return WithRetries(
      digest.substr(0, 12), cancel,
      [&](bool resumed) { return UploadOnce(local_path, digest, size, cancel, resumed); }, nullptr);
}

absl::StatusOr<v1::BlobInfo> GrpcBlobClient::Stat(const v1::StatRequest& request) {
  grpc::ClientContext ctx;
  ctx.set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(30));
  v1::BlobInfo info;
  grpc::Status s = stub_->Stat(&ctx, request, &info);
  if (!s.ok()) return proto::FromGrpcStatus(s);
  return info;
}

absl::Status GrpcBlobClient::UploadOnce(const std::string& local_path, const std::string& digest, uint64_t size,
                                        const CancellationToken& cancel, bool resumed) {
  uint64_t offset = 0;
  {
    v1::StatRequest req;
    req.set_digest(digest);
    ASSIGN_OR_RETURN(v1::BlobInfo info, Stat(req));
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

absl::Status GrpcBlobClient::UploadGrowing(const std::string& local_path, const GrowingFile& file,
                                           const CancellationToken& cancel,
                                           const std::function<void(const std::string& upload_id)>& on_started) {
  const std::string upload_id = RandomUploadId();
  bool announced = false;
  auto on_header = [&] {
    if (announced || !on_started) return;
    announced = true;
    on_started(upload_id);
  };
  return WithRetries(
      absl::StrCat(local_path, " (upload ", upload_id.substr(0, 12), ")"), cancel,
      [&](bool resumed) { return UploadGrowingOnce(local_path, file, upload_id, cancel, resumed, on_header); },
      [&] { return file.Get().failed; });
}

absl::Status GrpcBlobClient::UploadGrowingOnce(const std::string& local_path, const GrowingFile& file,
                                               const std::string& upload_id, const CancellationToken& cancel,
                                               bool resumed, const std::function<void()>& on_header) {
  const auto writer_failed = [&file] { return file.Get().failed; };
  uint64_t offset = 0;
  if (resumed) {
    v1::StatRequest req;
    req.set_upload_id(upload_id);
    ASSIGN_OR_RETURN(v1::BlobInfo info, Stat(req));
    offset = info.partial_size();
    if (options_.on_retry) {
      options_.on_retry(absl::StrCat("upload of ", local_path, " resumes at byte ", offset));
    }
  }
  // The writer creates the file; wait for it (or for the writer to give up first).
  int fd = -1;
  while ((fd = ::open(local_path.c_str(), O_RDONLY | O_CLOEXEC)) < 0) {
    if (errno != ENOENT) return ErrnoStatus(errno, "open", local_path);
    GrowingFile::State st = file.WaitForEnd(std::chrono::milliseconds(5));
    if (st.failed) return absl::AbortedError(absl::StrCat(local_path, " was not completed; nothing uploaded"));
    if (st.ended) return ErrnoStatus(ENOENT, "open", local_path);
    if (cancel.IsCancelled()) return absl::CancelledError(cancel.Reason());
  }
  absl::Cleanup close_fd = [&] { ::close(fd); };

  grpc::ClientContext ctx;
  CallCancel bind(cancel, &ctx);
  v1::BlobInfo reply;
  std::unique_ptr<grpc::ClientWriter<v1::UploadRequest>> writer = stub_->Upload(&ctx, &reply);
  v1::UploadRequest header;
  header.mutable_header()->set_upload_id(upload_id);
  header.mutable_header()->set_offset(offset);
  bool ok = writer->Write(header);
  // Readers wait a while for an announced upload whose header is still on its way.
  if (ok) on_header();
  std::string buf(kBlobChunkBytes, '\0');
  v1::UploadRequest chunk;
  uint64_t pos = offset;
  GrowingFile::State st;
  while (ok) {
    // Ended before a read that finds no more bytes = the whole file was read.
    const bool ended_before = (st = file.Get()).ended;
    if (st.failed) break;
    ssize_t n = ::pread(fd, buf.data(), buf.size(), static_cast<off_t>(pos));
    if (n < 0) {
      if (errno == EINTR) continue;
      int err = errno;
      ctx.TryCancel();
      writer->Finish().ok();
      return ErrnoStatus(err, "read", local_path);
    }
    if (n == 0) {
      if (ended_before) break;
      file.WaitForEnd(std::chrono::milliseconds(5));  // more bytes come, or the end
      continue;
    }
    chunk.set_data(buf.data(), static_cast<size_t>(n));
    ok = writer->Write(chunk);
    pos += static_cast<uint64_t>(n);
  }
  if (ok) {
    // The trailer: what the bytes must hash to, or (the writer failed) an empty digest to abandon.
    v1::UploadRequest trailer;
    if (!st.failed) {
      if (pos != st.size) {
        ctx.TryCancel();
        writer->Finish().ok();
        return absl::DataLossError(absl::StrCat(local_path, " has ", pos, " bytes, its writer reported ", st.size));
      }
      trailer.mutable_trailer()->set_digest(st.sha256);
      trailer.mutable_trailer()->set_size(st.size);
    } else {
      trailer.mutable_trailer();
    }
    if (writer->Write(trailer)) writer->WritesDone();
  }
  grpc::Status s = writer->Finish();
  if (cancel.IsCancelled()) return absl::CancelledError(cancel.Reason());
  if (writer_failed()) return absl::AbortedError(absl::StrCat(local_path, " was not completed; nothing uploaded"));
  if (!s.ok()) return proto::FromGrpcStatus(s);
  if (reply.digest() != st.sha256 || reply.size() != st.size) {
    return absl::DataLossError(absl::StrCat("blob store answered ", reply.digest(), "/", reply.size(),
                                            " for upload of ", st.sha256, "/", st.size));
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
