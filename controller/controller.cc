// The controller core: jobs, workers, scheduling, liveness, durable record.
#include "controller/controller.h"

#include <algorithm>
#include <functional>
#include <random>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "common/clock.h"
#include "common/fs.h"
#include "common/status_macros.h"
#include "freeagent/v1/common.pb.h"
#include "spdlog/spdlog.h"

namespace freeagent::controller {
namespace {

constexpr uint32_t kDefaultCancelGraceSeconds = 10;
constexpr uint32_t kDefaultPageSize = 50;
constexpr uint32_t kMaxPageSize = 1000;
// Shorter secrets cannot be masked in the log without mangling it (the worker's redactor ignores them).
constexpr size_t kMinSecretBytes = 6;
// Names of sealed secrets in the store (and in their associated data).
constexpr char kEnvSecretPrefix[] = "env/";
constexpr char kP12PasswordName[] = "signing/p12_password";

std::string NewJobId() {
  static std::mutex mu;
  static std::mt19937_64 rng{std::random_device{}()};
  std::lock_guard<std::mutex> lock(mu);
  static constexpr char kHex[] = "0123456789abcdef";
  std::string id = "b-";
  uint64_t bits = rng();
  for (int i = 0; i < 12; ++i) {
    id.push_back(kHex[bits & 0xf]);
    bits >>= 4;
  }
  return id;
}

absl::Status NotFound(const std::string& id) {
  return absl::NotFoundError(absl::StrCat("build ", id, " not found"));
}

// The steps a preset stands for.
absl::Status ExpandPreset(v1::JobSpec& spec) {
  if (spec.preset().empty() || spec.steps_size() > 0) return absl::OkStatus();
  if (spec.preset() == "expo-ios") {
    auto add = [&](const char* name, const char* run) {
      v1::Step* step = spec.add_steps();
      step->set_name(name);
      step->set_run(run);
    };
    add("install", "npm ci");
    add("pods", "cd ios && pod install");
    add("build", "npx eas-cli build --local --non-interactive --platform ios --output build/app.ipa");
    if (spec.artifacts_size() == 0) spec.add_artifacts()->set_glob("build/*.ipa");
    if (spec.required_labels().empty()) (*spec.mutable_required_labels())["os"] = "macos";
    return absl::OkStatus();
  }
  return absl::InvalidArgumentError(
      absl::StrCat("spec.preset \"", spec.preset(), "\" is unknown (known: expo-ios)"));
}

absl::Status ValidateRelativeGlob(const std::string& glob, const std::string& field) {
  if (glob.empty()) return absl::InvalidArgumentError(absl::StrCat(field, " is empty"));
  if (glob[0] == '/') return absl::InvalidArgumentError(absl::StrCat(field, " must be relative"));
  for (absl::string_view part : absl::StrSplit(glob, '/')) {
    if (part == "..") return absl::InvalidArgumentError(absl::StrCat(field, " must not contain .."));
  }
  return absl::OkStatus();
}

const char* PhaseName(v1::Phase phase) {
  switch (phase) {
    case v1::PHASE_PREPARING: return "preparing";
    case v1::PHASE_PROVISIONING_VM: return "provisioning VM";
    case v1::PHASE_CONNECTING: return "connecting";
    case v1::PHASE_UPLOADING_SOURCE: return "uploading source";
    case v1::PHASE_INSTALLING_SIGNING: return "installing signing";
    case v1::PHASE_RUNNING: return "running";
    case v1::PHASE_COLLECTING_ARTIFACTS: return "collecting artifacts";
    case v1::PHASE_UPLOADING_ARTIFACTS: return "uploading artifacts";
    case v1::PHASE_CLEANING_UP: return "cleaning up";
    default: return "unspecified";
  }
}

}  // namespace

bool IsTerminal(v1::JobState state) {
  return state == v1::JOB_STATE_SUCCEEDED || state == v1::JOB_STATE_FAILED ||
         state == v1::JOB_STATE_CANCELLED || state == v1::JOB_STATE_TIMED_OUT ||
         state == v1::JOB_STATE_ERROR;
}

Controller::Controller(ControllerOptions options)
    : options_(std::move(options)),
      blobs_(options_.data_dir + "/blobs"),
      logs_(options_.data_dir + "/logs") {}

absl::StatusOr<std::unique_ptr<Controller>> Controller::Create(ControllerOptions options) {
  if (options.max_attempts == 0) options.max_attempts = 1;
  RETURN_IF_ERROR(MakeDirs(options.data_dir, 0700));
  std::unique_ptr<Controller> c(new Controller(std::move(options)));
  ASSIGN_OR_RETURN(SecretBox box, SecretBox::OpenKeyFile(c->options_.data_dir + "/secret.key"));
  c->secret_box_ = std::make_unique<SecretBox>(box);
  ASSIGN_OR_RETURN(c->store_, Store::Open(c->options_.data_dir + "/freeagent.db"));
  RETURN_IF_ERROR(c->blobs_.Init());
  RETURN_IF_ERROR(c->logs_.Start());
  RETURN_IF_ERROR(c->Load());
  c->liveness_thread_ = std::thread([ptr = c.get()] { ptr->LivenessLoop(); });
  return c;
}

Controller::~Controller() { Stop(); }

void Controller::Stop() {
  std::vector<std::shared_ptr<WorkerConnection>> conns;
  {
    std::lock_guard<std::mutex> lock(mu_);
    if (stopped_) return;
    stopped_ = true;
    for (auto& [id, w] : workers_) {
      if (w.conn) conns.push_back(std::move(w.conn));
    }
  }
  liveness_cv_.notify_all();
  if (liveness_thread_.joinable()) liveness_thread_.join();
  for (auto& conn : conns) conn->Close(grpc::Status(grpc::StatusCode::UNAVAILABLE, "controller is shutting down"));
  // Watchers find Snapshot() refusing and end their calls, so shutdown need not wait for them.
  std::vector<std::string> watched;
  {
    std::lock_guard<std::mutex> lock(watch_mu_);
    for (const auto& [id, list] : watchers_) watched.push_back(id);
  }
  for (const std::string& id : watched) NotifyWatchers(id);
  logs_.Stop();  // a sync thread may still hand a result over (and write its rows)
  if (store_) store_->Stop();
}

absl::Status Controller::Load() {
  ASSIGN_OR_RETURN(std::vector<v1::WorkerInfo> workers, store_->LoadWorkers());
  ASSIGN_OR_RETURN(std::vector<StoredJob> jobs, store_->LoadJobs());
  ASSIGN_OR_RETURN(auto secrets, store_->LoadSecrets());
  std::lock_guard<std::mutex> lock(mu_);
  const auto now = std::chrono::steady_clock::now();
  for (auto& info : workers) {
    Worker& w = workers_[info.id()];
    w.info = std::move(info);
    w.info.clear_running_job_ids();
    w.info.set_slots_used(0);
    // A worker holding attempts gets one liveness period to say hello again.
    w.last_seen = now;
  }
  size_t waiting = 0;
  for (auto& stored : jobs) {
    Job job;
    job.seq = stored.seq;
    job.build = std::move(stored.build);
    next_seq_ = std::max(next_seq_, job.seq + 1);
    const std::string id = job.build.id();
    by_seq_[job.seq] = id;
    auto [it, inserted] = jobs_.emplace(id, std::move(job));
    Job& j = it->second;
    auto sealed = secrets.find(id);
    j.has_sealed = sealed != secrets.end();
    if (IsTerminal(j.build.state())) {
      // Left over by a crash between the end of the build and the delete.
      if (sealed != secrets.end()) store_->DeleteSecrets(id);
      continue;
    }
    if (absl::Status st = UnsealSecrets(j.build, sealed == secrets.end() ? std::map<std::string, std::string>()
                                                                        : sealed->second);
        !st.ok()) {
      spdlog::error("build {}: {}", id, st.ToString());
      FinishLocked(j, v1::JOB_STATE_ERROR, std::string(st.message()));
      continue;
    }
    const v1::JobState state = j.build.state();
    if (state == v1::JOB_STATE_QUEUED) {
      queue_.insert(KeyOf(j));
    } else if (state == v1::JOB_STATE_ASSIGNED || state == v1::JOB_STATE_RUNNING) {
      auto w = workers_.find(j.build.worker_id());
      if (w == workers_.end()) {
        RequeueLocked(j, /*next_attempt=*/true, "its worker is unknown after a restart");
      } else {
        w->second.jobs.insert(id);
        ++waiting;
      }
    }
  }
  for (auto& [id, w] : workers_) {
    if (w.jobs.empty()) w.info.set_state(v1::WORKER_STATE_OFFLINE);
  }
  spdlog::info("loaded {} builds ({} queued, {} waiting for their worker), {} workers", jobs_.size(),
               queue_.size(), waiting, workers_.size());
  return absl::OkStatus();
}

void Controller::LivenessLoop() {
  const auto period = std::min<std::chrono::milliseconds>(std::chrono::milliseconds(500),
                                                          options_.liveness_timeout / 4 + std::chrono::milliseconds(1));
  const bool retention = options_.retention.max_age_days > 0 || options_.retention.max_total_bytes > 0 ||
                         options_.retention.partial_upload_max_age_hours > 0 || options_.retention.input_max_age_days > 0;
  auto next_retention = std::chrono::steady_clock::now() + options_.retention_first_delay;
  std::unique_lock<std::mutex> lock(mu_);
  while (!stopped_) {
    liveness_cv_.wait_for(lock, period, [this] { return stopped_; });
    if (stopped_) return;
    lock.unlock();
    CheckLiveness();
    if (retention && std::chrono::steady_clock::now() >= next_retention) {
      if (auto r = CollectGarbage(/*apply=*/true); !r.ok()) spdlog::error("retention: {}", r.status().ToString());
      next_retention = std::chrono::steady_clock::now() + options_.retention_interval;
    }
    lock.lock();
  }
}

void Controller::CheckLiveness() {
  {
    std::lock_guard<std::mutex> lock(mu_);
    const auto now = std::chrono::steady_clock::now();
    bool changed = false;
    for (auto& [id, w] : workers_) {
      if (w.info.state() == v1::WORKER_STATE_OFFLINE) continue;
      if (now - w.last_seen <= options_.liveness_timeout) continue;
      WorkerLostLocked(w, absl::StrCat("worker ", w.info.name().empty() ? id : w.info.name(),
                                       " silent for more than ", options_.liveness_timeout.count(),
                                       " ms"));
      changed = true;
    }
    if (changed) ScheduleLocked();
  }
  FlushNotifications();
}

void Controller::WorkerLostLocked(Worker& w, const std::string& why) {
  spdlog::warn("{}: marking offline, requeueing {} job(s)", why, w.jobs.size());
  w.info.set_state(v1::WORKER_STATE_OFFLINE);
  if (w.conn) {
    w.conn->Close(grpc::Status(grpc::StatusCode::UNAVAILABLE, why));
    w.conn.reset();
  }
  UpdateFreeLocked(w);
  const std::set<std::string> held = w.jobs;
  for (const std::string& id : held) {
    Job* job = FindLocked(id);
    if (!job) continue;
    if (job->cancel_requested) {
      FinishLocked(*job, v1::JOB_STATE_CANCELLED,
                   absl::StrCat(job->cancel_reason, " (worker lost while cancelling)"));
    } else {
      RequeueLocked(*job, /*next_attempt=*/true, why);
    }
  }
  w.jobs.clear();  // (already out of free_workers_: it has no connection)
  SaveWorkerLocked(w);
}

// ---------------------------------------------------------------- helpers

Controller::Job* Controller::FindLocked(const std::string& id) {
  auto it = jobs_.find(id);
  return it == jobs_.end() ? nullptr : &it->second;
}

Controller::QueueKey Controller::KeyOf(const Job& job) {
  return QueueKey{-job.build.spec().priority(), job.seq, job.build.id()};
}

v1::Build Controller::PublicBuildLocked(const Job& job) {
  v1::Build b = job.build;
  for (auto& [key, value] : *b.mutable_spec()->mutable_secret_env()) value.clear();
  if (b.spec().has_signing()) b.mutable_spec()->mutable_signing()->clear_p12_password();
  b.set_log_size(logs_.GetSizes(b.id(), b.attempt()).committed);
  return b;
}

absl::StatusOr<bool> Controller::SealSecrets(const v1::Build& build) {
  std::map<std::string, std::string> sealed;
  auto seal = [&](const std::string& name, const std::string& value) -> absl::Status {
    ASSIGN_OR_RETURN(sealed[name], secret_box_->Seal(value, SecretBox::Aad(build.id(), name)));
    return absl::OkStatus();
  };
  for (const auto& [key, value] : build.spec().secret_env()) {
    RETURN_IF_ERROR(seal(absl::StrCat(kEnvSecretPrefix, key), value));
  }
  if (build.spec().has_signing() && !build.spec().signing().p12_password().empty()) {
    RETURN_IF_ERROR(seal(std::string(kP12PasswordName), build.spec().signing().p12_password()));
  }
  store_->PutSecrets(build.id(), sealed);
  return !sealed.empty();
}

absl::Status Controller::UnsealSecrets(v1::Build& build, const std::map<std::string, std::string>& sealed) {
  auto open = [&](const std::string& name, std::string* out) -> absl::Status {
    auto it = sealed.find(name);
    if (it == sealed.end()) {
      return absl::DataLossError(absl::StrCat("secret ", name, " is missing from the store; submit the build again"));
    }
    absl::StatusOr<std::string> value = secret_box_->Open(it->second, SecretBox::Aad(build.id(), name));
    if (!value.ok()) {
      return absl::DataLossError(absl::StrCat("secret ", name, " could not be decrypted with ", options_.data_dir,
                                              "/secret.key: ", value.status().message(),
                                              "; submit the build again"));
    }
    *out = std::move(*value);
    return absl::OkStatus();
  };
  v1::JobSpec& spec = *build.mutable_spec();
  for (auto& [key, value] : *spec.mutable_secret_env()) {
    RETURN_IF_ERROR(open(absl::StrCat(kEnvSecretPrefix, key), &value));
  }
  if (spec.has_signing() && sealed.count(std::string(kP12PasswordName))) {
    RETURN_IF_ERROR(open(std::string(kP12PasswordName), spec.mutable_signing()->mutable_p12_password()));
  }
  return absl::OkStatus();
}

void Controller::DropSecretsLocked(Job& job) {
  v1::JobSpec& spec = *job.build.mutable_spec();
  for (auto& [key, value] : *spec.mutable_secret_env()) value.clear();
  if (spec.has_signing()) spec.mutable_signing()->clear_p12_password();
  if (!job.has_sealed) return;
  job.has_sealed = false;
  store_->DeleteSecrets(job.build.id());
}

void Controller::SaveJobLocked(const Job& job) {
  store_->PutJob(StoredJob{job.seq, job.build});
  NotifyLater(job.build.id());
}

void Controller::SaveWorkerLocked(const Worker& w) {
  v1::WorkerInfo info = w.info;
  info.clear_running_job_ids();
  info.set_slots_used(0);
  store_->PutWorker(info);
}

void Controller::SaveAttemptLocked(const Job& job) {
  const v1::Build& b = job.build;
  store_->PutAttempt(b.id(), b.attempt(), b.worker_id(), b.state(), b.started_unix_ms(), b.finished_unix_ms(),
                     logs_.GetSizes(b.id(), b.attempt()).committed);
}

void Controller::EventLocked(Job& job, const std::string& message, spdlog::level::level_enum level) {
  v1::BuildEvent event;
  event.set_unix_ms(UnixMillis());
  event.set_state(job.build.state());
  event.set_phase(job.build.phase());
  event.set_attempt(job.build.attempt());
  event.set_message(message);
  store_->AddEvent(job.build.id(), event);
  spdlog::log(level, "{} #{}: {}", job.build.id(), job.build.attempt(), message);
}

bool Controller::HoldsLocked(const std::string& worker_id, const Job& job, uint32_t attempt) const {
  return job.build.attempt() == attempt && job.build.worker_id() == worker_id &&
         (job.build.state() == v1::JOB_STATE_ASSIGNED || job.build.state() == v1::JOB_STATE_RUNNING);
}

// ---------------------------------------------------------------- scheduling

bool Controller::EligibleLocked(const Worker& w, const Job& job) const {
  if (!w.conn || w.info.state() != v1::WORKER_STATE_ONLINE) return false;
  if (w.jobs.size() >= std::max<uint32_t>(1, w.info.slots())) return false;
  if (job.rejected_by.count(w.info.id())) return false;
  for (const auto& [key, value] : job.build.spec().required_labels()) {
    auto it = w.info.labels().find(key);
    if (it == w.info.labels().end() || it->second != value) return false;
  }
  // A job naming an image goes only to workers that advertise it ("image.<name>" = "true").
  const std::string& image = job.build.spec().vm().image();
  if (!image.empty()) {
    auto it = w.info.labels().find("image." + image);
    if (it == w.info.labels().end() || it->second != "true") return false;
  }
  return true;
}

bool Controller::ForgetRejectionsLocked(const std::string& worker_id) {
  // Through the index, not the queue: heartbeats call this, and the queue may hold many thousands.
  auto it = rejections_.find(worker_id);
  if (it == rejections_.end()) return false;
  bool any = false;
  for (const std::string& id : it->second) {
    Job* job = FindLocked(id);
    if (job && job->rejected_by.erase(worker_id) > 0 && job->build.state() == v1::JOB_STATE_QUEUED) any = true;
  }
  rejections_.erase(it);
  return any;
}

std::string Controller::PlacementKey(const Job& job) {
  std::string key = job.build.spec().vm().image();
  // A proto map's order is unspecified: sort so equal requirements give equal keys.
  std::vector<std::pair<std::string, std::string>> labels(job.build.spec().required_labels().begin(),
                                                          job.build.spec().required_labels().end());
  std::sort(labels.begin(), labels.end());
  for (const auto& [k, v] : labels) absl::StrAppend(&key, "\n", k, "=", v);
  return key;
}

void Controller::UpdateFreeLocked(Worker& w) {
  if (w.free_slots > 0) free_workers_.erase({-static_cast<int64_t>(w.free_slots), w.info.id()});
  w.free_slots = 0;
  if (!w.conn || w.info.state() != v1::WORKER_STATE_ONLINE) return;
  const size_t slots = std::max<uint32_t>(1, w.info.slots());
  if (w.jobs.size() >= slots) return;
  w.free_slots = slots - w.jobs.size();
  free_workers_.insert({-static_cast<int64_t>(w.free_slots), w.info.id()});
}

void Controller::ScheduleLocked() {
  if (stopped_ || queue_.empty() || free_workers_.empty()) return;
  // Only workers with a free slot are looked at (most free slots first, spreading the load), and the
  // queue is walked only while some remain: every result and submission runs a pass, and a large
  // fleet is mostly busy.
  // Requirements no free worker meets: later jobs with the same ones (and no rejections of their own,
  // which only narrow the choice) are skipped without looking at the workers again.
  std::set<std::string> unplaceable;
  for (auto it = queue_.begin(); it != queue_.end() && !free_workers_.empty();) {
    Job* job = FindLocked(std::get<2>(*it));
    if (!job || job->build.state() != v1::JOB_STATE_QUEUED) {
      it = queue_.erase(it);
      continue;
    }
    const bool plain = job->rejected_by.empty();
    std::string key;
    if (plain) {
      key = PlacementKey(*job);
      if (unplaceable.count(key)) {
        ++it;
        continue;
      }
    }
    Worker* chosen = nullptr;
    for (const auto& [negated_free, id] : free_workers_) {
      Worker& w = workers_.at(id);
      if (EligibleLocked(w, *job)) {
        chosen = &w;
        break;
      }
    }
    if (chosen == nullptr) {
      if (plain) unplaceable.insert(std::move(key));
      ++it;
      continue;
    }
    it = queue_.erase(it);
    AssignLocked(*job, *chosen);  // updates free_workers_
  }
}

void Controller::AssignLocked(Job& job, Worker& w) {
  v1::Build& b = job.build;
  b.set_state(v1::JOB_STATE_ASSIGNED);
  b.set_worker_id(w.info.id());
  b.set_phase(v1::PHASE_UNSPECIFIED);
  b.set_step_index(0);
  b.clear_step_name();
  b.clear_message();
  w.jobs.insert(b.id());
  UpdateFreeLocked(w);
  SaveJobLocked(job);
  SaveAttemptLocked(job);
  EventLocked(job, absl::StrCat("assigned to worker ", w.info.name().empty() ? w.info.id() : w.info.name()));
  v1::ControllerMessage msg;
  v1::BuildJob* bj = msg.mutable_assign()->mutable_job();
  bj->set_job_id(b.id());
  bj->set_attempt(b.attempt());
  *bj->mutable_spec() = b.spec();
  SendLocked(w.conn, std::move(msg));
}

// Takes the job off its worker (if any).
void Controller::DetachLocked(Job& job) {
  auto w = workers_.find(job.build.worker_id());
  if (w == workers_.end()) return;
  w->second.jobs.erase(job.build.id());
  UpdateFreeLocked(w->second);
}

void Controller::RequeueLocked(Job& job, bool next_attempt, const std::string& why) {
  DetachLocked(job);
  v1::Build& b = job.build;
  EndUploadsLocked(job, absl::StrCat("ended: ", why));
  if (next_attempt) {
    if (b.attempt() >= options_.max_attempts) {
      FinishLocked(job, v1::JOB_STATE_ERROR,
                   absl::StrCat("worker lost after ", b.attempt(), " attempt(s): ", why));
      return;
    }
    // The old attempt ends here; its worker is told to abandon it if it returns.
    b.set_state(v1::JOB_STATE_ERROR);
    b.set_finished_unix_ms(UnixMillis());
    SaveAttemptLocked(job);
    logs_.Release(b.id(), b.attempt());
    b.set_attempt(b.attempt() + 1);
    job.rejected_by.clear();
  }
  b.set_state(v1::JOB_STATE_QUEUED);
  b.clear_worker_id();
  b.set_phase(v1::PHASE_UNSPECIFIED);
  b.set_step_index(0);
  b.clear_step_name();
  b.clear_message();
  b.set_started_unix_ms(0);
  b.set_finished_unix_ms(0);
  queue_.insert(KeyOf(job));
  SaveJobLocked(job);
  EventLocked(job, absl::StrCat("requeued", next_attempt ? absl::StrCat(" as attempt ", b.attempt()) : "",
                                ": ", why),
              spdlog::level::info);
}

void Controller::EndUploadsLocked(Job& job, const std::string& why) {
  v1::Build& b = job.build;
  for (const v1::ArtifactInfo& a : b.uploading_artifacts()) {
    if (!a.sha256().empty() || a.upload_id().empty()) continue;
    blobs_.AbandonUpload(a.upload_id(), absl::StrCat("attempt ", b.attempt(), " of build ", b.id(), " ", why));
  }
  b.clear_uploading_artifacts();
}

void Controller::FinishLocked(Job& job, v1::JobState outcome, const std::string& error) {
  EndUploadsLocked(job, absl::StrCat("ended ", v1::JobState_Name(outcome)));
  DetachLocked(job);
  queue_.erase(KeyOf(job));
  v1::Build& b = job.build;
  b.set_state(outcome);
  if (!error.empty()) b.set_error(error);
  b.set_finished_unix_ms(UnixMillis());
  DropSecretsLocked(job);
  SaveJobLocked(job);
  if (!b.worker_id().empty()) SaveAttemptLocked(job);
  logs_.Release(b.id(), b.attempt());
  EventLocked(job, error.empty() ? absl::StrCat("finished: ", v1::JobState_Name(outcome))
                                 : absl::StrCat("finished: ", v1::JobState_Name(outcome), ": ", error));
}

void Controller::SendCancelLocked(Job& job) {
  auto w = workers_.find(job.build.worker_id());
  if (w == workers_.end() || !w->second.conn) return;
  v1::ControllerMessage msg;
  v1::CancelJob* c = msg.mutable_cancel();
  c->set_job_id(job.build.id());
  c->set_attempt(job.build.attempt());
  c->set_reason(job.cancel_reason);
  const uint32_t grace = job.build.spec().cancel_grace_seconds();
  c->set_grace_seconds(grace ? grace : kDefaultCancelGraceSeconds);
  SendLocked(w->second.conn, std::move(msg));
}

void Controller::SendLocked(const std::shared_ptr<WorkerConnection>& conn, v1::ControllerMessage message) {
  store_->AfterCommit([conn, message = std::move(message)](const absl::Status&) mutable {
    conn->Send(std::move(message));
  });
}

// ---------------------------------------------------------------- notifications

void Controller::NotifyLater(const std::string& id) { to_notify_.insert(id); }

void Controller::FlushNotifications() {
  std::set<std::string> ids;
  {
    std::lock_guard<std::mutex> lock(mu_);
    ids.swap(to_notify_);
  }
  for (const std::string& id : ids) NotifyWatchers(id);
}

void Controller::NotifyWatchers(const std::string& id) {
  std::vector<std::shared_ptr<BuildWatcher>> live;
  {
    std::lock_guard<std::mutex> lock(watch_mu_);
    auto it = watchers_.find(id);
    if (it == watchers_.end()) return;
    auto& list = it->second;
    for (auto w = list.begin(); w != list.end();) {
      if (auto p = w->lock()) {
        live.push_back(std::move(p));
        ++w;
      } else {
        w = list.erase(w);
      }
    }
    if (list.empty()) watchers_.erase(it);
  }
  for (auto& w : live) w->Notify();
}

void Controller::AddWatcher(const std::string& id, std::weak_ptr<BuildWatcher> watcher) {
  std::lock_guard<std::mutex> lock(watch_mu_);
  // Watchers of finished builds are never notified again, so their expired entries (which keep the
  // watcher's allocation alive) are swept here. Watchers are few; a sweep per Watch call is cheap.
  for (auto it = watchers_.begin(); it != watchers_.end();) {
    auto& list = it->second;
    list.erase(std::remove_if(list.begin(), list.end(), [](const auto& w) { return w.expired(); }), list.end());
    it = list.empty() ? watchers_.erase(it) : std::next(it);
  }
  watchers_[id].push_back(std::move(watcher));
}

// ---------------------------------------------------------------- BuildService

absl::StatusOr<v1::Build> Controller::Submit(v1::JobSpec spec) {
  RETURN_IF_ERROR(ExpandPreset(spec));
  const std::vector<BuildInput> inputs = BuildInputs(spec);
  for (const BuildInput& input : inputs) {
    RETURN_IF_ERROR(BlobStore::ValidateDigest(input.digest, input.field));
    if (!blobs_.Exists(input.digest)) {
      return absl::FailedPreconditionError(
          absl::StrCat(input.field, " ", input.digest, " is not in the blob store; upload it first"));
    }
  }
  if (spec.steps_size() == 0) return absl::InvalidArgumentError("spec.steps is empty");
  for (int i = 0; i < spec.steps_size(); ++i) {
    if (spec.steps(i).run().empty()) {
      return absl::InvalidArgumentError(absl::StrCat("spec.steps[", i, "].run is empty"));
    }
    if (spec.steps(i).name().empty()) spec.mutable_steps(i)->set_name(absl::StrCat("step ", i + 1));
  }
  for (int i = 0; i < spec.artifacts_size(); ++i) {
    RETURN_IF_ERROR(ValidateRelativeGlob(spec.artifacts(i).glob(), absl::StrCat("spec.artifacts[", i, "].glob")));
  }
  for (const auto& [key, value] : spec.required_labels()) {
    if (key.empty()) return absl::InvalidArgumentError("spec.required_labels has an empty key");
  }
  for (const auto& [key, value] : spec.secret_env()) {
    if (value.size() < kMinSecretBytes) {
      return absl::InvalidArgumentError(absl::StrCat(
          "spec.secret_env ", key, " is shorter than ", kMinSecretBytes,
          " bytes: a secret that short cannot be masked in the log without mangling it"));
    }
  }
  if (spec.has_signing() && !spec.signing().p12_password().empty() &&
      spec.signing().p12_password().size() < kMinSecretBytes) {
    return absl::InvalidArgumentError(absl::StrCat("spec.signing.p12_password is shorter than ", kMinSecretBytes,
                                                   " bytes: it could not be masked in the log"));
  }
  // A hostile source archive is refused here, before any worker or VM sees it.
  if (absl::Status st = archive_checks_.Check(spec.source_digest(), blobs_.PathFor(spec.source_digest()));
      !st.ok()) {
    return absl::InvalidArgumentError(absl::StrCat("spec.source_digest ", spec.source_digest(), ": ", st.message()));
  }

  v1::Build out;
  {
    std::lock_guard<std::mutex> lock(mu_);
    if (stopped_) return absl::UnavailableError("controller is shutting down");
    // A retention pass plans under this lock and removes after it, so while one is between the two an
    // input found above may have gone since (the pass planned before this build existed). Looked at
    // again here, it was touched after the pass began, so it stays; or it is gone, and the client is
    // told so instead of a build without its input being queued.
    if (retention_passes_ > 0) {
      for (const BuildInput& input : inputs) {
        if (!blobs_.Exists(input.digest)) {
          return absl::FailedPreconditionError(absl::StrCat(input.field, " ", input.digest,
                                                            " was removed by retention while the build was "
                                                            "submitted; upload it again"));
        }
      }
    }
    std::string id;
    do {
      id = NewJobId();
    } while (jobs_.count(id));
    Job job;
    job.seq = next_seq_++;
    v1::Build& b = job.build;
    b.set_id(id);
    b.set_step_count(static_cast<uint32_t>(spec.steps_size()));
    *b.mutable_spec() = std::move(spec);
    b.set_state(v1::JOB_STATE_QUEUED);
    b.set_attempt(1);
    b.set_created_unix_ms(UnixMillis());
    // Sealed before the job row exists, so a stored queued build always has its secrets.
    ASSIGN_OR_RETURN(job.has_sealed, SealSecrets(job.build));
    Job& stored = jobs_.emplace(id, std::move(job)).first->second;
    by_seq_[stored.seq] = id;
    queue_.insert(KeyOf(stored));
    SaveJobLocked(stored);
    EventLocked(stored, "submitted");
    ScheduleLocked();
    out = PublicBuildLocked(stored);
  }
  FlushNotifications();
  // The client hears of the build only once it is committed.
  RETURN_IF_ERROR(WaitCommitted(absl::StrCat("build ", out.id())));
  return out;
}

absl::Status Controller::WaitCommitted(const std::string& what) {
  absl::Status st = store_->Sync();
  if (!st.ok()) return absl::InternalError(absl::StrCat(what, " could not be stored: ", st.message()));
  return absl::OkStatus();
}

absl::StatusOr<v1::Build> Controller::Get(const std::string& id) {
  v1::Build out;
  {
    std::lock_guard<std::mutex> lock(mu_);
    Job* job = FindLocked(id);
    if (!job) return NotFound(id);
    out = PublicBuildLocked(*job);
  }
  ASSIGN_OR_RETURN(std::vector<v1::BuildEvent> events, store_->LoadEvents(id));
  for (auto& e : events) *out.add_events() = std::move(e);
  return out;
}

absl::StatusOr<v1::ListBuildsResponse> Controller::List(const v1::ListBuildsRequest& request) {
  uint32_t page_size = request.page_size() == 0 ? kDefaultPageSize : std::min(request.page_size(), kMaxPageSize);
  int64_t before = INT64_MAX;
  if (!request.page_token().empty() && !absl::SimpleAtoi(request.page_token(), &before)) {
    return absl::InvalidArgumentError("page_token is not valid");
  }
  std::set<int> states(request.states().begin(), request.states().end());
  v1::ListBuildsResponse response;
  std::lock_guard<std::mutex> lock(mu_);
  for (auto it = std::make_reverse_iterator(by_seq_.lower_bound(before)); it != by_seq_.rend(); ++it) {
    const Job& job = jobs_.at(it->second);
    if (!states.empty() && !states.count(job.build.state())) continue;
    if (static_cast<uint32_t>(response.builds_size()) == page_size) {
      response.set_next_page_token(absl::StrCat(std::prev(it.base())->first + 1));
      break;
    }
    *response.add_builds() = PublicBuildLocked(job);
  }
  return response;
}

absl::StatusOr<v1::Build> Controller::Cancel(const std::string& id, const std::string& reason) {
  v1::Build out;
  {
    std::lock_guard<std::mutex> lock(mu_);
    Job* job = FindLocked(id);
    if (!job) return NotFound(id);
    const v1::JobState state = job->build.state();
    const std::string why = reason.empty() ? "cancelled by request" : reason;
    if (state == v1::JOB_STATE_QUEUED) {
      FinishLocked(*job, v1::JOB_STATE_CANCELLED, why);
    } else if (!IsTerminal(state) && !job->cancel_requested) {
      job->cancel_requested = true;
      job->cancel_reason = why;
      EventLocked(*job, absl::StrCat("cancel requested: ", why), spdlog::level::info);
      SendCancelLocked(*job);
    }
    out = PublicBuildLocked(*job);
  }
  FlushNotifications();
  // A build the client was told is cancelled stays cancelled after a crash.
  RETURN_IF_ERROR(WaitCommitted(absl::StrCat("the cancel of build ", id)));
  return out;
}

absl::StatusOr<WatchSnapshot> Controller::Snapshot(const std::string& id) {
  std::lock_guard<std::mutex> lock(mu_);
  if (stopped_) return absl::UnavailableError("controller is shutting down");
  Job* job = FindLocked(id);
  if (!job) return NotFound(id);
  WatchSnapshot snap;
  snap.build = PublicBuildLocked(*job);
  snap.attempt = job->build.attempt();
  LogStore::Sizes sizes = logs_.GetSizes(id, snap.attempt);
  snap.log_committed = sizes.committed;
  snap.log_written = sizes.written;
  snap.terminal = IsTerminal(job->build.state());
  snap.log_path = logs_.PathFor(id, snap.attempt);
  return snap;
}

// ---------------------------------------------------------------- FleetService

v1::ListWorkersResponse Controller::ListWorkers() {
  v1::ListWorkersResponse response;
  std::lock_guard<std::mutex> lock(mu_);
  for (const auto& [id, w] : workers_) {
    v1::WorkerInfo* info = response.add_workers();
    *info = w.info;
    info->set_slots_used(static_cast<uint32_t>(w.jobs.size()));
    for (const std::string& job : w.jobs) info->add_running_job_ids(job);
  }
  return response;
}

absl::StatusOr<v1::WorkerInfo> Controller::Drain(const std::string& worker_id, uint32_t timeout_seconds) {
  std::lock_guard<std::mutex> lock(mu_);
  auto it = workers_.find(worker_id);
  if (it == workers_.end()) {
    // Let operators use the display name too.
    it = std::find_if(workers_.begin(), workers_.end(),
                      [&](const auto& kv) { return kv.second.info.name() == worker_id; });
  }
  if (it == workers_.end()) return absl::NotFoundError(absl::StrCat("worker ", worker_id, " not found"));
  Worker& w = it->second;
  if (w.info.state() == v1::WORKER_STATE_ONLINE) w.info.set_state(v1::WORKER_STATE_DRAINING);
  UpdateFreeLocked(w);
  SaveWorkerLocked(w);
  if (w.conn) {
    v1::ControllerMessage msg;
    msg.mutable_drain()->set_reason("drained by an operator");
    msg.mutable_drain()->set_timeout_seconds(timeout_seconds);
    SendLocked(w.conn, std::move(msg));
  }
  spdlog::info("worker {} draining", w.info.id());
  v1::WorkerInfo info = w.info;
  info.set_slots_used(static_cast<uint32_t>(w.jobs.size()));
  for (const std::string& job : w.jobs) info.add_running_job_ids(job);
  return info;
}

// ---------------------------------------------------------------- WorkerService

absl::Status Controller::OnHello(const std::shared_ptr<WorkerConnection>& conn, const v1::Hello& hello) {
  if (hello.worker_id().empty()) return absl::InvalidArgumentError("hello.worker_id is required");
  {
    std::lock_guard<std::mutex> lock(mu_);
    if (stopped_) return absl::UnavailableError("controller is shutting down");
    Worker& w = workers_[hello.worker_id()];
    if (w.conn && w.conn != conn) {
      w.conn->Close(grpc::Status(grpc::StatusCode::ABORTED, "replaced by a newer connection of this worker"));
    }
    w.conn = conn;
    w.last_seen = std::chrono::steady_clock::now();
    w.info.set_id(hello.worker_id());
    w.info.set_name(hello.name().empty() ? hello.worker_id() : hello.name());
    w.info.set_version(hello.version());
    *w.info.mutable_labels() = hello.labels();
    w.info.set_slots(hello.slots());
    w.info.set_last_heartbeat_unix_ms(UnixMillis());
    w.info.set_state(hello.draining() ? v1::WORKER_STATE_DRAINING : v1::WORKER_STATE_ONLINE);

    v1::ControllerMessage welcome_msg;
    v1::Welcome* welcome = welcome_msg.mutable_welcome();
    welcome->set_heartbeat_interval_ms(static_cast<uint32_t>(options_.heartbeat_interval.count()));
    welcome->set_liveness_timeout_ms(static_cast<uint32_t>(options_.liveness_timeout.count()));
    std::set<std::string> kept;
    std::vector<Job*> cancels;
    for (const v1::RunningJob& rj : hello.running()) {
      v1::JobDirective* d = welcome->add_jobs();
      d->set_job_id(rj.job_id());
      d->set_attempt(rj.attempt());
      Job* job = FindLocked(rj.job_id());
      const bool same = job && job->build.attempt() == rj.attempt() && job->build.worker_id() == w.info.id();
      const bool live = same && !IsTerminal(job->build.state());
      // An orphan died with an earlier run of the worker: if it is still the current attempt, it is
      // not kept below and so runs again as the next attempt.
      if (rj.orphaned() || (!live && !(same && rj.finished()))) {
        d->set_action(v1::JobDirective::ACTION_ABANDON);
        if (job) {
          EventLocked(*job, absl::StrCat("worker ", w.info.name(), " told to abandon attempt ", rj.attempt(),
                                         rj.orphaned() ? " (lost when the worker stopped)" : ""));
        }
        continue;
      }
      d->set_action(v1::JobDirective::ACTION_CONTINUE);
      d->set_committed_offset(logs_.GetSizes(rj.job_id(), rj.attempt()).committed);
      if (!live) continue;
      kept.insert(rj.job_id());
      if (job->cancel_requested) cancels.push_back(job);
    }
    // Attempts we gave this worker that it no longer states are lost with it.
    const std::set<std::string> held = w.jobs;
    for (const std::string& id : held) {
      if (kept.count(id)) continue;
      Job* job = FindLocked(id);
      if (!job) continue;
      if (job->cancel_requested) {
        FinishLocked(*job, v1::JOB_STATE_CANCELLED, job->cancel_reason);
      } else {
        // An attempt that never started costs nothing to hand out again.
        RequeueLocked(*job, job->build.state() == v1::JOB_STATE_RUNNING,
                      "the worker reconnected without it");
      }
    }
    w.jobs = kept;
    UpdateFreeLocked(w);
    SaveWorkerLocked(w);
    spdlog::info("worker {} ({}) connected: {} slot(s), {} running, {} kept", w.info.id(), w.info.name(),
                 w.info.slots(), hello.running_size(), kept.size());
    SendLocked(conn, std::move(welcome_msg));
    for (Job* job : cancels) SendCancelLocked(*job);
    ForgetRejectionsLocked(w.info.id());
    ScheduleLocked();
  }
  FlushNotifications();
  return absl::OkStatus();
}

void Controller::OnDisconnect(const WorkerConnection* conn, const std::string& worker_id) {
  std::lock_guard<std::mutex> lock(mu_);
  auto it = workers_.find(worker_id);
  if (it == workers_.end() || it->second.conn.get() != conn) return;
  // Liveness decides when its attempts are lost; a quick reconnect keeps them.
  it->second.conn.reset();
  UpdateFreeLocked(it->second);
  spdlog::info("worker {} disconnected", worker_id);
}

void Controller::OnMessage(const std::shared_ptr<WorkerConnection>& conn, const std::string& worker_id,
                           const v1::WorkerMessage& message, std::function<void()> done) {
  if (message.has_log()) {
    bool current;
    {
      std::lock_guard<std::mutex> lock(mu_);
      auto it = workers_.find(worker_id);
      current = it != workers_.end() && it->second.conn == conn;
      if (current) it->second.last_seen = std::chrono::steady_clock::now();
    }
    if (current) HandleLogChunk(conn, worker_id, message.log());
    done();
    return;
  }
  if (message.has_result()) {
    // The attempt's log must be whole and durable before the build is seen as finished. The fdatasync
    // runs on a log sync thread (with other attempts' syncs), never on this gRPC thread; the sync
    // thread then handles the result and lets the stream read on.
    const v1::JobResult& r = message.result();
    auto handle = [this, conn, worker_id, message, done](absl::Status st) {
      if (!st.ok()) spdlog::error("flushing log of {}: {}", message.result().job_id(), st.ToString());
      HandleMessage(conn, worker_id, message);
      done();
    };
    if (!logs_.FlushAsync(r.job_id(), r.attempt(), std::move(handle))) return;
  }
  HandleMessage(conn, worker_id, message);
  done();
}

void Controller::HandleMessage(const std::shared_ptr<WorkerConnection>& conn, const std::string& worker_id,
                               const v1::WorkerMessage& message) {
  {
    std::lock_guard<std::mutex> lock(mu_);
    auto wit = workers_.find(worker_id);
    if (wit == workers_.end() || wit->second.conn != conn) return;  // a replaced stream
    Worker& w = wit->second;
    w.last_seen = std::chrono::steady_clock::now();
    switch (message.kind_case()) {
      case v1::WorkerMessage::kHeartbeat:
        w.info.set_last_heartbeat_unix_ms(UnixMillis());
        if (message.heartbeat().draining()) {
          // Drained by SIGTERM on its machine: no new builds are offered (nor turned down again).
          if (w.info.state() == v1::WORKER_STATE_ONLINE) {
            w.info.set_state(v1::WORKER_STATE_DRAINING);
            UpdateFreeLocked(w);
            SaveWorkerLocked(w);
            spdlog::info("worker {} draining", w.info.id());
          }
        } else if (message.heartbeat().slots_used() < std::max<uint32_t>(1, w.info.slots()) &&
                   ForgetRejectionsLocked(worker_id)) {
          // A worker with room again may take what it turned down while it was full.
          ScheduleLocked();
        }
        break;
      case v1::WorkerMessage::kHello:
        spdlog::warn("worker {} sent a second hello on one stream; ignored", worker_id);
        break;
      case v1::WorkerMessage::kAccepted: {
        Job* job = FindLocked(message.accepted().job_id());
        if (!job || !HoldsLocked(worker_id, *job, message.accepted().attempt())) break;
        if (job->build.state() == v1::JOB_STATE_ASSIGNED) {
          job->build.set_state(v1::JOB_STATE_RUNNING);
          job->build.set_started_unix_ms(UnixMillis());
          SaveJobLocked(*job);
          SaveAttemptLocked(*job);
          EventLocked(*job, absl::StrCat("accepted by worker ", w.info.name()));
        }
        break;
      }
      case v1::WorkerMessage::kRejected: {
        const v1::JobRejected& r = message.rejected();
        Job* job = FindLocked(r.job_id());
        if (!job || !HoldsLocked(worker_id, *job, r.attempt())) break;
        job->rejected_by.insert(worker_id);
        rejections_[worker_id].insert(job->build.id());
        if (job->cancel_requested) {
          FinishLocked(*job, v1::JOB_STATE_CANCELLED, job->cancel_reason);
        } else {
          RequeueLocked(*job, /*next_attempt=*/false,
                        absl::StrCat("rejected by worker ", w.info.name(), ": ", r.reason()));
        }
        ScheduleLocked();
        break;
      }
      case v1::WorkerMessage::kProgress: {
        const v1::JobProgress& p = message.progress();
        Job* job = FindLocked(p.job_id());
        if (!job || !HoldsLocked(worker_id, *job, p.attempt())) {
          spdlog::warn("worker {} reported progress of {} #{} it does not hold; ignored", worker_id,
                       p.job_id(), p.attempt());
          break;
        }
        v1::Build& b = job->build;
        if (p.has_uploading_artifact() && !p.uploading_artifact().path().empty()) {
          // Clients may follow it now (BlobService.Download by upload_id) or take it once stored; one
          // entry per path.
          auto* uploading = b.mutable_uploading_artifacts();
          auto same = std::find_if(uploading->begin(), uploading->end(),
                                   [&](const v1::ArtifactInfo& a) { return a.path() == p.uploading_artifact().path(); });
          if (same != uploading->end()) {
            *same = p.uploading_artifact();
          } else {
            *uploading->Add() = p.uploading_artifact();
          }
        }
        // A worker restates its latest progress after each reconnect: the same report is no new event.
        if (b.state() == v1::JOB_STATE_RUNNING && b.phase() == p.phase() && b.step_index() == p.step_index() &&
            b.message() == p.message()) {
          break;
        }
        if (b.state() == v1::JOB_STATE_ASSIGNED) {
          b.set_state(v1::JOB_STATE_RUNNING);
          b.set_started_unix_ms(UnixMillis());
        }
        b.set_phase(p.phase());
        b.set_step_index(p.step_index());
        if (p.step_count()) b.set_step_count(p.step_count());
        b.set_step_name(p.step_name());
        // The worker's latest note; a change reaches watchers as a status event (see StatusKey).
        b.set_message(p.message());
        SaveJobLocked(*job);
        std::string text = p.message();
        if (text.empty()) {
          text = p.phase() == v1::PHASE_RUNNING && p.step_index()
                     ? absl::StrCat("step ", p.step_index(), "/", b.step_count(), ": ", p.step_name())
                     : PhaseName(p.phase());
        }
        EventLocked(*job, text);
        break;
      }
      case v1::WorkerMessage::kResult:
        HandleResultLocked(conn, worker_id, message.result());
        ForgetRejectionsLocked(worker_id);
        ScheduleLocked();
        break;
      default:
        spdlog::warn("worker {} sent an empty message; ignored", worker_id);
    }
  }
  FlushNotifications();
}

void Controller::HandleResultLocked(const std::shared_ptr<WorkerConnection>& conn, const std::string& worker_id,
                                    const v1::JobResult& result) {
  v1::ControllerMessage ack;
  ack.mutable_result_ack()->set_job_id(result.job_id());
  ack.mutable_result_ack()->set_attempt(result.attempt());
  Job* job = FindLocked(result.job_id());
  if (!job || !HoldsLocked(worker_id, *job, result.attempt())) {
    // A duplicate, or an attempt the controller gave up on: acknowledge so the worker forgets it.
    if (job && job->build.attempt() == result.attempt() && IsTerminal(job->build.state())) {
      spdlog::debug("duplicate result for {} #{}", result.job_id(), result.attempt());
    } else {
      spdlog::warn("worker {} sent a result for {} #{} it does not hold; acknowledged, ignored",
                   worker_id, result.job_id(), result.attempt());
    }
    SendLocked(conn, std::move(ack));
    return;
  }
  v1::JobState outcome = result.outcome();
  std::string error = result.error();
  if (!IsTerminal(outcome)) {
    error = absl::StrCat("worker reported a non-terminal outcome ", v1::JobState_Name(outcome),
                         error.empty() ? "" : ": ", error);
    outcome = v1::JOB_STATE_ERROR;
  }
  v1::Build& b = job->build;
  b.set_exit_code(result.exit_code());
  b.set_failed_step(result.failed_step());
  *b.mutable_artifacts() = result.artifacts();
  *b.mutable_phases() = result.phases();
  store_->PutArtifacts(b.id(), b.attempt(), result.artifacts());
  const uint64_t committed = logs_.GetSizes(b.id(), b.attempt()).committed;
  if (result.log_size() > committed) {
    spdlog::warn("{} #{}: result says {} log bytes, {} received", b.id(), b.attempt(), result.log_size(),
                 committed);
  }
  FinishLocked(*job, outcome, error);
  // Sent once the outcome is committed: an acknowledged result is never lost.
  SendLocked(conn, std::move(ack));
}

void Controller::HandleLogChunk(const std::shared_ptr<WorkerConnection>& conn, const std::string& worker_id,
                                const v1::LogChunk& chunk) {
  {
    std::lock_guard<std::mutex> lock(mu_);
    Job* job = FindLocked(chunk.job_id());
    if (!job || !HoldsLocked(worker_id, *job, chunk.attempt())) {
      spdlog::warn("worker {} sent {} log bytes for {} #{} it does not hold; ignored", worker_id,
                   chunk.data().size(), chunk.job_id(), chunk.attempt());
      return;
    }
  }
  std::weak_ptr<WorkerConnection> weak = conn;
  const std::string job_id = chunk.job_id();
  const uint32_t attempt = chunk.attempt();
  auto make_ack = [job_id, attempt](uint64_t committed) {
    v1::ControllerMessage ack;
    ack.mutable_log_ack()->set_job_id(job_id);
    ack.mutable_log_ack()->set_attempt(attempt);
    ack.mutable_log_ack()->set_committed_offset(committed);
    return ack;
  };
  auto on_commit = [this, weak, job_id, make_ack](uint64_t committed) {
    if (auto c = weak.lock()) c->Send(make_ack(committed));
    NotifyWatchers(job_id);
  };
  absl::StatusOr<LogStore::AppendResult> r =
      logs_.Append(job_id, attempt, chunk.offset(), chunk.data(), std::move(on_commit));
  // The worker resends only from the committed offset named in a Welcome, so a chunk that could not be
  // stored (or that follows a lost one) ends the stream: the reconnect resumes the log where it stopped.
  if (!r.ok()) {
    spdlog::error("storing log of {} #{}: {}; closing the stream so the worker resends", job_id, attempt,
                  r.status().ToString());
    conn->Close(grpc::Status(grpc::StatusCode::UNAVAILABLE, "log not stored; reconnect and resend"));
    return;
  }
  if (r->gap) {
    spdlog::warn("worker {}: log chunk for {} #{} at offset {} leaves a gap after {}; closing the stream so "
                 "the worker resends", worker_id, job_id, attempt, chunk.offset(), r->written);
    conn->Close(grpc::Status(grpc::StatusCode::UNAVAILABLE, "log gap; reconnect and resend"));
    return;
  }
  if (!r->pending) conn->Send(make_ack(r->committed));
  if (r->pending) NotifyWatchers(job_id);  // new bytes: watchers need not wait for the sync
}

}  // namespace freeagent::controller
