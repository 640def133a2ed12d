#include "node/worker.h"

#include <algorithm>
#include <set>

#include <spdlog/spdlog.h>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "common/clock.h"
#include "common/fs.h"
#include "vm/local_driver.h"
#include "vm/qemu_driver.h"
#include "vm/tart_driver.h"
#include "vm/static_driver.h"

namespace freeagent::node {

namespace v1 = ::freeagent::v1;

namespace {
// How long a drained worker waits for the controller to ack results before it exits anyway.
constexpr std::chrono::seconds kResultAckWait{10};
// Progress notes held per job while the controller is away; the oldest go first beyond it.
constexpr size_t kMaxUnsentProgress = 1000;
constexpr char kSpoolSuffix[] = ".spool";

// A job id becomes part of file names: it must be one plain name.
bool SafeJobId(const std::string& id) {
  return !id.empty() && id.size() <= 128 && id[0] != '.' && id.find('/') == std::string::npos &&
         id.find('\0') == std::string::npos;
}
}  // namespace

std::string Worker::Key(const std::string& job_id, uint32_t attempt) { return absl::StrCat(job_id, "#", attempt); }

Worker::Worker(WorkerConfig config, std::unique_ptr<vm::VmDriver> driver, ConnectionOptions connection_options,
               LogStreamOptions log_options)
    : config_(std::move(config)), driver_(std::move(driver)), log_options_(log_options) {
  log_options_.max_unacked_bytes = uint64_t{config_.log_spool_max_mib} << 20;
  if (!driver_) {
    if (config_.driver == "static") {
      driver_ = std::make_unique<vm::StaticDriver>(config_.static_driver);
    } else if (config_.driver == "qemu") {
      driver_ = std::make_unique<vm::QemuDriver>(config_.qemu);
    } else if (config_.driver == "tart") {
      driver_ = std::make_unique<vm::TartDriver>(config_.tart);
    } else {
      driver_ = std::make_unique<vm::LocalDriver>(config_.work_dir + "/vms");
    }
  }
  if (config_.heartbeat_interval_ms > 0) {
    connection_options.heartbeat_interval = std::chrono::milliseconds(config_.heartbeat_interval_ms);
  }
  channel_ = MakeWorkerChannel(config_.controller, config_.security);
  // Artifact uploads are retried (resuming) for as long as a job may run without its controller.
  artifacts::GrpcBlobClient::Options blob_options;
  blob_options.retry_for = std::chrono::seconds(std::max<uint32_t>(1, config_.disconnected_job_limit_seconds));
  blobs_ = std::make_unique<artifacts::GrpcBlobClient>(channel_, blob_options);
  connection_ = std::make_unique<ControllerConnection>(channel_, this, connection_options);
}

Worker::~Worker() { Stop(); }

absl::Status Worker::Start() {
  std::string prefix = absl::StrCat("freeagent-", config_.name, "-");
  absl::StatusOr<std::vector<std::string>> orphans = driver_->ListOwned(prefix);
  if (!orphans.ok()) {
    // A machine that is down now may be back before the first job; the job will say so if not.
    spdlog::warn("could not list leftovers of an earlier run: {}", std::string(orphans.status().message()));
    orphans = std::vector<std::string>{};
  }
  for (const std::string& name : *orphans) {
    spdlog::info("removing {} left by an earlier run", name);
    absl::Status s = driver_->DestroyOwned(name);
    if (!s.ok()) spdlog::warn("could not remove {}: {}", name, std::string(s.message()));
  }
  FindOrphans();
  // No job runs yet, so every job dir is a leftover of a crash (and may hold a source or secrets).
  absl::Status cleared = RemoveTree(config_.work_dir + "/jobs");
  if (!cleared.ok()) return cleared;
  spdlog::info("worker {} ({}) connecting to {} with {} slots", config_.name, config_.id, config_.controller,
               config_.slots);
  connection_->Start();
  // Joins the threads of finished jobs as they end, so a long-running worker holds no dead threads.
  janitor_ = std::thread([this] {
    std::unique_lock<std::mutex> lock(mu_);
    while (!janitor_stop_) {
      ReapLocked(lock);
      EnforceDisconnectLimitLocked();
      lock.unlock();
      {
        std::lock_guard<std::mutex> sending(progress_send_mu_);
        DeliverProgress();
      }
      lock.lock();
      cv_.wait_for(lock, std::chrono::milliseconds(500));
    }
  });
  return absl::OkStatus();
}

void Worker::FindOrphans() {
  absl::StatusOr<std::vector<std::string>> names = ListDirectory(config_.work_dir + "/jobs");
  if (!names.ok()) return;  // no jobs dir: nothing ran before
  const std::string_view suffix = kSpoolSuffix;
  for (const std::string& name : *names) {
    if (name.size() <= suffix.size() || name.compare(name.size() - suffix.size(), suffix.size(), suffix) != 0) {
      continue;
    }
    std::string stem = name.substr(0, name.size() - suffix.size());
    size_t dash = stem.rfind('-');
    uint32_t attempt = 0;
    if (dash == std::string::npos || !absl::SimpleAtoi(stem.substr(dash + 1), &attempt) || attempt == 0) continue;
    Orphan orphan{stem.substr(0, dash), attempt};
    spdlog::info("{} attempt {} was running when this worker last stopped; telling the controller", orphan.job_id,
                 orphan.attempt);
    orphans_.push_back(std::move(orphan));
  }
}

void Worker::EnforceDisconnectLimitLocked() {
  bool running = false;
  for (const auto& [key, job] : jobs_) running = running || (!job->result && !job->abandoned);
  if (!running || connection_->connected()) {
    disconnected_since_.reset();
    disconnect_limit_hit_ = false;
    return;
  }
  const auto now = std::chrono::steady_clock::now();
  if (!disconnected_since_) disconnected_since_ = now;
  const std::chrono::seconds limit(config_.disconnected_job_limit_seconds);
  if (disconnect_limit_hit_ || now - *disconnected_since_ < limit) return;
  disconnect_limit_hit_ = true;
  const std::string why =
      absl::StrCat("the controller was unreachable for more than ", limit.count(), " s");
  spdlog::warn("{}: cancelling running jobs", why);
  for (auto& [key, job] : jobs_) {
    if (!job->result && !job->abandoned) job->runner->Cancel(why);
  }
}

void Worker::ReportProgress(Job* job, const v1::JobProgress& progress) {
  std::lock_guard<std::mutex> sending(progress_send_mu_);
  {
    std::lock_guard<std::mutex> lock(mu_);
    if (job->unsent_progress.size() >= kMaxUnsentProgress) job->unsent_progress.pop_front();
    job->unsent_progress.push_back(progress);
    job->last_progress = progress;
  }
  DeliverProgress();
}

// Needs progress_send_mu_, not mu_. Sends outside mu_: Send may block (backpressure) and may run
// reactions inline.
void Worker::DeliverProgress() {
  std::vector<std::pair<std::string, std::deque<v1::JobProgress>>> batches;
  {
    std::lock_guard<std::mutex> lock(mu_);
    for (auto& [key, job] : jobs_) {
      if (job->unsent_progress.empty()) continue;
      batches.emplace_back(key, std::move(job->unsent_progress));
      job->unsent_progress.clear();
    }
  }
  if (batches.empty()) return;
  for (auto& [key, batch] : batches) {
    while (!batch.empty()) {
      v1::WorkerMessage msg;
      *msg.mutable_progress() = batch.front();
      if (!connection_->Send(std::move(msg))) break;  // no live stream: kept for the next Welcome
      batch.pop_front();
    }
  }
  std::lock_guard<std::mutex> lock(mu_);
  for (auto& [key, batch] : batches) {
    if (batch.empty()) continue;
    auto it = jobs_.find(key);
    if (it == jobs_.end()) continue;
    std::deque<v1::JobProgress>& queue = it->second->unsent_progress;
    queue.insert(queue.begin(), batch.begin(), batch.end());
    while (queue.size() > kMaxUnsentProgress) queue.pop_front();
  }
}

size_t Worker::JobCount() {
  std::lock_guard<std::mutex> lock(mu_);
  return jobs_.size();
}

uint32_t Worker::SlotsUsedLocked() const {
  uint32_t used = 0;
  for (const auto& [key, job] : jobs_) {
    if (!job->result) ++used;
  }
  return used;
}

uint32_t Worker::SlotsUsed() {
  std::lock_guard<std::mutex> lock(mu_);
  return SlotsUsedLocked();
}

v1::Heartbeat Worker::MakeHeartbeat() {
  std::lock_guard<std::mutex> lock(mu_);
  v1::Heartbeat beat;
  beat.set_slots_used(SlotsUsedLocked());
  beat.set_draining(draining_);
  return beat;
}

v1::Hello Worker::MakeHello() {
  v1::Hello hello;
  hello.set_worker_id(config_.id);
  hello.set_name(config_.name);
  hello.set_version(kWorkerVersion);
  for (const auto& [k, v] : config_.labels) (*hello.mutable_labels())[k] = v;
  hello.set_slots(config_.slots);
  std::lock_guard<std::mutex> lock(mu_);
  hello.set_draining(draining_);
  for (const auto& [key, job] : jobs_) {
    if (job->abandoned || job->acked) continue;
    v1::RunningJob* r = hello.add_running();
    r->set_job_id(job->job.job_id());
    r->set_attempt(job->job.attempt());
    r->set_phase(job->runner->phase());
    r->set_log_bytes(job->log->size());
    r->set_finished(job->result.has_value());
  }
  for (const Orphan& orphan : orphans_) {
    v1::RunningJob* r = hello.add_running();
    r->set_job_id(orphan.job_id);
    r->set_attempt(orphan.attempt);
    r->set_orphaned(true);
  }
  return hello;
}

void Worker::OnMessage(const v1::ControllerMessage& message) {
  switch (message.kind_case()) {
    case v1::ControllerMessage::kWelcome:
      HandleWelcome(message.welcome());
      break;
    case v1::ControllerMessage::kAssign:
      HandleAssign(message.assign());
      break;
    case v1::ControllerMessage::kCancel: {
      const v1::CancelJob& c = message.cancel();
      std::lock_guard<std::mutex> lock(mu_);
      bool found = false;
      for (auto& [key, job] : jobs_) {
        if (job->job.job_id() != c.job_id() || (c.attempt() != 0 && job->job.attempt() != c.attempt())) continue;
        found = true;
        job->runner->Cancel(c.reason().empty() ? "cancelled by the controller" : c.reason(),
                            std::chrono::seconds(c.grace_seconds()));
      }
      if (!found) spdlog::info("cancel for {} attempt {}: not running here", c.job_id(), c.attempt());
      break;
    }
    case v1::ControllerMessage::kLogAck: {
      const v1::LogAck& a = message.log_ack();
      std::lock_guard<std::mutex> lock(mu_);
      auto it = jobs_.find(Key(a.job_id(), a.attempt()));
      if (it != jobs_.end()) it->second->log->Ack(a.committed_offset());
      break;
    }
    case v1::ControllerMessage::kDrain:
      spdlog::info("controller asks to drain: {}", message.drain().reason());
      // Like SIGTERM (`freeagent drain WORKER`): no new builds, running ones finish (or are cancelled
      // after the timeout), results are delivered, then Wait() returns and the process exits 0.
      Drain(std::chrono::seconds(message.drain().timeout_seconds()));
      break;
    case v1::ControllerMessage::kResultAck: {
      const v1::ResultAck& a = message.result_ack();
      std::lock_guard<std::mutex> lock(mu_);
      auto it = jobs_.find(Key(a.job_id(), a.attempt()));
      if (it != jobs_.end() && it->second->result) {
        it->second->acked = true;
        cv_.notify_all();
      }
      break;
    }
    default:
      spdlog::warn("unexpected controller message kind {}", static_cast<int>(message.kind_case()));
  }
}

void Worker::HandleWelcome(const v1::Welcome& welcome) {
  std::lock_guard<std::mutex> lock(mu_);
  std::set<std::string> mentioned;
  for (const v1::JobDirective& d : welcome.jobs()) {
    auto orphan = std::find_if(orphans_.begin(), orphans_.end(), [&](const Orphan& o) {
      return o.job_id == d.job_id() && o.attempt == d.attempt();
    });
    if (orphan != orphans_.end()) {
      // Nothing of it runs any more; the controller has been told, whatever it answers.
      spdlog::info("{} attempt {} (lost when this worker last stopped): the controller says {}", d.job_id(),
                   d.attempt(), d.action() == v1::JobDirective::ACTION_ABANDON ? "abandon" : "continue");
      orphans_.erase(orphan);
      continue;
    }
    auto it = jobs_.find(Key(d.job_id(), d.attempt()));
    if (it == jobs_.end()) continue;
    mentioned.insert(it->first);
    Job& job = *it->second;
    if (d.action() == v1::JobDirective::ACTION_ABANDON) {
      spdlog::info("abandoning {} attempt {}", d.job_id(), d.attempt());
      job.abandoned = true;
      job.runner->Cancel("abandoned: the controller gave this attempt up");
      job.log->Close();
      continue;
    }
    job.log->Rewind(d.committed_offset());
  }
  // A job the controller did not mention: carry on from the last offset it acked to us; it drops
  // whatever it already has.
  for (auto& [key, job] : jobs_) {
    if (mentioned.count(key) == 0 && !job->abandoned) job->log->Rewind(0);
    // The janitor delivers it (sending from a reaction could block).
    if (!job->abandoned && !job->acked && job->last_progress && job->unsent_progress.empty()) {
      job->unsent_progress.push_back(*job->last_progress);
    }
  }
  // Job threads holding a result deliver it again on this stream.
  ++welcome_generation_;
  cv_.notify_all();
}

void Worker::Reject(const v1::BuildJob& job, const std::string& reason) {
  spdlog::info("rejecting {} attempt {}: {}", job.job_id(), job.attempt(), reason);
  v1::WorkerMessage msg;
  msg.mutable_rejected()->set_job_id(job.job_id());
  msg.mutable_rejected()->set_attempt(job.attempt());
  msg.mutable_rejected()->set_reason(reason);
  connection_->SendPriority(std::move(msg));
}

void Worker::HandleAssign(const v1::Assign& assign) {
  const v1::BuildJob& build = assign.job();
  // An image this worker does not have is refused before anything is created or booted.
  if (!config_.images.empty()) {
    absl::StatusOr<vm::ImageEntry> image = config_.images.Find(build.spec().vm().image());
    if (!image.ok()) {
      Reject(build, std::string(image.status().message()));
      return;
    }
  }
  if (!SafeJobId(build.job_id())) {
    Reject(build, absl::StrCat("job id \"", build.job_id(), "\" is not a plain file name"));
    return;
  }
  std::string key = Key(build.job_id(), build.attempt());
  const std::string jobs_dir = config_.work_dir + "/jobs";
  Job* job = nullptr;
  std::string refusal;
  {
    std::lock_guard<std::mutex> lock(mu_);
    if (jobs_.count(key) != 0) {
      spdlog::info("assign of {} attempt {} again: already held, ignored", build.job_id(), build.attempt());
      return;
    }
    if (draining_ || stopped_) {
      refusal = "worker is draining";
    } else if (SlotsUsedLocked() >= config_.slots) {
      refusal = "no free slot";
    } else {
      // The spool sits next to the job's private dir, so a crash leaves both for the next Start.
      absl::Status dir = MakeDirs(jobs_dir, 0700);
      absl::StatusOr<std::unique_ptr<LogStream>> log =
          dir.ok() ? LogStream::Open(build.job_id(), build.attempt(), connection_.get(),
                                     absl::StrCat(jobs_dir, "/", build.job_id(), "-", build.attempt(), kSpoolSuffix),
                                     log_options_)
                   : absl::StatusOr<std::unique_ptr<LogStream>>(dir);
      if (!log.ok()) {
        refusal = std::string(log.status().message());
      } else {
        auto j = std::make_unique<Job>();
        j->job = build;
        j->log = *std::move(log);
        JobRunnerOptions ro;
        ro.jobs_dir = jobs_dir;
        ro.worker_name = config_.name;
        ro.artifact_max_total_bytes = uint64_t{config_.artifact_max_total_mib} << 20;
        ro.max_log_bytes = uint64_t{config_.max_log_mib} << 20;
        LogStream* stream = j->log.get();
        Job* raw = j.get();
        JobCallbacks cb;
        cb.log = [stream](std::string_view b) { stream->Append(b); };
        cb.progress = [this, raw](const v1::JobProgress& p) { ReportProgress(raw, p); };
        j->runner = std::make_unique<JobRunner>(build, ro, driver_.get(), blobs_.get(), std::move(cb));
        job = raw;
        jobs_[key] = std::move(j);
      }
    }
  }
  if (job == nullptr) {
    Reject(build, refusal);
    return;
  }
  spdlog::info("accepted {} attempt {}", build.job_id(), build.attempt());
  v1::WorkerMessage msg;
  msg.mutable_accepted()->set_job_id(build.job_id());
  msg.mutable_accepted()->set_attempt(build.attempt());
  connection_->SendPriority(std::move(msg));
  std::lock_guard<std::mutex> lock(mu_);
  job->thread = std::thread([this, job] { RunJob(job); });
}

void Worker::RunJob(Job* job) {
  v1::JobResult result = job->runner->Run();
  result.set_log_size(job->log->size());
  spdlog::info("{} attempt {} ended: {} {}", result.job_id(), result.attempt(), v1::JobState_Name(result.outcome()),
               result.error());
  std::unique_lock<std::mutex> lock(mu_);
  job->result = result;
  cv_.notify_all();
  // Deliver the result until the controller acks it: once per live stream, after every log byte, on
  // the bulk queue so it cannot overtake the log chunks and progress queued before it.
  uint64_t delivered_for = 0;
  std::optional<std::chrono::steady_clock::time_point> stop_at;
  while (!job->acked && !job->abandoned) {
    if (stopped_) {
      if (!stop_at) stop_at = std::chrono::steady_clock::now() + std::chrono::seconds(5);
      if (std::chrono::steady_clock::now() >= *stop_at) break;
    }
    uint64_t generation = welcome_generation_;
    if (generation != delivered_for && connection_->connected()) {
      lock.unlock();
      // The result goes out only after the progress notes held while the controller was away, and once
      // the controller holds every log byte durably, so it can never overtake log chunks that are being
      // re-sent after a reconnect.
      bool notes_out;
      {
        std::lock_guard<std::mutex> sending(progress_send_mu_);
        DeliverProgress();
        std::lock_guard<std::mutex> relock(mu_);
        notes_out = job->unsent_progress.empty();
      }
      bool flushed = notes_out && job->log->Flush(std::chrono::seconds(10)) &&
                     job->log->WaitAcked(std::chrono::seconds(10));
      v1::WorkerMessage msg;
      *msg.mutable_result() = result;
      bool sent = flushed && connection_->Send(std::move(msg));
      lock.lock();
      if (sent) {
        delivered_for = generation;
        continue;
      }
    }
    cv_.wait_for(lock, std::chrono::milliseconds(100));
  }
  job->log->Close();
  job->done = true;
  cv_.notify_all();
}

void Worker::ReapLocked(std::unique_lock<std::mutex>& lock) {
  for (auto it = jobs_.begin(); it != jobs_.end();) {
    Job& job = *it->second;
    if (!job.done) {
      ++it;
      continue;
    }
    std::unique_ptr<Job> owned = std::move(it->second);
    it = jobs_.erase(it);
    lock.unlock();
    if (owned->thread.joinable()) owned->thread.join();
    owned.reset();
    lock.lock();
    it = jobs_.begin();
  }
}

void Worker::StopAccepting(std::chrono::seconds timeout) {
  {
    std::lock_guard<std::mutex> lock(mu_);
    draining_ = true;
    if (timeout.count() > 0) drain_deadline_ = std::chrono::steady_clock::now() + timeout;
    cv_.notify_all();
  }
  // A heartbeat now, not at the next beat: the controller stops offering builds it would turn down.
  v1::WorkerMessage msg;
  *msg.mutable_heartbeat() = MakeHeartbeat();
  msg.mutable_heartbeat()->set_sent_unix_ms(UnixMillis());
  connection_->SendPriority(std::move(msg));
}

void Worker::Drain(std::chrono::seconds timeout) {
  StopAccepting(timeout);
  std::lock_guard<std::mutex> lock(mu_);
  exit_when_idle_ = true;
  cv_.notify_all();
}

void Worker::Wait() {
  std::unique_lock<std::mutex> lock(mu_);
  std::optional<std::chrono::steady_clock::time_point> all_done_at;
  while (!stopped_) {
    ReapLocked(lock);
    if (drain_deadline_ && std::chrono::steady_clock::now() >= *drain_deadline_) {
      for (auto& [key, job] : jobs_) job->runner->Cancel("worker drain timed out");
      drain_deadline_.reset();
    }
    if (exit_when_idle_) {
      if (jobs_.empty()) break;
      bool running = false;
      for (auto& [key, job] : jobs_) running = running || !job->result;
      if (!running) {
        // Every attempt ended; give the controller a moment to ack the results.
        if (!all_done_at) all_done_at = std::chrono::steady_clock::now();
        if (std::chrono::steady_clock::now() - *all_done_at > kResultAckWait) break;
      }
    }
    cv_.wait_for(lock, std::chrono::milliseconds(200));
  }
}

void Worker::Shutdown() {
  std::lock_guard<std::mutex> lock(mu_);
  stopped_ = true;
  draining_ = true;
  for (auto& [key, job] : jobs_) job->runner->Cancel("worker is shutting down");
  cv_.notify_all();
}

void Worker::Stop() {
  std::lock_guard<std::mutex> stop_lock(stop_mu_);
  Shutdown();
  std::map<std::string, std::unique_ptr<Job>> jobs;
  // Jobs finish their cleanup; the connection stays up meanwhile so their logs and results can go out.
  for (;;) {
    std::unique_lock<std::mutex> lock(mu_);
    bool running = false;
    for (auto& [key, job] : jobs_) running = running || !job->done;
    if (!running) {
      jobs.swap(jobs_);
      break;
    }
    cv_.wait_for(lock, std::chrono::milliseconds(100));
  }
  for (auto& [key, job] : jobs) {
    job->log->Close();
    if (job->thread.joinable()) job->thread.join();
  }
  {
    std::lock_guard<std::mutex> lock(mu_);
    janitor_stop_ = true;
    cv_.notify_all();
  }
  if (janitor_.joinable()) janitor_.join();
  connection_->Stop();
}

}  // namespace freeagent::node
