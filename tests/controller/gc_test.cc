// Artifact retention over a real controller: builds finished by a scripted worker, `CollectGarbage`
// through BuildService (dry run, then apply), blobs of a running build kept, expiry kept across a restart,
// and a blob a running build found already stored still kept after a restart.
#include <sys/stat.h>

#include "tests/controller/controller_fixture.h"

namespace freeagent::controller::testing {
namespace {

class GcTest : public ControllerTest {
 protected:
  void SetUp() override {
    ControllerTest::SetUp();
    options_.controller.retention.max_total_bytes = 150;
    options_.controller.retention_interval = std::chrono::hours(100);  // only explicit runs
    StartServer();
    source_ = UploadSource();
  }

  // Runs one build to SUCCEEDED on `worker` with one artifact holding `data`; returns its id.
  std::string BuildWithArtifact(FakeWorker& worker, const std::string& name, const std::string& data) {
    auto build = Submit(Spec(source_));
    EXPECT_TRUE(build.ok()) << build.status();
    auto job = worker.NextAssign();
    EXPECT_TRUE(job.has_value());
    if (!job) return "";
    EXPECT_TRUE(worker.Send(FakeWorker::Accepted(*job)));
    v1::ArtifactInfo a;
    a.set_name(name);
    a.set_path("build/" + name);
    a.set_size(data.size());
    a.set_sha256(Upload(data));
    (*a.mutable_metadata())["kind"] = "ipa";
    v1::WorkerMessage m = FakeWorker::Result(*job, v1::JOB_STATE_SUCCEEDED, 0);
    *m.mutable_result()->add_artifacts() = a;
    EXPECT_TRUE(worker.Send(m));
    EXPECT_TRUE(WaitBuild(build->id(), [](const v1::Build& b) { return b.state() == v1::JOB_STATE_SUCCEEDED; }));
    std::this_thread::sleep_for(5ms);  // distinct finish times
    return build->id();
  }

  v1::CollectGarbageResponse Gc(bool apply) {
    grpc::ClientContext ctx;
    v1::CollectGarbageRequest req;
    req.set_apply(apply);
    v1::CollectGarbageResponse resp;
    grpc::Status st = builds_->CollectGarbage(&ctx, req, &resp);
    EXPECT_TRUE(st.ok()) << st.error_message();
    return resp;
  }

  bool BlobExists(const std::string& digest) {
    struct stat st {};
    return ::stat(server_->controller().blobs().PathFor(digest).c_str(), &st) == 0;
  }

  std::string source_;
};

TEST_F(GcTest, OldestGoFirstUnderTheSizeLimitAndRunningBuildsKeepTheirBlobs) {
  FakeWorker worker(channel_);
  worker.Hello("w1", {}, 1);
  const std::string a = BuildWithArtifact(worker, "a.ipa", std::string(100, 'a'));
  const std::string b = BuildWithArtifact(worker, "b.ipa", std::string(100, 'b'));
  const std::string da = Sha256Hex(std::string(100, 'a'));
  const std::string db = Sha256Hex(std::string(100, 'b'));
  // A running build whose artifact is already stored but not yet reported.
  auto running = Submit(Spec(source_));
  ASSERT_TRUE(running.ok());
  auto job = worker.NextAssign();
  ASSERT_TRUE(job.has_value());
  ASSERT_TRUE(worker.Send(FakeWorker::Accepted(*job)));
  const std::string dc = Upload(std::string(500, 'c'));

  v1::CollectGarbageResponse dry = Gc(false);
  ASSERT_EQ(dry.items_size(), 1);
  EXPECT_EQ(dry.items(0).build_id(), a);
  EXPECT_EQ(dry.items(0).name(), "a.ipa");
  EXPECT_EQ(dry.items(0).sha256(), da);
  EXPECT_FALSE(dry.applied());
  EXPECT_EQ(dry.removed_bytes(), 100u);
  EXPECT_EQ(dry.kept_bytes(), 100u);
  EXPECT_TRUE(BlobExists(da)) << "a dry run removed a blob";
  EXPECT_EQ(Get(a).artifacts(0).expired_unix_ms(), 0);

  v1::CollectGarbageResponse done = Gc(true);
  ASSERT_EQ(done.items_size(), 1);
  EXPECT_TRUE(done.applied());
  EXPECT_FALSE(BlobExists(da));
  EXPECT_TRUE(BlobExists(db));
  EXPECT_TRUE(BlobExists(dc));
  EXPECT_TRUE(BlobExists(source_));
  EXPECT_GT(Get(a).artifacts(0).expired_unix_ms(), 0);
  EXPECT_EQ(Get(b).artifacts(0).expired_unix_ms(), 0);
  EXPECT_EQ(Gc(false).items_size(), 0);  // under the limit now

  // The expiry is part of the durable record.
  StopServer();
  StartServer();
  EXPECT_GT(Get(a).artifacts(0).expired_unix_ms(), 0);
  EXPECT_EQ(Get(a).artifacts(0).metadata().at("kind"), "ipa");
  EXPECT_EQ(Get(b).artifacts(0).expired_unix_ms(), 0);
}

TEST_F(GcTest, BlobTouchedByARunningBuildStaysAcrossARestart) {
  FakeWorker worker(channel_);
  worker.Hello("w1", {}, 1);
  const std::string a = BuildWithArtifact(worker, "a.ipa", std::string(100, 'a'));
  BuildWithArtifact(worker, "b.ipa", std::string(100, 'b'));
  const std::string da = Sha256Hex(std::string(100, 'a'));
  const std::string db = Sha256Hex(std::string(100, 'b'));
  ASSERT_EQ(Gc(false).items_size(), 1) << "a.ipa is the oldest and over the limit";
  // A running build's worker finds a.ipa's bytes already stored (Stat), so it will not upload them again.
  auto running = Submit(Spec(source_));
  ASSERT_TRUE(running.ok());
  auto job = worker.NextAssign();
  ASSERT_TRUE(job.has_value());
  ASSERT_TRUE(worker.Send(FakeWorker::Accepted(*job)));
  std::this_thread::sleep_for(5ms);
  {
    grpc::ClientContext ctx;
    v1::StatRequest req;
    req.set_digest(da);
    v1::BlobInfo info;
    ASSERT_TRUE(blobs_->Stat(&ctx, req, &info).ok());
    ASSERT_TRUE(info.exists());
  }

  // The touch outlives the controller: after a restart the running build still protects the blob.
  StopServer();
  StartServer();
  ASSERT_FALSE(IsTerminal(Get(running->id()).state()));
  v1::CollectGarbageResponse done = Gc(true);
  EXPECT_EQ(done.items_size(), 0) << done.ShortDebugString();
  EXPECT_TRUE(BlobExists(da)) << "the blob a running build found was removed after a restart";
  EXPECT_TRUE(BlobExists(db));
  EXPECT_EQ(Get(a).artifacts(0).expired_unix_ms(), 0);
}

}  // namespace
}  // namespace freeagent::controller::testing
