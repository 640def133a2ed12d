// Source-archive checking (common/archive): any bytes are refused with an error or accepted; an
// accepted archive unpacks into a fresh directory without creating anything outside it.
#include <sys/stat.h>
#include <unistd.h>

#include <cstddef>
#include <cstdint>
#include <string>

#include "common/archive.h"
#include "common/fs.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  static const std::string root = [] {
    auto dir = freeagent::MakePrivateTempDir("/tmp", "fa-fuzz-archive-");
    if (!dir.ok()) __builtin_trap();
    return *dir;
  }();
  const std::string path = root + "/in.tar.gz";
  if (!freeagent::WriteFileAtomic(path, std::string_view(reinterpret_cast<const char*>(data), size)).ok()) return 0;
  absl::Status checked = freeagent::CheckArchive(path);
  if (checked.ok()) {
    const std::string dest = root + "/out/dest";
    freeagent::RemoveTree(root + "/out").IgnoreError();
    if (!freeagent::MakeDirs(dest).ok()) __builtin_trap();
    freeagent::UnpackArchive(path, dest).IgnoreError();
    // Nothing may appear beside the destination.
    auto names = freeagent::ListDirectory(root + "/out");
    if (!names.ok() || names->size() != 1) __builtin_trap();
  }
  return 0;
}
