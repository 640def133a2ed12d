// Artifact retention: the plan (age and size limits, shared and pinned blobs) and CollectGarbage over a
// real controller record and blob store.
#include "controller/retention.h"

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "gtest/gtest.h"

namespace freeagent::controller {
namespace {

constexpr int64_t kDay = 24 * 3600 * 1000;
constexpr int64_t kNow = 1'900'000'000'000;

BlobRecord Rec(const std::string& build, const std::string& digest, uint64_t size, int64_t finished) {
  BlobRecord r;
  r.build_id = build;
  r.info.set_name(build + ".ipa");
  r.info.set_sha256(digest);
  r.info.set_size(size);
  r.finished_unix_ms = finished;
  return r;
}

std::vector<std::string> Builds(const RetentionPlan& plan) {
  std::vector<std::string> out;
  for (const auto& item : plan.items) out.push_back(item.build_id());
  return out;
}

TEST(PlanRetention, OlderThanTheAgeLimitGoesOldestFirst) {
  std::vector<BlobRecord> recs = {Rec("b3", "d3", 30, kNow - 1 * kDay), Rec("b1", "d1", 10, kNow - 40 * kDay),
                                      Rec("b2", "d2", 20, kNow - 31 * kDay)};
  RetentionPlan plan = PlanRetention(recs, {}, RetentionPolicy{30, 0}, kNow);
  EXPECT_EQ(Builds(plan), (std::vector<std::string>{"b1", "b2"}));
  EXPECT_EQ(plan.removed_bytes, 30u);
  EXPECT_EQ(plan.kept_bytes, 30u);
  EXPECT_TRUE(absl::StrContains(plan.items[0].reason(), "older than 30 days"));
}

TEST(PlanRetention, SizeLimitRemovesOldestUntilUnder) {
  std::vector<BlobRecord> recs = {Rec("b1", "d1", 100, kNow - 3 * kDay), Rec("b2", "d2", 100, kNow - 2 * kDay),
                                      Rec("b3", "d3", 100, kNow - 1 * kDay)};
  RetentionPlan plan = PlanRetention(recs, {}, RetentionPolicy{0, 150}, kNow);
  EXPECT_EQ(Builds(plan), (std::vector<std::string>{"b1", "b2"}));
  EXPECT_EQ(plan.kept_bytes, 100u);
  EXPECT_TRUE(PlanRetention(recs, {}, RetentionPolicy{0, 300}, kNow).items.empty());
  EXPECT_TRUE(PlanRetention(recs, {}, RetentionPolicy{0, 0}, kNow).items.empty());
}

TEST(PlanRetention, RunningBuildsAndInUseBlobsAreNeverRemoved) {
  std::vector<BlobRecord> recs = {Rec("old", "d1", 100, kNow - 90 * kDay), Rec("running", "d2", 100, 0),
                                      Rec("touched", "d3", 100, kNow - 90 * kDay)};
  RetentionPlan plan = PlanRetention(recs, {"d3"}, RetentionPolicy{30, 1}, kNow);
  EXPECT_EQ(Builds(plan), (std::vector<std::string>{"old"}));
  EXPECT_EQ(plan.kept_bytes, 200u);  // over the limit, but what stays is pinned
}

TEST(PlanRetention, SharedBlobGoesOnlyWhenEveryUserIsOld) {
  std::vector<BlobRecord> recs = {Rec("old", "d1", 100, kNow - 90 * kDay), Rec("new", "d1", 100, kNow - kDay),
                                      Rec("other", "d2", 50, kNow - 60 * kDay)};
  RetentionPlan plan = PlanRetention(recs, {}, RetentionPolicy{30, 0}, kNow);
  EXPECT_EQ(Builds(plan), (std::vector<std::string>{"other"}));
  // Under a size limit the shared blob goes with both its records, counted once.
  plan = PlanRetention(recs, {}, RetentionPolicy{0, 10}, kNow);
  EXPECT_EQ(plan.digests, (std::vector<std::string>{"d2", "d1"}));
  EXPECT_EQ(plan.removed_bytes, 150u);
  EXPECT_EQ(plan.items.size(), 3u);
}

v1::StaleBlob Stale(const std::string& key, int64_t last_used) {
  v1::StaleBlob b;
  b.set_key(key);
  b.set_size(10);
  b.set_last_used_unix_ms(last_used);
  return b;
}

std::vector<std::string> Keys(const std::vector<v1::StaleBlob>& blobs) {
  std::vector<std::string> out;
  for (const auto& b : blobs) out.push_back(b.key());
  return out;
}

TEST(PlanStale, UnusedForLongerThanTheAgeGoOldestFirstExceptKeptOnes) {
  constexpr int64_t kHour = 3600 * 1000;
  const std::vector<v1::StaleBlob> files = {Stale("recent", kNow - 23 * kHour), Stale("old", kNow - 25 * kHour),
                                            Stale("oldest", kNow - 90 * kDay), Stale("named", kNow - 90 * kDay)};
  RetentionPolicy policy;  // 24 h by default
  EXPECT_EQ(Keys(PlanStale(files, {"named"}, policy, kNow)), (std::vector<std::string>{"oldest", "old"}));
  // Anything used since the oldest running build was submitted stays too.
  EXPECT_EQ(Keys(PlanStale(files, {"named"}, policy, kNow, kNow - 30 * kHour)), (std::vector<std::string>{"oldest"}));
  policy.partial_upload_max_age_hours = 1;
  EXPECT_EQ(Keys(PlanStale(files, {}, policy, kNow)), (std::vector<std::string>{"named", "oldest", "old", "recent"}));
  policy.partial_upload_max_age_hours = 0;  // kept forever
  EXPECT_TRUE(PlanStale(files, {}, policy, kNow).empty());
  EXPECT_EQ(StaleCutoffMs(policy, kNow), INT64_MIN);
}

BlobRecord Input(const std::string& build, const std::string& digest, uint64_t size, int64_t finished) {
  BlobRecord r = Rec(build, digest, size, finished);
  r.kind = "source";
  r.info.set_name("source archive");
  return r;
}

TEST(PlanInputRetention, AgeOnlyPinnedByUnfinishedBuildsAndInUseAndOffAtZero) {
  RetentionPolicy policy;
  policy.max_total_bytes = 1;  // the artifacts' size limit does not apply to inputs
  policy.input_max_age_days = 7;
  std::vector<BlobRecord> inputs = {Input("old", "d1", 100, kNow - 8 * kDay), Input("recent", "d2", 100, kNow - kDay),
                                    Input("old2", "d3", 100, kNow - 9 * kDay), Input("running", "d3", 100, 0),
                                    Input("old3", "d4", 100, kNow - 30 * kDay)};
  RetentionPlan plan = PlanInputRetention(inputs, {"d4"}, policy, kNow);
  EXPECT_EQ(plan.digests, std::vector<std::string>{"d1"});
  ASSERT_EQ(plan.items.size(), 1u);
  EXPECT_EQ(plan.items[0].kind(), "source");
  EXPECT_EQ(plan.items[0].name(), "source archive");
  EXPECT_EQ(plan.items[0].reason(), "older than 7 days");
  EXPECT_EQ(plan.removed_bytes, 100u);

  policy.input_max_age_days = 0;  // kept forever
  EXPECT_TRUE(PlanInputRetention(inputs, {}, policy, kNow).digests.empty());
}

TEST(PlanBlobRetention, ABlobThatIsBothGoesOnceBothUsesLetItGoAndCountsOnce) {
  RetentionPolicy policy{30, 0};
  policy.input_max_age_days = 7;
  // d1: an old artifact and an old input. d2: an old artifact that a recent build reads. d3: an old
  // input that is also a recent artifact.
  std::vector<BlobRecord> artifacts = {Rec("a1", "d1", 100, kNow - 40 * kDay), Rec("a2", "d2", 50, kNow - 40 * kDay),
                                       Rec("a3", "d3", 20, kNow - kDay)};
  std::vector<BlobRecord> inputs = {Input("i1", "d1", 100, kNow - 10 * kDay), Input("i2", "d2", 50, kNow - kDay),
                                    Input("i3", "d3", 20, kNow - 10 * kDay)};
  RetentionPlan plan = PlanBlobRetention(artifacts, inputs, {}, policy, kNow);
  EXPECT_EQ(plan.digests, std::vector<std::string>{"d1"});
  EXPECT_EQ(Builds(plan), (std::vector<std::string>{"a1", "i1"})) << "oldest first";
  EXPECT_EQ(plan.removed_bytes, 100u) << "counted once";
}

}  // namespace
}  // namespace freeagent::controller
