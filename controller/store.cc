// SQLite persistence for the controller.
#include "controller/store.h"

#include <future>
#include <utility>

#include "absl/strings/str_cat.h"
#include "common/status_macros.h"
#include "spdlog/spdlog.h"

namespace freeagent::controller {
namespace {

constexpr const char* kSchema = R"sql(
CREATE TABLE IF NOT EXISTS workers (
  id TEXT PRIMARY KEY,
  info BLOB NOT NULL
);
CREATE TABLE IF NOT EXISTS jobs (
  id TEXT PRIMARY KEY,
  seq INTEGER NOT NULL UNIQUE,
  state INTEGER NOT NULL,
  created_ms INTEGER NOT NULL,
  spec BLOB NOT NULL,
  build BLOB NOT NULL
);
CREATE TABLE IF NOT EXISTS secrets (
  job_id TEXT NOT NULL,
  name TEXT NOT NULL,
  sealed BLOB NOT NULL,
  PRIMARY KEY (job_id, name)
);
CREATE TABLE IF NOT EXISTS attempts (
  job_id TEXT NOT NULL,
  attempt INTEGER NOT NULL,
  worker_id TEXT NOT NULL,
  state INTEGER NOT NULL,
  started_ms INTEGER NOT NULL,
  finished_ms INTEGER NOT NULL,
  log_size INTEGER NOT NULL,
  PRIMARY KEY (job_id, attempt)
);
CREATE TABLE IF NOT EXISTS events (
  id INTEGER PRIMARY KEY AUTOINCREMENT,
  job_id TEXT NOT NULL,
  unix_ms INTEGER NOT NULL,
  event BLOB NOT NULL
);
CREATE INDEX IF NOT EXISTS events_by_job ON events (job_id, id);
CREATE TABLE IF NOT EXISTS artifacts (
  job_id TEXT NOT NULL,
  attempt INTEGER NOT NULL,
  name TEXT NOT NULL,
  path TEXT NOT NULL,
  sha256 TEXT NOT NULL,
  size INTEGER NOT NULL,
  info BLOB NOT NULL,
  PRIMARY KEY (job_id, attempt, path)
);
)sql";

std::string Serialize(const google::protobuf::MessageLite& m) {
  std::string out;
  m.SerializeToString(&out);
  return out;
}

void BindText(sqlite3_stmt* s, int i, const std::string& v) {
  sqlite3_bind_text(s, i, v.data(), static_cast<int>(v.size()), SQLITE_TRANSIENT);
}
void BindBlob(sqlite3_stmt* s, int i, const std::string& v) {
  sqlite3_bind_blob(s, i, v.data(), static_cast<int>(v.size()), SQLITE_TRANSIENT);
}
std::string ColumnBlob(sqlite3_stmt* s, int i) {
  const void* p = sqlite3_column_blob(s, i);
  int n = sqlite3_column_bytes(s, i);
  return p ? std::string(static_cast<const char*>(p), static_cast<size_t>(n)) : std::string();
}

}  // namespace

absl::StatusOr<std::unique_ptr<Store>> Store::Open(const std::string& path) {
  std::unique_ptr<Store> store(new Store());
  sqlite3* db = nullptr;
  int rc = sqlite3_open_v2(path.c_str(), &db,
                           SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE | SQLITE_OPEN_FULLMUTEX, nullptr);
  store->db_.reset(db);
  if (rc != SQLITE_OK) {
    return absl::UnavailableError(absl::StrCat("open database ", path, ": ",
                                               db ? sqlite3_errmsg(db) : sqlite3_errstr(rc)));
  }
  sqlite3_busy_timeout(db, 5000);
  RETURN_IF_ERROR(store->Exec("PRAGMA journal_mode=WAL"));
  // NORMAL in WAL mode: a commit survives a process crash; log bytes have their own fdatasync.
  RETURN_IF_ERROR(store->Exec("PRAGMA synchronous=NORMAL"));
  // Deleted rows (sealed secrets of finished builds) are overwritten, not left in free pages.
  RETURN_IF_ERROR(store->Exec("PRAGMA secure_delete=ON"));
  RETURN_IF_ERROR(store->Exec(kSchema));
  store->writer_ = std::thread([s = store.get()] { s->WriterLoop(); });
  return store;
}

Store::~Store() {
  Stop();
  stmts_.clear();  // statements before the connection
  db_.reset();
}

void Store::Stop() {
  {
    std::lock_guard<std::mutex> lock(queue_mu_);
    if (stopped_) return;
    stopped_ = true;
  }
  queue_cv_.notify_all();
  if (writer_.joinable()) writer_.join();
}

