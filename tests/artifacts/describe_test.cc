// Artifact descriptions from archives assembled here: an .ipa (zip made with libarchive, binary or XML
// Info.plist made with libplist, an embedded profile from the signing fixtures), an .apk, and broken
// ones that must be described, not crashed on.
#include "artifacts/describe.h"

#include <archive.h>
#include <archive_entry.h>
#include <plist/plist.h>

#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/time/time.h"
#include "common/fs.h"
#include "gtest/gtest.h"
#include "tests/signing/fixtures.h"

namespace freeagent::artifacts {
namespace {

using Entries = std::vector<std::pair<std::string, std::string>>;

std::string Zip(const Entries& entries) {
  std::unique_ptr<archive, decltype(&archive_write_free)> a(archive_write_new(), archive_write_free);
  archive_write_set_format_zip(a.get());
  std::string out;
  out.reserve(1 << 20);
  auto write = [](archive*, void* ctx, const void* buf, size_t n) -> la_ssize_t {
    static_cast<std::string*>(ctx)->append(static_cast<const char*>(buf), n);
    return static_cast<la_ssize_t>(n);
  };
  archive_write_set_bytes_in_last_block(a.get(), 1);
  EXPECT_EQ(archive_write_open(a.get(), &out, nullptr, write, nullptr), ARCHIVE_OK);
  for (const auto& [name, data] : entries) {
    std::unique_ptr<archive_entry, decltype(&archive_entry_free)> e(archive_entry_new(), archive_entry_free);
    archive_entry_set_pathname(e.get(), name.c_str());
    archive_entry_set_filetype(e.get(), AE_IFREG);
    archive_entry_set_perm(e.get(), 0644);
    archive_entry_set_size(e.get(), static_cast<la_int64_t>(data.size()));
    EXPECT_EQ(archive_write_header(a.get(), e.get()), ARCHIVE_OK);
    EXPECT_EQ(archive_write_data(a.get(), data.data(), data.size()), static_cast<la_ssize_t>(data.size()));
  }
  EXPECT_EQ(archive_write_close(a.get()), ARCHIVE_OK);
  return out;
}

std::string InfoPlist(bool binary, const std::string& bundle_id = "com.example.app") {
  plist_t dict = plist_new_dict();
  plist_dict_set_item(dict, "CFBundleIdentifier", plist_new_string(bundle_id.c_str()));
  plist_dict_set_item(dict, "CFBundleShortVersionString", plist_new_string("2.4.1"));
  plist_dict_set_item(dict, "CFBundleVersion", plist_new_string("417"));
  plist_dict_set_item(dict, "MinimumOSVersion", plist_new_string("15.0"));
  plist_dict_set_item(dict, "CFBundleName", plist_new_string("Example"));
  plist_dict_set_item(dict, "CFBundleDisplayName", plist_new_string("Example App"));
  plist_dict_set_item(dict, "UIRequiredDeviceCapabilities", plist_new_array());
  char* out = nullptr;
  uint32_t len = 0;
  if (binary) {
    plist_to_bin(dict, &out, &len);
  } else {
    plist_to_xml(dict, &out, &len);
  }
  std::string s(out, len);
  if (binary) {
    plist_to_bin_free(out);
  } else {
    plist_to_xml_free(out);
  }
  plist_free(dict);
  return s;
}

class DescribeTest : public ::testing::Test {
 protected:
  void SetUp() override {
    auto d = MakePrivateTempDir("/tmp", "fa-describe-");
    ASSERT_TRUE(d.ok());
    dir_ = *d;
  }
  void TearDown() override { RemoveTree(dir_).IgnoreError(); }

  std::string Put(const std::string& name, const std::string& bytes) {
    std::string path = dir_ + "/" + name;
    EXPECT_TRUE(WriteFileAtomic(path, bytes).ok());
    return path;
  }

  static std::string Profile(signing::testing::ProfileOptions options = {}) {
    static const signing::testing::TestIdentity ca = signing::testing::MakeCa();
    return signing::testing::MakeProfile(options, ca);
  }

  static Entries Ipa(const std::string& plist, const std::string& profile) {
    return {
        {"Payload/Example.app/Example", std::string(4096, '\x7f')},
        {"Payload/Example.app/Frameworks/Kit.framework/Info.plist", InfoPlist(true, "com.example.kit")},
        {"Payload/Example.app/Info.plist", plist},
        {"Payload/Example.app/embedded.mobileprovision", profile},
        {"Payload/Example.app/Assets.car", std::string(10000, 'a')},
    };
  }

