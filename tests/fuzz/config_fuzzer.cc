// TOML config parsing (common/config): any bytes give a value or an error naming the source, never a
// crash; typed reads of every kind of key behave the same way.
#include <cstddef>
#include <cstdint>
#include <string>

#include "common/config.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const std::string text(reinterpret_cast<const char*>(data), size);
  absl::StatusOr<toml::table> table = freeagent::ParseToml(text, "fuzz.toml");
  if (!table.ok()) {
    if (table.status().message().find("fuzz.toml") == std::string::npos) __builtin_trap();
    return 0;
  }
  freeagent::ConfigReader r(*table, "fuzz.toml");
  std::string s;
  int64_t i = 0;
  uint32_t u = 0;
  bool b = false;
  std::vector<std::string> list;
  std::map<std::string, std::string> map;
  for (const char* key : {"controller", "name", "slots", "insecure", "labels", "worker_tokens", "static.host",
                          "static.port", "qemu.memory_mb", "images.debian.base", "step.run"}) {
    r.Get(key, &s).IgnoreError();
    r.Get(key, &i).IgnoreError();
    r.Get(key, &u).IgnoreError();
    r.Get(key, &b).IgnoreError();
    r.Get(key, &list).IgnoreError();
    r.Get(key, &map).IgnoreError();
  }
  r.RejectUnknown("", {"controller", "name", "slots"}).IgnoreError();
  r.RejectUnknown("static", {"host", "port"}).IgnoreError();
  return 0;
}
