// Durable per-attempt build logs: one append-only file per (job, attempt) under <data-dir>/logs.
// Bytes are written at once and made durable by a small pool of sync threads that coalesce fdatasync
// calls per file; the committed offset of an attempt is the durable size of its file. Several files are
// synced at once because each build has its own file and concurrent syncs overlap their disk writes:
// one thread syncing thousands of new files in turn would bound the whole controller at a few hundred
// builds per second. Watchers read the files.
#pragma once

#include <condition_variable>
#include <cstdint>
#include <deque>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <set>
#include <string>
#include <string_view>
#include <thread>
#include <utility>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"

namespace freeagent::controller {

class LogStore {
 public:
  // Called (from a sync thread, with no lock held) once the attempt's bytes up to `committed` are
  // durable. Only the latest callback registered for an attempt is kept: acks are cumulative.
  using CommitCallback = std::function<void(uint64_t committed)>;

  struct AppendResult {
    uint64_t written = 0;     // bytes in the file (durable or not)
    uint64_t committed = 0;   // durable bytes
    bool pending = false;     // a sync will run the callback; otherwise ack `committed` now
    bool gap = false;         // the chunk started beyond `written` and was ignored
  };

  struct Sizes {
    uint64_t written = 0;
    uint64_t committed = 0;
  };

  explicit LogStore(std::string dir);
  ~LogStore();
  LogStore(const LogStore&) = delete;
  LogStore& operator=(const LogStore&) = delete;

  // Called once the attempt's bytes written before the FlushAsync call are durable (or could not be
  // made durable: the status says why).
  using FlushCallback = std::function<void(absl::Status)>;

  // Creates the directory and starts the sync threads.
  absl::Status Start();
  // Syncs what is pending and stops the sync threads.
  void Stop();

  // Appends `data` that starts at byte `offset` of the attempt's log. Bytes below the current size are
  // duplicates and dropped; a chunk starting past the end (a gap) is ignored. Thread-safe.
  absl::StatusOr<AppendResult> Append(const std::string& job_id, uint32_t attempt, uint64_t offset,
                                      std::string_view data, CommitCallback on_commit);

  // Sizes of an attempt's log (0/0 when it has none). Thread-safe.
  Sizes GetSizes(const std::string& job_id, uint32_t attempt);

  // Makes every byte written so far durable without blocking (so that a finished attempt reports its
  // whole log as committed): returns true if they already are (`done` is not called); otherwise a sync
  // thread calls `done` once they are. Commit callbacks still run too. Thread-safe.
  bool FlushAsync(const std::string& job_id, uint32_t attempt, FlushCallback done);

  // Closes the attempt's file once nothing is pending for it.
  void Release(const std::string& job_id, uint32_t attempt);

  std::string PathFor(const std::string& job_id, uint32_t attempt) const;

 private:
  struct File;
  using Key = std::pair<std::string, uint32_t>;

  absl::StatusOr<std::shared_ptr<File>> OpenLocked(const Key& key);
  void SyncLoop();

  const std::string dir_;
  std::mutex mu_;
  std::condition_variable cv_;
  std::map<Key, std::shared_ptr<File>> files_;
  std::set<Key> dirty_;   // written beyond committed, not yet taken by a sync thread
  // dirty_ in the order the files became dirty: syncs are served first come, first served (by key,
  // a file with a late job id could wait behind a steady stream of new ones).
  std::deque<Key> dirty_order_;
  bool stop_ = false;
  std::vector<std::thread> sync_threads_;
};

}  // namespace freeagent::controller