void Store::Enqueue(Op op) {
  {
    std::lock_guard<std::mutex> lock(queue_mu_);
    if (!writer_done_) {
      queue_.push_back(std::move(op));
      queue_cv_.notify_one();
      return;
    }
  }
  // Stopped: commit on this thread.
  std::vector<Op> batch;
  batch.push_back(std::move(op));
  RunBatch(batch);
}

void Store::WriterLoop() {
  std::unique_lock<std::mutex> lock(queue_mu_);
  while (true) {
    queue_cv_.wait(lock, [this] { return stopped_ || !queue_.empty(); });
    if (queue_.empty()) break;  // stopped with nothing left
    std::vector<Op> batch;
    batch.swap(queue_);
    lock.unlock();
    RunBatch(batch);
    lock.lock();
  }
  writer_done_ = true;  // writes queued from now on are committed by their callers
}

void Store::RunBatch(std::vector<Op>& batch) {
  absl::Status commit;
  std::vector<std::function<void(absl::Status)>> callbacks;
  {
    std::lock_guard<std::mutex> lock(db_mu_);
    commit = Exec("BEGIN");
    for (Op& op : batch) {
      if (op.after_commit) {
        callbacks.push_back(std::move(op.after_commit));
        continue;
      }
      if (absl::Status st = op.write(); !st.ok()) spdlog::error("database: {}", st.ToString());
    }
    if (commit.ok()) commit = Exec("COMMIT");
    if (!commit.ok()) {
      spdlog::error("database commit of {} writes: {}", batch.size() - callbacks.size(), commit.ToString());
      Exec("ROLLBACK").IgnoreError();
    }
  }
  for (auto& done : callbacks) done(commit);
}

void Store::AfterCommit(std::function<void(absl::Status)> done) {
  Op op;
  op.after_commit = std::move(done);
  Enqueue(std::move(op));
}

absl::Status Store::Sync() {
  auto promise = std::make_shared<std::promise<absl::Status>>();
  std::future<absl::Status> committed = promise->get_future();
  AfterCommit([promise](absl::Status st) { promise->set_value(std::move(st)); });
  return committed.get();
}

absl::Status Store::Error(const std::string& what) const {
  return absl::InternalError(absl::StrCat("sqlite ", what, ": ", sqlite3_errmsg(db_.get())));
}

absl::Status Store::Exec(const char* sql) {
  char* err = nullptr;
  if (sqlite3_exec(db_.get(), sql, nullptr, nullptr, &err) != SQLITE_OK) {
    std::string msg = err ? err : "unknown error";
    sqlite3_free(err);
    return absl::InternalError(absl::StrCat("sqlite exec: ", msg));
  }
  return absl::OkStatus();
}

absl::StatusOr<sqlite3_stmt*> Store::Prepared(const std::string& sql) {
  auto it = stmts_.find(sql);
  if (it == stmts_.end()) {
    sqlite3_stmt* raw = nullptr;
    if (sqlite3_prepare_v2(db_.get(), sql.c_str(), -1, &raw, nullptr) != SQLITE_OK) {
      return Error("prepare");
    }
    it = stmts_.emplace(sql, Stmt(raw)).first;
  }
  sqlite3_reset(it->second.get());
  sqlite3_clear_bindings(it->second.get());
  return it->second.get();
}

absl::Status Store::RunToDone(sqlite3_stmt* stmt, const std::string& what) {
  int rc = sqlite3_step(stmt);
  absl::Status st = rc == SQLITE_DONE ? absl::OkStatus() : Error(what);
  sqlite3_reset(stmt);
  return st;
}

// ---------------------------------------------------------------- queued writes

void Store::PutWorker(const v1::WorkerInfo& worker) {
  Enqueue(Op{[this, id = worker.id(), info = Serialize(worker)] { return WriteWorker(id, info); }, nullptr});
}

void Store::PutJob(const StoredJob& job) {
  v1::Build build = job.build;
  v1::JobSpec& stored_spec = *build.mutable_spec();
  for (auto& [key, value] : *stored_spec.mutable_secret_env()) value.clear();
  if (stored_spec.has_signing()) stored_spec.mutable_signing()->clear_p12_password();
  std::string spec = Serialize(stored_spec);
  build.clear_spec();
  build.clear_events();
  Enqueue(Op{[this, id = build.id(), seq = job.seq, state = static_cast<int>(build.state()),
              created = build.created_unix_ms(), spec = std::move(spec), row = Serialize(build)] {
               return WriteJob(id, seq, state, created, spec, row);
             },
             nullptr});
}

