// Content-addressed blob storage with verified, resumable uploads.
#include "controller/blob_store.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <algorithm>
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

constexpr std::string_view kUploadPrefix = "upload-";  // BlobStore::UploadKey

int64_t MtimeMs(const struct stat& st) { return int64_t{st.st_mtim.tv_sec} * 1000 + st.st_mtim.tv_nsec / 1000000; }

// The names partial uploads have: a digest, or UploadKey(upload_id).
bool IsPartialKey(std::string_view key) {
  if (IsSha256Hex(key)) return true;
  return key.starts_with(kUploadPrefix) && ValidateUploadId(key.substr(kUploadPrefix.size())).ok();
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

std::string BlobStore::PartialPathFor(const std::string& key) const {
  return absl::StrCat(dir_, "/partial/", key);
}

absl::StatusOr<v1::BlobInfo> BlobStore::StatUpload(const std::string& upload_id) {
  RETURN_IF_ERROR(ValidateUploadId(upload_id));
  v1::BlobInfo info;
  if (auto partial = FileSize(PartialPathFor(UploadKey(upload_id))); partial.ok()) info.set_partial_size(*partial);
  return info;
}

void BlobStore::Touch(const std::string& digest) {
  std::lock_guard<std::mutex> lock(mu_);
  const int64_t now_ms = UnixMillis();
  touched_ms_[digest] = now_ms;
  // Best effort: a blob that is not stored (yet) has no file; its upload's rename keeps a fresh mtime.
  struct timespec times[2];
  times[0].tv_nsec = UTIME_OMIT;
  times[1].tv_sec = static_cast<time_t>(now_ms / 1000);
  times[1].tv_nsec = static_cast<long>(now_ms % 1000) * 1000000;
  ::utimensat(AT_FDCWD, PathFor(digest).c_str(), times, 0);
}

int64_t BlobStore::LastTouchLocked(const std::string& digest) const {
  int64_t last = 0;
  if (auto it = touched_ms_.find(digest); it != touched_ms_.end()) last = it->second;
  struct stat st {};
  if (::stat(PathFor(digest).c_str(), &st) == 0) last = std::max(last, MtimeMs(st));
  return last;
}

absl::StatusOr<std::vector<BlobStore::FileInfo>> BlobStore::ListPartials() {
  ASSIGN_OR_RETURN(std::vector<std::string> names, ListDirectory(dir_ + "/partial"));
  std::vector<FileInfo> partials;
  for (const std::string& name : names) {
    if (!IsPartialKey(name)) continue;
    {
      std::lock_guard<std::mutex> lock(mu_);
      if (uploading_.count(name) > 0) continue;
    }
    struct stat st {};
    if (::stat(PartialPathFor(name).c_str(), &st) != 0 || !S_ISREG(st.st_mode)) continue;  // stored meanwhile
    partials.push_back(FileInfo{name, static_cast<uint64_t>(st.st_size), MtimeMs(st)});
  }
  return partials;
}

absl::StatusOr<std::vector<BlobStore::FileInfo>> BlobStore::ListStored() {
  ASSIGN_OR_RETURN(std::vector<std::string> prefixes, ListDirectory(dir_));
  std::vector<FileInfo> blobs;
  for (const std::string& prefix : prefixes) {
    if (prefix.size() != 2) continue;  // "partial"
    absl::StatusOr<std::vector<std::string>> names = ListDirectory(absl::StrCat(dir_, "/", prefix));
    if (!names.ok()) continue;  // a file, or removed meanwhile
    for (const std::string& name : *names) {
      if (!IsSha256Hex(name) || name.compare(0, 2, prefix) != 0) continue;
      auto size = FileSize(PathFor(name));
      if (!size.ok()) continue;
      std::lock_guard<std::mutex> lock(mu_);
      blobs.push_back(FileInfo{name, *size, LastTouchLocked(name)});
    }
  }
  return blobs;
}

absl::StatusOr<bool> BlobStore::RemovePartial(const std::string& key, int64_t unless_written_since_ms) {
  if (!IsPartialKey(key)) {
    return absl::InvalidArgumentError(absl::StrCat("\"", key.substr(0, 80), "\" names no partial upload"));
  }
  // Held across the checks and the unlink: BeginUpload claims the key under mu_ before it opens the
  // partial, so an upload that resumes either keeps the file or finds it gone and starts over.
  std::lock_guard<std::mutex> lock(mu_);
  if (uploading_.count(key) > 0) return false;
  const std::string path = PartialPathFor(key);
  struct stat st {};
  if (::stat(path.c_str(), &st) != 0) {
    if (errno == ENOENT) return false;
    return ErrnoStatus(errno, "stat", path);
  }
  if (MtimeMs(st) >= unless_written_since_ms) return false;
  if (::unlink(path.c_str()) != 0) {
    if (errno == ENOENT) return false;
    return ErrnoStatus(errno, "remove", path);
  }
  if (key.starts_with(kUploadPrefix)) {
    if (auto it = uploads_.find(key.substr(kUploadPrefix.size()));
        it != uploads_.end() && it->second.state == UploadProgress::State::kRunning) {
      it->second.state = UploadProgress::State::kFailed;
      it->second.error = "its partial was removed after no byte arrived for the retention's age limit";
      it->second.last_change_ms = UnixMillis();
    }
  }
  return true;
}

absl::StatusOr<bool> BlobStore::Remove(const std::string& digest, int64_t unless_touched_since_ms) {
  RETURN_IF_ERROR(ValidateDigest(digest));
  // Held across the check and the unlink: a Stat that touches first keeps the blob, one that comes
  // after finds it gone and uploads it again.
  std::lock_guard<std::mutex> lock(mu_);
  if (LastTouchLocked(digest) >= unless_touched_since_ms) return false;
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
  const bool streaming = header.digest().empty() && !header.upload_id().empty();
  if (streaming) {
    RETURN_IF_ERROR(ValidateUploadId(header.upload_id()));
  } else {
    RETURN_IF_ERROR(ValidateDigest(header.digest(), "header.digest"));
  }
  if (header.size() > kMaxBlobBytes) {
    return absl::ResourceExhaustedError(absl::StrCat("header.size ", header.size(), " bytes is above the blob limit of ",
                                                     kMaxBlobBytes, " bytes"));
  }
  const std::string& digest = header.digest();
  const std::string key = streaming ? UploadKey(header.upload_id()) : digest;
  {
    std::lock_guard<std::mutex> lock(mu_);
    if (!streaming) touched_ms_[digest] = UnixMillis();
    if (!uploading_.insert(key).second) {
      return absl::AbortedError(absl::StrCat("an upload of ", key, " is already in progress"));
    }
  }
  // A streaming upload's size is an upper bound; 0 = the store's limit.
  const uint64_t size = streaming && header.size() == 0 ? kMaxBlobBytes : header.size();
  std::unique_ptr<BlobWriter> writer(new BlobWriter(this, digest, size));
  writer->upload_id_ = streaming ? header.upload_id() : "";
  writer->key_ = key;
  if (header.offset() > size) {
    return absl::InvalidArgumentError(absl::StrCat("header.offset ", header.offset(),
                                                   " is beyond header.size ", header.size()));
  }
  if (!streaming && Exists(digest)) {
    writer->discard_ = true;
    writer->received_ = header.offset();
    return writer;
  }
  const std::string partial = PartialPathFor(key);
  uint64_t partial_size = 0;
  if (auto existing = FileSize(partial); existing.ok()) partial_size = *existing;
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
  writer->written_back_ = header.offset();
  if (streaming) NoteUploadStarted(header.upload_id(), header.offset());
  return writer;
}

void BlobStore::EndUpload(const std::string& key, const std::string& upload_id) {
  std::lock_guard<std::mutex> lock(mu_);
  uploading_.erase(key);
  if (auto it = uploads_.find(upload_id); it != uploads_.end()) it->second.sender_connected = false;
}

void BlobStore::NoteUploadStarted(const std::string& upload_id, uint64_t written) {
  // Records of uploads that ended an hour ago are no use to a reader any more.
  constexpr int64_t kKeepEndedMs = 3600 * 1000;
  const int64_t now_ms = UnixMillis();
  std::lock_guard<std::mutex> lock(mu_);
  for (auto it = uploads_.begin(); it != uploads_.end();) {
    const bool ended = it->second.state != UploadProgress::State::kRunning;
    it = ended && now_ms - it->second.last_change_ms > kKeepEndedMs ? uploads_.erase(it) : std::next(it);
  }
  UploadProgress& p = uploads_[upload_id];
  p = UploadProgress();
  p.written = written;
  p.sender_connected = true;
  p.last_change_ms = now_ms;
}

void BlobStore::NoteUploadWritten(const std::string& upload_id, uint64_t written) {
  std::lock_guard<std::mutex> lock(mu_);
  UploadProgress& p = uploads_[upload_id];
  p.written = written;
  p.last_change_ms = UnixMillis();
}

void BlobStore::NoteUploadEnded(const std::string& upload_id, const absl::StatusOr<v1::BlobInfo>& outcome) {
  std::lock_guard<std::mutex> lock(mu_);
  UploadProgress& p = uploads_[upload_id];
  p.last_change_ms = UnixMillis();
  if (outcome.ok()) {
    p.state = UploadProgress::State::kStored;
    p.digest = outcome->digest();
    p.size = outcome->size();
  } else {
    p.state = UploadProgress::State::kFailed;
    p.error = std::string(outcome.status().message());
  }
}

void BlobStore::AbandonUpload(const std::string& upload_id, const std::string& why) {
  if (!ValidateUploadId(upload_id).ok()) return;
  std::lock_guard<std::mutex> lock(mu_);
  UploadProgress& p = uploads_[upload_id];  // also when nothing arrived yet: a waiting reader ends too
  if (p.state != UploadProgress::State::kRunning) return;
  p.state = UploadProgress::State::kFailed;
  p.error = why;
  p.last_change_ms = UnixMillis();
}

absl::StatusOr<UploadProgress> BlobStore::FollowUpload(const std::string& upload_id) {
  RETURN_IF_ERROR(ValidateUploadId(upload_id));
  {
    std::lock_guard<std::mutex> lock(mu_);
    if (auto it = uploads_.find(upload_id); it != uploads_.end()) return it->second;
  }
  struct stat st {};
  if (::stat(PartialPathFor(UploadKey(upload_id)).c_str(), &st) != 0) {
    return absl::NotFoundError(absl::StrCat("upload ", upload_id, " is unknown to the blob store"));
  }
  UploadProgress p;
  p.written = static_cast<uint64_t>(st.st_size);
  p.last_change_ms = MtimeMs(st);
  return p;
}

BlobWriter::~BlobWriter() {
  if (fd_ >= 0) ::close(fd_);
  store_->EndUpload(key_, upload_id_);
}

absl::Status BlobWriter::Write(std::string_view data) {
  if (received_ + data.size() > size_) {
    return absl::InvalidArgumentError(absl::StrCat("upload of ", key_, " goes past header.size ",
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
    if (n < 0) return ErrnoStatus(errno, "write", store_->PartialPathFor(key_));
    received_ += static_cast<uint64_t>(n);
    data.remove_prefix(static_cast<size_t>(n));
  }
  // The commit's fsync then waits for the last few MiB only, not the whole blob.
  StartWriteback(fd_, received_, &written_back_);
  if (streaming()) store_->NoteUploadWritten(upload_id_, received_);
  return absl::OkStatus();
}

absl::StatusOr<v1::BlobInfo> BlobWriter::Finish() {
  if (streaming()) {
    return absl::FailedPreconditionError(absl::StrCat("streaming upload ", upload_id_, " ended at byte ", received_,
                                                      " without a trailer; resume from the partial size"));
  }
  if (discard_) return store_->Stat(digest_);
  const std::string partial = store_->PartialPathFor(key_);
  if (received_ < size_) {
    return absl::FailedPreconditionError(absl::StrCat("upload of ", digest_, " ended at byte ",
                                                      received_, " of ", size_,
                                                      "; resume from the partial size"));
  }
  return Commit(partial, digest_);
}

absl::StatusOr<v1::BlobInfo> BlobWriter::FinishStreaming(const v1::UploadTrailer& trailer) {
  absl::StatusOr<v1::BlobInfo> outcome = FinishStreamingInner(trailer);
  store_->NoteUploadEnded(upload_id_, outcome);
  return outcome;
}

absl::StatusOr<v1::BlobInfo> BlobWriter::FinishStreamingInner(const v1::UploadTrailer& trailer) {
  const std::string partial = store_->PartialPathFor(key_);
  auto drop = [&] {
    ::close(fd_);
    fd_ = -1;
    ::unlink(partial.c_str());
  };
  if (trailer.digest().empty()) {
    drop();
    return absl::CancelledError(absl::StrCat("streaming upload ", upload_id_, " abandoned by the sender"));
  }
  RETURN_IF_ERROR(BlobStore::ValidateDigest(trailer.digest(), "trailer.digest"));
  if (trailer.size() != received_) {
    drop();
    return absl::DataLossError(absl::StrCat("streaming upload ", upload_id_, " received ", received_,
                                            " bytes, the trailer says ", trailer.size(), "; nothing was stored"));
  }
  return Commit(partial, trailer.digest());
}

absl::StatusOr<v1::BlobInfo> BlobWriter::Commit(const std::string& partial, const std::string& digest) {
  const std::string actual = hash_.FinishHex();
  if (actual != digest) {
    ::close(fd_);
    fd_ = -1;
    ::unlink(partial.c_str());
    return absl::DataLossError(absl::StrCat("uploaded bytes have sha256 ", actual,
                                            ", not the announced digest ", digest,
                                            "; nothing was stored"));
  }
  if (streaming() && store_->Exists(digest)) {  // the same bytes were stored meanwhile
    ::close(fd_);
    fd_ = -1;
    ::unlink(partial.c_str());
    return store_->Stat(digest);
  }
  if (::fsync(fd_) != 0) return ErrnoStatus(errno, "fsync", partial);
  ::close(fd_);
  fd_ = -1;
  const std::string final_path = store_->PathFor(digest);
  RETURN_IF_ERROR(MakeDirs(final_path.substr(0, final_path.rfind('/')), 0755));
  if (::rename(partial.c_str(), final_path.c_str()) != 0) {
    return ErrnoStatus(errno, "rename to", final_path);
  }
  return store_->Stat(digest);
}

}  // namespace freeagent::controller
