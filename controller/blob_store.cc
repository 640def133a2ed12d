// Content-addressed blob storage with verified, resumable uploads.
#include "controller/blob_store.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <vector>

#include "absl/strings/str_cat.h"
#include "common/clock.h"
#include "common/fs.h"
#include "common/status_macros.h"

namespace freeagent::controller {
namespace {

absl::StatusOr<uint64_t> FileSize(const std::string& path) {
  struct stat st {};
  if (::stat(path.c_str(), &st) != 0) return ErrnoStatus(errno, "stat", path);
  return static_cast<uint64_t>(st.st_size);
}

// Feeds the first `size` bytes of `fd` into `hash`.
absl::Status HashPrefix(int fd, uint64_t size, Sha256* hash, const std::string& path) {
  std::vector<char> buf(1 << 20);
  uint64_t pos = 0;
  while (pos < size) {
    const size_t want = static_cast<size_t>(std::min<uint64_t>(buf.size(), size - pos));
    ssize_t n = ::pread(fd, buf.data(), want, static_cast<off_t>(pos));
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) return ErrnoStatus(errno, "read", path);
    if (n == 0) return absl::DataLossError(absl::StrCat("partial upload ", path, " shrank"));
    hash->Update(buf.data(), static_cast<size_t>(n));
    pos += static_cast<uint64_t>(n);
  }
  return absl::OkStatus();
}

}  // namespace

absl::Status BlobStore::Init() { return MakeDirs(dir_ + "/partial", 0755); }

absl::Status BlobStore::ValidateDigest(std::string_view digest, std::string_view field) {
  if (digest.empty()) return absl::InvalidArgumentError(absl::StrCat(std::string(field), " is required"));
  if (!IsSha256Hex(digest)) {
    return absl::InvalidArgumentError(
        absl::StrCat(std::string(field), " \"", std::string(digest.substr(0, 80)), "\" is not a sha256 hex digest"));
  }
  return absl::OkStatus();
}

std::string BlobStore::PathFor(const std::string& digest) const {
  return absl::StrCat(dir_, "/", digest.substr(0, 2), "/", digest);
}

std::string BlobStore::PartialPathFor(const std::string& digest) const {
  return absl::StrCat(dir_, "/partial/", digest);
}

void BlobStore::Touch(const std::string& digest) {
  std::lock_guard<std::mutex> lock(mu_);
  touched_ms_[digest] = UnixMillis();
}

absl::StatusOr<bool> BlobStore::Remove(const std::string& digest, int64_t unless_touched_since_ms) {
  RETURN_IF_ERROR(ValidateDigest(digest));
  // Held across the check and the unlink: a Stat that touches first keeps the blob, one that comes
  // after finds it gone and uploads it again.
  std::lock_guard<std::mutex> lock(mu_);
  auto it = touched_ms_.find(digest);
  if (it != touched_ms_.end() && it->second >= unless_touched_since_ms) return false;
  if (uploading_.count(digest) > 0) return false;
  const std::string path = PathFor(digest);
  if (::unlink(path.c_str()) != 0) {
    if (errno == ENOENT) return false;
    return ErrnoStatus(errno, "remove", path);
  }
  return true;
}

bool BlobStore::Exists(const std::string& digest) {
  if (!IsSha256Hex(digest)) return false;
  Touch(digest);
  return FileSize(PathFor(digest)).ok();
}

absl::StatusOr<v1::BlobInfo> BlobStore::Stat(const std::string& digest) {
  RETURN_IF_ERROR(ValidateDigest(digest));
  Touch(digest);
  v1::BlobInfo info;
  info.set_digest(digest);
  if (auto size = FileSize(PathFor(digest)); size.ok()) {
    info.set_exists(true);
    info.set_size(*size);
    return info;
  }
  if (auto partial = FileSize(PartialPathFor(digest)); partial.ok()) info.set_partial_size(*partial);
  return info;
}

