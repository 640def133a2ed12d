#include "node/redactor.h"

#include <algorithm>
#include <cstdint>

namespace freeagent::node {
namespace {

constexpr char kStdAlphabet[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
constexpr char kUrlAlphabet[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";

// Base64 characters of `secret` as it appears after `align` other bytes of an encoded stream: only the
// characters whose six bits all come from the secret, so the form matches whatever surrounds it.
std::string Base64Core(std::string_view secret, size_t align, const char* alphabet) {
  std::string padded(align, '\0');
  padded.append(secret.data(), secret.size());
  std::string out;
  const size_t bits = padded.size() * 8;
  const size_t first = (align * 8 + 5) / 6;
  const size_t last = bits / 6;  // exclusive
  for (size_t j = first; j < last; ++j) {
    uint32_t v = 0;
    for (size_t b = 0; b < 6; ++b) {
      const size_t bit = j * 6 + b;
      const uint8_t byte = static_cast<uint8_t>(padded[bit / 8]);
      v = (v << 1) | ((byte >> (7 - bit % 8)) & 1);
    }
    out += alphabet[v];
  }
  return out;
}

bool Unreserved(unsigned char c) {
  return (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '-' || c == '.' ||
         c == '_' || c == '~';
}

std::string UrlEncode(std::string_view s, const char* hex, bool plus_for_space) {
  std::string out;
  for (unsigned char c : s) {
    if (Unreserved(c)) {
      out += static_cast<char>(c);
    } else if (c == ' ' && plus_for_space) {
      out += '+';
    } else {
      out += '%';
      out += hex[c >> 4];
      out += hex[c & 15];
    }
  }
  return out;
}

std::string JsonEscape(std::string_view s, bool escape_slash) {
  static const char kHex[] = "0123456789abcdef";
  std::string out;
  for (unsigned char c : s) {
    switch (c) {
      case '"': out += "\\\""; break;
      case '\\': out += "\\\\"; break;
      case '\b': out += "\\b"; break;
      case '\f': out += "\\f"; break;
      case '\n': out += "\\n"; break;
      case '\r': out += "\\r"; break;
      case '\t': out += "\\t"; break;
      case '/':
        out += escape_slash ? "\\/" : "/";
        break;
      default:
        if (c < 0x20) {
          out += "\\u00";
          out += kHex[c >> 4];
          out += kHex[c & 15];
        } else {
          out += static_cast<char>(c);
        }
    }
  }
  return out;
}

}  // namespace

std::string Base64Encode(std::string_view in) {
  std::string out;
  out.reserve((in.size() + 2) / 3 * 4);
  size_t i = 0;
  for (; i + 2 < in.size(); i += 3) {
    uint32_t v = (static_cast<uint8_t>(in[i]) << 16) | (static_cast<uint8_t>(in[i + 1]) << 8) |
                 static_cast<uint8_t>(in[i + 2]);
    out += kStdAlphabet[(v >> 18) & 63];
    out += kStdAlphabet[(v >> 12) & 63];
    out += kStdAlphabet[(v >> 6) & 63];
    out += kStdAlphabet[v & 63];
  }
  if (i < in.size()) {
    uint32_t v = static_cast<uint8_t>(in[i]) << 16;
    if (i + 1 < in.size()) v |= static_cast<uint8_t>(in[i + 1]) << 8;
    out += kStdAlphabet[(v >> 18) & 63];
    out += kStdAlphabet[(v >> 12) & 63];
    out += i + 1 < in.size() ? kStdAlphabet[(v >> 6) & 63] : '=';
    out += '=';
  }
  return out;
}

std::vector<std::string> SecretForms(std::string_view secret) {
  std::vector<std::string> forms;
  for (size_t align = 0; align < 3; ++align) {
    forms.push_back(Base64Core(secret, align, kStdAlphabet));
    forms.push_back(Base64Core(secret, align, kUrlAlphabet));
  }
  forms.push_back(UrlEncode(secret, "0123456789ABCDEF", false));
  forms.push_back(UrlEncode(secret, "0123456789abcdef", false));
  forms.push_back(UrlEncode(secret, "0123456789ABCDEF", true));
  forms.push_back(JsonEscape(secret, false));
  forms.push_back(JsonEscape(secret, true));
  std::sort(forms.begin(), forms.end());
  forms.erase(std::unique(forms.begin(), forms.end()), forms.end());
  forms.erase(std::remove_if(forms.begin(), forms.end(),
                             [&](const std::string& f) { return f == secret; }),
              forms.end());
  return forms;
}

Redactor::Redactor(const std::vector<std::string>& secrets) {
  for (const std::string& s : secrets) {
    if (s.size() < kMinSecretLength) continue;
    patterns_.push_back(s);
    for (std::string& form : SecretForms(s)) {
      // A 6-byte secret's shortest base64 core is 6 characters; anything shorter would match noise.
      if (form.size() >= kMinSecretLength) patterns_.push_back(std::move(form));
    }
  }
  std::sort(patterns_.begin(), patterns_.end());
  patterns_.erase(std::unique(patterns_.begin(), patterns_.end()), patterns_.end());
  for (const std::string& p : patterns_) by_first_byte_[static_cast<uint8_t>(p[0])].push_back(&p);
}

std::string Redactor::Process(std::string_view bytes) {
  if (patterns_.empty()) return std::string(bytes);
  std::string buf = std::move(held_);
  held_.clear();
  buf.append(bytes.data(), bytes.size());
  return Scan(buf, /*final=*/false);
}

std::string Redactor::Scan(const std::string& buf, bool final) {
  // mask[i]: byte i is part of a complete match. hold: the first position where only a proper prefix
  // of some pattern remains; a match covering any byte before it starts before it and is complete.
  std::vector<bool> mask(buf.size(), false);
  std::fill(mask.begin(), mask.begin() + static_cast<std::ptrdiff_t>(std::min(held_masked_, buf.size())), true);
  size_t hold = buf.size();
  size_t covered_until = 0;  // mask is already set up to here by some match
  std::vector<std::pair<size_t, size_t>> matches;  // [start, end)
  for (size_t i = 0; i < buf.size(); ++i) {
    std::string_view rest(buf.data() + i, buf.size() - i);
    for (const std::string* p : by_first_byte_[static_cast<uint8_t>(buf[i])]) {
      if (rest.size() >= p->size()) {
        if (rest.compare(0, p->size(), *p) == 0) {
          for (size_t k = std::max(i, covered_until); k < i + p->size(); ++k) mask[k] = true;
          covered_until = std::max(covered_until, i + p->size());
          matches.emplace_back(i, i + p->size());
        }
      } else if (!final && hold == buf.size() && p->compare(0, rest.size(), rest) == 0) {
        hold = i;
      }
    }
  }
  // Bytes after `hold` covered by a match that starts before it are masked in the next call too.
  size_t carry_end = std::min(held_masked_, buf.size());
  for (const auto& [start, end] : matches) {
    if (start < hold) carry_end = std::max(carry_end, end);
  }

  std::string out;
  out.reserve(buf.size());
  Emit(buf, mask, hold, &out);
  held_.assign(buf, hold, std::string::npos);
  held_masked_ = carry_end > hold ? carry_end - hold : 0;
  return out;
}

void Redactor::Emit(std::string_view buf, const std::vector<bool>& mask, size_t end, std::string* out) {
  for (size_t i = 0; i < end; ++i) {
    if (mask[i]) {
      if (!last_masked_) out->append(kReplacement);
      last_masked_ = true;
    } else {
      out->push_back(buf[i]);
      last_masked_ = false;
    }
  }
}

std::string Redactor::Flush() {
  // The held bytes can no longer begin a longer secret, but may still contain a shorter one.
  std::string buf = std::move(held_);
  held_.clear();
  std::string out = patterns_.empty() ? buf : Scan(buf, /*final=*/true);
  held_.clear();
  held_masked_ = 0;
  last_masked_ = false;
  return out;
}

}  // namespace freeagent::node
