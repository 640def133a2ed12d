// Artifact retention over a real controller: builds finished by a scripted worker, `CollectGarbage`
// through BuildService (dry run, then apply), blobs of a running build kept, expiry kept across a restart,
// a blob a running build found already stored still kept after a restart, partial uploads and
// unreferenced blobs unused for the age limit, and the source archives of builds that ended long ago.
#include <sys/stat.h>

#include <set>
#include <utility>

#include "common/clock.h"
#include "controller/store.h"
#include "tests/controller/controller_fixture.h"

namespace freeagent::controller::testing {
namespace {

class GcTest : public ControllerTest {
 protected:
  void SetUp() override {
    ControllerTest::SetUp();
    options_.controller.retention.max_total_bytes = 150;
    // Only explicit runs: a pass at start-up could apply before a test's dry run after a restart.
    options_.controller.retention_interval = std::chrono::hours(100);
    options_.controller.retention_first_delay = std::chrono::hours(100);
    StartServer();
    source_ = UploadSource();
  }

  // Runs one build of `source` (source_ when empty) to SUCCEEDED on `worker` with one artifact holding
  // `data`; returns its id.
  std::string BuildWithArtifact(FakeWorker& worker, const std::string& name, const std::string& data,
                                const std::string& source = "") {
    return BuildWithArtifact(worker, name, data, Spec(source.empty() ? source_ : source));
  }

