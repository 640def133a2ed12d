#include "tests/support/sim_fleet.h"

#include <sys/resource.h>

#include <algorithm>
#include <deque>
#include <set>

#include <grpcpp/grpcpp.h>

#include "absl/strings/str_cat.h"
#include "freeagent/v1/worker.grpc.pb.h"
#include "proto/channel.h"

namespace freeagent::testing {

namespace v1 = ::freeagent::v1;
using Clock = std::chrono::steady_clock;

// One simulated worker: a client bidi reactor with one read and one write in flight. The hold taken at
// start lets writes begin outside reactions (heartbeats); it is released once the stream is ending.
class SimWorker final : public grpc::ClientBidiReactor<v1::WorkerMessage, v1::ControllerMessage> {
 public:
  SimWorker(SimFleet* fleet, std::string id) : fleet_(fleet), id_(std::move(id)) {}

  void Start(v1::WorkerService::Stub* stub) {
    stub->async()->Connect(&context_, this);
    AddHold();
    v1::WorkerMessage hello;
    v1::Hello* h = hello.mutable_hello();
    h->set_worker_id(id_);
    h->set_name(id_);
    h->set_version("sim");
    (*h->mutable_labels())["os"] = "linux";
    (*h->mutable_labels())["arch"] = "x86_64";
    h->set_slots(fleet_->options_.slots);
    Enqueue(std::move(hello), false);
    StartRead(&in_);
    StartCall();
  }

  void Heartbeat() {
    v1::WorkerMessage msg;
    msg.mutable_heartbeat()->set_sent_unix_ms(
        std::chrono::duration_cast<std::chrono::milliseconds>(std::chrono::system_clock::now().time_since_epoch())
            .count());
    uint32_t used;
    {
      std::lock_guard<std::mutex> lock(mu_);
      if (!welcomed_) return;
      used = running_;
    }
    msg.mutable_heartbeat()->set_slots_used(used);
    Enqueue(std::move(msg), false);
  }

  void Stop() {
    bool release = false;
    {
      std::lock_guard<std::mutex> lock(mu_);
      stopping_ = true;
      queue_.clear();
      if (!writing_ && !hold_released_) release = hold_released_ = true;
    }
    if (release) RemoveHold();
    context_.TryCancel();
  }

  void OnReadDone(bool ok) override {
    if (!ok) return;
    switch (in_.kind_case()) {
      case v1::ControllerMessage::kWelcome: {
        {
          std::lock_guard<std::mutex> lock(mu_);
          welcomed_ = true;
          free_since_.assign(fleet_->options_.slots - std::min(running_, fleet_->options_.slots), Clock::now());
        }
        fleet_->OnWelcome(this);
        break;
      }
      case v1::ControllerMessage::kAssign:
        HandleAssign(in_.assign().job());
        break;
      case v1::ControllerMessage::kResultAck: {
        const std::string key = absl::StrCat(in_.result_ack().job_id(), "#", in_.result_ack().attempt());
        {
          std::lock_guard<std::mutex> lock(mu_);
          if (results_.erase(key) == 0) break;  // a repeated ack
        }
        fleet_->OnResultAck(key, in_.result_ack().job_id());
        break;
      }
      default:
        break;  // log acks, cancels and drains need no answer here
    }
    StartRead(&in_);
  }

  void OnWriteDone(bool ok) override {
    bool release = false;
    {
      std::lock_guard<std::mutex> lock(mu_);
      writing_ = false;
      if (ok && current_is_result_) {
        // The slot is free once the result is on the wire: the controller may hand out the next job.
        --running_;
        free_since_.push_back(Clock::now());
      }
      if (!ok || stopping_) {
        queue_.clear();
        if (!hold_released_) release = hold_released_ = true;
      }
    }
    if (release) {
      RemoveHold();
      return;
    }
    MaybeWrite();
  }

  void OnDone(const grpc::Status& status) override {
    bool expected;
    {
      std::lock_guard<std::mutex> lock(mu_);
      expected = stopping_;
    }
    fleet_->OnStreamDone(id_, absl::StrCat(status.error_code(), " ", status.error_message()), expected);
  }

