// Runs one job attempt through the phases of ARCHITECTURE "Job lifecycle" on one thread: fetch and check
// the source, provision the machine, upload the source, run the steps, collect and upload artifacts,
// and always clean up. Every phase is reported as it starts and timed for the result.
#pragma once

#include <atomic>
#include <chrono>
#include <functional>
#include <map>
#include <mutex>
#include <string>
#include <string_view>
#include <vector>

#include "artifacts/blob_client.h"
#include "common/cancellation.h"
#include "common/deadline.h"
#include "freeagent/v1/common.pb.h"
#include "freeagent/v1/worker.pb.h"
#include "node/redactor.h"
#include "vm/vm_driver.h"

namespace freeagent::node {

struct JobRunnerOptions {
  std::string jobs_dir;                           // host dirs of jobs are made here (0700)
  std::string worker_name = "worker";             // goes into VM names: freeagent-<worker>-<job>-<attempt>
  std::chrono::seconds default_timeout{3600};     // when the spec says 0
  std::chrono::seconds default_kill_grace{10};    // when the spec says 0
  uint64_t artifact_max_bytes = 4ull << 30;       // per artifact when the rule says 0
  uint64_t artifact_max_total_bytes = 16ull << 30;  // all artifacts of the job together
  // The attempt's log (after redaction) is cut here: a final note says so, later output is dropped and
  // the job goes on (its outcome is its steps'). 0 = no limit.
  uint64_t max_log_bytes = 256ull << 20;
};

// Where a runner reports. Called on the job thread; may block (backpressure).
struct JobCallbacks {
  // The attempt's log stream: the guest's stdout and stderr bytes only (redacted), nothing of the
  // worker's own, so the stored log is the guest's output byte for byte.
  std::function<void(std::string_view bytes)> log;
  // Phase changes, and the worker's own notes ("build succeeded", "artifact ...") as progress
  // in the current phase with the note as `message`.
  std::function<void(const freeagent::v1::JobProgress&)> progress;
};

class JobRunner {
 public:
  // `driver` and `blobs` are not owned and must outlive Run().
  JobRunner(freeagent::v1::BuildJob job, JobRunnerOptions options, vm::VmDriver* driver,
            artifacts::BlobClient* blobs, JobCallbacks callbacks);

  // Runs the attempt to its end, cleanup included. Never throws; every failure is in the result.
  freeagent::v1::JobResult Run();

  // Asks the running attempt to stop: the current step's process group gets SIGTERM, then SIGKILL after
  // the grace period; the result is CANCELLED. Thread-safe, returns at once. `grace` 0 = the job's.
  void Cancel(const std::string& reason, std::chrono::seconds grace = std::chrono::seconds(0));

  freeagent::v1::Phase phase() const { return phase_.load(); }
  const freeagent::v1::BuildJob& job() const { return job_; }

 private:
  // Outcome of the phases before cleanup; `status` not OK means the phase named in it failed.
  struct Outcome {
    freeagent::v1::JobState state = freeagent::v1::JOB_STATE_SUCCEEDED;
    int exit_code = 0;
    std::string failed_step;
    std::string error;
  };

  Outcome RunPhases(freeagent::v1::JobResult* result);
  Outcome RunSteps(vm::Vm& vm);
  Outcome FromStatus(const absl::Status& status, freeagent::v1::JobState state_if_not_cancelled);
  Outcome CancelledOutcome();
  void EnterPhase(freeagent::v1::Phase phase, const std::string& message, uint32_t step_index = 0,
                  const std::string& step_name = "");
  void EndPhase();
  // The guest's output for the log; secrets are redacted.
  void Log(std::string_view bytes);
  // Hands redacted bytes to the log callback within options_.max_log_bytes.
  void EmitLog(std::string_view bytes);
  // A line of the worker's own (no newline), reported as progress in the current phase and step,
  // never written into the log. Secrets are redacted here too.
  void Note(std::string_view text);
  // `artifact`, when set, announces an artifact whose upload has started (upload_id) or that is stored
  // (sha256): JobProgress.uploading_artifact.
  void SendProgress(const std::string& message, const v1::ArtifactInfo* artifact = nullptr);
  void AnnounceArtifact(const v1::ArtifactInfo& artifact);
  static std::vector<std::string> SecretValues(const freeagent::v1::BuildJob& job);

  freeagent::v1::BuildJob job_;
  JobRunnerOptions options_;
  vm::VmDriver* driver_;
  artifacts::BlobClient* blobs_;
  JobCallbacks callbacks_;
  Redactor redactor_;       // the log stream's; used on the job thread only
  Redactor note_redactor_;  // one note at a time; used on the job thread only
  uint64_t log_bytes_ = 0;  // handed to the log callback (job thread only)
  bool log_cut_ = false;

  CancellationToken cancel_;
  std::atomic<bool> timed_out_{false};
  // Set (before cancel_ fires) when the machine ended on its own; the attempt ends as ERROR with it.
  std::mutex vm_exit_mu_;
  std::string vm_exit_;
  std::atomic<int64_t> grace_ms_{0};
  std::atomic<freeagent::v1::Phase> phase_{freeagent::v1::PHASE_UNSPECIFIED};
  Deadline deadline_ = Deadline::Infinite();
  std::chrono::seconds job_timeout_{0};
  std::string job_dir_;
  // The step last entered, for progress reports (0 and "" outside PHASE_RUNNING).
  uint32_t step_index_ = 0;
  std::string step_name_;
  // Set for the steps once signing material is installed in the machine (FREEAGENT_KEYCHAIN, ...).
  std::map<std::string, std::string> signing_env_;

  // Timeline: the phase being timed and the finished ones.
  std::vector<freeagent::v1::PhaseDuration> phases_;
  bool in_phase_ = false;
  std::chrono::steady_clock::time_point phase_start_;
};

}  // namespace freeagent::node
