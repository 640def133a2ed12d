// Streaming redaction of secret values from a job's log: each secret (and its base64 form) is replaced
// by "***" even when it arrives split across writes, by holding back a tail that could still become
// a secret. Bytes that cannot be part of one pass through unchanged and at once.
#pragma once

#include <string>
#include <string_view>
#include <vector>

namespace freeagent::node {

class Redactor {
 public:
  // Values shorter than kMinSecretLength are not redacted: masking "1" or "yes" everywhere would
  // destroy the log without protecting anything.
  static constexpr size_t kMinSecretLength = 4;

  explicit Redactor(const std::vector<std::string>& secrets);

  // Returns what can be emitted now; may keep a tail back.
  std::string Process(std::string_view bytes);
  // Returns the held-back tail (call at the end of the stream).
  std::string Flush();

  bool active() const { return !patterns_.empty(); }

 private:
  std::vector<std::string> patterns_;  // longest first, so the longer form wins
  std::string held_;
};

// Standard base64 with padding.
std::string Base64Encode(std::string_view bytes);

}  // namespace freeagent::node
