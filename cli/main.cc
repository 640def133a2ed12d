// freeagent: the command-line client of a Free Agent controller.
#include <cstdio>
#include <string>
#include <vector>

#include <CLI/CLI.hpp>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/str_cat.h"
#include "absl/synchronization/mutex.h"
#include "cli/client.h"
#include "cli/commands.h"
#include "cli/signing_check.h"

namespace {

int ReportError(const absl::Status& status) {
  std::string code = absl::StatusCodeToString(status.code());
  std::fprintf(stderr, "freeagent: %s: %s\n", code.c_str(), std::string(status.message()).c_str());
  return freeagent::cli::kExitError;
}

}  // namespace

int main(int argc, char** argv) {
  using freeagent::cli::Commands;
  // This system's Abseil keeps a lock graph for every absl::Mutex gRPC takes (lock-cycle detection):
  // CPU a bulk transfer spends on every chunk.
  absl::SetMutexDeadlockDetectionMode(absl::OnDeadlockCycle::kIgnore);

  CLI::App app{"freeagent: submit builds to a Free Agent controller, follow them, fetch artifacts"};
  app.require_subcommand(1);
  app.fallthrough();
  std::string controller;
  app.add_option("--controller", controller,
                 "controller address (default: $FREEAGENT_CONTROLLER or 127.0.0.1:7070)");
  freeagent::cli::ConnectionFlags connection;
  app.add_flag("--insecure", connection.insecure, "plaintext (loopback demos; also $FREEAGENT_INSECURE=1)");
  app.add_option("--ca-file", connection.ca_file, "PEM roots that verify the controller (also $FREEAGENT_CA_FILE)");
  app.add_option("--token-file", connection.token_file, "file holding the client token (else $FREEAGENT_TOKEN)");

  freeagent::cli::SubmitOptions submit;
  auto* submit_cmd = app.add_subcommand("submit", "pack a project, upload it and start a build");
  submit_cmd->add_option("dir", submit.dir, "project directory (default: .)");
  submit_cmd->add_option("--step", submit.overrides.steps, "NAME=COMMAND; replaces freeagent.toml steps")
      ->allow_extra_args(false);
  submit_cmd->add_option("--label", submit.overrides.labels, "required worker label KEY=VALUE")
      ->allow_extra_args(false);
  submit_cmd->add_option("--artifact", submit.overrides.artifacts, "artifact glob; replaces freeagent.toml")
      ->allow_extra_args(false);
  submit_cmd->add_option("--timeout", submit.overrides.timeout_seconds, "whole-build timeout in seconds");
  submit_cmd->add_option("--cancel-grace", submit.overrides.cancel_grace_seconds,
                         "seconds between SIGTERM and SIGKILL when cancelled or timed out (default 10)");
  submit_cmd->add_option("--idle-timeout", submit.overrides.idle_timeout_seconds,
                         "a step with no output for this many seconds ends TIMED_OUT (default: none)");
  submit_cmd->add_option("--name", submit.overrides.name, "display name");
  submit_cmd->add_flag("--follow,-f", submit.follow, "stream the log; exit 0 iff the build succeeds");
  submit_cmd->add_option("--download", submit.download_dir, "download artifacts into DIR at the end");
  submit_cmd->add_flag("--force", submit.force, "overwrite downloaded files whose content differs");
  submit_cmd->add_flag("--json", submit.json, "print the build (or events with --follow) as JSON");
  submit_cmd->add_option("--p12", submit.signing.p12, "iOS signing identity (.p12), checked here, then uploaded");
  submit_cmd->add_option("--p12-password-env", submit.signing.password_env,
                         "environment variable holding the P12 password");
  submit_cmd->add_option("--profile", submit.signing.profiles, "provisioning profile (repeatable)")
      ->allow_extra_args(false);
  submit_cmd->add_option("--bundle-id", submit.signing.bundle_id, "bundle id the profiles must allow");

  std::string id;
  bool json = false;
  auto add_id = [&](CLI::App* cmd) { cmd->add_option("id", id, "build id")->required(); };
  auto add_json = [&](CLI::App* cmd) { cmd->add_flag("--json", json, "print JSON"); };

  auto* watch_cmd = app.add_subcommand("watch", "follow status and log; exit 0 iff the build succeeds");
  add_id(watch_cmd);
  add_json(watch_cmd);

  bool logs_follow = false;
  auto* logs_cmd = app.add_subcommand("logs", "print the log bytes of a build");
  add_id(logs_cmd);
  logs_cmd->add_flag("-f,--follow", logs_follow, "keep printing until the build ends");

  auto* show_cmd = app.add_subcommand("show", "state, worker, attempts, phases and artifacts of a build");
  add_id(show_cmd);
  add_json(show_cmd);

  std::vector<std::string> states;
  uint32_t limit = 50;
  auto* list_cmd = app.add_subcommand("list", "recent builds, newest first");
  list_cmd->add_option("--state", states, "only builds in this state (repeatable)")->allow_extra_args(false);
  list_cmd->add_option("--limit", limit, "at most this many (default 50)");
  add_json(list_cmd);

  std::string reason = "cancelled from the command line";
  auto* cancel_cmd = app.add_subcommand("cancel", "cancel a build");
  add_id(cancel_cmd);
  cancel_cmd->add_option("--reason", reason, "recorded with the cancel");
  add_json(cancel_cmd);

  std::string out_dir;
  bool force = false;
  auto* artifacts_cmd = app.add_subcommand("artifacts", "download the artifacts of a build");
  add_id(artifacts_cmd);
  artifacts_cmd->add_option("-o,--output", out_dir, "directory to download into")->required();
  artifacts_cmd->add_flag("--force", force, "overwrite files whose content differs");
  add_json(artifacts_cmd);

  auto* workers_cmd = app.add_subcommand("workers", "the workers the controller knows");
  add_json(workers_cmd);

  std::string worker;
  uint32_t drain_timeout = 0;
  auto* drain_cmd = app.add_subcommand("drain", "stop giving jobs to a worker");
  drain_cmd->add_option("worker", worker, "worker id or name")->required();
  drain_cmd->add_option("--timeout", drain_timeout, "cancel running jobs after this many seconds (0 = let them finish)");
  add_json(drain_cmd);

  bool gc_apply = false;
  auto* gc_cmd = app.add_subcommand(
      "gc", "artifacts, stale partial uploads and unreferenced blobs the controller's retention would remove");
  gc_cmd->add_flag("--apply", gc_apply, "remove them now");
  add_json(gc_cmd);

  freeagent::cli::SigningCheckOptions signing_check;
  auto* signing_cmd = app.add_subcommand("signing", "iOS signing material");
  signing_cmd->require_subcommand(1);
  auto* signing_check_cmd =
      signing_cmd->add_subcommand("check", "validate a P12 and provisioning profiles as a worker would");
  signing_check_cmd->add_option("--p12", signing_check.p12, "the signing identity (.p12)")->required();
  signing_check_cmd->add_option("--password-env", signing_check.password_env,
                                "environment variable holding the P12 password (default: no password)");
  signing_check_cmd->add_option("--profile", signing_check.profiles, "a .mobileprovision (repeatable)");
  signing_check_cmd->add_option("--bundle-id", signing_check.bundle_id, "check the profiles allow this bundle id");

  try {
    app.parse(argc, argv);
  } catch (const CLI::CallForHelp& e) {
    return app.exit(e);
  } catch (const CLI::CallForAllHelp& e) {
    return app.exit(e);
  } catch (const CLI::ParseError& e) {
    std::fprintf(stderr, "freeagent: INVALID_ARGUMENT: %s (see freeagent --help)\n", e.what());
    return freeagent::cli::kExitError;
  }

  if (*signing_check_cmd) {
    absl::StatusOr<int> checked = freeagent::cli::SigningCheck(signing_check);
    return checked.ok() ? *checked : ReportError(checked.status());
  }
  absl::StatusOr<std::shared_ptr<grpc::Channel>> channel =
      freeagent::cli::MakeChannel(freeagent::cli::ResolveControllerAddress(controller), connection);
  if (!channel.ok()) return ReportError(channel.status());
  Commands commands(*channel);
  absl::StatusOr<int> result = absl::InternalError("no command");
  if (*submit_cmd) {
    result = commands.Submit(submit);
  } else if (*watch_cmd) {
    result = commands.Watch(id, json);
  } else if (*logs_cmd) {
    result = commands.Logs(id, logs_follow);
  } else if (*show_cmd) {
    result = commands.Show(id, json);
  } else if (*list_cmd) {
    result = commands.List(states, limit, json);
  } else if (*cancel_cmd) {
    result = commands.Cancel(id, reason, json);
  } else if (*artifacts_cmd) {
    result = commands.Artifacts(id, out_dir, force, json);
  } else if (*workers_cmd) {
    result = commands.Workers(json);
  } else if (*drain_cmd) {
    result = commands.Drain(worker, drain_timeout, json);
  } else if (*gc_cmd) {
    result = commands.Gc(gc_apply, json);
  }
  if (!result.ok()) return ReportError(result.status());
  return *result;
}
