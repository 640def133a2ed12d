#include "common/archive.h"

#include <archive.h>
#include <archive_entry.h>
#include <sys/stat.h>
#include <unistd.h>

#include "common/fs.h"
#include "gtest/gtest.h"

namespace freeagent {
namespace {

class ArchiveTest : public ::testing::Test {
 protected:
  void SetUp() override {
    auto d = MakePrivateTempDir("/tmp", "fa-arch-");
    ASSERT_TRUE(d.ok());
    dir_ = *d;
  }
  void TearDown() override { RemoveTree(dir_).IgnoreError(); }

  struct Spec {
    std::string path;
    mode_t type = AE_IFREG;
    std::string data;
    std::string link;  // symlink target
    std::string hardlink;
    mode_t perm = 0644;
  };
  // Writes a tar.gz with exactly these entries, hostile ones included.
  std::string Craft(const std::vector<Spec>& entries) {
    std::string out = dir_ + "/crafted.tar.gz";
    struct archive* a = archive_write_new();
    archive_write_add_filter_gzip(a);
    archive_write_set_format_pax_restricted(a);
    EXPECT_EQ(archive_write_open_filename(a, out.c_str()), ARCHIVE_OK);
    for (const auto& s : entries) {
      archive_entry* e = archive_entry_new();
      archive_entry_set_pathname(e, s.path.c_str());
      archive_entry_set_filetype(e, s.type);
      archive_entry_set_perm(e, s.perm);
      archive_entry_set_size(e, static_cast<la_int64_t>(s.data.size()));
      if (!s.link.empty()) archive_entry_set_symlink(e, s.link.c_str());
      if (!s.hardlink.empty()) archive_entry_set_hardlink(e, s.hardlink.c_str());
      archive_write_header(a, e);
      if (!s.data.empty()) archive_write_data(a, s.data.data(), s.data.size());
      archive_entry_free(e);
    }
    archive_write_close(a);
    archive_write_free(a);
    return out;
  }

