// The build description of a project: `freeagent.toml` in the project directory, plus the
// command-line overrides of `freeagent submit`. Produces a JobSpec without the source digest.
//
// freeagent.toml:
//   name = "hello"                  # display name (default: the directory's name)
//   timeout_seconds = 600           # whole attempt; 0 = controller default
//   cancel_grace_seconds = 10       # cancel or timeout: SIGTERM, this long, then SIGKILL
//   idle_timeout_seconds = 0        # a step silent this long ends TIMED_OUT; 0 = none
//   priority = 0
//   [labels]                        # required worker labels
//   os = "linux"
//   [vm]                            # image, cpus, memory_mb, disk_gb
//   [[step]]                        # in order; a failing step stops the build
//   name = "build"
//   run = "make"                    # /bin/sh -c in the workspace
//   timeout_seconds = 120
//   idle_timeout_seconds = 300      # overrides the file's for this step
//   working_dir = "."
//   env = { CFLAGS = "-O2" }
//   [[artifact]]
//   glob = "hello-*.tar.gz"
//   optional = false
//   max_size = 10485760
#pragma once

#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "freeagent/v1/common.pb.h"

namespace freeagent::cli {

inline constexpr char kProjectFile[] = "freeagent.toml";

// Parses the text of a freeagent.toml. `source_name` is used in errors, which name the file, the
// line where known, and the key. Unknown keys are errors (they are usually typos).
absl::StatusOr<freeagent::v1::JobSpec> ParseProjectToml(const std::string& text,
                                                        const std::string& source_name);

// Reads `dir`/freeagent.toml. A missing file gives an empty spec whose name is the directory's
// base name; other errors are returned.
absl::StatusOr<freeagent::v1::JobSpec> LoadProjectSpec(const std::string& dir);

// What `submit` was given on the command line.
struct SubmitOverrides {
  std::string name;
  std::vector<std::string> steps;      // NAME=COMMAND
  std::vector<std::string> labels;     // KEY=VALUE
  std::vector<std::string> artifacts;  // GLOB
  uint32_t timeout_seconds = 0;        // 0 = keep the file's
  uint32_t cancel_grace_seconds = 0;   // 0 = keep the file's
  uint32_t idle_timeout_seconds = 0;   // 0 = keep the file's
};

// Applies the overrides: --step replaces all steps of the file, --artifact replaces all artifact
// rules, --label adds to or replaces single labels. INVALID_ARGUMENT naming the flag for a
// malformed value, and when the result has no step.
absl::Status ApplyOverrides(const SubmitOverrides& overrides, freeagent::v1::JobSpec* spec);

// Splits "KEY=VALUE" at the first '='. The key must be non-empty.
absl::StatusOr<std::pair<std::string, std::string>> SplitKeyValue(const std::string& text,
                                                                  const std::string& flag);

}  // namespace freeagent::cli
