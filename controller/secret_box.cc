// AES-256-GCM over OpenSSL EVP for secrets at rest.
#include "controller/secret_box.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <memory>

#include <openssl/evp.h>
#include <openssl/rand.h>

#include "absl/cleanup/cleanup.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "common/fs.h"

namespace freeagent::controller {
namespace {

struct CtxDeleter {
  void operator()(EVP_CIPHER_CTX* c) const { EVP_CIPHER_CTX_free(c); }
};
using Ctx = std::unique_ptr<EVP_CIPHER_CTX, CtxDeleter>;

const unsigned char* Bytes(std::string_view s) { return reinterpret_cast<const unsigned char*>(s.data()); }

absl::Status CheckKeyFile(const std::string& path, const struct stat& st) {
  if (!S_ISREG(st.st_mode)) {
    return absl::FailedPreconditionError(absl::StrCat("secret key ", path, " is not a regular file"));
  }
  if ((st.st_mode & 077) != 0) {
    return absl::FailedPreconditionError(absl::StrFormat(
        "secret key %s has mode %04o: it must be readable by its owner only (chmod 600 %s)", path,
        st.st_mode & 07777, path));
  }
  if (st.st_size != static_cast<off_t>(SecretBox::kKeyBytes)) {
    return absl::FailedPreconditionError(absl::StrCat("secret key ", path, " holds ", st.st_size,
                                                      " bytes, expected ", SecretBox::kKeyBytes,
                                                      " (a damaged or foreign file; restore it from a backup)"));
  }
  return absl::OkStatus();
}

absl::StatusOr<std::array<uint8_t, SecretBox::kKeyBytes>> CreateKeyFile(const std::string& path) {
  std::array<uint8_t, SecretBox::kKeyBytes> key;
  if (RAND_bytes(key.data(), key.size()) != 1) {
    return absl::InternalError("secret key: the random generator failed");
  }
  // O_EXCL: two controllers starting on one data dir never both write a key.
  int fd = ::open(path.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC | O_NOFOLLOW, 0600);
  if (fd < 0) return ErrnoStatus(errno, "create secret key", path);
  absl::Cleanup close_fd = [fd] { ::close(fd); };
  absl::Status st = WriteAll(fd, reinterpret_cast<const char*>(key.data()), key.size(), path);
  if (st.ok() && ::fchmod(fd, 0600) != 0) st = ErrnoStatus(errno, "chmod secret key", path);
  if (st.ok() && ::fsync(fd) != 0) st = ErrnoStatus(errno, "sync secret key", path);
  if (!st.ok()) {
    ::unlink(path.c_str());
    return st;
  }
  return key;
}

}  // namespace

absl::StatusOr<SecretBox> SecretBox::OpenKeyFile(const std::string& path) {
  int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC | O_NOFOLLOW);
  if (fd < 0 && errno == ENOENT) {
    absl::StatusOr<std::array<uint8_t, kKeyBytes>> key = CreateKeyFile(path);
    if (key.ok()) return SecretBox(*key);
    if (!absl::IsAlreadyExists(key.status())) return key.status();
    fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC | O_NOFOLLOW);  // created by a racing start
  }
  if (fd < 0) return ErrnoStatus(errno, "open secret key", path);
  absl::Cleanup close_fd = [fd] { ::close(fd); };
  struct stat st;
  if (::fstat(fd, &st) != 0) return ErrnoStatus(errno, "stat secret key", path);
  if (absl::Status s = CheckKeyFile(path, st); !s.ok()) return s;
  std::array<uint8_t, kKeyBytes> key;
  size_t got = 0;
  while (got < key.size()) {
    ssize_t n = ::read(fd, key.data() + got, key.size() - got);
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) return ErrnoStatus(errno, "read secret key", path);
    if (n == 0) return absl::FailedPreconditionError(absl::StrCat("secret key ", path, " is truncated"));
    got += static_cast<size_t>(n);
  }
  return SecretBox(key);
}

std::string SecretBox::Aad(std::string_view build_id, std::string_view name) {
  // The NUL keeps ("ab", "c") and ("a", "bc") apart; neither part holds one.
  std::string aad(build_id);
  aad.push_back('\0');
  aad.append(name);
  return aad;
}

absl::StatusOr<std::string> SecretBox::Seal(std::string_view plaintext, std::string_view aad) const {
  std::string out(kNonceBytes + plaintext.size() + kTagBytes, '\0');
  auto* nonce = reinterpret_cast<unsigned char*>(out.data());
  if (RAND_bytes(nonce, kNonceBytes) != 1) return absl::InternalError("seal secret: the random generator failed");
  Ctx ctx(EVP_CIPHER_CTX_new());
  int len = 0;
  unsigned char* body = nonce + kNonceBytes;
  if (!ctx || EVP_EncryptInit_ex(ctx.get(), EVP_aes_256_gcm(), nullptr, key_.data(), nonce) != 1 ||
      EVP_EncryptUpdate(ctx.get(), nullptr, &len, Bytes(aad), static_cast<int>(aad.size())) != 1 ||
      EVP_EncryptUpdate(ctx.get(), body, &len, Bytes(plaintext), static_cast<int>(plaintext.size())) != 1 ||
      EVP_EncryptFinal_ex(ctx.get(), body + len, &len) != 1 ||
      EVP_CIPHER_CTX_ctrl(ctx.get(), EVP_CTRL_GCM_GET_TAG, kTagBytes, body + plaintext.size()) != 1) {
    return absl::InternalError("seal secret: AES-256-GCM encryption failed");
  }
  return out;
}

absl::StatusOr<std::string> SecretBox::Open(std::string_view sealed, std::string_view aad) const {
  if (sealed.size() < kNonceBytes + kTagBytes) {
    return absl::DataLossError(absl::StrCat("sealed secret is ", sealed.size(), " bytes, shorter than a nonce and tag"));
  }
  const size_t body_size = sealed.size() - kNonceBytes - kTagBytes;
  std::string tag(sealed.substr(kNonceBytes + body_size));
  std::string out(body_size, '\0');
  Ctx ctx(EVP_CIPHER_CTX_new());
  int len = 0;
  auto* plain = reinterpret_cast<unsigned char*>(out.data());
  if (!ctx || EVP_DecryptInit_ex(ctx.get(), EVP_aes_256_gcm(), nullptr, key_.data(), Bytes(sealed)) != 1 ||
      EVP_DecryptUpdate(ctx.get(), nullptr, &len, Bytes(aad), static_cast<int>(aad.size())) != 1 ||
      EVP_DecryptUpdate(ctx.get(), plain, &len, Bytes(sealed) + kNonceBytes, static_cast<int>(body_size)) != 1 ||
      EVP_CIPHER_CTX_ctrl(ctx.get(), EVP_CTRL_GCM_SET_TAG, kTagBytes, tag.data()) != 1) {
    return absl::InternalError("open secret: AES-256-GCM decryption could not start");
  }
  if (EVP_DecryptFinal_ex(ctx.get(), plain + len, &len) != 1) {
    OPENSSL_cleanse(out.data(), out.size());
    return absl::DataLossError(
        "sealed secret failed authentication: it was changed, or sealed with another key or for another build");
  }
  return out;
}

}  // namespace freeagent::controller
