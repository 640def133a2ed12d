// The controller's durable record in SQLite (WAL): workers, jobs (spec kept as a serialized JobSpec
// without secret values), sealed secrets (see secret_box.h; kept only while a build can still run),
// attempts, events and artifact rows. One connection guarded by a mutex; every statement is prepared once.
#pragma once

#include <sqlite3.h>

#include <cstdint>
#include <map>
#include <memory>
#include <mutex>
#include <string>
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
  // Opens (creating if needed) the database at `path`.
  static absl::StatusOr<std::unique_ptr<Store>> Open(const std::string& path);
  ~Store();

  absl::Status PutWorker(const v1::WorkerInfo& worker);
  absl::StatusOr<std::vector<v1::WorkerInfo>> LoadWorkers();

  // Stores the job; the spec's secret values (secret_env values, the P12 password) are never written
  // by this call: they go through PutSecrets, sealed.
  absl::Status PutJob(const StoredJob& job);
  // All jobs, oldest first (secret values empty).
  absl::StatusOr<std::vector<StoredJob>> LoadJobs();

  // Sealed secrets of a build, by name, written in one transaction.
  absl::Status PutSecrets(const std::string& job_id, const std::map<std::string, std::string>& sealed);
  // Every stored sealed secret: job id -> name -> sealed bytes.
  absl::StatusOr<std::map<std::string, std::map<std::string, std::string>>> LoadSecrets();
  absl::Status DeleteSecrets(const std::string& job_id);

  absl::Status PutAttempt(const std::string& job_id, uint32_t attempt, const std::string& worker_id,
                          v1::JobState state, int64_t started_ms, int64_t finished_ms,
                          uint64_t log_size);
  absl::Status AddEvent(const std::string& job_id, const v1::BuildEvent& event);
  absl::StatusOr<std::vector<v1::BuildEvent>> LoadEvents(const std::string& job_id);
  absl::Status PutArtifacts(const std::string& job_id, uint32_t attempt,
                            const google::protobuf::RepeatedPtrField<v1::ArtifactInfo>& artifacts);

 private:
  struct StmtDeleter {
    void operator()(sqlite3_stmt* s) const { sqlite3_finalize(s); }
  };
  struct DbDeleter {
    void operator()(sqlite3* db) const { sqlite3_close_v2(db); }
  };
  using Stmt = std::unique_ptr<sqlite3_stmt, StmtDeleter>;

  Store() = default;
  absl::Status Exec(const char* sql);
  absl::StatusOr<sqlite3_stmt*> Prepared(const std::string& sql);  // cached, reset before use
  absl::Status Error(const std::string& what) const;
  absl::Status RunToDone(sqlite3_stmt* stmt, const std::string& what);

  std::mutex mu_;
  std::unique_ptr<sqlite3, DbDeleter> db_;
  std::map<std::string, Stmt> stmts_;
};

}  // namespace freeagent::controller