  std::string dir_;
};

TEST_F(ArchiveTest, RoundTripKeepsContentModesAndSymlinksAndSkipsJunk) {
  std::string src = dir_ + "/src";
  ASSERT_TRUE(MakeDirs(src + "/sub/deeper").ok());
  ASSERT_TRUE(MakeDirs(src + "/.git").ok());
  ASSERT_TRUE(MakeDirs(src + "/node_modules/x").ok());
  ASSERT_TRUE(WriteFileAtomic(src + "/.git/HEAD", "ref").ok());
  ASSERT_TRUE(WriteFileAtomic(src + "/node_modules/x/i.js", "js").ok());
  ASSERT_TRUE(WriteFileAtomic(src + "/run.sh", "#!/bin/sh\n", 0755).ok());
  ASSERT_TRUE(WriteFileAtomic(src + "/sub/deeper/data.bin", std::string("\0\1\2\xff", 4)).ok());
  ASSERT_TRUE(WriteFileAtomic(src + "/secret.key", "k").ok());
  ASSERT_TRUE(WriteFileAtomic(src + "/.freeagentignore", "# keys\n*.key\n").ok());
  ASSERT_EQ(symlink("sub/deeper/data.bin", (src + "/link").c_str()), 0);

  PackOptions opts;
  auto ignore = ReadIgnoreFile(src);
  ASSERT_TRUE(ignore.ok());
  opts.exclude_globs = *ignore;
  auto stats = PackDirectory(src, dir_ + "/src.tar.gz", opts);
  ASSERT_TRUE(stats.ok()) << stats.status();
  EXPECT_EQ(stats->files, 3u);  // run.sh, data.bin, .freeagentignore

  std::string dst = dir_ + "/dst";
  ASSERT_TRUE(MakeDirs(dst).ok());
  absl::Status unpacked = UnpackArchive(dir_ + "/src.tar.gz", dst);
  ASSERT_TRUE(unpacked.ok()) << unpacked;
  EXPECT_EQ(*ReadFile(dst + "/sub/deeper/data.bin"), std::string("\0\1\2\xff", 4));
  struct stat st;
  ASSERT_EQ(stat((dst + "/run.sh").c_str(), &st), 0);
  EXPECT_EQ(st.st_mode & 0777, 0755u);
  char target[256] = {};
  ASSERT_GT(readlink((dst + "/link").c_str(), target, sizeof target - 1), 0);
  EXPECT_STREQ(target, "sub/deeper/data.bin");
  EXPECT_NE(access((dst + "/.git").c_str(), F_OK), 0);
  EXPECT_NE(access((dst + "/node_modules").c_str(), F_OK), 0);
  EXPECT_NE(access((dst + "/secret.key").c_str(), F_OK), 0);
}

TEST_F(ArchiveTest, RefusesDotDotAndNamesTheEntry) {
  std::string a = Craft({{"ok.txt", AE_IFREG, "x", ""}, {"a/../../evil.txt", AE_IFREG, "x", ""}});
  absl::Status s = CheckArchive(a);
  EXPECT_EQ(s.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_NE(s.message().find("a/../../evil.txt"), std::string::npos) << s;
  std::string dst = dir_ + "/dst";
  ASSERT_TRUE(MakeDirs(dst).ok());
  EXPECT_FALSE(UnpackArchive(a, dst).ok());
  EXPECT_NE(access((dst + "/ok.txt").c_str(), F_OK), 0) << "nothing is extracted from a refused archive";
}

TEST_F(ArchiveTest, RefusesAbsolutePaths) {
  absl::Status s = CheckArchive(Craft({{"/etc/evil", AE_IFREG, "x", ""}}));
  EXPECT_NE(s.message().find("absolute"), std::string::npos) << s;
}

TEST_F(ArchiveTest, RefusesDevicesAndFifos) {
  EXPECT_NE(CheckArchive(Craft({{"dev", AE_IFCHR, "", ""}})).message().find("device"), std::string::npos);
  EXPECT_FALSE(CheckArchive(Craft({{"fifo", AE_IFIFO, "", ""}})).ok());
}

TEST_F(ArchiveTest, RefusesWritingThroughASymlink) {
  absl::Status s = CheckArchive(Craft({{"escape", AE_IFLNK, "", "/etc"}, {"escape/cron.d/x", AE_IFREG, "x", ""}}));
  EXPECT_EQ(s.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_NE(s.message().find("through the symlink \"escape\""), std::string::npos) << s;
}

TEST_F(ArchiveTest, RefusesHardLinksOutOfTheTreeOrThroughASymlink) {
  for (const std::string target : {"/etc/passwd", "../outside", "a/../../x"}) {
    absl::Status s = CheckArchive(Craft({{"h", AE_IFREG, "", "", target}}));
    EXPECT_EQ(s.code(), absl::StatusCode::kInvalidArgument) << target;
    EXPECT_NE(s.message().find("entry \"h\" is a hard link"), std::string::npos) << s;
  }
  // A link into a directory reached through a symlink would link an outside file into the tree.
  absl::Status through = CheckArchive(
      Craft({{"etc", AE_IFLNK, "", "/etc"}, {"stolen", AE_IFREG, "", "", "etc/shadow"}}));
  EXPECT_EQ(through.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_NE(through.message().find("\"stolen\" is a hard link to \"etc/shadow\""), std::string::npos) << through;
  // A hard link to a file of the archive is fine and extracts as one inode.
  std::string ok = Craft({{"a.txt", AE_IFREG, "data", ""}, {"b.txt", AE_IFREG, "", "", "a.txt"}});
  std::string dst = dir_ + "/dst";
  ASSERT_TRUE(MakeDirs(dst).ok());
  absl::Status unpacked = UnpackArchive(ok, dst);
  ASSERT_TRUE(unpacked.ok()) << unpacked;
  EXPECT_EQ(*ReadFile(dst + "/b.txt"), "data");
}

TEST_F(ArchiveTest, SymlinkThenWriteThroughIsRefusedAndNothingLandsOutside) {
  std::string outside = dir_ + "/outside";
  ASSERT_TRUE(MakeDirs(outside).ok());
  std::string a = Craft({{"ok.txt", AE_IFREG, "x", ""}, {"sub", AE_IFLNK, "", outside},
                         {"sub/planted", AE_IFREG, "evil", ""}});
  std::string dst = dir_ + "/dst";
  ASSERT_TRUE(MakeDirs(dst).ok());
  absl::Status s = UnpackArchive(a, dst);
  EXPECT_EQ(s.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_NE(s.message().find("sub/planted"), std::string::npos) << s;
  EXPECT_NE(access((outside + "/planted").c_str(), F_OK), 0);
  EXPECT_NE(access((dst + "/sub").c_str(), F_OK), 0) << "nothing is extracted from a refused archive";
}

TEST_F(ArchiveTest, SetuidSetgidAndStickyBitsAreDropped) {
  std::string a = Craft({{"suid", AE_IFREG, "#!/bin/sh\n", "", "", 04755}, {"sgid", AE_IFREG, "x", "", "", 02755},
                         {"sticky", AE_IFDIR, "", "", "", 01777}});
  std::string dst = dir_ + "/dst";
  ASSERT_TRUE(MakeDirs(dst).ok());
  absl::Status s = UnpackArchive(a, dst);
  ASSERT_TRUE(s.ok()) << s;
  struct stat st;
  ASSERT_EQ(stat((dst + "/suid").c_str(), &st), 0);
  EXPECT_EQ(st.st_mode & 07777, 0755u);
  ASSERT_EQ(stat((dst + "/sgid").c_str(), &st), 0);
  EXPECT_EQ(st.st_mode & 07777, 0755u);
  ASSERT_EQ(stat((dst + "/sticky").c_str(), &st), 0);
  EXPECT_EQ(st.st_mode & 07777, 0777u);
}

TEST_F(ArchiveTest, GarbageIsInvalidArgument) {
  ASSERT_TRUE(WriteFileAtomic(dir_ + "/junk.tar.gz", std::string(1000, 'z')).ok());
  EXPECT_EQ(CheckArchive(dir_ + "/junk.tar.gz").code(), absl::StatusCode::kInvalidArgument);
}

}  // namespace
}  // namespace freeagent
