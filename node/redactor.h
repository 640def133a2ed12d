// Streaming redaction of secret values from a job's log. Each secret is masked in its plain form and in
// the forms a build tool is likely to print it in: base64 (standard and URL-safe alphabets, at each of
// the three byte alignments, so it is found inside a longer encoded blob), URL-encoded and JSON-escaped.
// Every maximal run of masked bytes becomes one "[REDACTED]", also when the secret arrives split across
// writes or secrets overlap. Only the bytes that could still begin a secret are held back; everything
// before them is returned at once.
#pragma once

#include <array>
#include <cstddef>
#include <string>
#include <string_view>
#include <vector>

namespace freeagent::node {

class Redactor {
 public:
  // Secrets shorter than this are refused at submit: masking "1" or "yes" everywhere would mangle the
  // log without protecting anything. The redactor itself ignores them.
  static constexpr size_t kMinSecretLength = 6;
  static constexpr std::string_view kReplacement = "[REDACTED]";

  explicit Redactor(const std::vector<std::string>& secrets);

  // Returns what can be emitted now; keeps back at most (longest pattern - 1) bytes.
  std::string Process(std::string_view bytes);
  // Returns the held-back tail (call at the end of the stream) and resets the stream state.
  std::string Flush();

  bool active() const { return !patterns_.empty(); }
  // Every form that is masked (for tests and fuzzing).
  const std::vector<std::string>& patterns() const { return patterns_; }
  // Bytes currently held back.
  size_t held() const { return held_.size(); }

 private:
  // Masks and emits `buf` (held bytes + new ones) up to the first position that could still begin a
  // secret, which is kept in held_; with `final`, emits everything.
  std::string Scan(const std::string& buf, bool final);
  // Emits buf[0, end) given per-byte masks, joining masked runs into one replacement.
  void Emit(std::string_view buf, const std::vector<bool>& mask, size_t end, std::string* out);

  std::vector<std::string> patterns_;
  std::array<std::vector<const std::string*>, 256> by_first_byte_;
  std::string held_;
  size_t held_masked_ = 0;    // leading bytes of held_ already covered by a complete match
  bool last_masked_ = false;  // the last emitted byte was masked (a run continues without a new marker)
};

// Standard base64 with padding.
std::string Base64Encode(std::string_view bytes);

// The encoded forms of `secret` that Redactor masks besides the plain one (exposed for tests).
std::vector<std::string> SecretForms(std::string_view secret);

}  // namespace freeagent::node
