// Wall-clock helpers. Durations use std::chrono::steady_clock; timestamps for records use UnixMillis.
#pragma once

#include <chrono>
#include <cstdint>

namespace freeagent {

inline int64_t UnixMillis() {
  return std::chrono::duration_cast<std::chrono::milliseconds>(
             std::chrono::system_clock::now().time_since_epoch())
      .count();
}

inline int64_t MillisSince(std::chrono::steady_clock::time_point start) {
  return std::chrono::duration_cast<std::chrono::milliseconds>(std::chrono::steady_clock::now() - start)
      .count();
}

}  // namespace freeagent
