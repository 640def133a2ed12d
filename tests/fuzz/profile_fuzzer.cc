// Provisioning-profile parsing (signing/profile): CMS DER and the XML plist inside it; any bytes give
// a profile or an error, never a crash.
#include <cstddef>
#include <cstdint>
#include <string_view>

#include "signing/profile.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  std::string_view bytes(reinterpret_cast<const char*>(data), size);
  freeagent::signing::ParseProfile(bytes, "fuzz.mobileprovision").status().IgnoreError();
  freeagent::signing::ParseProfilePlist(bytes, "fuzz.plist").status().IgnoreError();
  return 0;
}
