// Streaming SHA-256 (OpenSSL EVP) and helpers. Digests are lowercase hex, 64 characters.
#pragma once

#include <memory>
#include <string>
#include <string_view>

#include "absl/status/statusor.h"

namespace freeagent {

class Sha256 {
 public:
  Sha256();
  ~Sha256();
  Sha256(Sha256&&) noexcept;
  Sha256& operator=(Sha256&&) noexcept;

  void Update(std::string_view bytes);
  void Update(const void* data, size_t size);
  // Returns the hex digest. The object must not be used afterwards.
  std::string FinishHex();

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

std::string Sha256Hex(std::string_view bytes);

// Streams the file; NOT_FOUND if it does not exist.
absl::StatusOr<std::string> Sha256File(const std::string& path);

// True if `digest` is 64 lowercase hex characters.
bool IsSha256Hex(std::string_view digest);

// The name of a streaming blob upload (digest known only at its end): 128 random bits as 32 lowercase
// hex characters. INVALID_ARGUMENT naming the value otherwise.
absl::Status ValidateUploadId(std::string_view upload_id);

}  // namespace freeagent
