// An artifact rule in one call, for the artifacts tests.
#pragma once

#include <cstdint>
#include <string>

#include "freeagent/v1/common.pb.h"

namespace freeagent::artifacts::testing {

inline freeagent::v1::ArtifactRule Rule(const std::string& glob, bool optional = false, uint64_t max = 0) {
  freeagent::v1::ArtifactRule r;
  r.set_glob(glob);
  r.set_optional(optional);
  r.set_max_size_bytes(max);
  return r;
}

}  // namespace freeagent::artifacts::testing
