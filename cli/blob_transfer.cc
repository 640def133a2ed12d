#include "cli/blob_transfer.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <memory>

#include <grpcpp/client_context.h>

#include "absl/strings/str_cat.h"
#include "cli/client.h"
#include "cli/progress.h"
#include "common/fs.h"
#include "common/sha256.h"
#include "common/status_macros.h"
#include "proto/grpc_status.h"

namespace freeagent::cli {
namespace {

using freeagent::v1::ArtifactInfo;
using freeagent::v1::BlobInfo;
using freeagent::v1::BlobService;

struct FdCloser {
  int fd = -1;
  ~FdCloser() {
    if (fd >= 0) close(fd);
  }
};

absl::StatusOr<BlobInfo> UploadFrom(BlobService::StubInterface* blobs, const std::string& path,
                                    const std::string& digest, uint64_t size, uint64_t offset,
                                    bool show_progress) {
  FdCloser file{open(path.c_str(), O_RDONLY | O_CLOEXEC)};
  if (file.fd < 0) return ErrnoStatus(errno, "open", path);
  if (offset > 0 && lseek(file.fd, static_cast<off_t>(offset), SEEK_SET) < 0) {
    return ErrnoStatus(errno, "seek", path);
  }

  grpc::ClientContext context;
  BlobInfo info;
  std::unique_ptr<grpc::ClientWriterInterface<freeagent::v1::UploadRequest>> writer =
      blobs->Upload(&context, &info);
  freeagent::v1::UploadRequest request;
  auto* header = request.mutable_header();
  header->set_digest(digest);
  header->set_size(size);
  header->set_offset(offset);
  bool stream_ok = writer->Write(request);

  std::unique_ptr<Progress> progress;
  if (show_progress) progress = std::make_unique<Progress>("upload", size);
  std::string buffer(kChunkBytes, '\0');
  uint64_t sent = offset;
  absl::Status read_status;
  while (stream_ok && sent < size) {
    ssize_t n = read(file.fd, buffer.data(), buffer.size());
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) {
      read_status = ErrnoStatus(errno, "read", path);
      break;
    }
    if (n == 0) {
      read_status = absl::DataLossError(absl::StrCat(path, " shrank while uploading"));
      break;
    }
    request.Clear();
    request.set_data(buffer.data(), static_cast<size_t>(n));
    stream_ok = writer->Write(request);
    sent += static_cast<uint64_t>(n);
    if (progress) progress->Update(sent);
  }
  if (!read_status.ok()) {
    context.TryCancel();
    writer->Finish().ok();
    return read_status;
  }
  writer->WritesDone();
  grpc::Status status = writer->Finish();
  if (progress) progress->Finish();
  if (!status.ok()) return freeagent::proto::FromGrpcStatus(status);
  return info;
}

// Reads the part file to seed the digest with the bytes already there.
absl::StatusOr<uint64_t> HashExisting(const std::string& path, Sha256* hash) {
  FdCloser file{open(path.c_str(), O_RDONLY | O_CLOEXEC)};
  if (file.fd < 0) {
    if (errno == ENOENT) return 0;
    return ErrnoStatus(errno, "open", path);
  }
  std::string buffer(kChunkBytes, '\0');
  uint64_t total = 0;
  for (;;) {
    ssize_t n = read(file.fd, buffer.data(), buffer.size());
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) return ErrnoStatus(errno, "read", path);
    if (n == 0) break;
    hash->Update(buffer.data(), static_cast<size_t>(n));
    total += static_cast<uint64_t>(n);
  }
  return total;
}

absl::Status WriteAll(int fd, const std::string& data, const std::string& path) {
  size_t done = 0;
  while (done < data.size()) {
    ssize_t n = write(fd, data.data() + done, data.size() - done);
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) return ErrnoStatus(errno, "write", path);
    done += static_cast<size_t>(n);
  }
  return absl::OkStatus();
}

}  // namespace

