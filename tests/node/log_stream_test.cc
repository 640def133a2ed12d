// The per-attempt log stream: chunking, offsets, acks, rewind after reconnect, bounded memory.
#include "node/log_stream.h"

#include <sys/stat.h>
#include <unistd.h>

#include <atomic>
#include <fstream>
#include <thread>

#include "absl/strings/str_cat.h"
#include "common/fs.h"
#include "gtest/gtest.h"

namespace freeagent::node {
namespace {

namespace v1 = ::freeagent::v1;
using std::chrono::milliseconds;

class RecordingSink : public MessageSink {
 public:
  bool Send(v1::WorkerMessage m) override {
    std::lock_guard<std::mutex> lock(mu);
    if (!live) {
      ++refused;
      return false;
    }
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
  int Refused() {
    std::lock_guard<std::mutex> lock(mu);
    return refused;
  }
  std::mutex mu;
  bool live = true;
  int refused = 0;  // sends turned down while not live
  std::vector<v1::LogChunk> chunks;
};

// A private dir for spool files, removed with the test.
class SpoolDir {
 public:
  SpoolDir() { path_ = *MakePrivateTempDir("/tmp", "fa-spool-"); }
  ~SpoolDir() { RemoveTree(path_).IgnoreError(); }
  std::string File(const std::string& name) const { return path_ + "/" + name; }
  std::unique_ptr<LogStream> Open(MessageSink* sink, uint32_t attempt = 1, LogStreamOptions options = {}) {
    auto log = LogStream::Open("b-1", attempt, sink, File(absl::StrCat("b-1-", attempt, ".spool")), options);
    EXPECT_TRUE(log.ok()) << log.status();
    return *std::move(log);
  }

