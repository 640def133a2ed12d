// The job runner with signing material: validated at PREPARING before any machine exists, installed at
// INSTALLING_SIGNING through the Guest (a LocalGuest with the fake `security` first on PATH), exposed to
// steps, and removed on every path.
#include <stdlib.h>
#include <sys/stat.h>

#include <atomic>
#include <filesystem>
#include <set>
#include <thread>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "common/fs.h"
#include "common/process.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "node/job_runner.h"
#include "signing/p12.h"
#include "tests/node/memory_blobs.h"
#include "tests/signing/fixtures.h"
#include "vm/local_driver.h"

namespace freeagent::node {
namespace {

namespace v1 = ::freeagent::v1;
using ::testing::HasSubstr;
using ::testing::Not;

constexpr char kPassword[] = "job p12 password";
constexpr char kLogin[] = "/Users/test/Library/Keychains/login.keychain-db";

// The local driver under another name (signing is refused on `local`), counting machines created.
class CountingDriver : public vm::VmDriver {
 public:
  explicit CountingDriver(std::string root) : inner_(std::move(root)) {}
  std::string name() const override { return "test-mac"; }
  absl::StatusOr<std::unique_ptr<vm::Vm>> Create(const vm::VmSpec& spec) override {
    ++created_;
    return inner_.Create(spec);
  }
  absl::StatusOr<std::vector<std::string>> ListOwned(const std::string& prefix) override {
    return inner_.ListOwned(prefix);
  }
  absl::Status DestroyOwned(const std::string& name) override { return inner_.DestroyOwned(name); }
  int created() const { return created_.load(); }

 private:
  vm::LocalDriver inner_;
  std::atomic<int> created_{0};
};

class JobSigningTest : public ::testing::Test {
 protected:
  void SetUp() override {
    auto root = MakePrivateTempDir("/tmp", "fa-job-signing.");
    ASSERT_TRUE(root.ok());
    root_ = *root;
    for (const char* d : {"/home", "/tmp", "/bin", "/state"}) ASSERT_TRUE(MakeDirs(root_ + d).ok());
    auto fake = ReadFile(std::string(FA_FAKE_SECURITY));
    ASSERT_TRUE(fake.ok());
    ASSERT_TRUE(WriteFileAtomic(root_ + "/bin/security", *fake, 0755).ok());
    ASSERT_TRUE(WriteFileAtomic(root_ + "/state/search", absl::StrCat(kLogin, "\n")).ok());
    driver_ = std::make_unique<CountingDriver>(root_ + "/vms");
    options_.jobs_dir = root_ + "/jobs";
    options_.worker_name = "test";
    options_.default_kill_grace = std::chrono::seconds(1);

    const auto& ca = signing::testing::SharedCa();
    leaf_ = signing::testing::MakeLeaf(ca);
    std::string p12 = signing::testing::MakeP12(leaf_, kPassword, /*legacy=*/true);
    p12_digest_ = blobs_.Put(p12);
    auto identity = signing::ParseP12(p12, kPassword, "p12");
    ASSERT_TRUE(identity.ok()) << identity.status();
    signing::testing::ProfileOptions good;
    good.developer_certificates_der = {leaf_.cert_der};
    good_profile_ = blobs_.Put(signing::testing::MakeProfile(good, ca));
    signing::testing::ProfileOptions other = good;
    other.developer_certificates_der = {signing::testing::MakeLeaf(ca).cert_der};
    other_profile_ = blobs_.Put(signing::testing::MakeProfile(other, ca));

    // The machine is this host (LocalGuest inherits the environment): the fake security tool comes
    // first on PATH and HOME/TMPDIR point into the test dir.
    saved_path_ = getenv("PATH");
    setenv("PATH", absl::StrCat(root_, "/bin:", saved_path_).c_str(), 1);
    setenv("HOME", (root_ + "/home").c_str(), 1);
    setenv("TMPDIR", (root_ + "/tmp").c_str(), 1);
    setenv("FAKE_SECURITY_STATE", (root_ + "/state").c_str(), 1);
    setenv("FAKE_P12_PASSWORD", kPassword, 1);
    setenv("FAKE_IDENTITY_SHA1", identity->certificate.sha1.c_str(), 1);
    setenv("FAKE_IDENTITY_NAME", identity->certificate.common_name.c_str(), 1);
  }
  void TearDown() override {
    setenv("PATH", saved_path_.c_str(), 1);
    (void)RemoveTree(root_);
  }

  v1::BuildJob Job(const std::string& run, const std::string& profile_digest, const std::string& password) {
    v1::BuildJob job;
    job.set_job_id("b-000000000042");
    job.set_attempt(1);
    v1::Step* step = job.mutable_spec()->add_steps();
    step->set_name("sign");
    step->set_run(run);
    v1::SigningMaterial* m = job.mutable_spec()->mutable_signing();
    m->set_p12_digest(p12_digest_);
    m->set_p12_password(password);
    m->add_profile_digests(profile_digest);
    m->set_bundle_id("com.example.app");
    return job;
  }

