#include "node/redactor.h"

#include <algorithm>

namespace freeagent::node {

std::string Base64Encode(std::string_view in) {
  static const char kAlphabet[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
  std::string out;
  out.reserve((in.size() + 2) / 3 * 4);
  size_t i = 0;
  for (; i + 2 < in.size(); i += 3) {
    uint32_t v = (static_cast<uint8_t>(in[i]) << 16) | (static_cast<uint8_t>(in[i + 1]) << 8) |
                 static_cast<uint8_t>(in[i + 2]);
    out += kAlphabet[(v >> 18) & 63];
    out += kAlphabet[(v >> 12) & 63];
    out += kAlphabet[(v >> 6) & 63];
    out += kAlphabet[v & 63];
  }
  if (i < in.size()) {
    uint32_t v = static_cast<uint8_t>(in[i]) << 16;
    if (i + 1 < in.size()) v |= static_cast<uint8_t>(in[i + 1]) << 8;
    out += kAlphabet[(v >> 18) & 63];
    out += kAlphabet[(v >> 12) & 63];
    out += i + 1 < in.size() ? kAlphabet[(v >> 6) & 63] : '=';
    out += '=';
  }
  return out;
}

Redactor::Redactor(const std::vector<std::string>& secrets) {
  for (const std::string& s : secrets) {
    if (s.size() < kMinSecretLength) continue;
    patterns_.push_back(s);
    // Without its padding, so the encoding is found inside longer base64 text too.
    std::string b64 = Base64Encode(s);
    while (!b64.empty() && b64.back() == '=') b64.pop_back();
    if (b64.size() >= kMinSecretLength) patterns_.push_back(b64);
  }
  std::sort(patterns_.begin(), patterns_.end(),
            [](const std::string& a, const std::string& b) { return a.size() > b.size(); });
  patterns_.erase(std::unique(patterns_.begin(), patterns_.end()), patterns_.end());
}

std::string Redactor::Process(std::string_view bytes) {
  if (patterns_.empty()) return std::string(bytes);
  std::string buf = std::move(held_);
  held_.clear();
  buf.append(bytes.data(), bytes.size());
  std::string out;
  out.reserve(buf.size());
  std::string_view view(buf);
  size_t i = 0;
  while (i < view.size()) {
    std::string_view rest = view.substr(i);
    bool replaced = false;
    bool could_start = false;
    for (const std::string& p : patterns_) {
      if (rest.size() >= p.size()) {
        if (rest.compare(0, p.size(), p) == 0) {
          out += "***";
          i += p.size();
          replaced = true;
          break;
        }
      } else if (p.compare(0, rest.size(), rest) == 0) {
        could_start = true;  // the rest is a prefix of a secret: wait for more bytes
      }
    }
    if (replaced) continue;
    if (could_start) {
      held_.assign(rest.data(), rest.size());
      break;
    }
    out += view[i];
    ++i;
  }
  return out;
}

std::string Redactor::Flush() {
  std::string out = std::move(held_);
  held_.clear();
  return out;
}

}  // namespace freeagent::node
