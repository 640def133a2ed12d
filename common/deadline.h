// A point in monotonic time after which a blocking operation gives up.
#pragma once

#include <chrono>

namespace freeagent {

class Deadline {
 public:
  using Clock = std::chrono::steady_clock;

  static Deadline Infinite() { return Deadline(Clock::time_point::max()); }
  static Deadline After(Clock::duration d) { return Deadline(Clock::now() + d); }
  static Deadline At(Clock::time_point t) { return Deadline(t); }

  bool IsInfinite() const { return at_ == Clock::time_point::max(); }
  bool Expired() const { return !IsInfinite() && Clock::now() >= at_; }
  // Time left, never negative; a very large value when infinite.
  Clock::duration Remaining() const {
    if (IsInfinite()) return std::chrono::hours(24 * 365);
    auto left = at_ - Clock::now();
    return left.count() > 0 ? left : Clock::duration::zero();
  }
  Clock::time_point time_point() const { return at_; }
  // The earlier of the two.
  Deadline Min(const Deadline& other) const { return at_ < other.at_ ? *this : other; }

 private:
  explicit Deadline(Clock::time_point at) : at_(at) {}
  Clock::time_point at_;
};

}  // namespace freeagent
