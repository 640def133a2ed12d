// Durable per-attempt build logs: one append-only file per (job, attempt) under <data-dir>/logs, named
// <job id>.<attempt>.log (no directory per build: creating one cost as much as creating the file).
// Logs of the earlier layout, <job id>/<attempt>.log, are moved to their flat names at start-up.
//
// Bytes are written to the attempt's file at once. They are made durable one of two ways:
//  - the first kJournalLogBytes of each log (all of a typical short build's log) are also appended to
//    a shared journal that one thread group-commits: one write and one fdatasync per burst, whatever
//    the number of builds in it. Most builds therefore never fdatasync their own file (creating and
//    syncing a new file per build was the largest cost of a busy controller). A journal segment is
//    retired once syncfs made every file it covers durable; at start-up, segments left behind are
//    replayed into the files (a record is a checksummed (job, attempt, offset, bytes)).
//  - bytes of a longer log go to a small pool of sync threads that coalesce fdatasync calls per file;
//    several files are synced at once because concurrent syncs overlap their disk writes.
// The committed offset of an attempt is the number of its bytes known to be durable. Watchers read
// the files.
#pragma once

#include <atomic>
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
  // Bytes of each log (from offset 0) that go through the journal; later bytes are synced in the file.
  static constexpr uint64_t kJournalLogBytes = 64 << 10;
  // A journal segment this large is retired (once its files are durable) and a new one begun.
  static constexpr uint64_t kJournalSegmentBytes = 64 << 20;

  // Called (from a sync or journal thread, with no lock held) once the attempt's bytes up to
  // `committed` are durable. Only the latest callback registered for an attempt is kept: acks are
  // cumulative. Calls for one attempt never overlap and never go backwards.
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

  // Creates the directory, moves logs of the per-build directory layout to their flat names, replays journal segments left by an earlier run into the files (their
  // retirement, after a syncfs, runs in the background), opens a new segment and starts the threads.
  absl::Status Start();
  // Commits what is pending and stops the threads.
  void Stop();

  // Appends `data` that starts at byte `offset` of the attempt's log. Bytes below the current size are
  // duplicates and dropped; a chunk starting past the end (a gap) is ignored. Thread-safe.
  absl::StatusOr<AppendResult> Append(const std::string& job_id, uint32_t attempt, uint64_t offset,
                                      std::string_view data, CommitCallback on_commit);

  // Sizes of an attempt's log (0/0 when it has none). Thread-safe.
  Sizes GetSizes(const std::string& job_id, uint32_t attempt);

  // Makes every byte written so far durable without blocking (so that a finished attempt reports its
  // whole log as committed): returns true if they already are (`done` is not called); otherwise a sync
  // or journal thread calls `done` once they are. Commit callbacks still run too. Thread-safe.
  bool FlushAsync(const std::string& job_id, uint32_t attempt, FlushCallback done);

  // Closes the attempt's file once nothing is pending for it.
  void Release(const std::string& job_id, uint32_t attempt);

  std::string PathFor(const std::string& job_id, uint32_t attempt) const;
  // The journal segment with sequence number `n` (segments are dot files: never a job id).
  std::string SegmentPath(uint64_t n) const;

 private:
  struct File;
  using Key = std::pair<std::string, uint32_t>;

  absl::StatusOr<std::shared_ptr<File>> OpenLocked(const Key& key);
  void MarkDirtyLocked(const Key& key);
  // `names`: the entries of the logs directory, listed once at Start.
  // Renames <dir>/<job>/<attempt>.log to PathFor(job, attempt) and removes the emptied directories.
  absl::Status MigrateJobDirectories(const std::vector<std::string>& names);
  // Replays every segment among `names` into the files; returns their paths and the highest number.
  absl::Status Replay(const std::vector<std::string>& names, std::vector<std::string>* segments, uint64_t* last);
  absl::Status OpenSegment(uint64_t n);
  // syncfs, then removes the segments (on the checkpoint thread).
  void Retire(int sync_fd, std::vector<std::string> segments);
  void SyncLoop();
  void JournalLoop();
  // A new segment once the current one is full; the full one is retired on the checkpoint thread.
  void MaybeRotate();
  // Lets other threads take the file again after its callbacks ran; closes a released one.
  void FinishLocked(const Key& key, const std::shared_ptr<File>& file);

  const std::string dir_;
  std::mutex mu_;
  std::condition_variable cv_;          // sync threads
  std::condition_variable journal_cv_;  // the journal thread
  std::map<Key, std::shared_ptr<File>> files_;
  std::set<Key> dirty_;   // written beyond committed, not yet taken by a sync thread
  // dirty_ in the order the files became dirty: syncs are served first come, first served (by key,
  // a file with a late job id could wait behind a steady stream of new ones).
  std::deque<Key> dirty_order_;
  bool stop_ = false;          // sync threads end once nothing is dirty
  bool stop_journal_ = false;  // the journal thread ends once nothing is queued
  std::vector<std::thread> sync_threads_;

  // The journal: records queued for the next group commit, and the highest byte of each log in them.
  std::string journal_queue_;
  std::map<Key, uint64_t> journal_targets_;
  bool journal_failed_ = false;  // a failed write or sync: every log goes to the sync threads
  int segment_fd_ = -1;          // written by the journal thread only (and Start)
  uint64_t segment_n_ = 0;
  uint64_t segment_size_ = 0;
  std::thread journal_thread_;
  std::thread checkpoint_thread_;  // retires old segments; at most one at a time
  std::atomic<bool> checkpoint_running_{false};
};

}  // namespace freeagent::controller
