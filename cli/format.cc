#include "cli/format.h"

#include <google/protobuf/util/json_util.h>

#include <algorithm>
#include <ctime>
#include <map>

#include "absl/strings/ascii.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_join.h"
#include "cli/progress.h"

namespace freeagent::cli {

using freeagent::v1::Build;
using freeagent::v1::JobState;
using freeagent::v1::Phase;
using freeagent::v1::WorkerInfo;

namespace {

std::string StripPrefix(const std::string& name, const std::string& prefix) {
  return absl::StartsWith(name, prefix) ? name.substr(prefix.size()) : name;
}

std::string LocalTime(int64_t unix_ms) {
  if (unix_ms <= 0) return "-";
  std::time_t t = static_cast<std::time_t>(unix_ms / 1000);
  std::tm tm{};
  localtime_r(&t, &tm);
  char buf[32];
  std::strftime(buf, sizeof buf, "%Y-%m-%d %H:%M:%S", &tm);
  return buf;
}

std::string Labels(const google::protobuf::Map<std::string, std::string>& labels) {
  std::map<std::string, std::string> sorted(labels.begin(), labels.end());
  return absl::StrJoin(sorted, ",", absl::PairFormatter("="));
}

// Wall time of a build so far or in total.
std::string Elapsed(const Build& build) {
  if (build.started_unix_ms() <= 0) return "-";
  int64_t end = build.finished_unix_ms() > 0 ? build.finished_unix_ms() : 0;
  if (end == 0) return "-";
  return FormatDuration(end - build.started_unix_ms());
}

}  // namespace

std::string StateName(JobState state) {
  return StripPrefix(freeagent::v1::JobState_Name(state), "JOB_STATE_");
}

std::string PhaseName(Phase phase) {
  if (phase == freeagent::v1::PHASE_UNSPECIFIED) return "";
  return StripPrefix(freeagent::v1::Phase_Name(phase), "PHASE_");
}

std::string WorkerStateName(freeagent::v1::WorkerState state) {
  return StripPrefix(freeagent::v1::WorkerState_Name(state), "WORKER_STATE_");
}

absl::StatusOr<JobState> ParseState(const std::string& text) {
  std::string upper = absl::AsciiStrToUpper(text);
  if (!absl::StartsWith(upper, "JOB_STATE_")) upper = "JOB_STATE_" + upper;
  JobState state;
  if (freeagent::v1::JobState_Parse(upper, &state) && state != freeagent::v1::JOB_STATE_UNSPECIFIED) {
    return state;
  }
  return absl::InvalidArgumentError(absl::StrCat(
      "--state ", text,
      ": expected one of queued, assigned, running, succeeded, failed, cancelled, timed_out, error"));
}

bool IsTerminal(JobState state) {
  switch (state) {
    case freeagent::v1::JOB_STATE_SUCCEEDED:
    case freeagent::v1::JOB_STATE_FAILED:
    case freeagent::v1::JOB_STATE_CANCELLED:
    case freeagent::v1::JOB_STATE_TIMED_OUT:
    case freeagent::v1::JOB_STATE_ERROR:
      return true;
    default:
      return false;
  }
}

std::string FormatDuration(int64_t millis) {
  if (millis < 0) millis = 0;
  if (millis < 1000) return absl::StrCat(millis, "ms");
  if (millis < 60 * 1000) return absl::StrFormat("%.1fs", millis / 1000.0);
  int64_t seconds = millis / 1000;
  if (seconds < 3600) return absl::StrFormat("%dm%02ds", seconds / 60, seconds % 60);
  return absl::StrFormat("%dh%02dm", seconds / 3600, (seconds % 3600) / 60);
}

std::string StatusLine(const Build& build) {
  std::string line = "==> " + StateName(build.state());
  switch (build.state()) {
    case freeagent::v1::JOB_STATE_RUNNING:
      if (build.phase() == freeagent::v1::PHASE_RUNNING && build.step_count() > 0) {
        absl::StrAppend(&line, " step ", build.step_index(), "/", build.step_count(), " ",
                        build.step_name());
      } else if (build.phase() != freeagent::v1::PHASE_UNSPECIFIED) {
        absl::StrAppend(&line, " ", PhaseName(build.phase()));
      }
      break;
    case freeagent::v1::JOB_STATE_ASSIGNED:
      if (!build.worker_id().empty()) absl::StrAppend(&line, " to ", build.worker_id());
      break;
    case freeagent::v1::JOB_STATE_SUCCEEDED:
      if (build.finished_unix_ms() > 0 && build.started_unix_ms() > 0) {
        absl::StrAppend(&line, " in ", FormatDuration(build.finished_unix_ms() - build.started_unix_ms()));
      }
      break;
    case freeagent::v1::JOB_STATE_FAILED:
      if (!build.failed_step().empty()) {
        absl::StrAppend(&line, ": step ", build.failed_step(), " exited with ", build.exit_code());
      }
      else if (!build.error().empty()) absl::StrAppend(&line, ": ", build.error());
      break;
    default:
      if (IsTerminal(build.state()) && !build.error().empty()) {
        absl::StrAppend(&line, ": ", build.error());
      }
      break;
  }
  if (build.attempt() > 1) absl::StrAppend(&line, " (attempt ", build.attempt(), ")");
  return line;
}

std::string NoteLine(const Build& build) {
  if (build.message().empty()) return "";
  return "==> " + build.message();
}

std::string StatusLineTracker::Next(const Build& build) {
  std::string line = StatusLine(build);
  if (line == last_) return "";
  last_ = line;
  return line;
}

std::string StatusLineTracker::NextNote(const Build& build) {
  if (build.message().empty()) return "";
  std::string key = absl::StrCat(build.attempt(), "\n", build.message());
  if (key == last_note_) return "";
  last_note_ = std::move(key);
  return NoteLine(build);
}

std::vector<std::string> StatusLineTracker::Lines(const Build& build) {
  std::string status = Next(build);
  std::string note = NextNote(build);
  std::vector<std::string> lines;
  if (IsTerminal(build.state())) std::swap(status, note);
  if (!status.empty()) lines.push_back(std::move(status));
  if (!note.empty()) lines.push_back(std::move(note));
  return lines;
}

std::string FormatBuildDetails(const Build& build) {
  std::string out;
  auto row = [&out](const std::string& key, const std::string& value) {
    absl::StrAppendFormat(&out, "%-10s %s\n", key + ":", value);
  };
  row("build", build.id());
  row("name", build.spec().name());
  std::string state = StateName(build.state());
  if (build.state() == freeagent::v1::JOB_STATE_RUNNING) state = StatusLine(build).substr(4);
  row("state", state);
  std::string failed;
  if (!build.failed_step().empty()) {
    failed = absl::StrCat("step ", build.failed_step(), " exited with ", build.exit_code());
    row("failed", failed);
  }
  if (!build.error().empty() && build.error() != failed) row("error", build.error());
  row("worker", build.worker_id().empty() ? "-" : build.worker_id());
  row("attempts", absl::StrCat(build.attempt()));
  row("created", LocalTime(build.created_unix_ms()));
  row("started", LocalTime(build.started_unix_ms()));
  row("finished", LocalTime(build.finished_unix_ms()));
  row("duration", Elapsed(build));
  row("log", HumanBytes(build.log_size()));
  if (!IsTerminal(build.state()) && !build.message().empty()) row("note", build.message());
  if (!build.spec().required_labels().empty()) row("labels", Labels(build.spec().required_labels()));
  if (build.spec().steps_size() > 0) {
    out += "steps:\n";
    for (int i = 0; i < build.spec().steps_size(); ++i) {
      const auto& step = build.spec().steps(i);
      absl::StrAppendFormat(&out, "  %d. %-16s %s\n", i + 1, step.name(), step.run());
    }
  }
  if (build.phases_size() > 0) {
    out += "phases:\n";
    for (const auto& phase : build.phases()) {
      absl::StrAppendFormat(&out, "  %-22s %10s\n", PhaseName(phase.phase()),
                            FormatDuration(phase.duration_ms()));
    }
  }
  if (build.artifacts_size() > 0) {
    out += "artifacts:\n";
    for (const auto& artifact : build.artifacts()) {
      absl::StrAppendFormat(&out, "  %-30s %10s  sha256 %s\n", artifact.name(),
                            HumanBytes(artifact.size()), artifact.sha256());
      std::map<std::string, std::string> meta(artifact.metadata().begin(), artifact.metadata().end());
      for (const auto& [k, v] : meta) absl::StrAppendFormat(&out, "    %s: %s\n", k, v);
    }
  }
  if (build.events_size() > 0) {
    out += "events:\n";
    for (const auto& event : build.events()) {
      std::string what = StateName(event.state());
      if (event.phase() != freeagent::v1::PHASE_UNSPECIFIED) absl::StrAppend(&what, " ", PhaseName(event.phase()));
      if (!event.message().empty()) absl::StrAppend(&what, ": ", event.message());
      absl::StrAppendFormat(&out, "  %s  #%d  %s\n", LocalTime(event.unix_ms()), event.attempt(), what);
    }
  }
  return out;
}

std::string FormatBuildTable(const std::vector<Build>& builds) {
  std::string out = absl::StrFormat("%-16s %-10s %-20s %-20s %-19s %s\n", "ID", "STATE", "NAME",
                                    "WORKER", "CREATED", "DURATION");
  for (const Build& b : builds) {
    absl::StrAppendFormat(&out, "%-16s %-10s %-20s %-20s %-19s %s\n", b.id(), StateName(b.state()),
                          b.spec().name(), b.worker_id().empty() ? "-" : b.worker_id(),
                          LocalTime(b.created_unix_ms()), Elapsed(b));
  }
  return out;
}

std::string FormatWorkerTable(const std::vector<WorkerInfo>& workers, int64_t now_unix_ms) {
  std::string out = absl::StrFormat("%-20s %-20s %-9s %-6s %-10s %-30s %s\n", "ID", "NAME", "STATE",
                                    "SLOTS", "HEARTBEAT", "LABELS", "RUNNING");
  for (const WorkerInfo& w : workers) {
    std::string beat = w.last_heartbeat_unix_ms() > 0
                           ? FormatDuration(now_unix_ms - w.last_heartbeat_unix_ms()) + " ago"
                           : "-";
    absl::StrAppendFormat(&out, "%-20s %-20s %-9s %-6s %-10s %-30s %s\n", w.id(), w.name(),
                          WorkerStateName(w.state()), absl::StrCat(w.slots_used(), "/", w.slots()),
                          beat, Labels(w.labels()), absl::StrJoin(w.running_job_ids(), ","));
  }
  return out;
}

std::string ToJson(const google::protobuf::Message& message) {
  google::protobuf::util::JsonPrintOptions options;
  options.preserve_proto_field_names = true;
  std::string out;
  if (!google::protobuf::util::MessageToJsonString(message, &out, options).ok()) return "{}";
  return out;
}

}  // namespace freeagent::cli
