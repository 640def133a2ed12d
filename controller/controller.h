// The controller's core: the job table, the worker fleet, the scheduler, liveness and the durable
// record. The gRPC services are thin adapters over this class.
//
// Threading: one mutex guards jobs and workers. Worker streams and build watchers are reached through
// small interfaces whose methods never block: a WorkerConnection may be called with the core lock
// held (lock order core -> connection); a BuildWatcher is only notified with no core lock held,
// because it calls back into Snapshot() (lock order watcher -> core).
#pragma once

#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <set>
#include <string>
#include <thread>
#include <tuple>
#include <vector>

#include <grpcpp/support/status.h>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "controller/archive_check_cache.h"
#include "controller/blob_store.h"
#include "controller/log_store.h"
#include "controller/retention.h"
#include "controller/secret_box.h"
#include "controller/store.h"
#include "freeagent/v1/build.pb.h"
#include "freeagent/v1/fleet.pb.h"
#include "freeagent/v1/worker.pb.h"
#include "spdlog/common.h"

namespace freeagent::controller {

struct ControllerOptions {
  std::string data_dir = "./.freeagent";
  std::chrono::milliseconds heartbeat_interval{5000};
  std::chrono::milliseconds liveness_timeout{30000};
  uint32_t max_attempts = 2;
  // Artifact retention (retention.h), applied every retention_interval when any limit is set.
  RetentionPolicy retention;
  std::chrono::milliseconds retention_interval{std::chrono::hours(1)};
  // From start-up to the first retention pass.
  std::chrono::milliseconds retention_first_delay{0};
};

// The controller's side of one worker stream.
class WorkerConnection {
 public:
  virtual ~WorkerConnection() = default;
  // Queues a message; never blocks. Dropped when the stream has ended.
  virtual void Send(v1::ControllerMessage message) = 0;
  // Ends the stream with `status` (once; later calls do nothing).
  virtual void Close(const grpc::Status& status) = 0;
};

// A Watch call waiting for news about one build.
class BuildWatcher {
 public:
  virtual ~BuildWatcher() = default;
  // New log bytes or a status change; never blocks.
  virtual void Notify() = 0;
};

// What a watcher needs to produce its next message.
struct WatchSnapshot {
  v1::Build build;          // secrets stripped, no events
  uint32_t attempt = 0;
  uint64_t log_committed = 0;
  uint64_t log_written = 0;
  bool terminal = false;
  std::string log_path;
};

bool IsTerminal(v1::JobState state);

class Controller {
 public:
  // Opens the database and stores under options.data_dir and loads the record.
  static absl::StatusOr<std::unique_ptr<Controller>> Create(ControllerOptions options);
  ~Controller();

  // Stops the liveness thread, closes worker streams and flushes logs. Idempotent.
  void Stop();

  BlobStore& blobs() { return blobs_; }
  LogStore& logs() { return logs_; }
  const ArchiveCheckCache& archive_checks() const { return archive_checks_; }
  const ControllerOptions& options() const { return options_; }

  // --- BuildService
  absl::StatusOr<v1::Build> Submit(v1::JobSpec spec);
  absl::StatusOr<v1::Build> Get(const std::string& id);
  absl::StatusOr<v1::ListBuildsResponse> List(const v1::ListBuildsRequest& request);
  absl::StatusOr<v1::Build> Cancel(const std::string& id, const std::string& reason);
  // What retention removes now (apply = false: nothing is changed). Removed artifacts keep their
  // record with expired_unix_ms set.
  absl::StatusOr<v1::CollectGarbageResponse> CollectGarbage(bool apply);
  absl::StatusOr<WatchSnapshot> Snapshot(const std::string& id);
  // The watcher is held weakly; it is dropped once expired.
  void AddWatcher(const std::string& id, std::weak_ptr<BuildWatcher> watcher);

  // --- FleetService
  v1::ListWorkersResponse ListWorkers();
  absl::StatusOr<v1::WorkerInfo> Drain(const std::string& worker_id, uint32_t timeout_seconds);

  // --- WorkerService (called by the stream reactor, in stream order)
  // Registers the stream and answers with Welcome (+ any pending cancels). Replaces (closes) an older
  // stream of the same worker.
  absl::Status OnHello(const std::shared_ptr<WorkerConnection>& conn, const v1::Hello& hello);
  // Calls `done` once the message is handled, perhaps later on another thread (a result waits, off
  // the caller's thread, until its attempt's log is durable); the stream reads its next message only
  // then, which keeps each worker's messages in order.
  void OnMessage(const std::shared_ptr<WorkerConnection>& conn, const std::string& worker_id,
                 const v1::WorkerMessage& message, std::function<void()> done);
  void OnDisconnect(const WorkerConnection* conn, const std::string& worker_id);

  // Runs one liveness pass now (the background thread calls it periodically).
  void CheckLiveness();

 private:
  struct Job {
    int64_t seq = 0;
    v1::Build build;                      // full spec, secrets included until the build ends
    std::set<std::string> rejected_by;    // workers that rejected the current attempt
    bool cancel_requested = false;
    std::string cancel_reason;
    bool has_sealed = false;              // sealed secrets are stored for it
  };
  struct Worker {
    v1::WorkerInfo info;
    std::shared_ptr<WorkerConnection> conn;
    std::chrono::steady_clock::time_point last_seen;
    std::set<std::string> jobs;           // ASSIGNED or RUNNING here
    size_t free_slots = 0;                // its entry in free_workers_ (0: none)
  };
  using QueueKey = std::tuple<int32_t, int64_t, std::string>;  // -priority, seq, id

