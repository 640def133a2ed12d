// The `static` driver against a real OpenSSH server standing in for an existing machine.
#include "vm/static_driver.h"

#include <sys/stat.h>
#include <unistd.h>

#include "absl/strings/match.h"
#include "common/fs.h"
#include "gtest/gtest.h"
#include "tests/support/sshd_fixture.h"

namespace freeagent::vm {
namespace {

class StaticDriverTest : public ::testing::Test {
 protected:
  void SetUp() override {
    auto f = testing::SshdFixture::Start();
    ASSERT_TRUE(f.ok()) << f.status();
    sshd_ = std::move(*f);
    auto root = MakePrivateTempDir("/tmp", "fa-static-");
    ASSERT_TRUE(root.ok());
    root_ = *root;
    config_.ssh.host = "127.0.0.1";
    config_.ssh.port = sshd_->port();
    config_.ssh.user = sshd_->user();
    config_.ssh.private_key_path = sshd_->ed25519_key();
    config_.ssh.host_key_fingerprint = sshd_->host_key_fingerprint();
    config_.workspace_root = root_ + "/jobs";
    config_.reset_command = "touch " + ShellQuote(root_ + "/reset-ran");
  }
  void TearDown() override { RemoveTree(root_).IgnoreError(); }

  std::unique_ptr<testing::SshdFixture> sshd_;
  std::string root_;
  StaticDriverConfig config_;
};

TEST_F(StaticDriverTest, JobGetsAFreshPrivateWorkspaceThatIsRemovedWithTheResetRun) {
  ASSERT_TRUE(StaticDriver::Validate(config_).ok());
  StaticDriver driver(config_);
  VmSpec spec;
  spec.name = "freeagent-w1-b-123-1";
  auto vm = driver.Create(spec);
  ASSERT_TRUE(vm.ok()) << vm.status();
  VmLease lease(std::move(*vm), std::chrono::seconds(1));
  ASSERT_TRUE(lease->Start(Deadline::After(std::chrono::seconds(30)), CancellationToken()).ok());
  absl::Status ready = lease->WaitReady(Deadline::After(std::chrono::seconds(30)), CancellationToken());
  ASSERT_TRUE(ready.ok()) << ready;
  std::string ws = lease->workspace();
  EXPECT_EQ(ws, config_.workspace_root + "/freeagent-w1-b-123-1");
  struct stat st;
  ASSERT_EQ(::stat(ws.c_str(), &st), 0);
  EXPECT_EQ(st.st_mode & 0777, 0700u);
  EXPECT_EQ(lease->endpoint().host_key_fingerprint, sshd_->host_key_fingerprint());

  ExecRequest req;
  req.command = "echo built > out.txt";
  req.working_dir = ws;
  auto r = lease->guest()->Exec(req);
  ASSERT_TRUE(r.ok()) << r.status();
  EXPECT_EQ(*ReadFile(ws + "/out.txt"), "built\n");

  ASSERT_TRUE(lease.Release().ok());
  EXPECT_NE(::access(ws.c_str(), F_OK), 0) << "workspace removed";
  EXPECT_EQ(::access((root_ + "/reset-ran").c_str(), F_OK), 0) << "reset_command ran";
}

TEST_F(StaticDriverTest, LeftoverWorkspacesAreListedAndReaped) {
  ASSERT_TRUE(MakeDirs(config_.workspace_root + "/freeagent-w1-b-old-1").ok());
  ASSERT_TRUE(MakeDirs(config_.workspace_root + "/someone-else").ok());
  StaticDriver driver(config_);
  auto owned = driver.ListOwned("freeagent-w1-");
  ASSERT_TRUE(owned.ok()) << owned.status();
  ASSERT_EQ(owned->size(), 1u);
  EXPECT_EQ((*owned)[0], "freeagent-w1-b-old-1");
  ASSERT_TRUE(driver.DestroyOwned((*owned)[0]).ok());
  EXPECT_NE(::access((config_.workspace_root + "/freeagent-w1-b-old-1").c_str(), F_OK), 0);
  EXPECT_EQ(::access((config_.workspace_root + "/someone-else").c_str(), F_OK), 0);
  EXPECT_EQ(driver.DestroyOwned("../etc").code(), absl::StatusCode::kInvalidArgument);
}

TEST_F(StaticDriverTest, ConfigWithoutPinnedHostKeyIsRejected) {
  config_.ssh.host_key_fingerprint.clear();
  absl::Status s = StaticDriver::Validate(config_);
  EXPECT_EQ(s.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_TRUE(absl::StrContains(s.message(), "pinned")) << s;
  config_.ssh.host_key_fingerprint = "SHA256:x";
  config_.workspace_root = "relative/dir";
  EXPECT_EQ(StaticDriver::Validate(config_).code(), absl::StatusCode::kInvalidArgument);
}

}  // namespace
}  // namespace freeagent::vm
