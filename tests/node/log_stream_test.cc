// The per-attempt log stream: chunking, offsets, acks, rewind after reconnect, bounded memory.
#include "node/log_stream.h"

#include <atomic>
#include <thread>

#include "gtest/gtest.h"

namespace freeagent::node {
namespace {

namespace v1 = ::freeagent::v1;
using std::chrono::milliseconds;

class RecordingSink : public MessageSink {
 public:
  bool Send(v1::WorkerMessage m) override {
    std::lock_guard<std::mutex> lock(mu);
    if (!live) return false;
    chunks.push_back(m.log());
    return true;
  }
  bool SendPriority(v1::WorkerMessage) override { return true; }
  std::vector<v1::LogChunk> Chunks() {
    std::lock_guard<std::mutex> lock(mu);
    return chunks;
  }
  // What a controller would have stored: bytes at the committed offset only.
  std::string Stored() {
    std::string out;
    for (const auto& c : Chunks()) {
      if (c.offset() == out.size()) out += c.data();
      else if (c.offset() < out.size() && c.offset() + c.data().size() > out.size())
        out += c.data().substr(out.size() - c.offset());
    }
    return out;
  }
  std::mutex mu;
  bool live = true;
  std::vector<v1::LogChunk> chunks;
};

std::string Pattern(size_t n) {
  std::string s(n, '\0');
  for (size_t i = 0; i < n; ++i) s[i] = static_cast<char>((i * 131 + i / 7) & 0xff);
  return s;
}

TEST(LogStream, ChunksAtMost64KiBWithIncreasingOffsets) {
  RecordingSink sink;
  LogStream log("b-1", 1, &sink);
  std::string data = Pattern(300 * 1024 + 17);
  log.Append(data);
  ASSERT_TRUE(log.Flush(milliseconds(2000)));
  auto chunks = sink.Chunks();
  ASSERT_GE(chunks.size(), 5u);
  uint64_t next = 0;
  for (const auto& c : chunks) {
    EXPECT_EQ(c.job_id(), "b-1");
    EXPECT_EQ(c.attempt(), 1u);
    EXPECT_EQ(c.offset(), next);
    EXPECT_LE(c.data().size(), 64u * 1024);
    next += c.data().size();
  }
  EXPECT_EQ(sink.Stored(), data);
  EXPECT_EQ(log.size(), data.size());
}

TEST(LogStream, SmallWritesAreFlushedWithinTheInterval) {
  RecordingSink sink;
  LogStream log("b-1", 1, &sink);
  log.Append("hello\n");
  auto start = std::chrono::steady_clock::now();
  while (sink.Chunks().empty() && std::chrono::steady_clock::now() - start < milliseconds(2000)) {
    std::this_thread::sleep_for(milliseconds(5));
  }
  ASSERT_EQ(sink.Chunks().size(), 1u);
  EXPECT_LT(std::chrono::steady_clock::now() - start, milliseconds(500));
  EXPECT_EQ(sink.Chunks()[0].data(), "hello\n");
}

TEST(LogStream, RewindResendsFromTheCommittedOffset) {
  RecordingSink sink;
  LogStream log("b-1", 2, &sink);
  std::string first = Pattern(100000);
  log.Append(first);
  ASSERT_TRUE(log.Flush(milliseconds(2000)));
  log.Ack(40000);
  EXPECT_EQ(log.committed(), 40000u);
  // The stream breaks: sends fail, then a new stream's Welcome says 40000 is committed.
  {
    std::lock_guard<std::mutex> lock(sink.mu);
    sink.live = false;
    sink.chunks.clear();
  }
  std::string second = Pattern(5000);
  log.Append(second);
  std::this_thread::sleep_for(milliseconds(150));
  {
    std::lock_guard<std::mutex> lock(sink.mu);
    sink.live = true;
  }
  log.Rewind(40000);
  ASSERT_TRUE(log.Flush(milliseconds(2000)));
  auto chunks = sink.Chunks();
  ASSERT_FALSE(chunks.empty());
  EXPECT_EQ(chunks.front().offset(), 40000u);
  std::string resent;
  for (const auto& c : chunks) {
    if (c.offset() == 40000u + resent.size()) resent += c.data();
  }
  EXPECT_EQ(resent, first.substr(40000) + second);
}

TEST(LogStream, WriterBlocksWhileTooMuchIsUnacked) {
  RecordingSink sink;
  LogStreamOptions options;
  options.max_unacked_bytes = 100000;
  LogStream log("b-1", 1, &sink, options);
  std::atomic<bool> done{false};
  std::thread writer([&] {
    log.Append(Pattern(250000));
    done = true;
  });
  std::this_thread::sleep_for(milliseconds(200));
  EXPECT_FALSE(done.load());
  EXPECT_LE(log.size(), 100000u);
  log.Ack(log.size());
  std::this_thread::sleep_for(milliseconds(100));
  log.Ack(log.size());
  std::this_thread::sleep_for(milliseconds(100));
  log.Ack(log.size());
  writer.join();
  EXPECT_TRUE(done.load());
  EXPECT_EQ(log.size(), 250000u);
}

TEST(LogStream, CloseReleasesABlockedWriter) {
  RecordingSink sink;
  LogStreamOptions options;
  options.max_unacked_bytes = 1000;
  LogStream log("b-1", 1, &sink, options);
  std::thread writer([&] { log.Append(Pattern(5000)); });
  std::this_thread::sleep_for(milliseconds(100));
  log.Close();
  writer.join();
  SUCCEED();
}

}  // namespace
}  // namespace freeagent::node