  v1::JobResult Run(v1::BuildJob job) {
    JobCallbacks cb;
    cb.log = [this](std::string_view b) { log_.append(b.data(), b.size()); };
    cb.progress = [](const v1::JobProgress&) {};
    JobRunner runner(std::move(job), options_, driver_.get(), &blobs_, std::move(cb));
    return runner.Run();
  }

  std::vector<v1::Phase> Phases(const v1::JobResult& r) {
    std::vector<v1::Phase> out;
    for (const auto& p : r.phases()) out.push_back(p.phase());
    return out;
  }

  void ExpectNothingLeft() {
    EXPECT_EQ(*ReadFile(root_ + "/state/search"), absl::StrCat(kLogin, "\n")) << "search list not restored";
    EXPECT_TRUE(ListDirectory(root_ + "/tmp")->empty()) << "signing temp dir (and keychain) left behind";
    auto profiles = ListDirectory(root_ + "/home/Library/MobileDevice/Provisioning Profiles");
    EXPECT_TRUE(!profiles.ok() || profiles->empty()) << "profiles left behind";
    EXPECT_TRUE(ListDirectory(root_ + "/jobs")->empty()) << "job dir left behind";
    std::string log = ReadFile(root_ + "/state/log").value_or("");
    for (absl::string_view line : absl::StrSplit(log, '\n')) {
      if (absl::StartsWith(line, "argv: ")) {
        EXPECT_THAT(std::string(line), Not(HasSubstr(kPassword)));
      }
    }
  }

