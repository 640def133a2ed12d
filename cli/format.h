// Human-readable and JSON renderings of builds and workers for the CLI.
#pragma once

#include <string>
#include <vector>

#include <google/protobuf/message.h>

#include "absl/status/statusor.h"
#include "freeagent/v1/build.pb.h"
#include "freeagent/v1/fleet.pb.h"

namespace freeagent::cli {

// "RUNNING", "SUCCEEDED", ... (the enum name without its prefix).
std::string StateName(freeagent::v1::JobState state);
// "PROVISIONING_VM", ...; "" for PHASE_UNSPECIFIED.
std::string PhaseName(freeagent::v1::Phase phase);
std::string WorkerStateName(freeagent::v1::WorkerState state);

// Parses "running", "RUNNING" or "JOB_STATE_RUNNING". INVALID_ARGUMENT listing the choices.
absl::StatusOr<freeagent::v1::JobState> ParseState(const std::string& text);

bool IsTerminal(freeagent::v1::JobState state);

// "850ms", "12.3s", "4m05s", "2h03m".
std::string FormatDuration(int64_t millis);

// The one-line status shown while following a build, e.g. "==> RUNNING step 1/2 build",
// "==> FAILED: step build exited with 2".
std::string StatusLine(const freeagent::v1::Build& build);

// The line showing the worker's latest note (`Build.message`), e.g. "==> build succeeded"; "" if none.
std::string NoteLine(const freeagent::v1::Build& build);

// Prints a status line only when what it says changes, and each note of an attempt once.
class StatusLineTracker {
 public:
  // Returns the line to print for `build`, or "" if nothing visible changed.
  std::string Next(const freeagent::v1::Build& build);
  // Returns the note line to print for `build`, or "" if it has no note or it was shown already.
  std::string NextNote(const freeagent::v1::Build& build);
  // The lines `build` brings, in reading order: the new state first, except that the last note of a
  // finished attempt comes before its outcome.
  std::vector<std::string> Lines(const freeagent::v1::Build& build);

 private:
  std::string last_;
  std::string last_note_;  // attempt and message of the note shown last
};

// `show`: state, worker, attempts, timings, the latest note while running, phases with durations,
// artifacts, events.
std::string FormatBuildDetails(const freeagent::v1::Build& build);
// An artifact's description as lines without indentation or newline: the app (bundle id, version,
// build, minimum OS, display name), the embedded profile, the zip directory, other metadata, why it
// could not be described, when retention removed it. Empty when there is nothing to say.
std::vector<std::string> DescribeArtifact(const freeagent::v1::ArtifactInfo& artifact);
// `gc`: one line per artifact removed (or that would be), then a summary line.
std::string FormatGarbage(const freeagent::v1::CollectGarbageResponse& response);
// `list`: one line per build under a header.
std::string FormatBuildTable(const std::vector<freeagent::v1::Build>& builds);
// `workers`: one line per worker under a header.
std::string FormatWorkerTable(const std::vector<freeagent::v1::WorkerInfo>& workers,
                              int64_t now_unix_ms);

// One line of JSON (proto3 JSON mapping, original field names).
std::string ToJson(const google::protobuf::Message& message);

}  // namespace freeagent::cli
