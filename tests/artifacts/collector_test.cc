// Artifact collection through a LocalGuest into an in-memory blob store.
#include "artifacts/collector.h"

#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <map>
#include <vector>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "common/fs.h"
#include "common/sha256.h"
#include "gtest/gtest.h"
#include "tests/artifacts/test_rule.h"
#include "vm/local_guest.h"

namespace freeagent::artifacts {
namespace {

namespace v1 = ::freeagent::v1;

class MemoryBlobs : public BlobClient {
 public:
  absl::Status UploadFile(const std::string& local_path, const std::string& digest, uint64_t size,
                          const CancellationToken&) override {
    auto data = ReadFile(local_path);
    if (!data.ok()) return data.status();
    if (Sha256Hex(*data) != digest || data->size() != size) return absl::DataLossError("digest mismatch");
    blobs[digest] = *data;
    return absl::OkStatus();
  }
  absl::StatusOr<vm::TransferResult> DownloadFile(const std::string& digest, const std::string& local_path,
                                                  const CancellationToken&) override {
    auto it = blobs.find(digest);
    if (it == blobs.end()) return absl::NotFoundError(digest);
    absl::Status s = WriteFileAtomic(local_path, it->second, 0600);
    if (!s.ok()) return s;
    return vm::TransferResult{it->second.size(), digest};
  }
  std::map<std::string, std::string> blobs;
};

using ::freeagent::artifacts::testing::Rule;

class CollectorTest : public ::testing::Test {
 protected:
  void SetUp() override {
    auto d = MakePrivateTempDir("/tmp", "fa-collect-");
    ASSERT_TRUE(d.ok());
    root_ = *d;
    ws_ = root_ + "/ws";
    dl_ = root_ + "/dl";
    ASSERT_TRUE(MakeDirs(ws_ + "/build/outputs/apk").ok());
    ASSERT_TRUE(MakeDirs(ws_ + "/dist").ok());
    ASSERT_TRUE(MakeDirs(dl_).ok());
    ASSERT_TRUE(WriteFileAtomic(ws_ + "/build/outputs/apk/app-release.apk", "apk bytes").ok());
    ASSERT_TRUE(WriteFileAtomic(ws_ + "/build/outputs/apk/app-debug.apk", "debug apk").ok());
    ASSERT_TRUE(WriteFileAtomic(ws_ + "/dist/hello.tar.gz", "tarball").ok());
    ASSERT_TRUE(WriteFileAtomic(ws_ + "/dist/with space.txt", "spaces").ok());
    ASSERT_EQ(::symlink("/etc/passwd", (ws_ + "/dist/secret.apk").c_str()), 0);
  }
  void TearDown() override { RemoveTree(root_).IgnoreError(); }

  CollectOptions Options() {
    CollectOptions o;
    o.download_dir = dl_;
    o.note = [this](std::string_view text) { notes_.emplace_back(text); };
    return o;
  }

