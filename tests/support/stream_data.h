// Deterministic test data shared by the stream tool (which a build step runs) and the tests (which
// compute what the step must have produced).
#pragma once

#include <cstdint>
#include <string>

namespace freeagent::testing {

// Fills `out` with `size` pseudo-random bytes (every byte value occurs) from `seed`, continuing a
// stream at byte `offset`: concatenating calls with consecutive offsets gives the same bytes as
// one call. xorshift64*, 8 bytes per state step.
inline void DeterministicBytes(uint64_t seed, uint64_t offset, size_t size, std::string* out) {
  out->resize(size);
  uint64_t block = offset / 8;
  // Each 8-byte block is a pure function of (seed, block index), so any offset can be produced.
  auto block_value = [seed](uint64_t index) {
    uint64_t x = seed * 0x9E3779B97F4A7C15ull + index * 0xBF58476D1CE4E5B9ull + 1;
    x ^= x >> 30;
    x *= 0xBF58476D1CE4E5B9ull;
    x ^= x >> 27;
    x *= 0x94D049BB133111EBull;
    x ^= x >> 31;
    return x;
  };
  size_t written = 0;
  uint64_t skip = offset % 8;
  while (written < size) {
    uint64_t v = block_value(block++);
    for (uint64_t i = skip; i < 8 && written < size; ++i) {
      (*out)[written++] = static_cast<char>((v >> (8 * i)) & 0xff);
    }
    skip = 0;
  }
}

inline std::string DeterministicBytes(uint64_t seed, size_t size) {
  std::string out;
  DeterministicBytes(seed, 0, size, &out);
  return out;
}

}  // namespace freeagent::testing
