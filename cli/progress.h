// A transfer progress line on stderr, shown only for transfers that last more than a second so
// quick commands stay quiet.
#pragma once

#include <chrono>
#include <cstdint>
#include <cstdio>
#include <string>

namespace freeagent::cli {

// Not thread-safe; one transfer per instance.
class Progress {
 public:
  // `total` may be 0 when unknown. `out` is usually stderr.
  Progress(std::string label, uint64_t total, std::FILE* out = stderr);
  ~Progress() { Finish(); }
  Progress(const Progress&) = delete;
  Progress& operator=(const Progress&) = delete;

  // Records `done` bytes; redraws at most every 250 ms (terminal) or every second (pipe).
  void Update(uint64_t done);
  // Prints the final state if a line was shown. Idempotent.
  void Finish();

 private:
  void Draw(bool final);

  std::string label_;
  uint64_t total_;
  std::FILE* out_;
  bool tty_;
  uint64_t done_ = 0;
  uint64_t start_offset_ = 0;
  bool first_update_ = true;
  bool shown_ = false;
  bool finished_ = false;
  std::chrono::steady_clock::time_point start_;
  std::chrono::steady_clock::time_point last_draw_;
};

// "1.5 MB", "312 B": decimal units like most transfer tools.
std::string HumanBytes(uint64_t bytes);

}  // namespace freeagent::cli
