// A cancellation token: one side cancels, any number of blocking operations observe it.
// Thread-safe. Copies share the same state.
#pragma once

#include <chrono>
#include <condition_variable>
#include <functional>
#include <memory>
#include <mutex>
#include <string>
#include <vector>

namespace freeagent {

class CancellationToken {
 public:
  CancellationToken();

  // Cancels with a reason; the first reason wins. Runs registered callbacks once, on this thread.
  void Cancel(std::string reason = "cancelled") const;
  bool IsCancelled() const;
  std::string Reason() const;

  // Sleeps until cancelled or `d` elapsed. Returns true if cancelled.
  bool WaitFor(std::chrono::steady_clock::duration d) const;

  // Runs `fn` on cancel (at once if already cancelled). Callbacks must be quick and must not block.
  void OnCancel(std::function<void()> fn) const;

  // A token that is never cancelled by anyone.
  static CancellationToken None() { return CancellationToken(); }

 private:
  struct State {
    std::mutex mu;
    std::condition_variable cv;
    bool cancelled = false;
    std::string reason;
    std::vector<std::function<void()>> callbacks;
  };
  std::shared_ptr<State> state_;
};

}  // namespace freeagent