  std::string root_, ws_, dl_;
  std::vector<std::string> notes_;
  vm::LocalGuest guest_;
};

TEST_F(CollectorTest, ListsFilesAndSymlinksSeparately) {
  auto listing = ListWorkspace(guest_, ws_, CancellationToken());
  ASSERT_TRUE(listing.ok()) << listing.status();
  EXPECT_EQ(listing->files.size(), 4u);
  ASSERT_EQ(listing->symlinks.size(), 1u);
  EXPECT_EQ(listing->symlinks[0], "dist/secret.apk");
}

TEST_F(CollectorTest, CollectsNestedMatchesAndSkipsSymlinks) {
  auto files = Collect(guest_, ws_, {Rule("**/*.apk"), Rule("dist/*.tar.gz")}, Options());
  ASSERT_TRUE(files.ok()) << files.status();
  ASSERT_EQ(files->size(), 3u);
  std::map<std::string, CollectedFile> by_path;
  for (const auto& f : *files) by_path[f.path] = f;
  ASSERT_TRUE(by_path.count("build/outputs/apk/app-release.apk"));
  EXPECT_EQ(by_path["build/outputs/apk/app-release.apk"].sha256, Sha256Hex("apk bytes"));
  EXPECT_EQ(by_path["dist/hello.tar.gz"].size, 7u);
  EXPECT_EQ(by_path.count("dist/secret.apk"), 0u);
  // One note per skipped symlink and per collected file, each a whole line without a newline.
  std::vector<std::string> want = {
      "warning: artifact dist/secret.apk is a symlink; skipped",
      absl::StrCat("artifact build/outputs/apk/app-release.apk (9 bytes, sha256 ", Sha256Hex("apk bytes"), ")"),
  };
  for (const std::string& w : want) {
    EXPECT_NE(std::find(notes_.begin(), notes_.end(), w), notes_.end()) << w << "\nnotes:\n"
                                                                         << absl::StrJoin(notes_, "\n");
  }
  // ... and one warning per .apk that is not a zip: it is delivered, but cannot be described.
  EXPECT_NE(std::find(notes_.begin(), notes_.end(),
                      "warning: artifact build/outputs/apk/app-release.apk could not be described: not a "
                      "readable zip: Unrecognized archive format"),
            notes_.end())
      << absl::StrJoin(notes_, "\n");
  EXPECT_EQ(notes_.size(), 6u) << absl::StrJoin(notes_, "\n");
  for (const std::string& n : notes_) EXPECT_EQ(n.find('\n'), std::string::npos) << n;

  MemoryBlobs blobs;
  auto infos = UploadArtifacts(blobs, *files, CancellationToken());
  ASSERT_TRUE(infos.ok()) << infos.status();
  ASSERT_EQ(infos->size(), 3u);
  for (const auto& info : *infos) {
    EXPECT_EQ(blobs.blobs.count(info.sha256()), 1u) << info.path();
    EXPECT_FALSE(absl::StrContains(info.name(), "/"));
  }
}

TEST_F(CollectorTest, FileMatchedByTwoRulesIsCollectedOnce) {
  auto files = Collect(guest_, ws_, {Rule("dist/*"), Rule("**/hello.tar.gz")}, Options());
  ASSERT_TRUE(files.ok()) << files.status();
  EXPECT_EQ(files->size(), 2u);  // hello.tar.gz and "with space.txt"
}

TEST_F(CollectorTest, RequiredRuleWithoutMatchNamesTheRule) {
  auto files = Collect(guest_, ws_, {Rule("**/*.apk"), Rule("**/*.ipa")}, Options());
  ASSERT_FALSE(files.ok());
  EXPECT_EQ(files.status().code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_TRUE(absl::StrContains(files.status().message(), "**/*.ipa")) << files.status();
}

TEST_F(CollectorTest, OptionalRuleWithoutMatchIsFine) {
  auto files = Collect(guest_, ws_, {Rule("**/*.ipa", true)}, Options());
  ASSERT_TRUE(files.ok()) << files.status();
  EXPECT_TRUE(files->empty());
}

TEST_F(CollectorTest, SymlinkOnlyMatchIsNotAMatch) {
  auto files = Collect(guest_, ws_, {Rule("dist/secret.apk")}, Options());
  EXPECT_EQ(files.status().code(), absl::StatusCode::kFailedPrecondition);
}

TEST_F(CollectorTest, PerFileSizeLimit) {
  auto files = Collect(guest_, ws_, {Rule("dist/hello.tar.gz", false, 3)}, Options());
  EXPECT_EQ(files.status().code(), absl::StatusCode::kResourceExhausted);
  EXPECT_TRUE(absl::StrContains(files.status().message(), "dist/hello.tar.gz")) << files.status();
}

TEST(ParseListing, RejectsTruncatedOutput) {
  using namespace std::string_literals;
  EXPECT_FALSE(ParseListing("/ws\0./a\0"s).ok());
  EXPECT_FALSE(ParseListing("./a\0\0./b\0"s).ok());  // no absolute root
  EXPECT_FALSE(ParseListing(""s).ok());
  auto l = ParseListing("/ws/\0./l\0\0./a\0./b c\0"s);
  ASSERT_TRUE(l.ok()) << l.status();
  EXPECT_EQ(l->root, "/ws");
  EXPECT_EQ(l->symlinks, (std::vector<std::string>{"l"}));
  EXPECT_EQ(l->files, (std::vector<std::string>{"a", "b c"}));
}

TEST(ParseListing, PathsThatLeaveTheRootAreSetApart) {
  using namespace std::string_literals;
  auto l = ParseListing("/ws\0\0./a/../../etc/passwd\0/etc/shadow\0./ok..txt\0"s);
  ASSERT_TRUE(l.ok()) << l.status();
  EXPECT_EQ(l->files, (std::vector<std::string>{"ok..txt"}));
  EXPECT_EQ(l->outside, (std::vector<std::string>{"a/../../etc/passwd", "/etc/shadow"}));
  v1::ArtifactRule all;
  all.set_glob("**");
  std::vector<std::string> notes;
  auto selected = SelectFiles(*l, {all}, [&](std::string_view n) { notes.emplace_back(n); });
  ASSERT_TRUE(selected.ok());
  EXPECT_EQ(*selected, (std::vector<std::string>{"ok..txt"}));
}

}  // namespace
}  // namespace freeagent::artifacts