  // The same for a build of `spec`.
  std::string BuildWithArtifact(FakeWorker& worker, const std::string& name, const std::string& data,
                                const v1::JobSpec& spec) {
    auto build = Submit(spec);
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

  // Rewrites the durable record of `ids` (builds that ended) as if they had ended `days` days earlier,
  // with the controller stopped; starts it again.
  void EndedDaysAgo(const std::set<std::string>& ids, int days) {
    StopServer();
    {
      auto store = Store::Open(options_.controller.data_dir + "/freeagent.db");
      ASSERT_TRUE(store.ok()) << store.status();
      auto jobs = (*store)->LoadJobs();
      ASSERT_TRUE(jobs.ok()) << jobs.status();
      const int64_t shift = int64_t{days} * 24 * 3600 * 1000;
      size_t aged = 0;
      for (StoredJob& j : *jobs) {
        if (ids.count(j.build.id()) == 0) continue;
        j.build.set_created_unix_ms(j.build.created_unix_ms() - shift);
        j.build.set_started_unix_ms(j.build.started_unix_ms() - shift);
        j.build.set_finished_unix_ms(j.build.finished_unix_ms() - shift);
        (*store)->PutJob(j);
        ++aged;
      }
      ASSERT_EQ(aged, ids.size());
      (*store)->Stop();
    }
    StartServer();
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

std::vector<std::string> Keys(const google::protobuf::RepeatedPtrField<v1::StaleBlob>& blobs) {
  std::vector<std::string> keys;
  for (const auto& b : blobs) keys.push_back(b.key());
  return keys;
}

// A partial upload whose sender never came back and a blob no build references (its build failed
// after the upload) are listed once unused for partial_upload_max_age_hours, and removed by --apply
// and by the controller's own retention pass; what builds reference, recent files and an upload in
// progress stay.
TEST_F(GcTest, StalePartialUploadsAndUnreferencedBlobsGoOnceUnusedForTheAgeLimit) {
  FakeWorker worker(channel_);
  worker.Hello("w1", {}, 1);
  const std::string artifact = Sha256Hex(std::string(100, 'k'));
  BuildWithArtifact(worker, "kept.ipa", std::string(100, 'k'));
  const std::string orphan = Upload("an artifact whose build failed after the upload");
  const std::string fresh_orphan = Upload("uploaded a minute ago");
  const std::string whole = RandomBytes(1000);
  const std::string by_digest = Sha256Hex(whole);
  EXPECT_EQ(UploadRaw(by_digest, whole.size(), 0, whole.substr(0, 300), nullptr).error_code(),
            grpc::StatusCode::FAILED_PRECONDITION);
  const std::string abandoned(32, 'a'), recent(32, 'b'), writing(32, 'c');
  EXPECT_EQ(UploadStreaming(abandoned, 0, "streamed", false, "", 0, nullptr).error_code(),
            grpc::StatusCode::FAILED_PRECONDITION);
  EXPECT_EQ(UploadStreaming(recent, 0, "streamed", false, "", 0, nullptr).error_code(),
            grpc::StatusCode::FAILED_PRECONDITION);

  // A restart forgets the touches held in memory: the files' times are all that is left. The pass the
  // controller runs at start-up removes an old partial (the sentinel); later ones are explicit.
  StopServer();
  BlobStore files(options_.controller.data_dir + "/blobs");
  const std::string sentinel = files.PartialPathFor(Sha256Hex("sentinel"));
  ASSERT_TRUE(WriteFileAtomic(sentinel, "x").ok());
  const int64_t now = UnixMillis();
  constexpr int64_t kHour = 3600 * 1000;
  SetMtime(sentinel, now - 48 * kHour);
  options_.controller.retention_first_delay = std::chrono::milliseconds(0);
  StartServer();
  struct stat st {};
  for (int i = 0; i < 500 && ::stat(sentinel.c_str(), &st) == 0; ++i) std::this_thread::sleep_for(10ms);
  ASSERT_NE(::stat(sentinel.c_str(), &st), 0) << "the retention pass at start-up kept a stale partial";

  auto in_progress = StartUpload(writing);
  ASSERT_TRUE(in_progress->Send("still coming"));
  const std::string writing_path = files.PartialPathFor(BlobStore::UploadKey(writing));
  auto written = [&] { return ::stat(writing_path.c_str(), &st) == 0 && st.st_size == 12; };
  for (int i = 0; i < 500 && !written(); ++i) std::this_thread::sleep_for(10ms);
  ASSERT_TRUE(written());
  SetMtime(writing_path, now - 48 * kHour);
  SetMtime(files.PartialPathFor(by_digest), now - 48 * kHour);
  SetMtime(files.PartialPathFor(BlobStore::UploadKey(abandoned)), now - 25 * kHour);
  SetMtime(files.PathFor(orphan), now - 30 * kHour);
  SetMtime(files.PathFor(fresh_orphan), now - 60 * 1000);
  SetMtime(files.PathFor(artifact), now - 90 * kHour);  // referenced by a build: artifact retention's
  SetMtime(files.PathFor(source_), now - 90 * kHour);   // a build's source

  v1::CollectGarbageResponse dry = Gc(false);
  EXPECT_EQ(dry.partial_upload_max_age_hours(), 24u);
  EXPECT_EQ(Keys(dry.partial_uploads()), (std::vector<std::string>{by_digest, BlobStore::UploadKey(abandoned)}));
  EXPECT_EQ(Keys(dry.unreferenced_blobs()), std::vector<std::string>{orphan});
  ASSERT_EQ(dry.partial_uploads_size(), 2);
  EXPECT_EQ(dry.partial_uploads(0).size(), 300u);
  EXPECT_NEAR(static_cast<double>(dry.partial_uploads(0).last_used_unix_ms()), static_cast<double>(now - 48 * kHour),
              1000.0);
  EXPECT_EQ(dry.items_size(), 0);
  EXPECT_TRUE(::stat(files.PartialPathFor(by_digest).c_str(), &st) == 0) << "a dry run removed a partial";
  EXPECT_TRUE(BlobExists(orphan)) << "a dry run removed a blob";

  v1::CollectGarbageResponse done = Gc(true);
  EXPECT_EQ(Keys(done.partial_uploads()), Keys(dry.partial_uploads()));
  EXPECT_EQ(Keys(done.unreferenced_blobs()), Keys(dry.unreferenced_blobs()));
  EXPECT_NE(::stat(files.PartialPathFor(by_digest).c_str(), &st), 0);
  EXPECT_NE(::stat(files.PartialPathFor(BlobStore::UploadKey(abandoned)).c_str(), &st), 0);
  EXPECT_FALSE(BlobExists(orphan));
  EXPECT_EQ(::stat(files.PartialPathFor(BlobStore::UploadKey(recent)).c_str(), &st), 0);
  EXPECT_EQ(::stat(writing_path.c_str(), &st), 0) << "an upload in progress lost its partial";
  EXPECT_TRUE(BlobExists(fresh_orphan));
  EXPECT_TRUE(BlobExists(artifact));
  EXPECT_TRUE(BlobExists(source_));
  v1::CollectGarbageResponse after = Gc(false);
  EXPECT_EQ(after.partial_uploads_size() + after.unreferenced_blobs_size(), 0) << after.ShortDebugString();

  // The upload in progress is stored once its sender ends it.
  ASSERT_TRUE(in_progress->End(Sha256Hex("still coming"), 12).ok());
  EXPECT_TRUE(BlobExists(Sha256Hex("still coming")));
}

// A build's inputs go once the newest build naming them ended input_retention_days (7) ago: a source
// only old builds used is removed and marked on their record; one a recent build or a running build
// also uses stays; artifacts stay under their own limits. A new submission of the removed source is
// refused, naming it.
TEST_F(GcTest, SourcesOfBuildsThatEndedLongAgoAreRemovedUnlessAnotherBuildStillNeedsThem) {
  FakeWorker worker(channel_);
  worker.Hello("w1", {}, 1);
  const std::string only_old = UploadSource("Makefile", "old:\n");
  const std::string shared = UploadSource("Makefile", "shared:\n");
  const std::string running_too = UploadSource("Makefile", "running:\n");
  const std::string old_build = BuildWithArtifact(worker, "old.ipa", std::string(10, 'o'), only_old);
  const std::string old_shared = BuildWithArtifact(worker, "s1.ipa", std::string(10, 's'), shared);
  const std::string old_running_too = BuildWithArtifact(worker, "r1.ipa", std::string(10, 'r'), running_too);
  const std::string recent_shared = BuildWithArtifact(worker, "s2.ipa", std::string(10, 't'), shared);
  auto running = Submit(Spec(running_too));
  ASSERT_TRUE(running.ok()) << running.status();
  auto job = worker.NextAssign();
  ASSERT_TRUE(job.has_value());
  ASSERT_TRUE(worker.Send(FakeWorker::Accepted(*job)));
  EXPECT_EQ(Gc(false).items_size(), 0) << "every build ended just now";

  // Three builds ended ten days ago, as their durable record says.
  ASSERT_NO_FATAL_FAILURE(EndedDaysAgo({old_build, old_shared, old_running_too}, 10));

  v1::CollectGarbageResponse dry = Gc(false);
  EXPECT_EQ(dry.input_retention_days(), 7u);
  ASSERT_EQ(dry.items_size(), 1) << dry.ShortDebugString();
  EXPECT_EQ(dry.items(0).build_id(), old_build);
  EXPECT_EQ(dry.items(0).kind(), "source");
  EXPECT_EQ(dry.items(0).name(), "source archive");
  EXPECT_EQ(dry.items(0).sha256(), only_old);
  EXPECT_GT(dry.items(0).size(), 0u);
  EXPECT_EQ(dry.items(0).reason(), "older than 7 days");
  EXPECT_EQ(dry.removed_bytes(), dry.items(0).size());
  EXPECT_TRUE(BlobExists(only_old)) << "a dry run removed a source";

  v1::CollectGarbageResponse done = Gc(true);
  ASSERT_EQ(done.items_size(), 1) << done.ShortDebugString();
  EXPECT_FALSE(BlobExists(only_old));
  EXPECT_TRUE(BlobExists(shared)) << "a build that ended just now still names it";
  EXPECT_TRUE(BlobExists(running_too)) << "a running build names it";
  EXPECT_TRUE(BlobExists(Sha256Hex(std::string(10, 'o')))) << "artifacts follow their own limits";
  EXPECT_EQ(Gc(false).items_size(), 0) << "a removed input is not planned again";

  // The removal is part of the durable record.
  StopServer();
  StartServer();
  const v1::Build old = Get(old_build);
  ASSERT_EQ(old.removed_inputs().count(only_old), 1u);
  EXPECT_GT(old.removed_inputs().at(only_old), 0);
  EXPECT_TRUE(Get(old_shared).removed_inputs().empty());
  EXPECT_TRUE(Get(old_running_too).removed_inputs().empty());
  EXPECT_EQ(Get(old_build).artifacts(0).expired_unix_ms(), 0);

  // A new build of the removed source is refused, naming the field (the CLI uploads it first).
  auto refused = Submit(Spec(only_old));
  ASSERT_FALSE(refused.ok());
  EXPECT_TRUE(absl::IsFailedPrecondition(refused.status())) << refused.status();
  EXPECT_NE(refused.status().message().find("source_digest"), std::string::npos) << refused.status();
}

// A blob that is both an artifact and an input of builds that ended long ago (a P12 another build
// produced) goes when both its uses let it go: it neither pins itself forever nor makes the size limit
// take a newer artifact in its place, and its bytes count once.
TEST_F(GcTest, ABlobThatIsAnOldArtifactAndAnOldInputGoesOnce) {
  FakeWorker worker(channel_);
  worker.Hello("w1", {}, 1);
  const std::string x = std::string(100, 'x');
  const std::string dx = Sha256Hex(x);
  const std::string produced = BuildWithArtifact(worker, "signing.p12", x);
  v1::JobSpec signed_spec = Spec(source_);
  signed_spec.mutable_signing()->set_p12_digest(dx);
  const std::string used = BuildWithArtifact(worker, "y.ipa", std::string(10, 'y'), signed_spec);
  const std::string recent = BuildWithArtifact(worker, "z.ipa", std::string(100, 'z'));
  ASSERT_NO_FATAL_FAILURE(EndedDaysAgo({produced, used}, 10));

  // 210 artifact bytes over the 150-byte limit: the oldest, signing.p12, goes, and its use as an input too.
  v1::CollectGarbageResponse dry = Gc(false);
  EXPECT_EQ(dry.removed_bytes(), 100u) << dry.ShortDebugString();
  EXPECT_EQ(dry.kept_bytes(), 110u) << dry.ShortDebugString();
  v1::CollectGarbageResponse done = Gc(true);
  EXPECT_EQ(done.removed_bytes(), 100u) << done.ShortDebugString();
  std::set<std::pair<std::string, std::string>> items;  // (build, kind)
  for (const v1::GarbageItem& item : done.items()) {
    EXPECT_EQ(item.sha256(), dx) << item.ShortDebugString();
    items.emplace(item.build_id(), item.kind());
  }
  EXPECT_EQ(items, (std::set<std::pair<std::string, std::string>>{{produced, "artifact"}, {used, "p12"}}));
  EXPECT_FALSE(BlobExists(dx)) << "a blob old in both its uses was kept";
  EXPECT_TRUE(BlobExists(Sha256Hex(std::string(100, 'z')))) << "the newest artifact went in its place";
  EXPECT_TRUE(BlobExists(Sha256Hex(std::string(10, 'y'))));
  EXPECT_GT(Get(produced).artifacts(0).expired_unix_ms(), 0);
  EXPECT_EQ(Get(used).removed_inputs().count(dx), 1u);
  EXPECT_EQ(Get(recent).artifacts(0).expired_unix_ms(), 0);
}

}  // namespace
}  // namespace freeagent::controller::testing
