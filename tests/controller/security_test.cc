// Controller-side security rules: what Submit refuses (short secrets, hostile source archives) and that
// no read API returns a secret.
#include <archive.h>
#include <archive_entry.h>

#include "tests/controller/controller_fixture.h"

namespace freeagent::controller::testing {
namespace {

class SecurityTest : public ControllerTest {
 protected:
  void SetUp() override {
    ControllerTest::SetUp();
    StartServer();
    source_ = UploadSource();
  }

  // A tar.gz holding exactly these entries (type, path, symlink target), hostile ones included.
  std::string source_;

  std::string UploadCrafted(const std::vector<std::tuple<mode_t, std::string, std::string>>& entries) {
    std::string out(1 << 16, '\0');
    size_t used = 0;
    struct archive* a = archive_write_new();
    archive_write_add_filter_gzip(a);
    archive_write_set_format_pax_restricted(a);
    EXPECT_EQ(archive_write_open_memory(a, out.data(), out.size(), &used), ARCHIVE_OK);
    for (const auto& [type, path, link] : entries) {
      archive_entry* e = archive_entry_new();
      archive_entry_set_pathname(e, path.c_str());
      archive_entry_set_filetype(e, type);
      archive_entry_set_perm(e, 0644);
      archive_entry_set_size(e, type == AE_IFREG ? 1 : 0);
      if (!link.empty()) archive_entry_set_symlink(e, link.c_str());
      archive_write_header(a, e);
      if (type == AE_IFREG) archive_write_data(a, "x", 1);
      archive_entry_free(e);
    }
    archive_write_close(a);
    archive_write_free(a);
    out.resize(used);
    return Upload(out);
  }
};

TEST_F(SecurityTest, SubmitRefusesASecretShorterThanSixBytesNamingTheKey) {
  v1::JobSpec spec = Spec(source_);
  (*spec.mutable_secret_env())["LONG_ENOUGH"] = "123456";
  (*spec.mutable_secret_env())["PIN"] = "12345";
  auto r = Submit(spec);
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_NE(r.status().message().find("PIN"), std::string::npos) << r.status();
  EXPECT_EQ(r.status().message().find("LONG_ENOUGH"), std::string::npos) << r.status();

  spec.mutable_secret_env()->erase("PIN");
  EXPECT_TRUE(Submit(spec).ok());

  spec.mutable_signing()->set_p12_password("abc");
  auto p12 = Submit(spec);
  EXPECT_EQ(p12.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_NE(p12.status().message().find("p12_password"), std::string::npos) << p12.status();
}

TEST_F(SecurityTest, SubmitRefusesHostileSourceArchivesNamingTheEntry) {
  const std::vector<std::pair<std::string, std::string>> cases = {
      {UploadCrafted({{AE_IFREG, "ok", ""}, {AE_IFREG, "a/../../escape", ""}}), "a/../../escape"},
      {UploadCrafted({{AE_IFREG, "/etc/cron.d/x", ""}}), "/etc/cron.d/x"},
      {UploadCrafted({{AE_IFCHR, "dev/sda", ""}}), "dev/sda"},
      {UploadCrafted({{AE_IFLNK, "link", "/etc"}, {AE_IFREG, "link/passwd", ""}}), "link/passwd"},
      {Upload("not an archive at all"), "not a valid tar.gz"},
  };
  for (const auto& [digest, named] : cases) {
    auto r = Submit(Spec(digest));
    ASSERT_FALSE(r.ok()) << named;
    EXPECT_EQ(r.status().code(), absl::StatusCode::kInvalidArgument) << r.status();
    EXPECT_NE(r.status().message().find(named), std::string::npos) << r.status();
  }
  auto list = [&] {
    grpc::ClientContext ctx;
    v1::ListBuildsResponse resp;
    EXPECT_TRUE(builds_->List(&ctx, v1::ListBuildsRequest(), &resp).ok());
    return resp.builds_size();
  };
  EXPECT_EQ(list(), 0) << "a refused build is never queued";
}

}  // namespace
}  // namespace freeagent::controller::testing