void Store::PutSecrets(const std::string& job_id, const std::map<std::string, std::string>& sealed) {
  if (sealed.empty()) return;
  Enqueue(Op{[this, job_id, sealed] {
               for (const auto& [name, value] : sealed) RETURN_IF_ERROR(WriteSecret(job_id, name, value));
               return absl::OkStatus();
             },
             nullptr});
}

void Store::DeleteSecrets(const std::string& job_id) {
  Enqueue(Op{[this, job_id] { return WriteDeleteSecrets(job_id); }, nullptr});
}

void Store::PutAttempt(const std::string& job_id, uint32_t attempt, const std::string& worker_id, v1::JobState state,
                       int64_t started_ms, int64_t finished_ms, uint64_t log_size) {
  Enqueue(Op{[=, this] {
               return WriteAttempt(job_id, attempt, worker_id, state, started_ms, finished_ms, log_size);
             },
             nullptr});
}

void Store::AddEvent(const std::string& job_id, const v1::BuildEvent& event) {
  Enqueue(Op{[this, job_id, unix_ms = event.unix_ms(), row = Serialize(event)] {
               return WriteEvent(job_id, unix_ms, row);
             },
             nullptr});
}

void Store::PutArtifacts(const std::string& job_id, uint32_t attempt,
                         const google::protobuf::RepeatedPtrField<v1::ArtifactInfo>& artifacts) {
  if (artifacts.empty()) return;
  Enqueue(Op{[this, job_id, attempt, artifacts] {
               for (const v1::ArtifactInfo& a : artifacts) RETURN_IF_ERROR(WriteArtifact(job_id, attempt, a));
               return absl::OkStatus();
             },
             nullptr});
}

// ---------------------------------------------------------------- row writers

absl::Status Store::WriteWorker(const std::string& id, const std::string& info) {
  ASSIGN_OR_RETURN(sqlite3_stmt * s, Prepared("INSERT OR REPLACE INTO workers (id, info) VALUES (?, ?)"));
  BindText(s, 1, id);
  BindBlob(s, 2, info);
  return RunToDone(s, "put worker");
}

absl::Status Store::WriteJob(const std::string& id, int64_t seq, int state, int64_t created_ms,
                             const std::string& spec, const std::string& build) {
  ASSIGN_OR_RETURN(sqlite3_stmt * s,
                   Prepared("INSERT INTO jobs (id, seq, state, created_ms, spec, build) "
                            "VALUES (?1, ?2, ?3, ?4, ?5, ?6) ON CONFLICT(id) DO UPDATE SET "
                            "state = ?3, build = ?6"));
  BindText(s, 1, id);
  sqlite3_bind_int64(s, 2, seq);
  sqlite3_bind_int(s, 3, state);
  sqlite3_bind_int64(s, 4, created_ms);
  BindBlob(s, 5, spec);
  BindBlob(s, 6, build);
  return RunToDone(s, "put job");
}

absl::Status Store::WriteSecret(const std::string& job_id, const std::string& name, const std::string& sealed) {
  ASSIGN_OR_RETURN(sqlite3_stmt * s,
                   Prepared("INSERT OR REPLACE INTO secrets (job_id, name, sealed) VALUES (?, ?, ?)"));
  BindText(s, 1, job_id);
  BindText(s, 2, name);
  BindBlob(s, 3, sealed);
  return RunToDone(s, "put secret");
}

absl::Status Store::WriteDeleteSecrets(const std::string& job_id) {
  ASSIGN_OR_RETURN(sqlite3_stmt * s, Prepared("DELETE FROM secrets WHERE job_id = ?"));
  BindText(s, 1, job_id);
  return RunToDone(s, "delete secrets");
}

absl::Status Store::WriteAttempt(const std::string& job_id, uint32_t attempt, const std::string& worker_id,
                                 int state, int64_t started_ms, int64_t finished_ms, uint64_t log_size) {
  ASSIGN_OR_RETURN(sqlite3_stmt * s,
                   Prepared("INSERT OR REPLACE INTO attempts (job_id, attempt, worker_id, state, "
                            "started_ms, finished_ms, log_size) VALUES (?, ?, ?, ?, ?, ?, ?)"));
  BindText(s, 1, job_id);
  sqlite3_bind_int(s, 2, static_cast<int>(attempt));
  BindText(s, 3, worker_id);
  sqlite3_bind_int(s, 4, state);
  sqlite3_bind_int64(s, 5, started_ms);
  sqlite3_bind_int64(s, 6, finished_ms);
  sqlite3_bind_int64(s, 7, static_cast<int64_t>(log_size));
  return RunToDone(s, "put attempt");
}

