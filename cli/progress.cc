#include "cli/progress.h"

#include <unistd.h>

#include "absl/strings/str_format.h"

namespace freeagent::cli {

using Clock = std::chrono::steady_clock;

std::string HumanBytes(uint64_t bytes) {
  if (bytes < 1000) return absl::StrFormat("%d B", bytes);
  if (bytes < 1000 * 1000) return absl::StrFormat("%.1f kB", bytes / 1e3);
  if (bytes < 1000ull * 1000 * 1000) return absl::StrFormat("%.1f MB", bytes / 1e6);
  return absl::StrFormat("%.2f GB", bytes / 1e9);
}

Progress::Progress(std::string label, uint64_t total, std::FILE* out)
    : label_(std::move(label)),
      total_(total),
      out_(out),
      tty_(isatty(fileno(out)) != 0),
      start_(Clock::now()),
      last_draw_(start_) {}

void Progress::Update(uint64_t done) {
  if (first_update_) {
    // A resumed transfer starts part-way; the rate counts only what moves now.
    start_offset_ = done;
    first_update_ = false;
  }
  done_ = done;
  Clock::time_point now = Clock::now();
  if (now - start_ < std::chrono::seconds(1)) return;
  auto interval = tty_ ? std::chrono::milliseconds(250) : std::chrono::milliseconds(1000);
  if (shown_ && now - last_draw_ < interval) return;
  Draw(false);
}

void Progress::Finish() {
  if (finished_) return;
  finished_ = true;
  if (shown_) Draw(true);
}

void Progress::Draw(bool final) {
  Clock::time_point now = Clock::now();
  double seconds = std::chrono::duration<double>(now - start_).count();
  double rate = seconds > 0 ? (done_ - start_offset_) / seconds : 0;
  std::string line = absl::StrFormat("%s %s", label_, HumanBytes(done_));
  if (total_ > 0) {
    line += absl::StrFormat(" / %s (%d%%)", HumanBytes(total_), done_ * 100 / total_);
  }
  line += absl::StrFormat(" %s/s", HumanBytes(static_cast<uint64_t>(rate)));
  if (tty_) {
    std::fprintf(out_, "\r%s\033[K%s", line.c_str(), final ? "\n" : "");
  } else {
    std::fprintf(out_, "%s\n", line.c_str());
  }
  std::fflush(out_);
  shown_ = true;
  last_draw_ = now;
}

}  // namespace freeagent::cli
