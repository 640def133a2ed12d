#include "cli/project.h"

#include <filesystem>

#include "absl/strings/str_cat.h"
#include "common/config.h"
#include "common/fs.h"
#include "common/status_macros.h"

namespace freeagent::cli {
namespace {

using freeagent::v1::ArtifactRule;
using freeagent::v1::JobSpec;
using freeagent::v1::Step;

// "<file>:<line> [[step]] #2" so errors inside an array of tables point at the entry.
std::string EntrySource(const std::string& source_name, const toml::node& node, const char* what,
                        size_t index) {
  return absl::StrCat(source_name, ":", node.source().begin.line, " [[", what, "]] #", index + 1);
}

// Returns the array of tables under `key`, or an empty view when absent.
absl::StatusOr<const toml::array*> TableArray(const toml::table& table, const std::string& key,
                                              const ConfigReader& reader) {
  const toml::node* node = table.get(key);
  if (node == nullptr) return nullptr;
  const toml::array* array = node->as_array();
  if (array == nullptr || !array->is_array_of_tables()) {
    return reader.Error(key, absl::StrCat("expected [[", key, "]] tables"));
  }
  return array;
}

absl::Status ParseStep(const toml::table& table, const std::string& source, Step* step) {
  ConfigReader reader(table, source);
  RETURN_IF_ERROR(
      reader.RejectUnknown("", {"name", "run", "timeout_seconds", "idle_timeout_seconds", "env", "working_dir"}));
  std::string name, run, working_dir;
  uint32_t timeout = 0, idle = 0;
  std::map<std::string, std::string> env;
  RETURN_IF_ERROR(reader.Get("name", &name));
  RETURN_IF_ERROR(reader.Get("run", &run));
  RETURN_IF_ERROR(reader.Get("timeout_seconds", &timeout));
  RETURN_IF_ERROR(reader.Get("idle_timeout_seconds", &idle));
  RETURN_IF_ERROR(reader.Get("working_dir", &working_dir));
  RETURN_IF_ERROR(reader.Get("env", &env));
  if (name.empty()) return reader.Error("name", "is required");
  if (run.empty()) return reader.Error("run", "is required");
  step->set_name(name);
  step->set_run(run);
  step->set_timeout_seconds(timeout);
  step->set_idle_timeout_seconds(idle);
  step->set_working_dir(working_dir);
  for (const auto& [k, v] : env) (*step->mutable_env())[k] = v;
  return absl::OkStatus();
}

absl::Status ParseArtifact(const toml::table& table, const std::string& source,
                           ArtifactRule* rule) {
  ConfigReader reader(table, source);
  RETURN_IF_ERROR(reader.RejectUnknown("", {"glob", "optional", "max_size"}));
  std::string glob;
  bool optional = false;
  int64_t max_size = 0;
  RETURN_IF_ERROR(reader.Get("glob", &glob));
  RETURN_IF_ERROR(reader.Get("optional", &optional));
  RETURN_IF_ERROR(reader.Get("max_size", &max_size));
  if (glob.empty()) return reader.Error("glob", "is required");
  if (max_size < 0) return reader.Error("max_size", "must not be negative");
  rule->set_glob(glob);
  rule->set_optional(optional);
  rule->set_max_size_bytes(static_cast<uint64_t>(max_size));
  return absl::OkStatus();
}

}  // namespace

absl::StatusOr<JobSpec> ParseProjectToml(const std::string& text, const std::string& source_name) {
  ASSIGN_OR_RETURN(toml::table table, ParseToml(text, source_name));
  ConfigReader reader(table, source_name);
  RETURN_IF_ERROR(reader.RejectUnknown(
      "", {"name", "timeout_seconds", "cancel_grace_seconds", "idle_timeout_seconds", "priority", "preset",
           "labels", "vm", "step", "artifact"}));
  RETURN_IF_ERROR(reader.RejectUnknown("vm", {"image", "cpus", "memory_mb", "disk_gb"}));

  JobSpec spec;
  std::string name, preset, image;
  uint32_t timeout = 0, grace = 0, idle = 0, cpus = 0, memory_mb = 0, disk_gb = 0;
  int64_t priority = 0;
  std::map<std::string, std::string> labels;
  RETURN_IF_ERROR(reader.Get("name", &name));
  RETURN_IF_ERROR(reader.Get("preset", &preset));
  RETURN_IF_ERROR(reader.Get("timeout_seconds", &timeout));
  RETURN_IF_ERROR(reader.Get("cancel_grace_seconds", &grace));
  RETURN_IF_ERROR(reader.Get("idle_timeout_seconds", &idle));
  RETURN_IF_ERROR(reader.Get("priority", &priority));
  RETURN_IF_ERROR(reader.Get("labels", &labels));
  RETURN_IF_ERROR(reader.Get("vm.image", &image));
  RETURN_IF_ERROR(reader.Get("vm.cpus", &cpus));
  RETURN_IF_ERROR(reader.Get("vm.memory_mb", &memory_mb));
  RETURN_IF_ERROR(reader.Get("vm.disk_gb", &disk_gb));
  spec.set_name(name);
  spec.set_preset(preset);
  spec.set_timeout_seconds(timeout);
  spec.set_cancel_grace_seconds(grace);
  spec.set_idle_timeout_seconds(idle);
  spec.set_priority(static_cast<int32_t>(priority));
  for (const auto& [k, v] : labels) (*spec.mutable_required_labels())[k] = v;
  spec.mutable_vm()->set_image(image);
  spec.mutable_vm()->set_cpus(cpus);
  spec.mutable_vm()->set_memory_mb(memory_mb);
  spec.mutable_vm()->set_disk_gb(disk_gb);

  ASSIGN_OR_RETURN(const toml::array* steps, TableArray(table, "step", reader));
  if (steps != nullptr) {
    for (size_t i = 0; i < steps->size(); ++i) {
      const toml::node& node = *steps->get(i);
      RETURN_IF_ERROR(ParseStep(*node.as_table(), EntrySource(source_name, node, "step", i),
                                spec.add_steps()));
    }
  }
  ASSIGN_OR_RETURN(const toml::array* artifacts, TableArray(table, "artifact", reader));
  if (artifacts != nullptr) {
    for (size_t i = 0; i < artifacts->size(); ++i) {
      const toml::node& node = *artifacts->get(i);
      RETURN_IF_ERROR(ParseArtifact(*node.as_table(),
                                    EntrySource(source_name, node, "artifact", i),
                                    spec.add_artifacts()));
    }
  }
  return spec;
}

absl::StatusOr<JobSpec> LoadProjectSpec(const std::string& dir) {
  std::error_code ec;
  std::filesystem::path root = std::filesystem::absolute(dir, ec);
  if (ec || !std::filesystem::is_directory(root, ec)) {
    return absl::NotFoundError(absl::StrCat("project directory ", dir, " does not exist"));
  }
  std::string base = root.lexically_normal().filename().string();
  if (base.empty()) base = root.lexically_normal().parent_path().filename().string();

  std::string path = (root / kProjectFile).string();
  JobSpec spec;
  if (std::filesystem::exists(path, ec)) {
    ASSIGN_OR_RETURN(std::string text, ReadFile(path));
    ASSIGN_OR_RETURN(spec, ParseProjectToml(text, path));
  }
  if (spec.name().empty()) spec.set_name(base);
  return spec;
}

absl::StatusOr<std::pair<std::string, std::string>> SplitKeyValue(const std::string& text,
                                                                  const std::string& flag) {
  size_t eq = text.find('=');
  if (eq == std::string::npos || eq == 0) {
    return absl::InvalidArgumentError(
        absl::StrCat(flag, " \"", text, "\": expected KEY=VALUE"));
  }
  return std::make_pair(text.substr(0, eq), text.substr(eq + 1));
}

absl::Status ApplyOverrides(const SubmitOverrides& overrides, JobSpec* spec) {
  if (!overrides.name.empty()) spec->set_name(overrides.name);
  if (!overrides.steps.empty()) {
    spec->clear_steps();
    for (const std::string& flag : overrides.steps) {
      ASSIGN_OR_RETURN(auto kv, SplitKeyValue(flag, "--step"));
      if (kv.second.empty()) {
        return absl::InvalidArgumentError(absl::StrCat("--step ", kv.first, ": empty command"));
      }
      Step* step = spec->add_steps();
      step->set_name(kv.first);
      step->set_run(kv.second);
    }
  }
  for (const std::string& flag : overrides.labels) {
    ASSIGN_OR_RETURN(auto kv, SplitKeyValue(flag, "--label"));
    (*spec->mutable_required_labels())[kv.first] = kv.second;
  }
  if (!overrides.artifacts.empty()) {
    spec->clear_artifacts();
    for (const std::string& glob : overrides.artifacts) {
      if (glob.empty()) return absl::InvalidArgumentError("--artifact: empty glob");
      spec->add_artifacts()->set_glob(glob);
    }
  }
  if (overrides.timeout_seconds > 0) spec->set_timeout_seconds(overrides.timeout_seconds);
  if (overrides.cancel_grace_seconds > 0) spec->set_cancel_grace_seconds(overrides.cancel_grace_seconds);
  if (overrides.idle_timeout_seconds > 0) spec->set_idle_timeout_seconds(overrides.idle_timeout_seconds);
  if (spec->steps_size() == 0 && spec->preset().empty()) {
    return absl::InvalidArgumentError(
        "no steps: add [[step]] entries to freeagent.toml or pass --step NAME=COMMAND");
  }
  return absl::OkStatus();
}

}  // namespace freeagent::cli
