// P12 opening (signing/p12): any bytes and password give an identity or an error, never a crash.
#include <cstddef>
#include <cstdint>
#include <string_view>

#include "signing/p12.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  std::string_view bytes(reinterpret_cast<const char*>(data), size);
  // The first byte picks the password's length from the end of the input.
  std::string_view password;
  if (!bytes.empty()) {
    const size_t n = std::min<size_t>(static_cast<uint8_t>(bytes[0]) % 16, bytes.size() - 1);
    password = bytes.substr(bytes.size() - n);
    bytes = bytes.substr(1, bytes.size() - 1 - n);
  }
  freeagent::signing::ParseP12(bytes, password, "fuzz.p12").status().IgnoreError();
  return 0;
}