 private:
  void HandleAssign(const v1::BuildJob& job) {
    const std::string key = absl::StrCat(job.job_id(), "#", job.attempt());
    double latency_ms = 0;
    bool has_latency = false;
    {
      std::lock_guard<std::mutex> lock(mu_);
      if (!free_since_.empty()) {
        latency_ms = std::chrono::duration<double, std::milli>(Clock::now() - free_since_.front()).count();
        free_since_.pop_front();
        has_latency = true;
      }
      ++running_;
      results_.insert(key);
    }
    fleet_->OnAssign(job.job_id(), key, latency_ms, has_latency);
    v1::WorkerMessage accepted;
    accepted.mutable_accepted()->set_job_id(job.job_id());
    accepted.mutable_accepted()->set_attempt(job.attempt());
    Enqueue(std::move(accepted), false);
    v1::WorkerMessage progress;
    v1::JobProgress* p = progress.mutable_progress();
    p->set_job_id(job.job_id());
    p->set_attempt(job.attempt());
    p->set_phase(v1::PHASE_RUNNING);
    p->set_step_index(1);
    p->set_step_count(1);
    p->set_step_name(job.spec().steps_size() > 0 ? job.spec().steps(0).name() : "step 1");
    Enqueue(std::move(progress), false);
    const std::string& data = fleet_->options_.log_data;
    if (!data.empty()) {
      v1::WorkerMessage log;
      log.mutable_log()->set_job_id(job.job_id());
      log.mutable_log()->set_attempt(job.attempt());
      log.mutable_log()->set_offset(0);
      log.mutable_log()->set_data(data);
      Enqueue(std::move(log), false);
    }
    v1::WorkerMessage result;
    v1::JobResult* r = result.mutable_result();
    r->set_job_id(job.job_id());
    r->set_attempt(job.attempt());
    r->set_outcome(v1::JOB_STATE_SUCCEEDED);
    r->set_log_size(data.size());
    Enqueue(std::move(result), true);
  }

  void Enqueue(v1::WorkerMessage message, bool is_result) {
    {
      std::lock_guard<std::mutex> lock(mu_);
      if (stopping_ || hold_released_) return;
      queue_.emplace_back(std::move(message), is_result);
    }
    MaybeWrite();
  }

  // StartWrite is called without the lock: a reaction may run inline.
  void MaybeWrite() {
    {
      std::lock_guard<std::mutex> lock(mu_);
      if (writing_ || queue_.empty() || stopping_ || hold_released_) return;
      writing_ = true;
      current_ = std::move(queue_.front().first);
      current_is_result_ = queue_.front().second;
      queue_.pop_front();
    }
    StartWrite(&current_);
  }

