// fa_stream_tool: writes test streams to stdout for build steps in e2e tests and benchmarks.
//   fa_stream_tool random SEED SIZE      deterministic pseudo-random bytes (see stream_data.h)
//   fa_stream_tool text SIZE             log-like text lines, as fast as possible
//   fa_stream_tool lines RATE SECONDS LEN
//       lines of LEN bytes, "<unix_us> xxxx...\n", paced to RATE bytes/s, each written as it is due
#include <time.h>
#include <unistd.h>

#include <cerrno>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <string>
#include <thread>

#include "tests/support/stream_data.h"

namespace {

bool WriteAll(const char* data, size_t size) {
  while (size > 0) {
    ssize_t n = write(STDOUT_FILENO, data, size);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) return false;
    data += n;
    size -= static_cast<size_t>(n);
  }
  return true;
}

int Random(uint64_t seed, uint64_t size) {
  std::string buffer;
  const uint64_t kBlock = 256 * 1024;
  for (uint64_t offset = 0; offset < size; offset += kBlock) {
    uint64_t n = std::min(kBlock, size - offset);
    freeagent::testing::DeterministicBytes(seed, offset, n, &buffer);
    if (!WriteAll(buffer.data(), buffer.size())) return 1;
  }
  return 0;
}

int Text(uint64_t size) {
  std::string block;
  for (int i = 0; block.size() < 1024 * 1024; ++i) {
    block += "[build] compiling src/module_" + std::to_string(i) +
             ".c -> obj/module_" + std::to_string(i) + ".o (cc -O2 -Wall -Wextra -fPIC)\n";
  }
  uint64_t written = 0;
  while (written < size) {
    uint64_t n = std::min<uint64_t>(block.size(), size - written);
    if (!WriteAll(block.data(), n)) return 1;
    written += n;
  }
  return 0;
}

int64_t NowMicros() {
  timespec ts;
  clock_gettime(CLOCK_REALTIME, &ts);
  return static_cast<int64_t>(ts.tv_sec) * 1000000 + ts.tv_nsec / 1000;
}

int Lines(uint64_t rate, double seconds, size_t len) {
  if (rate == 0 || len < 24) return 2;
  const auto interval = std::chrono::duration<double>(static_cast<double>(len) / rate);
  const auto start = std::chrono::steady_clock::now();
  const auto end = start + std::chrono::duration<double>(seconds);
  auto due = start;
  while (due < end) {
    std::this_thread::sleep_until(due);
    std::string line = std::to_string(NowMicros()) + " ";
    line.append(len - line.size() - 1, 'x');
    line += '\n';
    if (!WriteAll(line.data(), line.size())) return 1;
    due += std::chrono::duration_cast<std::chrono::steady_clock::duration>(interval);
  }
  return 0;
}

}  // namespace

int main(int argc, char** argv) {
  std::string mode = argc > 1 ? argv[1] : "";
  if (mode == "random" && argc == 4) return Random(std::strtoull(argv[2], nullptr, 10), std::strtoull(argv[3], nullptr, 10));
  if (mode == "text" && argc == 3) return Text(std::strtoull(argv[2], nullptr, 10));
  if (mode == "lines" && argc == 5) {
    return Lines(std::strtoull(argv[2], nullptr, 10), std::strtod(argv[3], nullptr),
                 std::strtoull(argv[4], nullptr, 10));
  }
  std::fprintf(stderr, "usage: fa_stream_tool random SEED SIZE | text SIZE | lines RATE SECONDS LEN\n");
  return 2;
}