absl::StatusOr<std::unique_ptr<BlobWriter>> BlobStore::BeginUpload(const v1::UploadHeader& header) {
  RETURN_IF_ERROR(ValidateDigest(header.digest(), "header.digest"));
  if (header.size() > kMaxBlobBytes) {
    return absl::ResourceExhaustedError(absl::StrCat("header.size ", header.size(), " bytes is above the blob limit of ",
                                                     kMaxBlobBytes, " bytes"));
  }
  const std::string& digest = header.digest();
  {
    std::lock_guard<std::mutex> lock(mu_);
    touched_ms_[digest] = UnixMillis();
    if (!uploading_.insert(digest).second) {
      return absl::AbortedError(absl::StrCat("an upload of ", digest, " is already in progress"));
    }
  }
  std::unique_ptr<BlobWriter> writer(new BlobWriter(this, digest, header.size()));
  if (header.offset() > header.size()) {
    return absl::InvalidArgumentError(absl::StrCat("header.offset ", header.offset(),
                                                   " is beyond header.size ", header.size()));
  }
  if (Exists(digest)) {
    writer->discard_ = true;
    writer->received_ = header.offset();
    return writer;
  }
  const std::string partial = PartialPathFor(digest);
  uint64_t partial_size = 0;
  if (auto size = FileSize(partial); size.ok()) partial_size = *size;
  if (header.offset() != 0 && header.offset() != partial_size) {
    return absl::FailedPreconditionError(absl::StrCat("header.offset ", header.offset(),
                                                      " does not match the partial upload size ",
                                                      partial_size));
  }
  const int flags = O_WRONLY | O_CREAT | O_CLOEXEC | (header.offset() == 0 ? O_TRUNC : 0);
  writer->fd_ = ::open(partial.c_str(), flags, 0644);
  if (writer->fd_ < 0) return ErrnoStatus(errno, "open", partial);
  if (header.offset() > 0) {
    int rfd = ::open(partial.c_str(), O_RDONLY | O_CLOEXEC);
    if (rfd < 0) return ErrnoStatus(errno, "open", partial);
    absl::Status st = HashPrefix(rfd, header.offset(), &writer->hash_, partial);
    ::close(rfd);
    RETURN_IF_ERROR(st);
  }
  writer->received_ = header.offset();
  return writer;
}

void BlobStore::EndUpload(const std::string& digest) {
  std::lock_guard<std::mutex> lock(mu_);
  uploading_.erase(digest);
}

BlobWriter::~BlobWriter() {
  if (fd_ >= 0) ::close(fd_);
  store_->EndUpload(digest_);
}

absl::Status BlobWriter::Write(std::string_view data) {
  if (received_ + data.size() > size_) {
    return absl::InvalidArgumentError(absl::StrCat("upload of ", digest_, " goes past header.size ",
                                                   size_));
  }
  if (discard_) {
    received_ += data.size();
    return absl::OkStatus();
  }
  hash_.Update(data);
  while (!data.empty()) {
    ssize_t n = ::pwrite(fd_, data.data(), data.size(), static_cast<off_t>(received_));
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) return ErrnoStatus(errno, "write", store_->PartialPathFor(digest_));
    received_ += static_cast<uint64_t>(n);
    data.remove_prefix(static_cast<size_t>(n));
  }
  return absl::OkStatus();
}

absl::StatusOr<v1::BlobInfo> BlobWriter::Finish() {
  if (discard_) return store_->Stat(digest_);
  const std::string partial = store_->PartialPathFor(digest_);
  if (received_ < size_) {
    return absl::FailedPreconditionError(absl::StrCat("upload of ", digest_, " ended at byte ",
                                                      received_, " of ", size_,
                                                      "; resume from the partial size"));
  }
  const std::string actual = hash_.FinishHex();
  if (actual != digest_) {
    ::close(fd_);
    fd_ = -1;
    ::unlink(partial.c_str());
    return absl::DataLossError(absl::StrCat("uploaded bytes have sha256 ", actual,
                                            ", not the announced digest ", digest_,
                                            "; nothing was stored"));
  }
  if (::fsync(fd_) != 0) return ErrnoStatus(errno, "fsync", partial);
  ::close(fd_);
  fd_ = -1;
  const std::string final_path = store_->PathFor(digest_);
  RETURN_IF_ERROR(MakeDirs(final_path.substr(0, final_path.rfind('/')), 0755));
  if (::rename(partial.c_str(), final_path.c_str()) != 0) {
    return ErrnoStatus(errno, "rename to", final_path);
  }
  return store_->Stat(digest_);
}

}  // namespace freeagent::controller