absl::Status Store::WriteEvent(const std::string& job_id, int64_t unix_ms, const std::string& event) {
  ASSIGN_OR_RETURN(sqlite3_stmt * s, Prepared("INSERT INTO events (job_id, unix_ms, event) VALUES (?, ?, ?)"));
  BindText(s, 1, job_id);
  sqlite3_bind_int64(s, 2, unix_ms);
  BindBlob(s, 3, event);
  return RunToDone(s, "add event");
}

absl::Status Store::WriteArtifact(const std::string& job_id, uint32_t attempt, const v1::ArtifactInfo& a) {
  ASSIGN_OR_RETURN(sqlite3_stmt * s,
                   Prepared("INSERT OR REPLACE INTO artifacts (job_id, attempt, name, path, sha256, size, "
                            "info) VALUES (?, ?, ?, ?, ?, ?, ?)"));
  BindText(s, 1, job_id);
  sqlite3_bind_int(s, 2, static_cast<int>(attempt));
  BindText(s, 3, a.name());
  BindText(s, 4, a.path());
  BindText(s, 5, a.sha256());
  sqlite3_bind_int64(s, 6, static_cast<int64_t>(a.size()));
  BindBlob(s, 7, Serialize(a));
  return RunToDone(s, "put artifact");
}

// ---------------------------------------------------------------- reads

absl::StatusOr<std::vector<v1::WorkerInfo>> Store::LoadWorkers() {
  RETURN_IF_ERROR(Sync());
  std::lock_guard<std::mutex> lock(db_mu_);
  ASSIGN_OR_RETURN(sqlite3_stmt * s, Prepared("SELECT info FROM workers ORDER BY id"));
  std::vector<v1::WorkerInfo> out;
  int rc;
  while ((rc = sqlite3_step(s)) == SQLITE_ROW) {
    v1::WorkerInfo w;
    if (!w.ParseFromString(ColumnBlob(s, 0))) {
      sqlite3_reset(s);
      return absl::DataLossError("corrupt worker row");
    }
    out.push_back(std::move(w));
  }
  sqlite3_reset(s);
  if (rc != SQLITE_DONE) return Error("load workers");
  return out;
}

absl::StatusOr<std::vector<StoredJob>> Store::LoadJobs() {
  RETURN_IF_ERROR(Sync());
  std::lock_guard<std::mutex> lock(db_mu_);
  ASSIGN_OR_RETURN(sqlite3_stmt * s, Prepared("SELECT seq, spec, build FROM jobs ORDER BY seq"));
  std::vector<StoredJob> out;
  int rc;
  while ((rc = sqlite3_step(s)) == SQLITE_ROW) {
    StoredJob job;
    job.seq = sqlite3_column_int64(s, 0);
    if (!job.build.ParseFromString(ColumnBlob(s, 2)) ||
        !job.build.mutable_spec()->ParseFromString(ColumnBlob(s, 1))) {
      sqlite3_reset(s);
      return absl::DataLossError(absl::StrCat("corrupt job row ", job.seq));
    }
    out.push_back(std::move(job));
  }
  sqlite3_reset(s);
  if (rc != SQLITE_DONE) return Error("load jobs");
  return out;
}

absl::StatusOr<std::map<std::string, std::map<std::string, std::string>>> Store::LoadSecrets() {
  RETURN_IF_ERROR(Sync());
  std::lock_guard<std::mutex> lock(db_mu_);
  ASSIGN_OR_RETURN(sqlite3_stmt * s, Prepared("SELECT job_id, name, sealed FROM secrets"));
  std::map<std::string, std::map<std::string, std::string>> out;
  int rc;
  while ((rc = sqlite3_step(s)) == SQLITE_ROW) {
    out[ColumnBlob(s, 0)][ColumnBlob(s, 1)] = ColumnBlob(s, 2);
  }
  sqlite3_reset(s);
  if (rc != SQLITE_DONE) return Error("load secrets");
  return out;
}

absl::StatusOr<std::vector<v1::BuildEvent>> Store::LoadEvents(const std::string& job_id) {
  RETURN_IF_ERROR(Sync());
  std::lock_guard<std::mutex> lock(db_mu_);
  ASSIGN_OR_RETURN(sqlite3_stmt * s, Prepared("SELECT event FROM events WHERE job_id = ? ORDER BY id"));
  BindText(s, 1, job_id);
  std::vector<v1::BuildEvent> out;
  int rc;
  while ((rc = sqlite3_step(s)) == SQLITE_ROW) {
    v1::BuildEvent e;
    if (!e.ParseFromString(ColumnBlob(s, 0))) {
      sqlite3_reset(s);
      return absl::DataLossError("corrupt event row");
    }
    out.push_back(std::move(e));
  }
  sqlite3_reset(s);
  if (rc != SQLITE_DONE) return Error("load events");
  return out;
}

}  // namespace freeagent::controller
