#include "cli/format.h"

#include <google/protobuf/util/json_util.h>

#include <algorithm>
#include <ctime>
#include <map>

#include "absl/strings/ascii.h"
#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
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
  if (!build.removed_inputs().empty()) {
    std::vector<std::string> removed;
    int64_t at = 0;
    auto note = [&](const std::string& digest, const std::string& what) {
      auto it = build.removed_inputs().find(digest);
      if (digest.empty() || it == build.removed_inputs().end()) return;
      removed.push_back(what);
      at = std::max(at, it->second);
    };
    note(build.spec().source_digest(), "source archive");
    note(build.spec().signing().p12_digest(), "P12");
    for (int i = 0; i < build.spec().signing().profile_digests_size(); ++i) {
      note(build.spec().signing().profile_digests(i), absl::StrCat("provisioning profile ", i + 1));
    }
    row("inputs", absl::StrCat(absl::StrJoin(removed, ", "), " removed by retention at ", LocalTime(at)));
  }
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
      if (!artifact.path().empty() && artifact.path() != artifact.name()) {
        absl::StrAppendFormat(&out, "    path: %s\n", artifact.path());
      }
      for (const std::string& line : DescribeArtifact(artifact)) absl::StrAppend(&out, "    ", line, "\n");
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

std::vector<std::string> DescribeArtifact(const freeagent::v1::ArtifactInfo& artifact) {
  std::map<std::string, std::string> meta(artifact.metadata().begin(), artifact.metadata().end());
  auto take = [&meta](const std::string& key) {
    auto it = meta.find(key);
    if (it == meta.end()) return std::string();
    std::string v = std::move(it->second);
    meta.erase(it);
    return v;
  };
  std::vector<std::string> lines;
  const std::string kind = take("kind");
  const std::string bundle_id = take("bundle_id");
  const std::string version = take("short_version");
  const std::string build = take("build");
  const std::string min_os = take("minimum_os");
  const std::string display = take("display_name");
  if (!bundle_id.empty() || !version.empty() || !build.empty()) {
    std::string app = absl::StrCat("app: ", bundle_id.empty() ? "(no bundle id)" : bundle_id);
    if (!version.empty()) absl::StrAppend(&app, " ", version);
    if (!build.empty()) absl::StrAppend(&app, " (", build, ")");
    if (!min_os.empty()) absl::StrAppend(&app, ", minimum iOS ", min_os);
    if (!display.empty()) absl::StrAppend(&app, ", \"", display, "\"");
    lines.push_back(std::move(app));
  }
  const std::string profile_name = take("profile_name");
  const std::string profile_kind = take("profile_kind");
  const std::string team = take("profile_team_id");
  const std::string uuid = take("profile_uuid");
  const std::string expires = take("profile_expires");
  if (!uuid.empty()) {
    lines.push_back(absl::StrCat("profile: \"", profile_name, "\" ", profile_kind, ", team ", team, ", UUID ", uuid,
                                 ", expires ", expires));
  }
  const std::string entries = take("entries");
  const std::string bytes = take("uncompressed_bytes");
  uint64_t n = 0;
  if (!entries.empty()) {
    lines.push_back(absl::StrCat(kind.empty() ? "zip" : kind, ": ", entries, " entries, ",
                                 absl::SimpleAtoi(bytes, &n) ? HumanBytes(n) : bytes, " uncompressed"));
  }
  for (const auto& [k, v] : meta) lines.push_back(absl::StrCat(k, ": ", v));
  if (!artifact.description_error().empty()) lines.push_back(absl::StrCat("not described: ", artifact.description_error()));
  if (artifact.expired_unix_ms() != 0) {
    lines.push_back(absl::StrCat("removed by retention at ", LocalTime(artifact.expired_unix_ms())));
  }
  return lines;
}

std::string FormatGarbage(const freeagent::v1::CollectGarbageResponse& response) {
  std::string out;
  for (const auto& item : response.items()) {
    absl::StrAppendFormat(&out, "%-16s %-30s %10s  ended %s  %s\n", item.build_id(), item.name(),
                          HumanBytes(item.size()), LocalTime(item.finished_unix_ms()), item.reason());
  }
  std::string limits = absl::StrCat(
      response.retention_days() == 0 ? std::string("no age limit") : absl::StrCat(response.retention_days(), " days"),
      ", ",
      response.max_total_bytes() == 0 ? std::string("no size limit") : HumanBytes(response.max_total_bytes()) + " total");
  uint64_t stale_bytes = 0;
  auto stale_lines = [&](const auto& blobs, const char* kind, const char* used) {
    for (const auto& b : blobs) {
      absl::StrAppendFormat(&out, "%-16s %-30s %10s  last %s %s\n", kind, b.key(), HumanBytes(b.size()), used,
                            LocalTime(b.last_used_unix_ms()));
      stale_bytes += b.size();
    }
  };
  stale_lines(response.partial_uploads(), "partial upload", "written");
  stale_lines(response.unreferenced_blobs(), "unreferenced", "used");
  // Items without a kind come from a controller that removed artifacts only.
  const auto inputs = std::count_if(response.items().begin(), response.items().end(), [](const auto& item) {
    return !item.kind().empty() && item.kind() != "artifact";
  });
  absl::StrAppend(&limits, "; build inputs ",
                  response.input_retention_days() == 0 ? std::string("kept")
                                                       : absl::StrCat(response.input_retention_days(), " days"));
  absl::StrAppend(&out, response.applied() ? "removed " : "would remove ", response.items_size() - inputs,
                  " artifact(s)", inputs > 0 ? absl::StrCat(" and ", inputs, " build input(s)") : "", ", ",
                  HumanBytes(response.removed_bytes()), "; ", HumanBytes(response.kept_bytes()),
                  " of artifacts kept (", limits, ")");
  const int stale = response.partial_uploads_size() + response.unreferenced_blobs_size();
  if (stale > 0) {
    absl::StrAppend(&out, "; ", response.partial_uploads_size(), " partial upload(s) and ",
                    response.unreferenced_blobs_size(), " unreferenced blob(s), ", HumanBytes(stale_bytes),
                    ", unused for over ", response.partial_upload_max_age_hours(), " h");
  }
  absl::StrAppend(&out, response.applied() || response.items_size() + stale == 0 ? "" : "; run with --apply to remove",
                  "\n");
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