 private:
  std::string path_;
};

// Resident set size of this process, from /proc/self/status.
uint64_t RssBytes() {
  std::ifstream in("/proc/self/status");
  std::string line;
  while (std::getline(in, line)) {
    if (line.rfind("VmRSS:", 0) == 0) return std::stoull(line.substr(6)) * 1024;
  }
  return 0;
}

std::string Pattern(size_t n) {
  std::string s(n, '\0');
  for (size_t i = 0; i < n; ++i) s[i] = static_cast<char>((i * 131 + i / 7) & 0xff);
  return s;
}

TEST(LogStream, ChunksAtMost64KiBWithIncreasingOffsets) {
  RecordingSink sink;
  SpoolDir dir;
  auto stream = dir.Open(&sink, 1);
  LogStream& log = *stream;
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
  SpoolDir dir;
  auto stream = dir.Open(&sink, 1);
  LogStream& log = *stream;
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
  SpoolDir dir;
  auto stream = dir.Open(&sink, 2);
  LogStream& log = *stream;
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
  // The flusher tries, is turned down and pauses until the rewind (were it to try only once the sink is
  // live again, it could send from 100000 before the rewind).
  auto until = std::chrono::steady_clock::now() + std::chrono::seconds(10);
  while (sink.Refused() == 0 && std::chrono::steady_clock::now() < until) {
    std::this_thread::sleep_for(milliseconds(5));
  }
  ASSERT_GT(sink.Refused(), 0);
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
  SpoolDir dir;
  auto stream = dir.Open(&sink, 1, options);
  LogStream& log = *stream;
  std::atomic<bool> done{false};
  std::thread writer([&] {
    log.Append(Pattern(250000));
    done = true;
  });
  std::this_thread::sleep_for(milliseconds(200));
  EXPECT_FALSE(done.load());
  EXPECT_LE(log.size(), 100000u);
  // Each ack lets the writer on by what it frees; ack what arrives until it is through (a fixed number
  // of acks could come before a writer slowed down by a busy machine took its next step, and hang it).
  auto until = std::chrono::steady_clock::now() + std::chrono::seconds(20);
  while (!done.load() && std::chrono::steady_clock::now() < until) {
    EXPECT_LE(log.size() - log.committed(), 100000u);
    log.Ack(log.size());
    std::this_thread::sleep_for(milliseconds(20));
  }
  if (!done.load()) log.Close();  // releases the writer, so the join below cannot hang
  writer.join();
  EXPECT_TRUE(done.load());
  EXPECT_EQ(log.size(), 250000u);
}

TEST(LogStream, CloseReleasesABlockedWriter) {
  RecordingSink sink;
  LogStreamOptions options;
  options.max_unacked_bytes = 1000;
  SpoolDir dir;
  auto stream = dir.Open(&sink, 1, options);
  LogStream& log = *stream;
  std::thread writer([&] { log.Append(Pattern(5000)); });
  std::this_thread::sleep_for(milliseconds(100));
  log.Close();
  writer.join();
  SUCCEED();
}

TEST(LogStream, SpoolKeepsUnackedBytesOnDiskNotInMemoryWhileDisconnected) {
  RecordingSink sink;
  {
    std::lock_guard<std::mutex> lock(sink.mu);
    sink.live = false;  // the controller is away from the start
  }
  SpoolDir dir;
  LogStreamOptions options;
  options.punch_bytes = 1 << 20;
  auto stream = dir.Open(&sink, 1, options);
  LogStream& log = *stream;
  constexpr size_t kPiece = 1 << 20;
  constexpr int kPieces = 64;
  const std::string piece = Pattern(kPiece);
  const uint64_t rss_before = RssBytes();
  auto start = std::chrono::steady_clock::now();
  for (int i = 0; i < kPieces; ++i) log.Append(piece);
  // Nothing was acked, yet the writer was never held up and memory did not grow with the log.
  EXPECT_LT(std::chrono::steady_clock::now() - start, std::chrono::seconds(10));
  EXPECT_EQ(log.size(), kPiece * kPieces);
  EXPECT_EQ(log.committed(), 0u);
  EXPECT_LT(RssBytes(), rss_before + 16 * kPiece) << "unacked log bytes are held in memory";
  struct stat st {};
  ASSERT_EQ(::stat(log.spool_path().c_str(), &st), 0);
  EXPECT_EQ(static_cast<uint64_t>(st.st_size), kPiece * kPieces);
  EXPECT_EQ(st.st_mode & 0777, 0600u);

  // The controller is back and has nothing: everything is sent once, in order, from the spool.
  {
    std::lock_guard<std::mutex> lock(sink.mu);
    sink.live = true;
  }
  log.Rewind(0);
  ASSERT_TRUE(log.Flush(std::chrono::seconds(20)));
  std::string stored = sink.Stored();
  ASSERT_EQ(stored.size(), kPiece * kPieces);
  for (int i = 0; i < kPieces; ++i) ASSERT_EQ(stored.compare(i * kPiece, kPiece, piece), 0) << "piece " << i;
  uint64_t sent = 0;
  for (const auto& c : sink.Chunks()) sent += c.data().size();
  EXPECT_EQ(sent, stored.size()) << "bytes were sent more than once";

  // Acked bytes leave the disk (hole punching), the file keeps its size.
  log.Ack(log.size());
  auto until = std::chrono::steady_clock::now() + std::chrono::seconds(5);
  do {
    ASSERT_EQ(::stat(log.spool_path().c_str(), &st), 0);
    if (static_cast<uint64_t>(st.st_blocks) * 512 < 2 * kPiece) break;
    std::this_thread::sleep_for(milliseconds(20));
  } while (std::chrono::steady_clock::now() < until);
  EXPECT_LT(static_cast<uint64_t>(st.st_blocks) * 512, 2 * kPiece) << "acked spool bytes still on disk";
}

TEST(LogStream, SpoolFileIsRemovedWithTheStream) {
  RecordingSink sink;
  SpoolDir dir;
  std::string path;
  {
    auto stream = dir.Open(&sink);
    stream->Append("bytes\n");
    path = stream->spool_path();
    EXPECT_EQ(::access(path.c_str(), F_OK), 0);
  }
  EXPECT_NE(::access(path.c_str(), F_OK), 0);
}

TEST(LogStream, OpenNamesTheSpoolThatCannotBeCreated) {
  RecordingSink sink;
  auto log = LogStream::Open("b-1", 1, &sink, "/nonexistent-dir/b-1-1.spool");
  ASSERT_FALSE(log.ok());
  EXPECT_NE(log.status().message().find("/nonexistent-dir/b-1-1.spool"), std::string::npos) << log.status();
}

}  // namespace
}  // namespace freeagent::node
