// The worker: holds the jobs this host runs (one thread each), answers the controller's messages, and
// states its full state in every Hello. Runs until drained or stopped.
#pragma once

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <deque>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <thread>

#include "artifacts/blob_client.h"
#include "node/config.h"
#include "node/connection.h"
#include "node/job_runner.h"
#include "node/log_stream.h"
#include "vm/vm_driver.h"

namespace freeagent::node {

inline constexpr char kWorkerVersion[] = "0.1.0";

class Worker : public ConnectionHandler {
 public:
  // Connects to config.controller. `driver` may be null: the config's driver is made. The spool bound
  // of `log_options` is config.log_spool_max_mib.
  explicit Worker(WorkerConfig config, std::unique_ptr<vm::VmDriver> driver = nullptr,
                  ConnectionOptions connection_options = {}, LogStreamOptions log_options = {});
  ~Worker() override;

  // Reaps orphans of a previous run, then connects. Returns at once.
  absl::Status Start();

  // Blocks until Drain() finished (no jobs left, results acked) or Shutdown()/Stop().
  void Wait();

  // No new jobs (assignments are rejected "worker is draining"); running ones go on. `timeout` > 0:
  // running jobs are cancelled after it (enforced while Wait() runs).
  void StopAccepting(std::chrono::seconds timeout = std::chrono::seconds(0));

  // StopAccepting(), and Wait() returns once running jobs ended and their results were delivered
  // (SIGTERM/SIGINT, and a controller's DrainWorker).
  void Drain(std::chrono::seconds timeout = std::chrono::seconds(0));

  // Cancels every running job (each still cleans up) and makes Wait() return. Does not block.
  void Shutdown();

  // Shutdown(), waits for the jobs to end, then disconnects. Idempotent.
  void Stop();

  // ConnectionHandler (gRPC threads; never block).
  freeagent::v1::Hello MakeHello() override;
  void OnMessage(const freeagent::v1::ControllerMessage& message) override;
  freeagent::v1::Heartbeat MakeHeartbeat() override;
  uint32_t SlotsUsed();

  bool connected() const { return connection_->connected(); }
  size_t JobCount();

 private:
  struct Job {
    freeagent::v1::BuildJob job;
    std::unique_ptr<LogStream> log;
    std::unique_ptr<JobRunner> runner;
    std::thread thread;
    std::optional<freeagent::v1::JobResult> result;  // set when the attempt ended
    bool abandoned = false;                           // the controller no longer wants it
    bool acked = false;                               // ResultAck received
    bool done = false;                                // the thread finished (result delivered or given up)
    // Progress not yet queued on a live stream, oldest first; delivered after the next Welcome.
    std::deque<freeagent::v1::JobProgress> unsent_progress;
    // The latest report, restated after every Welcome (one sent on a stream that broke is lost).
    std::optional<freeagent::v1::JobProgress> last_progress;
  };
  // An attempt of an earlier run of this worker (its log spool was found at start-up): stated in every
  // Hello until the controller answers for it.
  struct Orphan {
    std::string job_id;
    uint32_t attempt = 0;
  };
  static std::string Key(const std::string& job_id, uint32_t attempt);

  void HandleAssign(const freeagent::v1::Assign& assign);
  void HandleWelcome(const freeagent::v1::Welcome& welcome);
  void RunJob(Job* job);
  void Reject(const freeagent::v1::BuildJob& job, const std::string& reason);
  void ReapLocked(std::unique_lock<std::mutex>& lock);
  // Queues `progress` of `job` and sends what is queued while a stream is live, in order.
  void ReportProgress(Job* job, const freeagent::v1::JobProgress& progress);
  // Sends the queued progress of every job while a stream is live; needs progress_send_mu_, not mu_.
  void DeliverProgress();
  // Cancels running jobs once the controller has been unreachable for longer than the configured limit.
  void EnforceDisconnectLimitLocked();
  // Spool files of a crashed run in the jobs dir, as orphans (before the dir is removed).
  void FindOrphans();
  uint32_t SlotsUsedLocked() const;

  WorkerConfig config_;
  std::unique_ptr<vm::VmDriver> driver_;
  LogStreamOptions log_options_;
  std::shared_ptr<grpc::Channel> channel_;
  std::unique_ptr<artifacts::BlobClient> blobs_;
  std::unique_ptr<ControllerConnection> connection_;

  std::mutex stop_mu_;  // serialises Stop()
  std::mutex mu_;
  std::condition_variable cv_;
  std::map<std::string, std::unique_ptr<Job>> jobs_;
  uint64_t welcome_generation_ = 0;
  bool draining_ = false;
  bool exit_when_idle_ = false;
  bool stopped_ = false;
  std::optional<std::chrono::steady_clock::time_point> drain_deadline_;
  bool janitor_stop_ = false;
  std::thread janitor_;
  std::vector<Orphan> orphans_;
  // When the stream was last seen down while jobs ran (unset while connected).
  std::optional<std::chrono::steady_clock::time_point> disconnected_since_;
  bool disconnect_limit_hit_ = false;
  // Serialises progress delivery (job threads and the janitor) so notes keep their order. Never taken
  // by a gRPC reaction, and held without mu_ while sending (a send may run reactions inline).
  std::mutex progress_send_mu_;
};

}  // namespace freeagent::node