  SimFleet* fleet_;
  std::string id_;
  grpc::ClientContext context_;
  v1::ControllerMessage in_;
  v1::WorkerMessage current_;
  std::mutex mu_;
  std::deque<std::pair<v1::WorkerMessage, bool>> queue_;
  bool current_is_result_ = false;
  bool writing_ = false;
  bool stopping_ = false;
  bool hold_released_ = false;
  bool welcomed_ = false;
  uint32_t running_ = 0;
  std::deque<Clock::time_point> free_since_;
  std::set<std::string> results_;  // attempts whose result waits for its ack
};

absl::StatusOr<std::unique_ptr<SimFleet>> SimFleet::Start(SimFleetOptions options, std::chrono::milliseconds timeout) {
  if (options.workers <= 0) return absl::InvalidArgumentError("SimFleetOptions.workers must be positive");
  if (options.slots == 0) return absl::InvalidArgumentError("SimFleetOptions.slots must be positive");
  // Each connection costs a descriptor here (and one in the controller when it runs in this process).
  rlimit nofile{};
  if (getrlimit(RLIMIT_NOFILE, &nofile) == 0 && nofile.rlim_cur < nofile.rlim_max) {
    nofile.rlim_cur = nofile.rlim_max;
    setrlimit(RLIMIT_NOFILE, &nofile);
  }
  std::unique_ptr<SimFleet> fleet(new SimFleet(std::move(options)));
  const SimFleetOptions& o = fleet->options_;
  const int channels = o.channels > 0 ? std::min(o.channels, o.workers) : o.workers;
  std::vector<std::unique_ptr<v1::WorkerService::Stub>> stubs;
  for (int c = 0; c < channels; ++c) {
    grpc::ChannelArguments args = proto::ControllerChannelArguments();
    // Distinct arguments give each channel its own connection instead of a shared subchannel.
    args.SetInt("freeagent.sim_channel", c);
    fleet->channels_.push_back(proto::MakeControllerChannel(o.address, args));
    stubs.push_back(v1::WorkerService::NewStub(fleet->channels_.back()));
  }
  for (int i = 0; i < o.workers; ++i) {
    fleet->workers_.push_back(std::make_unique<SimWorker>(fleet.get(), absl::StrCat(o.name_prefix, "-", i)));
  }
  for (int i = 0; i < o.workers; ++i) fleet->workers_[i]->Start(stubs[i % channels].get());
  fleet->heartbeat_ = std::thread([f = fleet.get()] { f->HeartbeatLoop(); });
  std::unique_lock<std::mutex> lock(fleet->mu_);
  const size_t want = static_cast<size_t>(o.workers);
  if (!fleet->cv_.wait_for(lock, timeout, [&] { return fleet->welcomed_ >= want || !fleet->failures_.empty(); }) ||
      fleet->welcomed_ < want) {
    std::string why = absl::StrCat(fleet->welcomed_, " of ", want, " simulated workers connected");
    if (!fleet->failures_.empty()) absl::StrAppend(&why, "; first failure: ", fleet->failures_.front());
    lock.unlock();
    fleet->Stop();
    return absl::DeadlineExceededError(why);
  }
  return fleet;
}

SimFleet::SimFleet(SimFleetOptions options) : options_(std::move(options)) {}

SimFleet::~SimFleet() { Stop(); }

void SimFleet::Stop() {
  {
    std::lock_guard<std::mutex> lock(mu_);
    if (stopping_) return;
    stopping_ = true;
  }
  cv_.notify_all();
  if (heartbeat_.joinable()) heartbeat_.join();
  for (auto& w : workers_) w->Stop();
  std::unique_lock<std::mutex> lock(mu_);
  cv_.wait(lock, [&] { return done_streams_ >= workers_.size(); });
}

void SimFleet::HeartbeatLoop() {
  // Woken at least this often: a worker welcomed meanwhile beats one interval later, never sooner.
  constexpr std::chrono::milliseconds kTick{50};
  std::unique_lock<std::mutex> lock(mu_);
  while (!stopping_) {
    Clock::time_point next = Clock::now() + kTick;
    if (!beats_.empty()) next = std::min(next, beats_.top().first);
    if (cv_.wait_until(lock, next, [&] { return stopping_; })) return;
    std::vector<SimWorker*> due;
    const Clock::time_point now = Clock::now();
    while (!beats_.empty() && beats_.top().first <= now) {
      Beat beat = beats_.top();
      beats_.pop();
      due.push_back(beat.second);
      beats_.emplace(beat.first + options_.heartbeat_interval, beat.second);
    }
    lock.unlock();
    for (SimWorker* w : due) w->Heartbeat();
    lock.lock();
  }
}

void SimFleet::OnWelcome(SimWorker* worker) {
  const Clock::time_point now = Clock::now();
  std::lock_guard<std::mutex> lock(mu_);
  if (welcomed_++ == 0) first_welcome_ = now;
  beats_.emplace(now + options_.heartbeat_interval, worker);
  cv_.notify_all();
}

void SimFleet::OnAssign(const std::string& job_id, const std::string& key, double latency_ms, bool has_latency) {
  const Clock::time_point now = Clock::now();
  std::lock_guard<std::mutex> lock(mu_);
  first_assign_.emplace(job_id, now);
  if (assigned_[key]++ > 0) ++duplicate_assigns_;
  if (has_latency) latencies_ms_.push_back(latency_ms);
}

void SimFleet::OnResultAck(const std::string& key, const std::string& job_id) {
  std::lock_guard<std::mutex> lock(mu_);
  if (acked_[key]++ > 0) ++duplicate_results_;
  ++jobs_completed_[job_id];
  ++completed_;
  last_completion_ = Clock::now();
  cv_.notify_all();
}

void SimFleet::OnStreamDone(const std::string& worker, const std::string& status, bool expected) {
  std::lock_guard<std::mutex> lock(mu_);
  ++done_streams_;
  if (!expected) failures_.push_back(absl::StrCat(worker, ": ", status));
  cv_.notify_all();
}

bool SimFleet::WaitCompleted(size_t count, std::chrono::milliseconds timeout) {
  std::unique_lock<std::mutex> lock(mu_);
  return cv_.wait_for(lock, timeout, [&] { return completed_ >= count; });
}

size_t SimFleet::completed() {
  std::lock_guard<std::mutex> lock(mu_);
  return completed_;
}

size_t SimFleet::duplicate_assigns() {
  std::lock_guard<std::mutex> lock(mu_);
  return duplicate_assigns_;
}

size_t SimFleet::duplicate_results() {
  std::lock_guard<std::mutex> lock(mu_);
  return duplicate_results_;
}

std::map<std::string, int> SimFleet::CompletedJobs() {
  std::lock_guard<std::mutex> lock(mu_);
  return jobs_completed_;
}

std::vector<double> SimFleet::AssignLatenciesMs() {
  std::lock_guard<std::mutex> lock(mu_);
  return latencies_ms_;
}

std::map<std::string, Clock::time_point> SimFleet::FirstAssignTimes() {
  std::lock_guard<std::mutex> lock(mu_);
  return first_assign_;
}

std::vector<std::string> SimFleet::Failures() {
  std::lock_guard<std::mutex> lock(mu_);
  return failures_;
}

Clock::time_point SimFleet::first_welcome() {
  std::lock_guard<std::mutex> lock(mu_);
  return first_welcome_;
}

Clock::time_point SimFleet::last_completion() {
  std::lock_guard<std::mutex> lock(mu_);
  return last_completion_;
}

double Percentile(std::vector<double>& values, double p) {
  if (values.empty()) return 0;
  std::sort(values.begin(), values.end());
  size_t index = static_cast<size_t>(p / 100.0 * static_cast<double>(values.size() - 1) + 0.5);
  return values[std::min(index, values.size() - 1)];
}

}  // namespace freeagent::testing