absl::StatusOr<BlobInfo> UploadFile(BlobService::StubInterface* blobs, const std::string& path,
                                    const std::string& digest, uint64_t size,
                                    bool show_progress) {
  grpc::ClientContext stat_context;
  SetUnaryDeadline(&stat_context);
  freeagent::v1::StatRequest stat_request;
  stat_request.set_digest(digest);
  BlobInfo existing;
  grpc::Status stat = blobs->Stat(&stat_context, stat_request, &existing);
  if (!stat.ok()) return freeagent::proto::FromGrpcStatus(stat);
  if (existing.exists()) return existing;

  uint64_t offset = existing.partial_size() <= size ? existing.partial_size() : 0;
  absl::StatusOr<BlobInfo> info = UploadFrom(blobs, path, digest, size, offset, show_progress);
  if (!info.ok() && offset > 0 && info.status().code() != absl::StatusCode::kUnavailable) {
    // The controller may have dropped the partial upload since Stat; start over once.
    info = UploadFrom(blobs, path, digest, size, 0, show_progress);
  }
  return info;
}

absl::StatusOr<std::string> SafeArtifactFileName(const std::string& name) {
  std::string base = name;
  size_t slash = base.find_last_of('/');
  if (slash != std::string::npos) base = base.substr(slash + 1);
  if (base.empty() || base == "." || base == "..") {
    return absl::InvalidArgumentError(absl::StrCat("artifact name \"", name, "\" is not a file name"));
  }
  return base;
}

namespace {

// Streams `request` into `fd` (the part file, already holding `*offset` bytes that `hash` has seen),
// checking that chunks arrive in order. A download by upload_id ends with a chunk naming the stored
// digest and size, returned in `*end`.
absl::Status Receive(BlobService::StubInterface* blobs, const freeagent::v1::DownloadRequest& request,
                     const std::string& name, int fd, const std::string& part, uint64_t expected_size,
                     bool show_progress, uint64_t* offset, Sha256* hash, freeagent::v1::DownloadChunk* end) {
  grpc::ClientContext context;
  auto reader = blobs->Download(&context, request);
  std::unique_ptr<Progress> progress;
  if (show_progress) progress = std::make_unique<Progress>("download " + name, expected_size);
  freeagent::v1::DownloadChunk chunk;
  absl::Status write_status;
  uint64_t written_back = *offset;
  while (reader->Read(&chunk)) {
    if (chunk.offset() != *offset) {
      write_status = absl::DataLossError(absl::StrCat("download of ", name, ": chunk at offset ", chunk.offset(),
                                                      ", expected ", *offset));
      break;
    }
    if (!chunk.digest().empty()) {
      *end = chunk;
      continue;
    }
    write_status = WriteAll(fd, chunk.data(), part);
    if (!write_status.ok()) break;
    hash->Update(chunk.data());
    *offset += chunk.data().size();
    StartWriteback(fd, *offset, &written_back);  // the fsync before the rename then waits for little
    if (progress) progress->Update(*offset);
  }
  if (!write_status.ok()) {
    context.TryCancel();
    reader->Finish().ok();
    return write_status;
  }
  grpc::Status status = reader->Finish();
  if (progress) progress->Finish();
  // The part file keeps what arrived so a later run resumes from there.
  return freeagent::proto::FromGrpcStatus(status);
}

// A followed upload's part file is its own: its bytes are a prefix of that upload only.
std::string PartOfUpload(const std::string& dir, const std::string& name, const std::string& upload_id) {
  return absl::StrCat(dir, "/.", name, ".", upload_id.substr(0, 16), ".part");
}

}  // namespace

absl::StatusOr<std::string> FollowedPartPath(const ArtifactInfo& artifact, const std::string& dir,
                                             const std::string& upload_id) {
  ASSIGN_OR_RETURN(std::string name, SafeArtifactFileName(artifact.name()));
  RETURN_IF_ERROR(ValidateUploadId(upload_id));
  return PartOfUpload(dir, name, upload_id);
}

