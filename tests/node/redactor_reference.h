// The redactor's definition without streaming, for tests and the fuzzer: every byte inside any
// occurrence of any form is masked and each maximal masked run becomes one marker.
#pragma once

#include <string>
#include <string_view>
#include <vector>

#include "node/redactor.h"

namespace freeagent::node::testing {

inline std::string ReferenceRedaction(const std::vector<std::string>& forms, std::string_view data) {
  std::vector<bool> mask(data.size(), false);
  for (size_t i = 0; i < data.size(); ++i) {
    for (const std::string& f : forms) {
      if (i + f.size() <= data.size() && data.compare(i, f.size(), f) == 0) {
        for (size_t k = i; k < i + f.size(); ++k) mask[k] = true;
      }
    }
  }
  std::string out;
  for (size_t i = 0; i < data.size(); ++i) {
    if (!mask[i]) {
      out += data[i];
    } else if (i == 0 || !mask[i - 1]) {
      out += Redactor::kReplacement;
    }
  }
  return out;
}

}  // namespace freeagent::node::testing