  std::string dir_;
};

TEST_F(DescribeTest, IpaWithBinaryPlistAndProfile) {
  signing::testing::ProfileOptions po;
  po.devices = {"00008030-001A2B3C4D5E6F70"};
  po.get_task_allow = true;
  po.expiration_date = absl::FromUnixSeconds(1893456000);  // 2030-01-01T00:00:00Z
  Entries entries = Ipa(InfoPlist(true), Profile(po));
  uint64_t total = 0;
  for (const auto& [n, d] : entries) total += d.size();
  Description d = DescribeFile(Put("Example.ipa", Zip(entries)), "Example.ipa");
  EXPECT_EQ(d.error, "");
  EXPECT_EQ(d.metadata["kind"], "ipa");
  EXPECT_EQ(d.metadata["bundle_id"], "com.example.app");  // the app's, not the nested framework's
  EXPECT_EQ(d.metadata["short_version"], "2.4.1");
  EXPECT_EQ(d.metadata["build"], "417");
  EXPECT_EQ(d.metadata["minimum_os"], "15.0");
  EXPECT_EQ(d.metadata["display_name"], "Example App");
  EXPECT_EQ(d.metadata["profile_uuid"], po.uuid);
  EXPECT_EQ(d.metadata["profile_name"], po.name);
  EXPECT_EQ(d.metadata["profile_team_id"], "ABCDE12345");
  EXPECT_EQ(d.metadata["profile_kind"], "development");
  EXPECT_EQ(d.metadata["profile_expires"], "2030-01-01T00:00:00Z");
  EXPECT_EQ(d.metadata["entries"], "5");
  EXPECT_EQ(d.metadata["uncompressed_bytes"], absl::StrCat(total));
}

TEST_F(DescribeTest, IpaWithXmlPlistAndAppStoreProfile) {
  Description d = DescribeFile(Put("App.IPA", Zip(Ipa(InfoPlist(false), Profile()))), "App.IPA");
  EXPECT_EQ(d.error, "");
  EXPECT_EQ(d.metadata["bundle_id"], "com.example.app");
  EXPECT_EQ(d.metadata["build"], "417");
  EXPECT_EQ(d.metadata["profile_kind"], "app-store");
}

TEST_F(DescribeTest, UnreadableProfileKeepsThePlistFieldsAndSaysWhy) {
  std::string profile = Profile();
  const size_t at = profile.find("Example App Store");
  ASSERT_NE(at, std::string::npos);
  profile[at] = 'X';  // the signed content changed: the signature no longer verifies
  Description d = DescribeFile(Put("a.ipa", Zip(Ipa(InfoPlist(true), profile))), "a.ipa");
  EXPECT_EQ(d.metadata["bundle_id"], "com.example.app");
  EXPECT_EQ(d.metadata.count("profile_uuid"), 0u);
  EXPECT_TRUE(absl::StrContains(d.error, "embedded.mobileprovision")) << d.error;
}

TEST_F(DescribeTest, IpaWithoutAppPlistSaysSo) {
  Description d = DescribeFile(Put("b.ipa", Zip({{"Payload/readme.txt", "x"}})), "b.ipa");
  EXPECT_TRUE(absl::StrContains(d.error, "no Payload/<name>.app/Info.plist")) << d.error;
  EXPECT_EQ(d.metadata["entries"], "1");
}

TEST_F(DescribeTest, GarbagePlistIsAnError) {
  Description d = DescribeFile(Put("c.ipa", Zip({{"Payload/X.app/Info.plist", "bplist00 not really"}})), "c.ipa");
  EXPECT_TRUE(absl::StrContains(d.error, "Payload/X.app/Info.plist")) << d.error;
  EXPECT_EQ(d.metadata.count("bundle_id"), 0u);
}

TEST_F(DescribeTest, CorruptAndTruncatedZipsAreDescribedNotCrashedOn) {
  std::string zip = Zip(Ipa(InfoPlist(true), Profile()));
  std::vector<std::pair<std::string, std::string>> cases = {
      {"garbage.ipa", std::string(5000, '\x42')},
      {"empty.ipa", ""},
      {"half.ipa", zip.substr(0, zip.size() / 2)},
      {"tail-cut.ipa", zip.substr(0, zip.size() - 10)},
  };
  // Every single-byte corruption of the central directory region, sampled.
  for (size_t i = zip.size() - 300; i < zip.size(); i += 7) {
    std::string z = zip;
    z[i] ^= 0xff;
    cases.emplace_back(absl::StrCat("flip", i, ".ipa"), z);
  }
  for (const auto& [name, bytes] : cases) {
    Description d = DescribeFile(Put(name, bytes), name);
    EXPECT_EQ(d.metadata["kind"], "ipa") << name;
    if (name.rfind("flip", 0) != 0) {
      EXPECT_FALSE(d.error.empty()) << name;
    }
  }
}

TEST_F(DescribeTest, ApkGetsEntryCountAndSizeOnly) {
  Entries apk = {{"AndroidManifest.xml", std::string("\x03\x00\x08\x00", 4) + std::string(300, '\0')},
                 {"classes.dex", std::string(7000, 'd')},
                 {"res/layout/main.xml", std::string(120, 'r')}};
  Description d = DescribeFile(Put("app-release.apk", Zip(apk)), "app-release.apk");
  EXPECT_EQ(d.error, "");
  EXPECT_EQ(d.metadata["kind"], "apk");
  EXPECT_EQ(d.metadata["entries"], "3");
  EXPECT_EQ(d.metadata["uncompressed_bytes"], "7424");
  EXPECT_EQ(d.metadata.size(), 3u);  // nothing guessed from the binary manifest
  Description aab = DescribeFile(Put("app.aab", Zip(apk)), "app.aab");
  EXPECT_EQ(aab.metadata["kind"], "aab");
}

TEST_F(DescribeTest, OtherFilesAreNotDescribed) {
  Description d = DescribeFile(Put("hello.tar.gz", "tarball"), "hello.tar.gz");
  EXPECT_TRUE(d.metadata.empty());
  EXPECT_EQ(d.error, "");
}

TEST(ReadInfoPlist, RejectsNonDictionaries) {
  plist_t arr = plist_new_array();
  char* xml = nullptr;
  uint32_t len = 0;
  plist_to_xml(arr, &xml, &len);
  std::string s(xml, len);
  plist_to_xml_free(xml);
  plist_free(arr);
  EXPECT_FALSE(ReadInfoPlist(s).ok());
  EXPECT_FALSE(ReadInfoPlist("").ok());
}

}  // namespace
}  // namespace freeagent::artifacts
