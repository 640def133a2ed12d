#include "common/cancellation.h"

namespace freeagent {

CancellationToken::CancellationToken() : state_(std::make_shared<State>()) {}

void CancellationToken::Cancel(std::string reason) const {
  std::vector<std::function<void()>> callbacks;
  {
    std::lock_guard<std::mutex> lock(state_->mu);
    if (state_->cancelled) return;
    state_->cancelled = true;
    state_->reason = std::move(reason);
    callbacks.swap(state_->callbacks);
  }
  state_->cv.notify_all();
  // Outside the lock so a callback may read the token.
  for (auto& fn : callbacks) fn();
}

bool CancellationToken::IsCancelled() const {
  std::lock_guard<std::mutex> lock(state_->mu);
  return state_->cancelled;
}

std::string CancellationToken::Reason() const {
  std::lock_guard<std::mutex> lock(state_->mu);
  return state_->reason;
}

bool CancellationToken::WaitFor(std::chrono::steady_clock::duration d) const {
  std::unique_lock<std::mutex> lock(state_->mu);
  return state_->cv.wait_for(lock, d, [this] { return state_->cancelled; });
}

void CancellationToken::OnCancel(std::function<void()> fn) const {
  {
    std::lock_guard<std::mutex> lock(state_->mu);
    if (!state_->cancelled) {
      state_->callbacks.push_back(std::move(fn));
      return;
    }
  }
  fn();
}

}  // namespace freeagent
