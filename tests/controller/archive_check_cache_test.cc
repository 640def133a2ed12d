// ArchiveCheckCache: which checks open the archive, eviction, and refusals never remembered.
#include "controller/archive_check_cache.h"

#include <gtest/gtest.h>

#include <string>

#include "common/archive.h"
#include "common/fs.h"

namespace freeagent::controller {
namespace {

class ArchiveCheckCacheTest : public ::testing::Test {
 protected:
  void SetUp() override {
    auto dir = MakePrivateTempDir("/tmp", "fa-archive-cache-");
    ASSERT_TRUE(dir.ok()) << dir.status();
    dir_ = *dir;
  }
  void TearDown() override { RemoveTree(dir_).IgnoreError(); }

  // A tar.gz of one file named `name`.
  std::string Pack(const std::string& name) {
    const std::string src = dir_ + "/src-" + name;
    EXPECT_TRUE(MakeDirs(src).ok());
    EXPECT_TRUE(WriteFileAtomic(src + "/" + name, "content").ok());
    const std::string out = dir_ + "/" + name + ".tar.gz";
    auto packed = PackDirectory(src, out);
    EXPECT_TRUE(packed.ok()) << packed.status();
    return out;
  }

  std::string dir_;
};

TEST_F(ArchiveCheckCacheTest, TheLeastRecentlyUsedVerdictIsForgottenWhenFull) {
  ArchiveCheckCache cache(2);
  const std::string a = Pack("a"), b = Pack("b"), c = Pack("c");
  ASSERT_TRUE(cache.Check("digest-a", a).ok());
  ASSERT_TRUE(cache.Check("digest-b", b).ok());
  ASSERT_TRUE(cache.Check("digest-a", a).ok());  // a is now the most recently used
  EXPECT_EQ(cache.scans(), 2u);
  ASSERT_TRUE(cache.Check("digest-c", c).ok());  // forgets b
  EXPECT_EQ(cache.scans(), 3u);
  ASSERT_TRUE(cache.Check("digest-a", a).ok());
  EXPECT_EQ(cache.scans(), 3u);
  ASSERT_TRUE(cache.Check("digest-b", b).ok());
  EXPECT_EQ(cache.scans(), 4u);
}

TEST_F(ArchiveCheckCacheTest, ARefusedArchiveIsScannedAndRefusedEveryTime) {
  ArchiveCheckCache cache;
  const std::string bad = dir_ + "/bad.tar.gz";
  ASSERT_TRUE(WriteFileAtomic(bad, "not an archive at all").ok());
  for (uint64_t i = 1; i <= 3; ++i) {
    EXPECT_FALSE(cache.Check("digest-bad", bad).ok());
    EXPECT_EQ(cache.scans(), i);
  }
  // Once the digest's bytes are a safe archive (a digest names one content, so only in this test),
  // the verdict is remembered.
  ASSERT_TRUE(cache.Check("digest-bad", Pack("good")).ok());
  ASSERT_TRUE(cache.Check("digest-bad", bad).ok());
  EXPECT_EQ(cache.scans(), 4u);
}

}  // namespace
}  // namespace freeagent::controller
