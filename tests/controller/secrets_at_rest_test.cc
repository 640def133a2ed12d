// Secrets at rest on the controller: AES-256-GCM sealing (SecretBox), the key file's creation and
// checks, no plaintext anywhere under the data dir, secrets restored for a worker after a restart,
// deleted when the build ends, and a tampered value ending its build with a clear error.
#include <sqlite3.h>
#include <sys/stat.h>

#include <filesystem>

#include "absl/strings/escaping.h"
#include "absl/strings/str_cat.h"
#include "controller/secret_box.h"
#include "tests/controller/controller_fixture.h"

namespace freeagent::controller::testing {
namespace {

constexpr char kEnvSecret[] = "env-secret-value-4711";
constexpr char kP12Password[] = "p12-password-value-0815";

std::array<uint8_t, SecretBox::kKeyBytes> Key(uint8_t seed) {
  std::array<uint8_t, SecretBox::kKeyBytes> key;
  for (size_t i = 0; i < key.size(); ++i) key[i] = static_cast<uint8_t>(seed + i * 7);
  return key;
}

TEST(SecretBox, OpensWhatItSealedWithAFreshNoncePerValue) {
  SecretBox box = SecretBox::FromKey(Key(1));
  const std::string aad = SecretBox::Aad("b-1", "env/TOKEN");
  auto a = box.Seal("hello secret", aad);
  auto b = box.Seal("hello secret", aad);
  ASSERT_TRUE(a.ok() && b.ok());
  EXPECT_NE(*a, *b) << "the same value sealed twice must not look the same";
  EXPECT_EQ(a->size(), SecretBox::kNonceBytes + 12 + SecretBox::kTagBytes);
  EXPECT_EQ(a->find("hello secret"), std::string::npos);
  auto opened = box.Open(*a, aad);
  ASSERT_TRUE(opened.ok()) << opened.status();
  EXPECT_EQ(*opened, "hello secret");
  auto empty = box.Seal("", aad);
  ASSERT_TRUE(empty.ok());
  EXPECT_EQ(box.Open(*empty, aad).value_or("x"), "");
}

TEST(SecretBox, AnyChangedByteAnotherBuildOrNameOrKeyIsDataLoss) {
  SecretBox box = SecretBox::FromKey(Key(1));
  const std::string aad = SecretBox::Aad("b-1", "env/TOKEN");
  auto sealed = box.Seal("hello secret", aad);
  ASSERT_TRUE(sealed.ok());
  for (size_t i = 0; i < sealed->size(); ++i) {
    std::string changed = *sealed;
    changed[i] ^= 0x01;
    auto r = box.Open(changed, aad);
    ASSERT_FALSE(r.ok()) << "byte " << i;
    EXPECT_EQ(r.status().code(), absl::StatusCode::kDataLoss);
    EXPECT_NE(r.status().message().find("failed authentication"), std::string::npos) << r.status();
  }
  EXPECT_EQ(box.Open(*sealed, SecretBox::Aad("b-2", "env/TOKEN")).status().code(), absl::StatusCode::kDataLoss);
  EXPECT_EQ(box.Open(*sealed, SecretBox::Aad("b-1", "env/OTHER")).status().code(), absl::StatusCode::kDataLoss);
  EXPECT_EQ(SecretBox::FromKey(Key(2)).Open(*sealed, aad).status().code(), absl::StatusCode::kDataLoss);
  EXPECT_EQ(box.Open(sealed->substr(0, 20), aad).status().code(), absl::StatusCode::kDataLoss);
}

class KeyFileTest : public ::testing::Test {
 protected:
  void SetUp() override {
    auto dir = MakePrivateTempDir("/tmp", "fa-key-test-");
    ASSERT_TRUE(dir.ok()) << dir.status();
    dir_ = *dir;
    path_ = dir_ + "/secret.key";
  }
  void TearDown() override { RemoveTree(dir_).IgnoreError(); }
  std::string dir_, path_;
};

TEST_F(KeyFileTest, CreatedOnceWithMode0600AndThirtyTwoRandomBytes) {
  auto box = SecretBox::OpenKeyFile(path_);
  ASSERT_TRUE(box.ok()) << box.status();
  struct stat st;
  ASSERT_EQ(::stat(path_.c_str(), &st), 0);
  EXPECT_EQ(st.st_mode & 07777, 0600u);
  EXPECT_EQ(st.st_size, 32);
  auto sealed = box->Seal("value", "aad");
  ASSERT_TRUE(sealed.ok());
  // A second start reads the same key.
  auto again = SecretBox::OpenKeyFile(path_);
  ASSERT_TRUE(again.ok()) << again.status();
  EXPECT_EQ(again->Open(*sealed, "aad").value_or(""), "value");
}

TEST_F(KeyFileTest, WiderModeOrWrongSizeIsRefusedNamingTheFileAndReason) {
  ASSERT_TRUE(SecretBox::OpenKeyFile(path_).ok());
  ASSERT_EQ(::chmod(path_.c_str(), 0640), 0);
  auto wide = SecretBox::OpenKeyFile(path_);
  ASSERT_FALSE(wide.ok());
  EXPECT_EQ(wide.status().code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_NE(wide.status().message().find(path_), std::string::npos) << wide.status();
  EXPECT_NE(wide.status().message().find("0640"), std::string::npos) << wide.status();

  ASSERT_TRUE(WriteFileAtomic(path_, std::string(16, 'k'), 0600).ok());
  auto small = SecretBox::OpenKeyFile(path_);
  ASSERT_FALSE(small.ok());
  EXPECT_EQ(small.status().code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_NE(small.status().message().find("16 bytes, expected 32"), std::string::npos) << small.status();
}

class SecretsAtRestTest : public ControllerTest {
 protected:
  void SetUp() override {
    ControllerTest::SetUp();
    StartServer();
    source_ = UploadSource();
  }

  std::string DataDir() const { return options_.controller.data_dir; }

  v1::JobSpec SecretSpec() {
    v1::JobSpec spec = Spec(source_);
    (*spec.mutable_secret_env())["API_TOKEN"] = kEnvSecret;
    spec.mutable_signing()->set_p12_password(kP12Password);
    return spec;
  }

  // Runs `sql` on the controller's database (with a server running: WAL lets readers in).
  std::vector<std::vector<std::string>> Query(const std::string& sql) {
    sqlite3* db = nullptr;
    EXPECT_EQ(sqlite3_open_v2((DataDir() + "/freeagent.db").c_str(), &db, SQLITE_OPEN_READWRITE, nullptr),
              SQLITE_OK);
    std::vector<std::vector<std::string>> rows;
    sqlite3_stmt* stmt = nullptr;
    EXPECT_EQ(sqlite3_prepare_v2(db, sql.c_str(), -1, &stmt, nullptr), SQLITE_OK) << sqlite3_errmsg(db);
    int rc;
    while ((rc = sqlite3_step(stmt)) == SQLITE_ROW) {
      std::vector<std::string> row;
      for (int i = 0; i < sqlite3_column_count(stmt); ++i) {
        const void* p = sqlite3_column_blob(stmt, i);
        row.emplace_back(p ? std::string(static_cast<const char*>(p), sqlite3_column_bytes(stmt, i)) : "");
      }
      rows.push_back(std::move(row));
    }
    EXPECT_EQ(rc, SQLITE_DONE) << sqlite3_errmsg(db);
    sqlite3_finalize(stmt);
    sqlite3_close(db);
    return rows;
  }

  size_t SecretRows(const std::string& id) {
    return Query(absl::StrCat("SELECT name FROM secrets WHERE job_id = '", id, "'")).size();
  }

  // Every file under the data dir (database, WAL, logs, blobs) searched for the plaintext.
  void ExpectNoPlaintextOnDisk() {
    size_t files = 0;
    for (const auto& entry : std::filesystem::recursive_directory_iterator(DataDir())) {
      if (!entry.is_regular_file()) continue;
      ++files;
      auto bytes = ReadFile(entry.path().string());
      ASSERT_TRUE(bytes.ok()) << bytes.status();
      EXPECT_EQ(bytes->find(kEnvSecret), std::string::npos) << entry.path();
      EXPECT_EQ(bytes->find(kP12Password), std::string::npos) << entry.path();
    }
    EXPECT_GE(files, 2u);  // at least the database and the key
  }

  std::string source_;
};

TEST_F(SecretsAtRestTest, SealedOnDiskRestoredForTheWorkerAfterARestartDeletedWhenTheBuildEnds) {
  struct stat st;
  ASSERT_EQ(::stat((DataDir() + "/secret.key").c_str(), &st), 0);
  EXPECT_EQ(st.st_mode & 07777, 0600u);

  auto build = Submit(SecretSpec());
  ASSERT_TRUE(build.ok()) << build.status();
  EXPECT_EQ(SecretRows(build->id()), 2u);
  ExpectNoPlaintextOnDisk();

  StopServer();
  StartServer();
  FakeWorker worker(channel_);
  worker.Hello("w1");
  auto job = worker.NextAssign();
  ASSERT_TRUE(job.has_value());
  EXPECT_EQ(job->spec().secret_env().at("API_TOKEN"), kEnvSecret);
  EXPECT_EQ(job->spec().signing().p12_password(), kP12Password);
  ExpectNoPlaintextOnDisk();

  ASSERT_TRUE(worker.Send(FakeWorker::Accepted(*job)));
  ASSERT_TRUE(worker.Send(FakeWorker::Result(*job, v1::JOB_STATE_SUCCEEDED, 0)));
  ASSERT_TRUE(WaitBuild(build->id(), [](const v1::Build& b) { return b.state() == v1::JOB_STATE_SUCCEEDED; }));
  EXPECT_EQ(SecretRows(build->id()), 0u);
  EXPECT_TRUE(Query("SELECT job_id FROM secrets").empty());
  // The build keeps the names of its secrets, never their values.
  v1::Build done = Get(build->id());
  EXPECT_EQ(done.spec().secret_env().at("API_TOKEN"), "");
  EXPECT_EQ(done.spec().signing().p12_password(), "");
}

TEST_F(SecretsAtRestTest, EveryTerminalStateDeletesTheSecrets) {
  // Cancelled while queued.
  auto queued = Submit(SecretSpec());
  ASSERT_TRUE(queued.ok());
  ASSERT_EQ(SecretRows(queued->id()), 2u);
  grpc::ClientContext ctx;
  v1::CancelBuildRequest cancel;
  cancel.set_id(queued->id());
  v1::Build cancelled;
  ASSERT_TRUE(builds_->Cancel(&ctx, cancel, &cancelled).ok());
  EXPECT_EQ(cancelled.state(), v1::JOB_STATE_CANCELLED);
  EXPECT_EQ(SecretRows(queued->id()), 0u);

  // Failed, timed out and error results from a worker.
  FakeWorker worker(channel_);
  worker.Hello("w1", {}, 1);
  for (v1::JobState outcome : {v1::JOB_STATE_FAILED, v1::JOB_STATE_TIMED_OUT, v1::JOB_STATE_ERROR}) {
    auto build = Submit(SecretSpec());
    ASSERT_TRUE(build.ok());
    auto job = worker.NextAssign();
    ASSERT_TRUE(job.has_value());
    EXPECT_EQ(SecretRows(build->id()), 2u);
    ASSERT_TRUE(worker.Send(FakeWorker::Result(*job, outcome, 0)));
    ASSERT_TRUE(WaitBuild(build->id(), [&](const v1::Build& b) { return b.state() == outcome; }));
    EXPECT_EQ(SecretRows(build->id()), 0u) << v1::JobState_Name(outcome);
  }
  EXPECT_TRUE(Query("SELECT job_id FROM secrets").empty());
  ExpectNoPlaintextOnDisk();
}

TEST_F(SecretsAtRestTest, ATamperedSecretEndsItsBuildWithAClearErrorAndIsNeverSent) {
  auto build = Submit(SecretSpec());
  ASSERT_TRUE(build.ok());
  auto untouched = Submit(SecretSpec());
  ASSERT_TRUE(untouched.ok());
  StopServer();
  // Flip one bit in the middle of the sealed env value.
  const std::string where = absl::StrCat(" WHERE job_id = '", build->id(), "' AND name = 'env/API_TOKEN'");
  auto rows = Query("SELECT sealed FROM secrets" + where);
  ASSERT_EQ(rows.size(), 1u);
  std::string sealed = rows[0][0];
  ASSERT_GT(sealed.size(), 20u);
  sealed[20] ^= 0x01;
  Query(absl::StrCat("UPDATE secrets SET sealed = X'", absl::BytesToHexString(sealed), "'", where));
  StartServer();

  v1::Build tampered = Get(build->id());
  EXPECT_EQ(tampered.state(), v1::JOB_STATE_ERROR);
  EXPECT_NE(tampered.error().find("secret env/API_TOKEN could not be decrypted"), std::string::npos)
      << tampered.error();
  EXPECT_NE(tampered.error().find("failed authentication"), std::string::npos) << tampered.error();
  EXPECT_EQ(SecretRows(build->id()), 0u);

  // The other build is unharmed and is the only one a worker gets.
  FakeWorker worker(channel_);
  worker.Hello("w1");
  auto job = worker.NextAssign();
  ASSERT_TRUE(job.has_value());
  EXPECT_EQ(job->job_id(), untouched->id());
  EXPECT_EQ(job->spec().secret_env().at("API_TOKEN"), kEnvSecret);
  EXPECT_FALSE(worker.NextAssign(300ms).has_value());
}

TEST_F(SecretsAtRestTest, TheControllerRefusesToStartWithAKeyFileOthersCanRead) {
  StopServer();
  const std::string key = DataDir() + "/secret.key";
  ASSERT_EQ(::chmod(key.c_str(), 0644), 0);
  auto server = ControllerServer::Start(options_);
  ASSERT_FALSE(server.ok());
  EXPECT_NE(server.status().message().find(key), std::string::npos) << server.status();
  EXPECT_NE(server.status().message().find("chmod 600"), std::string::npos) << server.status();
}

}  // namespace
}  // namespace freeagent::controller::testing
