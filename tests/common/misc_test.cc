// sha256, filesystem helpers and the cancellation token.
#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <thread>
#include <vector>

#include "common/cancellation.h"
#include "common/fs.h"
#include "common/sha256.h"
#include "gtest/gtest.h"

namespace freeagent {
namespace {

TEST(Sha256, MatchesKnownVectors) {
  EXPECT_EQ(Sha256Hex(""), "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855");
  Sha256 h;
  h.Update("ab");
  h.Update("c");
  EXPECT_EQ(h.FinishHex(), "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad");
  EXPECT_TRUE(IsSha256Hex(Sha256Hex("x")));
  EXPECT_FALSE(IsSha256Hex("ABC"));
  EXPECT_FALSE(IsSha256Hex(std::string(64, 'g')));
}

TEST(Sha256File, HashesFileAndReportsMissing) {
  auto dir = MakePrivateTempDir("/tmp", "fa-sha-");
  ASSERT_TRUE(dir.ok());
  ASSERT_TRUE(WriteFileAtomic(*dir + "/f", "abc").ok());
  auto d = Sha256File(*dir + "/f");
  ASSERT_TRUE(d.ok());
  EXPECT_EQ(*d, Sha256Hex("abc"));
  EXPECT_EQ(Sha256File(*dir + "/missing").status().code(), absl::StatusCode::kNotFound);
  ASSERT_TRUE(RemoveTree(*dir).ok());
}

TEST(ValidateUploadId, AcceptsOnly32LowercaseHexCharacters) {
  EXPECT_TRUE(ValidateUploadId("0123456789abcdef0123456789abcdef").ok());
  for (const char* bad : {"", "0123456789abcdef0123456789abcde", "0123456789abcdef0123456789abcdef0",
                          "0123456789ABCDEF0123456789abcdef", "../3456789abcdef0123456789abcdef"}) {
    absl::Status st = ValidateUploadId(bad);
    EXPECT_EQ(st.code(), absl::StatusCode::kInvalidArgument) << bad;
    EXPECT_NE(st.message().find("upload_id \"" + std::string(bad) + "\""), std::string_view::npos) << st;
  }
}

TEST(StartWriteback, StartsOnlyOnceEightMebibytesAreWaiting) {
  auto dir = MakePrivateTempDir("/tmp", "fa-wb-");
  ASSERT_TRUE(dir.ok());
  const std::string path = *dir + "/f";
  int fd = ::open(path.c_str(), O_WRONLY | O_CREAT | O_CLOEXEC, 0600);
  ASSERT_GE(fd, 0);
  const std::string mib(1 << 20, 'x');
  uint64_t written = 0, started = 0;
  for (int i = 0; i < 7; ++i) {
    ASSERT_TRUE(WriteAll(fd, mib.data(), mib.size(), path).ok());
    written += mib.size();
    StartWriteback(fd, written, &started);
    EXPECT_EQ(started, 0u) << "after " << i + 1 << " MiB";
  }
  ASSERT_TRUE(WriteAll(fd, mib.data(), mib.size(), path).ok());
  written += mib.size();
  StartWriteback(fd, written, &started);
  EXPECT_EQ(started, written);  // 8 MiB: started, and the next step counts from here
  ASSERT_TRUE(WriteAll(fd, mib.data(), mib.size(), path).ok());
  StartWriteback(fd, written + mib.size(), &started);
  EXPECT_EQ(started, written);
  ::close(fd);
  ASSERT_TRUE(RemoveTree(*dir).ok());
}

TEST(WriteFileAtomic, ConcurrentWritersOfOnePathNeverMixAndIgnoreAPlantedTempSymlink) {
  auto dir = MakePrivateTempDir("/tmp", "fa-atomic-");
  ASSERT_TRUE(dir.ok());
  const std::string path = *dir + "/state";
  // A symlink at the old predictable temp name must not be followed.
  ASSERT_EQ(symlink((*dir + "/victim").c_str(), (path + ".tmp").c_str()), 0);
  std::vector<std::thread> writers;
  std::atomic<int> failures{0};
  for (int t = 0; t < 4; ++t) {
    writers.emplace_back([&, t] {
      const std::string content(100000, static_cast<char>('a' + t));
      for (int i = 0; i < 20; ++i) {
        if (!WriteFileAtomic(path, content, 0600).ok()) ++failures;
      }
    });
  }
  for (auto& w : writers) w.join();
  EXPECT_EQ(failures.load(), 0);
  auto text = ReadFile(path);
  ASSERT_TRUE(text.ok());
  ASSERT_EQ(text->size(), 100000u);
  EXPECT_EQ(text->find_first_not_of(text->front()), std::string::npos) << "two writers' bytes mixed";
  EXPECT_NE(access((*dir + "/victim").c_str(), F_OK), 0);
  struct stat st;
  ASSERT_EQ(stat(path.c_str(), &st), 0);
  EXPECT_EQ(st.st_mode & 0777, 0600u);
  auto names = ListDirectory(*dir);
  ASSERT_TRUE(names.ok());
  EXPECT_EQ(names->size(), 2u) << "no temp files left behind";
  ASSERT_TRUE(RemoveTree(*dir).ok());
}

TEST(MakePrivateTempDir, IsOwnerOnly) {
  auto dir = MakePrivateTempDir("/tmp", "fa-priv-");
  ASSERT_TRUE(dir.ok());
  struct stat st;
  ASSERT_EQ(stat(dir->c_str(), &st), 0);
  EXPECT_EQ(st.st_mode & 0777, 0700u);
  ASSERT_TRUE(RemoveTree(*dir).ok());
}

TEST(RemoveTree, DoesNotFollowSymlinks) {
  auto outside = MakePrivateTempDir("/tmp", "fa-outside-");
  auto dir = MakePrivateTempDir("/tmp", "fa-rm-");
  ASSERT_TRUE(outside.ok() && dir.ok());
  ASSERT_TRUE(WriteFileAtomic(*outside + "/keep", "x").ok());
  ASSERT_TRUE(MakeDirs(*dir + "/a/b/c").ok());
  ASSERT_TRUE(WriteFileAtomic(*dir + "/a/b/c/f", "y").ok());
  ASSERT_EQ(symlink(outside->c_str(), (*dir + "/a/link").c_str()), 0);
  ASSERT_TRUE(RemoveTree(*dir).ok());
  EXPECT_NE(access(dir->c_str(), F_OK), 0);
  EXPECT_EQ(access((*outside + "/keep").c_str(), F_OK), 0);
  EXPECT_TRUE(RemoveTree(*dir).ok()) << "removing a missing tree is OK";
  ASSERT_TRUE(RemoveTree(*outside).ok());
}

TEST(CancellationToken, WakesWaitersAndRunsCallbacksOnce) {
  CancellationToken t;
  int calls = 0;
  t.OnCancel([&] { ++calls; });
  std::thread th([&] {
    std::this_thread::sleep_for(std::chrono::milliseconds(50));
    t.Cancel("stop");
  });
  EXPECT_TRUE(t.WaitFor(std::chrono::seconds(5)));
  th.join();
  t.Cancel("again");
  EXPECT_EQ(calls, 1);
  EXPECT_EQ(t.Reason(), "stop");
  int late = 0;
  t.OnCancel([&] { ++late; });
  EXPECT_EQ(late, 1);
  EXPECT_FALSE(CancellationToken().WaitFor(std::chrono::milliseconds(10)));
}

}  // namespace
}  // namespace freeagent
