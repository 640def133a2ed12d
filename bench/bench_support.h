// What the benchmarks share: end the run with a message (and the logs of the processes it started)
// when a step fails; a failed step exits 2.
#pragma once

#include <cstdio>
#include <cstdlib>
#include <string>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "tests/support/process_fixture.h"

namespace freeagent::bench {

// Set by main: the program's name for messages and the cluster whose logs a failure prints.
inline const char* g_program = "bench";
inline testing::Cluster* g_cluster = nullptr;

[[noreturn]] inline void Die(const std::string& what, const absl::Status& status) {
  std::fprintf(stderr, "%s: %s: %s\n", g_program, what.c_str(), status.ToString().c_str());
  if (g_cluster != nullptr) std::fprintf(stderr, "%s\n", g_cluster->DumpLogs().c_str());
  std::exit(2);
}

template <typename T>
T Must(absl::StatusOr<T> v, const std::string& what) {
  if (!v.ok()) Die(what, v.status());
  return std::move(*v);
}

inline void Must(const absl::Status& s, const std::string& what) {
  if (!s.ok()) Die(what, s);
}

}  // namespace freeagent::bench
