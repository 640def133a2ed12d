#include "node/job_runner.h"

#include <map>
#include <optional>
#include <thread>

#include "absl/cleanup/cleanup.h"
#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"
#include "artifacts/collector.h"
#include "common/archive.h"
#include "common/clock.h"
#include "common/fs.h"
#include "common/status_macros.h"
#include "signing/keychain_installer.h"
#include "signing/validate.h"

namespace freeagent::node {

namespace v1 = ::freeagent::v1;

namespace {

// A step's working dir must stay inside the workspace.
bool SafeRelativeDir(const std::string& dir) {
  if (dir.empty()) return true;
  if (dir[0] == '/') return false;
  size_t pos = 0;
  while (pos <= dir.size()) {
    size_t slash = dir.find('/', pos);
    if (slash == std::string::npos) slash = dir.size();
    if (dir.compare(pos, slash - pos, "..") == 0 && slash - pos == 2) return false;
    pos = slash + 1;
  }
  return true;
}

std::string SecondsText(std::chrono::milliseconds d) {
  return absl::StrCat(d.count() / 1000.0, " s");
}

// The job's signing material, downloaded into the job's private dir and validated on the host.
struct SigningFiles {
  signing::SigningBundle bundle;
  std::string p12_path;
  std::vector<std::string> profile_paths;
};

// Runs at PREPARING, before any machine exists. Files are named by digest prefix in messages. A blob
// that cannot be fetched is returned as is; material that does not parse or validate is
// FAILED_PRECONDITION.
absl::StatusOr<SigningFiles> FetchSigning(const v1::SigningMaterial& m, const std::string& job_dir,
                                          artifacts::BlobClient& blobs, const CancellationToken& cancel) {
  if (m.p12_digest().empty()) return absl::FailedPreconditionError("signing: provisioning profiles without a P12");
  SigningFiles files;
  std::string dir = job_dir + "/signing";
  RETURN_IF_ERROR(MakeDirs(dir, 0700));
  files.p12_path = absl::StrCat(dir, "/identity-", m.p12_digest().substr(0, 12), ".p12");
  RETURN_IF_ERROR(blobs.DownloadFile(m.p12_digest(), files.p12_path, cancel).status());
  for (const std::string& digest : m.profile_digests()) {
    files.profile_paths.push_back(absl::StrCat(dir, "/profile-", digest.substr(0, 12), ".mobileprovision"));
    RETURN_IF_ERROR(blobs.DownloadFile(digest, files.profile_paths.back(), cancel).status());
  }
  absl::StatusOr<signing::SigningBundle> bundle =
      signing::LoadBundleFiles(files.p12_path, m.p12_password(), files.profile_paths, m.bundle_id());
  if (!bundle.ok()) return absl::FailedPreconditionError(absl::StrCat("signing: ", bundle.status().message()));
  absl::Status valid = signing::Validate(*bundle, absl::Now());
  if (!valid.ok()) return absl::FailedPreconditionError(absl::StrCat("signing: ", valid.message()));
  files.bundle = *std::move(bundle);
  return files;
}

}  // namespace

JobRunner::JobRunner(v1::BuildJob job, JobRunnerOptions options, vm::VmDriver* driver,
                     artifacts::BlobClient* blobs, JobCallbacks callbacks)
    : job_(std::move(job)),
      options_(std::move(options)),
      driver_(driver),
      blobs_(blobs),
      callbacks_(std::move(callbacks)),
      redactor_(SecretValues(job_)),
      note_redactor_(SecretValues(job_)) {}

void JobRunner::Cancel(const std::string& reason, std::chrono::seconds grace) {
  if (grace.count() > 0) grace_ms_ = std::chrono::duration_cast<std::chrono::milliseconds>(grace).count();
  cancel_.Cancel(reason);
}

void JobRunner::Log(std::string_view bytes) {
  if (!callbacks_.log) return;
  if (!redactor_.active()) {
    EmitLog(bytes);
    return;
  }
  std::string out = redactor_.Process(bytes);
  if (!out.empty()) EmitLog(out);
}

void JobRunner::EmitLog(std::string_view bytes) {
  if (log_cut_ || bytes.empty()) return;
  const uint64_t limit = options_.max_log_bytes;
  if (limit == 0 || bytes.size() <= limit - log_bytes_) {
    log_bytes_ += bytes.size();
    callbacks_.log(bytes);
    return;
  }
  // Only the redactor's output is cut, so a secret is never exposed by the cut.
  callbacks_.log(bytes.substr(0, static_cast<size_t>(limit - log_bytes_)));
  log_bytes_ = limit;
  log_cut_ = true;
  const std::string size = limit % (1 << 20) == 0 ? absl::StrCat(limit >> 20, " MiB") : absl::StrCat(limit, " bytes");
  callbacks_.log(absl::StrCat("\n[freeagent: this attempt's log reached its limit of ", size,
                              "; further output is dropped, the build goes on]\n"));
  Note(absl::StrCat("the log reached its limit of ", size, "; further output of this attempt is dropped"));
}

void JobRunner::Note(std::string_view text) {
  // A note is whole: nothing is held back for a later one.
  std::string message = note_redactor_.Process(text);
  message += note_redactor_.Flush();
  SendProgress(message);
}

void JobRunner::AnnounceArtifact(const v1::ArtifactInfo& artifact) {
  SendProgress(absl::StrCat(artifact.upload_id().empty() ? "stored artifact " : "uploading artifact ", artifact.path()),
               &artifact);
}

void JobRunner::SendProgress(const std::string& message, const v1::ArtifactInfo* artifact) {
  if (!callbacks_.progress) return;
  v1::JobProgress p;
  p.set_job_id(job_.job_id());
  p.set_attempt(job_.attempt());
  p.set_phase(phase_.load());
  p.set_step_index(step_index_);
  p.set_step_count(static_cast<uint32_t>(job_.spec().steps_size()));
  p.set_step_name(step_name_);
  p.set_message(message);
  p.set_unix_ms(UnixMillis());
  if (artifact != nullptr) *p.mutable_uploading_artifact() = *artifact;
  callbacks_.progress(p);
}

std::vector<std::string> JobRunner::SecretValues(const v1::BuildJob& job) {
  std::vector<std::string> values;
  for (const auto& [k, v] : job.spec().secret_env()) values.push_back(v);
  if (!job.spec().signing().p12_password().empty()) values.push_back(job.spec().signing().p12_password());
  return values;
}

void JobRunner::EndPhase() {
  if (!in_phase_) return;
  phases_.back().set_duration_ms(MillisSince(phase_start_));
  in_phase_ = false;
}

void JobRunner::EnterPhase(v1::Phase phase, const std::string& message, uint32_t step_index,
                           const std::string& step_name) {
  if (phase_.load() != phase || !in_phase_) {
    EndPhase();
    v1::PhaseDuration d;
    d.set_phase(phase);
    d.set_started_unix_ms(UnixMillis());
    phases_.push_back(d);
    phase_start_ = std::chrono::steady_clock::now();
    in_phase_ = true;
    phase_ = phase;
  }
  step_index_ = step_index;
  step_name_ = step_name;
  SendProgress(message);
}

JobRunner::Outcome JobRunner::CancelledOutcome() {
  Outcome o;
  {
    std::lock_guard<std::mutex> lock(vm_exit_mu_);
    if (!vm_exit_.empty()) {
      o.state = v1::JOB_STATE_ERROR;
      o.error = vm_exit_;
      return o;
    }
  }
  if (timed_out_.load()) {
    o.state = v1::JOB_STATE_TIMED_OUT;
    o.error = cancel_.Reason();
  } else {
    o.state = v1::JOB_STATE_CANCELLED;
    o.error = absl::StrCat("cancelled: ", cancel_.Reason());
  }
  return o;
}

JobRunner::Outcome JobRunner::FromStatus(const absl::Status& status, v1::JobState state_if_not_cancelled) {
  if (cancel_.IsCancelled()) return CancelledOutcome();
  Outcome o;
  o.state = state_if_not_cancelled;
  o.error = std::string(status.message());
  return o;
}

v1::JobResult JobRunner::Run() {
  v1::JobResult result;
  result.set_job_id(job_.job_id());
  result.set_attempt(job_.attempt());

  std::chrono::seconds timeout = job_.spec().timeout_seconds() > 0
                                     ? std::chrono::seconds(job_.spec().timeout_seconds())
                                     : options_.default_timeout;
  job_timeout_ = timeout;
  deadline_ = Deadline::After(timeout);
  // The whole-attempt timeout works like a cancel, so every phase (not only steps) honours it.
  CancellationToken done;
  std::thread watchdog([this, done, timeout] {
    if (done.WaitFor(deadline_.Remaining())) return;
    timed_out_ = true;
    cancel_.Cancel(absl::StrCat("job timed out after ", timeout.count(), " s"));
  });
  absl::Cleanup stop_watchdog = [&] {
    done.Cancel("finished");
    watchdog.join();
  };

  Outcome outcome = RunPhases(&result);

  if (phase_.load() != v1::PHASE_CLEANING_UP) EnterPhase(v1::PHASE_CLEANING_UP, "cleaning up");
  if (!job_dir_.empty()) {
    absl::Status s = RemoveTree(job_dir_);
    if (!s.ok()) Note(absl::StrCat("cleanup: ", s.message()));
  }
  EndPhase();

  switch (outcome.state) {
    case v1::JOB_STATE_SUCCEEDED: Note("build succeeded"); break;
    case v1::JOB_STATE_FAILED: Note(absl::StrCat("build failed: ", outcome.error)); break;
    case v1::JOB_STATE_CANCELLED: Note(absl::StrCat("build ", outcome.error)); break;
    case v1::JOB_STATE_TIMED_OUT: Note(absl::StrCat("build timed out: ", outcome.error)); break;
    default: Note(absl::StrCat("build error: ", outcome.error)); break;
  }
  if (callbacks_.log) {
    EmitLog(redactor_.Flush());
  }
  result.set_outcome(outcome.state);
  result.set_exit_code(outcome.exit_code);
  result.set_failed_step(outcome.failed_step);
  result.set_error(outcome.error);
  for (const v1::PhaseDuration& d : phases_) *result.add_phases() = d;
  return result;
}

JobRunner::Outcome JobRunner::RunPhases(v1::JobResult* result) {
  const v1::JobSpec& spec = job_.spec();
  std::string source_archive;

  EnterPhase(v1::PHASE_PREPARING, "fetching source");
  Note(absl::StrCat("job ", job_.job_id(), " attempt ", job_.attempt(), " on ", options_.worker_name, " (",
                    driver_->name(), " driver)"));
  if (spec.has_signing() && (!spec.signing().p12_digest().empty() || spec.signing().profile_digests_size() > 0) &&
      driver_->name() == "local") {
    return Outcome{v1::JOB_STATE_ERROR, 0, "", "signing needs a macOS VM driver"};
  }
  absl::Status s = MakeDirs(options_.jobs_dir, 0700);
  if (!s.ok()) return FromStatus(s, v1::JOB_STATE_ERROR);
  absl::StatusOr<std::string> dir =
      MakePrivateTempDir(options_.jobs_dir, absl::StrCat(job_.job_id(), "-", job_.attempt(), "-"));
  if (!dir.ok()) return FromStatus(dir.status(), v1::JOB_STATE_ERROR);
  job_dir_ = *dir;
  if (!spec.source_digest().empty()) {
    source_archive = job_dir_ + "/source.tar.gz";
    absl::StatusOr<vm::TransferResult> t = blobs_->DownloadFile(spec.source_digest(), source_archive, cancel_);
    if (!t.ok()) return FromStatus(t.status(), v1::JOB_STATE_ERROR);
    Note(absl::StrCat("source ", spec.source_digest().substr(0, 12), " (", t->size, " bytes)"));
    s = CheckArchive(source_archive);
    if (!s.ok()) return FromStatus(absl::InvalidArgumentError(absl::StrCat("source archive: ", s.message())),
                                   v1::JOB_STATE_ERROR);
  }
  std::optional<SigningFiles> signing_files;
  if (!spec.signing().p12_digest().empty() || spec.signing().profile_digests_size() > 0) {
    absl::StatusOr<SigningFiles> fetched = FetchSigning(spec.signing(), job_dir_, *blobs_, cancel_);
    if (!fetched.ok()) {
      return FromStatus(fetched.status(),
                        absl::IsFailedPrecondition(fetched.status()) ? v1::JOB_STATE_FAILED : v1::JOB_STATE_ERROR);
    }
    signing_files = *std::move(fetched);
    Note(absl::StrCat("signing material checked: ", signing_files->bundle.identity.certificate.common_name, ", ",
                      signing_files->bundle.profiles.size(), " profile(s)"));
  }
  if (cancel_.IsCancelled()) return CancelledOutcome();

  EnterPhase(v1::PHASE_PROVISIONING_VM, "provisioning machine");
  vm::VmSpec vm_spec;
  vm_spec.name = absl::StrCat("freeagent-", options_.worker_name, "-", job_.job_id(), "-", job_.attempt());
  vm_spec.image = spec.vm().image();
  vm_spec.cpus = spec.vm().cpus();
  vm_spec.memory_mb = spec.vm().memory_mb();
  vm_spec.disk_gb = spec.vm().disk_gb();
  absl::StatusOr<std::unique_ptr<vm::Vm>> created = driver_->Create(vm_spec);
  if (!created.ok()) return FromStatus(created.status(), v1::JOB_STATE_ERROR);
  std::chrono::seconds grace = spec.cancel_grace_seconds() > 0 ? std::chrono::seconds(spec.cancel_grace_seconds())
                                                               : options_.default_kill_grace;
  vm::VmLease lease(std::move(*created), grace);
  // Start-up progress (e.g. SSH attempts) is reported on this thread while the machine starts.
  lease->SetProgressSink([this](const std::string& text) { Note(text); });
  // Runs before the lease's destructor on every early return, so stopping and destroying the machine
  // is timed (and reported) as cleanup.
  absl::Cleanup cleanup_phase = [this] {
    if (phase_.load() != v1::PHASE_CLEANING_UP) EnterPhase(v1::PHASE_CLEANING_UP, "cleaning up");
  };
  s = lease->Start(deadline_, cancel_);
  if (!s.ok()) return FromStatus(s, v1::JOB_STATE_ERROR);
  // A machine that dies on its own ends the attempt at once (whatever phase it is in) as ERROR.
  CancellationToken monitor_done;
  std::thread vm_monitor([this, monitor_done, vm = lease.get()] {
    while (!monitor_done.WaitFor(std::chrono::milliseconds(250))) {
      std::string why;
      if (!vm->Exited(&why)) continue;
      {
        std::lock_guard<std::mutex> lock(vm_exit_mu_);
        vm_exit_ = why;
      }
      cancel_.Cancel("VM exited unexpectedly");
      return;
    }
  });
  // Declared after the lease, so it is joined before the lease stops the machine.
  absl::Cleanup stop_monitor = [&] {
    monitor_done.Cancel("done");
    vm_monitor.join();
  };

  EnterPhase(v1::PHASE_CONNECTING, "waiting for the machine");
  s = lease->WaitReady(deadline_, cancel_);
  if (!s.ok()) return FromStatus(s, v1::JOB_STATE_ERROR);

  EnterPhase(v1::PHASE_UPLOADING_SOURCE, "uploading source");
  if (!source_archive.empty()) {
    s = lease->guest()->UploadArchive(source_archive, lease->workspace(), cancel_);
    if (!s.ok()) return FromStatus(s, v1::JOB_STATE_ERROR);
  }
  if (cancel_.IsCancelled()) return CancelledOutcome();

  // Declared after the lease: on an early return the keychain is removed before the machine stops.
  std::optional<signing::KeychainInstaller> keychain;
  auto remove_signing = [&] {
    if (!keychain) return;
    absl::Status removed = keychain->Cleanup();
    if (!removed.ok()) Note(absl::StrCat("cleanup: ", removed.message()));
  };
  if (signing_files) {
    EnterPhase(v1::PHASE_INSTALLING_SIGNING, "installing signing material");
    keychain.emplace(lease->guest());
    signing::KeychainInstallRequest install;
    install.p12_host_path = signing_files->p12_path;
    install.p12_password = spec.signing().p12_password();
    install.identity = signing_files->bundle.identity;
    for (size_t i = 0; i < signing_files->profile_paths.size(); ++i) {
      install.profiles.push_back({signing_files->bundle.profiles[i], signing_files->profile_paths[i]});
    }
    if (spec.preset() == "expo-ios") install.eas_credentials_dir = lease->workspace();
    install.deadline = deadline_;
    install.cancel = cancel_;
    absl::StatusOr<std::map<std::string, std::string>> env = keychain->Install(install);
    if (!env.ok()) return FromStatus(env.status(), v1::JOB_STATE_ERROR);
    signing_env_ = *std::move(env);
    Note(absl::StrCat("signing identity installed in ", signing_env_[signing::kEnvKeychain]));
  }

  Outcome outcome = RunSteps(*lease.get());
  if (outcome.state != v1::JOB_STATE_SUCCEEDED) {
    EnterPhase(v1::PHASE_CLEANING_UP, "cleaning up");
    remove_signing();
    s = lease.Release();
    if (!s.ok()) Note(absl::StrCat("cleanup: ", s.message()));
    return outcome;
  }

  if (spec.artifacts_size() > 0) {
    EnterPhase(v1::PHASE_COLLECTING_ARTIFACTS, "collecting artifacts");
    std::string download_dir = job_dir_ + "/artifacts";
    s = MakeDirs(download_dir, 0700);
    if (!s.ok()) return FromStatus(s, v1::JOB_STATE_ERROR);
    artifacts::CollectOptions copts;
    copts.default_max_bytes = options_.artifact_max_bytes;
    copts.max_total_bytes = options_.artifact_max_total_bytes;
    copts.upload_to = blobs_;  // each file goes to the blob store while it is downloaded
    copts.download_dir = download_dir;
    copts.note = [this](std::string_view text) { Note(text); };
    copts.announce = [this](const v1::ArtifactInfo& uploading) { AnnounceArtifact(uploading); };
    copts.cancel = cancel_;
    std::vector<v1::ArtifactRule> rules(spec.artifacts().begin(), spec.artifacts().end());
    absl::StatusOr<std::vector<artifacts::CollectedFile>> files =
        artifacts::Collect(*lease->guest(), lease->workspace(), rules, copts);
    if (!files.ok()) {
      // A missing or oversized artifact is the build's fault; anything else is infrastructure.
      bool build_fault = absl::IsFailedPrecondition(files.status()) || absl::IsResourceExhausted(files.status());
      return FromStatus(files.status(), build_fault ? v1::JOB_STATE_FAILED : v1::JOB_STATE_ERROR);
    }
    EnterPhase(v1::PHASE_UPLOADING_ARTIFACTS, "uploading artifacts");
    absl::StatusOr<std::vector<v1::ArtifactInfo>> infos = artifacts::UploadArtifacts(*blobs_, *files, cancel_);
    if (!infos.ok()) return FromStatus(infos.status(), v1::JOB_STATE_ERROR);
    for (v1::ArtifactInfo& info : *infos) {
      AnnounceArtifact(info);  // stored: clients waiting for the build's artifacts may take it now
      *result->add_artifacts() = std::move(info);
    }
  }
  if (cancel_.IsCancelled()) return CancelledOutcome();
  EnterPhase(v1::PHASE_CLEANING_UP, "cleaning up");
  remove_signing();
  s = lease.Release();
  if (!s.ok()) Note(absl::StrCat("cleanup: ", s.message()));
  return outcome;
}

JobRunner::Outcome JobRunner::RunSteps(vm::Vm& vm) {
  const v1::JobSpec& spec = job_.spec();
  const int n = spec.steps_size();
  for (int i = 0; i < n; ++i) {
    const v1::Step& step = spec.steps(i);
    std::string name = step.name().empty() ? absl::StrCat("step ", i + 1) : step.name();
    EnterPhase(v1::PHASE_RUNNING, absl::StrCat("step ", i + 1, "/", n, ": ", name), static_cast<uint32_t>(i + 1),
               name);
    // Entering the step reported it ("step i/n: name"), so it needs no note of its own.
    if (cancel_.IsCancelled()) return CancelledOutcome();
    if (!SafeRelativeDir(step.working_dir())) {
      return Outcome{v1::JOB_STATE_FAILED, 0, name,
                     absl::StrCat("step ", name, ": working_dir \"", step.working_dir(),
                                  "\" leaves the workspace")};
    }
    vm::ExecRequest req;
    req.command = step.run();
    req.working_dir = vm.workspace();
    if (!step.working_dir().empty()) req.working_dir += "/" + step.working_dir();
    req.env["CI"] = "true";
    req.env["FREEAGENT"] = "1";
    req.env["FREEAGENT_JOB_ID"] = job_.job_id();
    req.env["FREEAGENT_ATTEMPT"] = std::to_string(job_.attempt());
    req.env["FREEAGENT_WORKSPACE"] = vm.workspace();
    for (const auto& [k, v] : spec.secret_env()) req.env[k] = v;
    for (const auto& [k, v] : signing_env_) req.env[k] = v;
    for (const auto& [k, v] : step.env()) req.env[k] = v;
    req.on_stdout = [this](std::string_view b) { Log(b); };
    req.on_stderr = [this](std::string_view b) { Log(b); };
    Deadline step_deadline = deadline_;
    if (step.timeout_seconds() > 0) {
      step_deadline = step_deadline.Min(Deadline::After(std::chrono::seconds(step.timeout_seconds())));
    }
    req.deadline = step_deadline;
    const uint32_t idle_seconds =
        step.idle_timeout_seconds() > 0 ? step.idle_timeout_seconds() : spec.idle_timeout_seconds();
    req.idle_timeout = std::chrono::seconds(idle_seconds);
    req.cancel = cancel_;
    std::chrono::milliseconds grace = spec.cancel_grace_seconds() > 0
                                          ? std::chrono::seconds(spec.cancel_grace_seconds())
                                          : std::chrono::milliseconds(options_.default_kill_grace);
    if (grace_ms_.load() > 0) grace = std::chrono::milliseconds(grace_ms_.load());
    req.kill_grace = grace;
    auto started = std::chrono::steady_clock::now();
    absl::StatusOr<vm::ExecResult> r = vm.guest()->Exec(req);
    std::chrono::milliseconds took(MillisSince(started));
    if (!r.ok() && !cancel_.IsCancelled()) {
      // A lost connection is usually the machine itself dying: say so when it did.
      for (int i = 0; i < 20; ++i) {
        std::string why;
        if (vm.Exited(&why)) return Outcome{v1::JOB_STATE_ERROR, 0, name, why};
        std::this_thread::sleep_for(std::chrono::milliseconds(100));
      }
    }
    if (!r.ok()) {
      Outcome o = FromStatus(r.status(), v1::JOB_STATE_ERROR);
      o.failed_step = name;
      o.error = absl::StrCat("step ", name, ": ", o.error);
      return o;
    }
    if (r->timed_out && !r->cancelled && deadline_.Expired()) {
      // The whole-attempt deadline, not the step's own, ended it (the watchdog may not have fired yet).
      return Outcome{v1::JOB_STATE_TIMED_OUT, 0, name,
                     absl::StrCat("job timed out after ", job_timeout_.count(), " s (in step ", name, ")")};
    }
    if (r->cancelled) {
      Outcome o = CancelledOutcome();
      o.failed_step = name;
      return o;
    }
    if (r->timed_out) {
      return Outcome{v1::JOB_STATE_TIMED_OUT, 0, name,
                     absl::StrCat("step ", name, " timed out after ", step.timeout_seconds(), " s")};
    }
    if (r->idle_timed_out) {
      return Outcome{v1::JOB_STATE_TIMED_OUT, 0, name,
                     absl::StrCat("step ", name, " produced no output for ", idle_seconds, " s")};
    }
    if (r->signal != 0) {
      return Outcome{v1::JOB_STATE_FAILED, 128 + r->signal, name,
                     absl::StrCat("step ", name, " was killed by signal ", r->signal)};
    }
    if (r->exit_code != 0) {
      Note(absl::StrCat("step ", name, " exited with ", r->exit_code, " after ", SecondsText(took)));
      return Outcome{v1::JOB_STATE_FAILED, r->exit_code, name,
                     absl::StrCat("step ", name, " exited with ", r->exit_code)};
    }
    Note(absl::StrCat("step ", name, " done in ", SecondsText(took)));
  }
  return Outcome{};
}

}  // namespace freeagent::node
