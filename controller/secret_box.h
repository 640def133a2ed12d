// Encryption of build secrets at rest (secret env values, the P12 password): AES-256-GCM with a key
// kept in <data_dir>/secret.key, a fresh random 96-bit nonce per value and associated data binding each
// value to its build and name, so a ciphertext copied onto another row does not open.
#pragma once

#include <array>
#include <cstdint>
#include <string>
#include <string_view>

#include "absl/status/statusor.h"

namespace freeagent::controller {

class SecretBox {
 public:
  static constexpr size_t kKeyBytes = 32;
  static constexpr size_t kNonceBytes = 12;
  static constexpr size_t kTagBytes = 16;

  // Loads the key file at `path`, or creates it (mode 0600, fresh random key) when it does not exist.
  // Errors: FAILED_PRECONDITION when the file is readable or writable by group or others, is not a
  // regular file or does not hold exactly kKeyBytes bytes (naming the file and the reason); INTERNAL
  // when it cannot be read or written.
  static absl::StatusOr<SecretBox> OpenKeyFile(const std::string& path);
  // For tests and tools: a box over a given key.
  static SecretBox FromKey(const std::array<uint8_t, kKeyBytes>& key) { return SecretBox(key); }

  // nonce || ciphertext || tag. `aad` is authenticated, not stored.
  absl::StatusOr<std::string> Seal(std::string_view plaintext, std::string_view aad) const;
  // Errors: DATA_LOSS when the value is too short, was changed, or was sealed with another key or aad.
  absl::StatusOr<std::string> Open(std::string_view sealed, std::string_view aad) const;

  // The associated data for a secret named `name` of build `build_id`.
  static std::string Aad(std::string_view build_id, std::string_view name);

 private:
  explicit SecretBox(const std::array<uint8_t, kKeyBytes>& key) : key_(key) {}
  std::array<uint8_t, kKeyBytes> key_;
};

}  // namespace freeagent::controller