  std::string root_;
  std::string saved_path_;
  std::unique_ptr<CountingDriver> driver_;
  testing::MemoryBlobs blobs_;
  JobRunnerOptions options_;
  signing::testing::TestIdentity leaf_;
  std::string p12_digest_, good_profile_, other_profile_;
  std::string log_;
};

TEST_F(JobSigningTest, ValidMaterialIsInstalledForTheStepsAndRemovedAfterwards) {
  v1::JobResult r = Run(Job("printf '%s|%s|%s\\n' \"$FREEAGENT_SIGNING_IDENTITY\" \"$FREEAGENT_TEAM_ID\" "
                            "\"$FREEAGENT_PROFILE_UUIDS\"; security find-identity -v -p codesigning "
                            "\"$FREEAGENT_KEYCHAIN\"; test -f \"$FREEAGENT_PROFILE_PATHS\"",
                            good_profile_, kPassword));
  EXPECT_EQ(r.outcome(), v1::JOB_STATE_SUCCEEDED) << r.error() << "\n" << log_;
  EXPECT_THAT(log_, HasSubstr("Apple Distribution: Example Corp (ABCDE12345)|ABCDE12345|"
                              "6A2F3C1E-9B4D-4E8A-A1F0-3C5D7E9B1A20\n"));
  EXPECT_THAT(log_, HasSubstr("1 valid identities found"));
  EXPECT_THAT(Phases(r), ::testing::ElementsAre(v1::PHASE_PREPARING, v1::PHASE_PROVISIONING_VM, v1::PHASE_CONNECTING,
                                                v1::PHASE_UPLOADING_SOURCE, v1::PHASE_INSTALLING_SIGNING,
                                                v1::PHASE_RUNNING, v1::PHASE_CLEANING_UP));
  ExpectNothingLeft();
}

TEST_F(JobSigningTest, ProfileWithoutTheCertificateFailsAtPreparingBeforeAnyMachine) {
  v1::JobResult r = Run(Job("echo never", other_profile_, kPassword));
  EXPECT_EQ(r.outcome(), v1::JOB_STATE_FAILED);
  EXPECT_THAT(r.error(), HasSubstr(absl::StrCat("profile-", other_profile_.substr(0, 12), ".mobileprovision")));
  EXPECT_THAT(r.error(), HasSubstr("does not contain the P12's certificate"));
  EXPECT_EQ(driver_->created(), 0);
  EXPECT_THAT(Phases(r), ::testing::ElementsAre(v1::PHASE_PREPARING, v1::PHASE_CLEANING_UP));
  EXPECT_THAT(log_, Not(HasSubstr("never")));
  ExpectNothingLeft();
}

TEST_F(JobSigningTest, WrongPasswordFailsAtPreparingWithoutRevealingIt) {
  v1::JobResult r = Run(Job("echo never", good_profile_, "not the password"));
  EXPECT_EQ(r.outcome(), v1::JOB_STATE_FAILED);
  EXPECT_THAT(r.error(), HasSubstr(absl::StrCat("P12 identity-", p12_digest_.substr(0, 12), ".p12: wrong password")));
  EXPECT_THAT(r.error(), Not(HasSubstr("not the password")));
  EXPECT_EQ(driver_->created(), 0);
  ExpectNothingLeft();
}

TEST_F(JobSigningTest, CancelDuringTheStepStillRemovesTheKeychain) {
  JobCallbacks cb;
  cb.log = [](std::string_view) {};
  std::atomic<bool> running{false};
  cb.progress = [&running](const v1::JobProgress& p) {
    if (p.phase() == v1::PHASE_RUNNING) running = true;
  };
  JobRunner runner(Job("sleep 30", good_profile_, kPassword), options_, driver_.get(), &blobs_, std::move(cb));
  std::thread canceller([&] {
    while (!running.load()) std::this_thread::sleep_for(std::chrono::milliseconds(20));
    std::this_thread::sleep_for(std::chrono::milliseconds(200));
    runner.Cancel("test cancel", std::chrono::seconds(1));
  });
  v1::JobResult r = runner.Run();
  canceller.join();
  EXPECT_EQ(r.outcome(), v1::JOB_STATE_CANCELLED) << r.error();
  ExpectNothingLeft();
}

TEST_F(JobSigningTest, FailingStepStillRemovesTheKeychain) {
  v1::JobResult r = Run(Job("test -n \"$FREEAGENT_KEYCHAIN\" && exit 3", good_profile_, kPassword));
  EXPECT_EQ(r.outcome(), v1::JOB_STATE_FAILED);
  EXPECT_EQ(r.exit_code(), 3);
  EXPECT_EQ(driver_->created(), 1);
  ExpectNothingLeft();
  EXPECT_THAT(ReadFile(root_ + "/state/log").value_or(""), HasSubstr("argv: [delete-keychain]"));
}

// Secrets never appear in any process's argv while a signed build runs: every /proc/*/cmdline on the
// host and `ps -eo args` (what the machine sees; with this driver the machine is the host) are scanned
// over and over for the P12 password and a secret env value during the whole job.
TEST_F(JobSigningTest, NoSecretIsInAnyArgvDuringASignedBuild) {
  const std::string env_secret = absl::StrCat("env-secret-", getpid(), "-c0ffee");
  v1::BuildJob job = Job("printf %s \"$API_SECRET\" | wc -c; security find-identity -v -p codesigning "
                         "\"$FREEAGENT_KEYCHAIN\"; sleep 0.917; printf %s \"$API_SECRET\" | wc -c",
                         good_profile_, kPassword);
  (*job.mutable_spec()->mutable_secret_env())["API_SECRET"] = env_secret;

  std::atomic<bool> done{false};
  std::atomic<int> proc_scans{0}, ps_scans{0};
  std::atomic<bool> saw_step{false};
  std::mutex mu;
  std::set<std::string> leaks;
  auto check = [&](const std::string& args, const std::string& where) {
    for (const std::string& secret : {std::string(kPassword), env_secret}) {
      if (args.find(secret) != std::string::npos) {
        std::lock_guard<std::mutex> lock(mu);
        leaks.insert(absl::StrCat(where, ": ", args));
      }
    }
  };
  std::thread proc_scanner([&] {
    while (!done.load()) {
      std::error_code ec;
      for (const auto& entry : std::filesystem::directory_iterator("/proc", ec)) {
        const std::string pid = entry.path().filename().string();
        if (pid.find_first_not_of("0123456789") != std::string::npos) continue;
        auto cmdline = ReadFile(entry.path().string() + "/cmdline");  // processes come and go
        if (!cmdline.ok()) continue;
        check(*cmdline, "/proc/" + pid + "/cmdline");
        if (*cmdline == std::string("sleep\0" "0.917\0", 12)) saw_step = true;
      }
      ++proc_scans;
    }
  });
  std::thread ps_scanner([&] {
    while (!done.load()) {
      ProcessOptions ps;
      ps.argv = {"ps", "-eo", "args"};
      ps.deadline = Deadline::After(std::chrono::seconds(10));
      auto r = RunProcess(ps);
      if (r.ok() && r->exit_code == 0) {
        check(r->stdout_data, "ps -eo args");
        ++ps_scans;
      }
    }
  });

  v1::JobResult r = Run(job);
  done = true;
  proc_scanner.join();
  ps_scanner.join();

  EXPECT_EQ(r.outcome(), v1::JOB_STATE_SUCCEEDED) << r.error() << "\n" << log_;
  EXPECT_THAT(log_, HasSubstr("1 valid identities found"));
  EXPECT_TRUE(saw_step.load()) << "the scan never saw the step's own processes";
  EXPECT_GT(proc_scans.load(), 10);
  EXPECT_GT(ps_scans.load(), 3);
  EXPECT_TRUE(leaks.empty()) << *leaks.begin();
  EXPECT_THAT(log_, Not(HasSubstr(env_secret)));
  ExpectNothingLeft();
}

}  // namespace
}  // namespace freeagent::node