  explicit Controller(ControllerOptions options);
  absl::Status Load();
  void LivenessLoop();

  // Secrets at rest: sealed into the store at submit, put back into the in-memory spec at load,
  // erased from both when the build ends. SealSecrets says whether the build had any to seal.
  absl::StatusOr<bool> SealSecrets(const v1::Build& build);
  absl::Status UnsealSecrets(v1::Build& build, const std::map<std::string, std::string>& sealed);
  void DropSecretsLocked(Job& job);

  // All *Locked methods need mu_.
  Job* FindLocked(const std::string& id);
  static QueueKey KeyOf(const Job& job);
  v1::Build PublicBuildLocked(const Job& job);
  void SaveJobLocked(const Job& job);
  void SaveWorkerLocked(const Worker& worker);
  // Records a build event. Every build has several, so they are logged at debug level unless `level`
  // says otherwise (requeues, cancels).
  void EventLocked(Job& job, const std::string& message, spdlog::level::level_enum level = spdlog::level::debug);
  // The locked part of OnMessage.
  void HandleMessage(const std::shared_ptr<WorkerConnection>& conn, const std::string& worker_id,
                     const v1::WorkerMessage& message);
  void SaveAttemptLocked(const Job& job);
  bool HoldsLocked(const std::string& worker_id, const Job& job, uint32_t attempt) const;
  // A worker's rejections are about its state at the time (full, draining): they are forgotten when
  // it reconnects, frees a slot or reports room in a heartbeat. True if any queued job had one.
  bool ForgetRejectionsLocked(const std::string& worker_id);
  // Equal for jobs with the same placement requirements (image, required labels).
  static std::string PlacementKey(const Job& job);
  // Puts the worker in free_workers_ (or takes it out) after a change of its connection, state,
  // slots or jobs.
  void UpdateFreeLocked(Worker& worker);
  void ScheduleLocked();
  bool EligibleLocked(const Worker& worker, const Job& job) const;
  void AssignLocked(Job& job, Worker& worker);
  void DetachLocked(Job& job);
  void RequeueLocked(Job& job, bool next_attempt, const std::string& why);
  void FinishLocked(Job& job, v1::JobState outcome, const std::string& error);
  // The running attempt of `job` has ended: its uploads that are not stored are abandoned (their
  // followers stop waiting) and the build lists none.
  void EndUploadsLocked(Job& job, const std::string& why);
  void SendCancelLocked(Job& job);
  void WorkerLostLocked(Worker& worker, const std::string& why);
  void HandleLogChunk(const std::shared_ptr<WorkerConnection>& conn, const std::string& worker_id,
                      const v1::LogChunk& chunk);
  void HandleResultLocked(const std::shared_ptr<WorkerConnection>& conn, const std::string& worker_id,
                          const v1::JobResult& result);
  // Waits until every row written so far is committed; INTERNAL "<what> could not be stored: ..." if
  // the commit failed. RPCs that report a change (Submit, Cancel) reply only after it.
  absl::Status WaitCommitted(const std::string& what);
  // Messages to a worker leave once every row written before them is committed (in order): a worker
  // never acts on an assignment, nor forgets a result, that a killed controller would not remember.
  void SendLocked(const std::shared_ptr<WorkerConnection>& conn, v1::ControllerMessage message);

  // Watchers of builds touched under the lock are notified after it is released.
  void NotifyLater(const std::string& id);
  void FlushNotifications();
  void NotifyWatchers(const std::string& id);

  // CollectGarbage's second part, without the core lock: partial uploads and blobs no build in
  // `referenced` names, idle for over the policy's age limit, listed in `response` (removed with `apply`).
  // `stored`: the store's blobs as listed at the start of the pass.
  void CollectStaleBlobs(const absl::StatusOr<std::vector<BlobStore::FileInfo>>& stored,
                         const std::set<std::string>& referenced, int64_t now_ms, int64_t protect_since_ms,
                         bool apply, v1::CollectGarbageResponse* response);

  const ControllerOptions options_;
  std::unique_ptr<Store> store_;
  std::unique_ptr<SecretBox> secret_box_;
  int retention_passes_ = 0;  // applying CollectGarbage calls between their plan and their last removal
  BlobStore blobs_;
  LogStore logs_;
  ArchiveCheckCache archive_checks_;  // source archives found safe, by digest

  std::mutex mu_;
  std::map<std::string, Job> jobs_;
  std::map<int64_t, std::string> by_seq_;
  std::set<QueueKey> queue_;
  std::map<std::string, Worker> workers_;
  // Connected online workers with a free slot, most free slots first: (-free slots, worker id). Kept
  // up to date so that a scheduling pass does not look at busy workers.
  std::set<std::pair<int64_t, std::string>> free_workers_;
  // worker id -> jobs it rejected (their Job::rejected_by names it); entries may be stale.
  std::map<std::string, std::set<std::string>> rejections_;
  int64_t next_seq_ = 1;
  std::set<std::string> to_notify_;
  bool stopped_ = false;
  std::condition_variable liveness_cv_;
  std::thread liveness_thread_;

  std::mutex watch_mu_;
  std::map<std::string, std::vector<std::weak_ptr<BuildWatcher>>> watchers_;
};

}  // namespace freeagent::controller
