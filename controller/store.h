// The controller's durable record in SQLite (WAL): workers, jobs (spec kept as a serialized JobSpec
// without secret values), sealed secrets (see secret_box.h; kept only while a build can still run),
// attempts, events and artifact rows. Every statement is prepared once.
//
// Writes are group-committed: a Put/Add/Delete call queues its row and returns at once; one writer
// thread runs everything queued so far in a single transaction. A build goes through about a dozen row
// writes, so one commit per write (a WAL append and file locking each, under the controller's lock)
// would bound the controller at a few hundred builds per second. What must not be lost once a peer
// has been told (a submission accepted, a result acknowledged, an assignment sent) waits for its
// commit: AfterCommit and Sync. Commits survive the process being killed (WAL, synchronous=NORMAL).
#pragma once

#include <sqlite3.h>

#include <condition_variable>
#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "freeagent/v1/build.pb.h"
#include "freeagent/v1/fleet.pb.h"

namespace freeagent::controller {

struct StoredJob {
  int64_t seq = 0;   // submission order, also the List page token
  v1::Build build;   // with the full spec, without events
};

class Store {
 public:
  // Opens (creating if needed) the database at `path` and starts the writer thread.
  static absl::StatusOr<std::unique_ptr<Store>> Open(const std::string& path);
  ~Store();  // Stop()

  // Commits what is queued, runs the waiting callbacks and stops the writer thread. Later writes are
  // committed at once on the calling thread. Idempotent.
  void Stop();

  // --- Queued writes. Each returns at once; its error, if any, is logged by the writer, and the rest of
  // its transaction still commits (AfterCommit callbacks get the commit's status). Thread-safe.
  void PutWorker(const v1::WorkerInfo& worker);
  // Stores the job; the spec's secret values (secret_env values, the P12 password) are never written
  // by this call: they go through PutSecrets, sealed.
  void PutJob(const StoredJob& job);
  // Sealed secrets of a build, by name.
  void PutSecrets(const std::string& job_id, const std::map<std::string, std::string>& sealed);
  void DeleteSecrets(const std::string& job_id);
  void PutAttempt(const std::string& job_id, uint32_t attempt, const std::string& worker_id,
                  v1::JobState state, int64_t started_ms, int64_t finished_ms, uint64_t log_size);
  void AddEvent(const std::string& job_id, const v1::BuildEvent& event);
  void PutArtifacts(const std::string& job_id, uint32_t attempt,
                    const google::protobuf::RepeatedPtrField<v1::ArtifactInfo>& artifacts);

  // Runs `done` on the writer thread once every write queued before this call is committed, with the
  // status of that commit (callbacks run in the order they were queued). Must not block.
  void AfterCommit(std::function<void(absl::Status)> done);
  // Waits until every write queued before this call is committed; the commit's status.
  absl::Status Sync();

  // --- Reads (they see every write queued before the call).
  absl::StatusOr<std::vector<v1::WorkerInfo>> LoadWorkers();
  // All jobs, oldest first (secret values empty).
  absl::StatusOr<std::vector<StoredJob>> LoadJobs();
  // Every stored sealed secret: job id -> name -> sealed bytes.
  absl::StatusOr<std::map<std::string, std::map<std::string, std::string>>> LoadSecrets();
  absl::StatusOr<std::vector<v1::BuildEvent>> LoadEvents(const std::string& job_id);

 private:
  struct StmtDeleter {
    void operator()(sqlite3_stmt* s) const { sqlite3_finalize(s); }
  };
  struct DbDeleter {
    void operator()(sqlite3* db) const { sqlite3_close_v2(db); }
  };
  using Stmt = std::unique_ptr<sqlite3_stmt, StmtDeleter>;
  // A queued write (runs with db_mu_ held, inside the batch's transaction) or a commit callback.
  struct Op {
    std::function<absl::Status()> write;
    std::function<void(absl::Status)> after_commit;
  };

  Store() = default;
  void Enqueue(Op op);
  void WriterLoop();
  // Runs `batch` in one transaction and then its callbacks. Needs no lock; takes db_mu_.
  void RunBatch(std::vector<Op>& batch);
  absl::Status Exec(const char* sql);
  absl::StatusOr<sqlite3_stmt*> Prepared(const std::string& sql);  // cached, reset before use
  absl::Status Error(const std::string& what) const;
  absl::Status RunToDone(sqlite3_stmt* stmt, const std::string& what);

  // Row writers (db_mu_ held).
  absl::Status WriteWorker(const std::string& id, const std::string& info);
  absl::Status WriteJob(const std::string& id, int64_t seq, int state, int64_t created_ms, const std::string& spec,
                        const std::string& build);
  absl::Status WriteSecret(const std::string& job_id, const std::string& name, const std::string& sealed);
  absl::Status WriteDeleteSecrets(const std::string& job_id);
  absl::Status WriteAttempt(const std::string& job_id, uint32_t attempt, const std::string& worker_id, int state,
                            int64_t started_ms, int64_t finished_ms, uint64_t log_size);
  absl::Status WriteEvent(const std::string& job_id, int64_t unix_ms, const std::string& event);
  absl::Status WriteArtifact(const std::string& job_id, uint32_t attempt, const v1::ArtifactInfo& artifact);

  std::mutex db_mu_;  // the connection and its statements
  std::unique_ptr<sqlite3, DbDeleter> db_;
  std::map<std::string, Stmt> stmts_;

  std::mutex queue_mu_;
  std::condition_variable queue_cv_;
  std::vector<Op> queue_;
  bool stopped_ = false;
  bool writer_done_ = false;  // the writer thread has left: Enqueue commits on the calling thread
  std::thread writer_;
};

}  // namespace freeagent::controller
