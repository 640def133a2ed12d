// SQLite persistence for the controller.
#include "controller/store.h"

#include "absl/strings/str_cat.h"
#include "common/status_macros.h"

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
  return store;
}

Store::~Store() {
  stmts_.clear();  // statements before the connection
  db_.reset();
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

absl::Status Store::PutWorker(const v1::WorkerInfo& worker) {
  std::lock_guard<std::mutex> lock(mu_);
  ASSIGN_OR_RETURN(sqlite3_stmt * s,
                   Prepared("INSERT OR REPLACE INTO workers (id, info) VALUES (?, ?)"));
  BindText(s, 1, worker.id());
  BindBlob(s, 2, Serialize(worker));
  return RunToDone(s, "put worker");
}

absl::StatusOr<std::vector<v1::WorkerInfo>> Store::LoadWorkers() {
  std::lock_guard<std::mutex> lock(mu_);
  ASSIGN_OR_RETURN(sqlite3_stmt * s, Prepared("SELECT info FROM workers ORDER BY id"));
  std::vector<v1::WorkerInfo> out;
  int rc;
  while ((rc = sqlite3_step(s)) == SQLITE_ROW) {
    v1::WorkerInfo w;
    if (!w.ParseFromString(ColumnBlob(s, 0))) return absl::DataLossError("corrupt worker row");
    out.push_back(std::move(w));
  }
  sqlite3_reset(s);
  if (rc != SQLITE_DONE) return Error("load workers");
  return out;
}

absl::Status Store::PutJob(const StoredJob& job) {
  v1::Build build = job.build;
  v1::JobSpec& stored_spec = *build.mutable_spec();
  for (auto& [key, value] : *stored_spec.mutable_secret_env()) value.clear();
  if (stored_spec.has_signing()) stored_spec.mutable_signing()->clear_p12_password();
  std::string spec = Serialize(stored_spec);
  build.clear_spec();
  build.clear_events();
  std::lock_guard<std::mutex> lock(mu_);
  ASSIGN_OR_RETURN(sqlite3_stmt * s,
                   Prepared("INSERT INTO jobs (id, seq, state, created_ms, spec, build) "
                            "VALUES (?1, ?2, ?3, ?4, ?5, ?6) ON CONFLICT(id) DO UPDATE SET "
                            "state = ?3, build = ?6"));
  BindText(s, 1, build.id());
  sqlite3_bind_int64(s, 2, job.seq);
  sqlite3_bind_int(s, 3, build.state());
  sqlite3_bind_int64(s, 4, build.created_unix_ms());
  BindBlob(s, 5, spec);
  BindBlob(s, 6, Serialize(build));
  return RunToDone(s, "put job");
}

absl::StatusOr<std::vector<StoredJob>> Store::LoadJobs() {
  std::lock_guard<std::mutex> lock(mu_);
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

absl::Status Store::PutSecrets(const std::string& job_id, const std::map<std::string, std::string>& sealed) {
  if (sealed.empty()) return absl::OkStatus();
  std::lock_guard<std::mutex> lock(mu_);
  RETURN_IF_ERROR(Exec("BEGIN"));
  for (const auto& [name, value] : sealed) {
    auto s = Prepared("INSERT OR REPLACE INTO secrets (job_id, name, sealed) VALUES (?, ?, ?)");
    absl::Status st = s.status();
    if (st.ok()) {
      BindText(*s, 1, job_id);
      BindText(*s, 2, name);
      BindBlob(*s, 3, value);
      st = RunToDone(*s, "put secret");
    }
    if (!st.ok()) {
      Exec("ROLLBACK").IgnoreError();
      return st;
    }
  }
  return Exec("COMMIT");
}

absl::StatusOr<std::map<std::string, std::map<std::string, std::string>>> Store::LoadSecrets() {
  std::lock_guard<std::mutex> lock(mu_);
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

absl::Status Store::DeleteSecrets(const std::string& job_id) {
  std::lock_guard<std::mutex> lock(mu_);
  ASSIGN_OR_RETURN(sqlite3_stmt * s, Prepared("DELETE FROM secrets WHERE job_id = ?"));
  BindText(s, 1, job_id);
  return RunToDone(s, "delete secrets");
}

absl::Status Store::PutAttempt(const std::string& job_id, uint32_t attempt,
                               const std::string& worker_id, v1::JobState state, int64_t started_ms,
                               int64_t finished_ms, uint64_t log_size) {
  std::lock_guard<std::mutex> lock(mu_);
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

absl::Status Store::AddEvent(const std::string& job_id, const v1::BuildEvent& event) {
  std::lock_guard<std::mutex> lock(mu_);
  ASSIGN_OR_RETURN(sqlite3_stmt * s,
                   Prepared("INSERT INTO events (job_id, unix_ms, event) VALUES (?, ?, ?)"));
  BindText(s, 1, job_id);
  sqlite3_bind_int64(s, 2, event.unix_ms());
  BindBlob(s, 3, Serialize(event));
  return RunToDone(s, "add event");
}

absl::StatusOr<std::vector<v1::BuildEvent>> Store::LoadEvents(const std::string& job_id) {
  std::lock_guard<std::mutex> lock(mu_);
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

absl::Status Store::PutArtifacts(const std::string& job_id, uint32_t attempt,
                                 const google::protobuf::RepeatedPtrField<v1::ArtifactInfo>& artifacts) {
  std::lock_guard<std::mutex> lock(mu_);
  RETURN_IF_ERROR(Exec("BEGIN"));
  for (const v1::ArtifactInfo& a : artifacts) {
    auto s = Prepared("INSERT OR REPLACE INTO artifacts (job_id, attempt, name, path, sha256, size, "
                      "info) VALUES (?, ?, ?, ?, ?, ?, ?)");
    if (!s.ok()) {
      Exec("ROLLBACK").IgnoreError();
      return s.status();
    }
    BindText(*s, 1, job_id);
    sqlite3_bind_int(*s, 2, static_cast<int>(attempt));
    BindText(*s, 3, a.name());
    BindText(*s, 4, a.path());
    BindText(*s, 5, a.sha256());
    sqlite3_bind_int64(*s, 6, static_cast<int64_t>(a.size()));
    BindBlob(*s, 7, Serialize(a));
    if (absl::Status st = RunToDone(*s, "put artifact"); !st.ok()) {
      Exec("ROLLBACK").IgnoreError();
      return st;
    }
  }
  return Exec("COMMIT");
}

}  // namespace freeagent::controller