absl::StatusOr<std::string> DownloadArtifact(BlobService::StubInterface* blobs,
                                             const ArtifactInfo& artifact, const std::string& dir,
                                             const DownloadOptions& options, ArtifactInfo* stored) {
  ASSIGN_OR_RETURN(std::string name, SafeArtifactFileName(artifact.name()));
  // An artifact still being uploaded is followed by its upload_id; its digest comes at the end.
  const bool following = artifact.sha256().empty() && !artifact.upload_id().empty();
  if (!following && !IsSha256Hex(artifact.sha256())) {
    return absl::InvalidArgumentError(
        absl::StrCat("artifact ", name, " has no valid sha256: \"", artifact.sha256(), "\""));
  }
  if (following) RETURN_IF_ERROR(ValidateUploadId(artifact.upload_id()));
  RETURN_IF_ERROR(MakeDirs(dir));
  const std::string target = absl::StrCat(dir, "/", name);
  const std::string part =
      following ? PartOfUpload(dir, name, artifact.upload_id()) : absl::StrCat(dir, "/.", name, ".part");
  if (!following && ValidateUploadId(options.followed_upload_id).ok()) {
    // That upload was stored as this artifact: its bytes so far are this blob's first bytes (and are
    // verified with the rest). A part file of our own is newer and stays.
    const std::string followed = PartOfUpload(dir, name, options.followed_upload_id);
    if (link(followed.c_str(), part.c_str()) != 0 && errno != EEXIST && errno != ENOENT) {
      return ErrnoStatus(errno, "link", followed);
    }
    unlink(followed.c_str());
  }

  struct stat st;
  const bool target_exists = lstat(target.c_str(), &st) == 0;
  if (target_exists && !following) {
    absl::StatusOr<std::string> have = Sha256File(target);
    if (have.ok() && *have == artifact.sha256()) {
      if (stored != nullptr) *stored = artifact;
      return target;
    }
    if (!options.force) {
      return absl::FailedPreconditionError(absl::StrCat(
          target, " exists with different content; remove it or pass --force"));
    }
  }

  Sha256 hash;
  ASSIGN_OR_RETURN(uint64_t offset, HashExisting(part, &hash));
  if (!following && offset > artifact.size()) {
    // Not a prefix of this artifact: start over.
    if (unlink(part.c_str()) != 0 && errno != ENOENT) return ErrnoStatus(errno, "unlink", part);
    hash = Sha256();
    offset = 0;
  }

  FdCloser out{open(part.c_str(), O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0644)};
  if (out.fd < 0) return ErrnoStatus(errno, "open", part);

  std::string want_digest = artifact.sha256();
  uint64_t want_size = artifact.size();
  if (following) {
    freeagent::v1::DownloadRequest request;
    request.set_upload_id(artifact.upload_id());
    request.set_no_start_wait(true);
    request.set_offset(offset);
    freeagent::v1::DownloadChunk end;
    RETURN_IF_ERROR(Receive(blobs, request, name, out.fd, part, 0, options.show_progress, &offset, &hash, &end));
    if (end.digest().empty()) {
      return absl::UnavailableError(absl::StrCat("download of ", name, " ended before its upload was stored"));
    }
    want_digest = end.digest();
    want_size = end.size();
  } else if (offset < artifact.size()) {
    freeagent::v1::DownloadRequest request;
    request.set_digest(artifact.sha256());
    request.set_offset(offset);
    freeagent::v1::DownloadChunk end;
    RETURN_IF_ERROR(Receive(blobs, request, name, out.fd, part, artifact.size(), options.show_progress, &offset,
                            &hash, &end));
  }

  std::string digest = hash.FinishHex();
  if (offset != want_size || digest != want_digest) {
    unlink(part.c_str());
    return absl::DataLossError(absl::StrCat("artifact ", name, ": got ", offset, " bytes with sha256 ",
                                            digest, ", expected ", want_size, " bytes with ", want_digest));
  }
  if (stored != nullptr) {
    *stored = artifact;
    stored->set_sha256(digest);
    stored->set_size(offset);
    stored->clear_upload_id();
  }
  if (target_exists && following) {
    // Only now is the content known: the same file stays, a different one is kept unless --force.
    absl::StatusOr<std::string> have = Sha256File(target);
    if (have.ok() && *have == digest) {
      unlink(part.c_str());
      return target;
    }
    if (!options.force) {
      unlink(part.c_str());
      return absl::FailedPreconditionError(absl::StrCat(
          target, " exists with different content; remove it or pass --force"));
    }
  }
  if (fsync(out.fd) != 0) return ErrnoStatus(errno, "fsync", part);
  if (rename(part.c_str(), target.c_str()) != 0) return ErrnoStatus(errno, "rename", part);
  return target;
}

}  // namespace freeagent::cli
