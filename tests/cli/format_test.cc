#include "cli/format.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

namespace freeagent::cli {
namespace {

using ::testing::HasSubstr;
using ::testing::Not;
using freeagent::v1::Build;

TEST(StatusLine, RunningStepShowsIndexCountAndName) {
  Build b;
  b.set_state(freeagent::v1::JOB_STATE_RUNNING);
  b.set_phase(freeagent::v1::PHASE_RUNNING);
  b.set_step_index(1);
  b.set_step_count(2);
  b.set_step_name("build");
  b.set_attempt(1);
  EXPECT_EQ(StatusLine(b), "==> RUNNING step 1/2 build");
}

TEST(StatusLine, FailedNamesStepAndExitCodeAndLaterAttempt) {
  Build b;
  b.set_state(freeagent::v1::JOB_STATE_FAILED);
  b.set_failed_step("test");
  b.set_exit_code(7);
  b.set_attempt(2);
  EXPECT_EQ(StatusLine(b), "==> FAILED: step test exited with 7 (attempt 2)");
}

TEST(StatusLine, ErrorCarriesMessage) {
  Build b;
  b.set_state(freeagent::v1::JOB_STATE_ERROR);
  b.set_error("worker lost");
  EXPECT_EQ(StatusLine(b), "==> ERROR: worker lost");
}

TEST(StatusLineTracker, RepeatsNothingUntilSomethingVisibleChanges) {
  StatusLineTracker tracker;
  Build b;
  b.set_state(freeagent::v1::JOB_STATE_QUEUED);
  EXPECT_EQ(tracker.Next(b), "==> QUEUED");
  b.set_log_size(100);  // not part of the line
  EXPECT_EQ(tracker.Next(b), "");
  b.set_state(freeagent::v1::JOB_STATE_RUNNING);
  b.set_phase(freeagent::v1::PHASE_PREPARING);
  EXPECT_EQ(tracker.Next(b), "==> RUNNING PREPARING");
}

TEST(StatusLineTracker, ShowsEachNoteOnceAndTheLastNoteBeforeTheOutcome) {
  StatusLineTracker tracker;
  Build b;
  b.set_attempt(1);
  b.set_state(freeagent::v1::JOB_STATE_RUNNING);
  b.set_phase(freeagent::v1::PHASE_COLLECTING_ARTIFACTS);
  EXPECT_THAT(tracker.Lines(b), ::testing::ElementsAre("==> RUNNING COLLECTING_ARTIFACTS"));
  b.set_message("warning: artifact dist/x is a symlink; skipped");
  EXPECT_THAT(tracker.Lines(b), ::testing::ElementsAre("==> warning: artifact dist/x is a symlink; skipped"));
  EXPECT_THAT(tracker.Lines(b), ::testing::IsEmpty());
  b.set_phase(freeagent::v1::PHASE_CLEANING_UP);
  b.set_message("cleaning up");
  EXPECT_THAT(tracker.Lines(b), ::testing::ElementsAre("==> RUNNING CLEANING_UP", "==> cleaning up"));
  b.set_state(freeagent::v1::JOB_STATE_SUCCEEDED);
  b.set_message("build succeeded");
  EXPECT_THAT(tracker.Lines(b), ::testing::ElementsAre("==> build succeeded", "==> SUCCEEDED"));
}

TEST(FormatBuildDetails, ShowsTheLatestNoteWhileRunningAndTheEventTimeline) {
  Build b;
  b.set_id("b-0123456789ab");
  b.set_state(freeagent::v1::JOB_STATE_RUNNING);
  b.set_attempt(1);
  b.set_message("source abc (10 bytes)");
  auto* e = b.add_events();
  e->set_state(freeagent::v1::JOB_STATE_RUNNING);
  e->set_phase(freeagent::v1::PHASE_PREPARING);
  e->set_attempt(1);
  e->set_message("job b-0123456789ab attempt 1 on w1 (local driver)");
  std::string text = FormatBuildDetails(b);
  EXPECT_THAT(text, HasSubstr("note:      source abc (10 bytes)\n"));
  EXPECT_THAT(text, HasSubstr("events:\n"));
  EXPECT_THAT(text, HasSubstr("#1  RUNNING PREPARING: job b-0123456789ab attempt 1 on w1 (local driver)\n"));
  b.set_state(freeagent::v1::JOB_STATE_SUCCEEDED);
  EXPECT_THAT(FormatBuildDetails(b), ::testing::Not(HasSubstr("note:")));
}

TEST(FormatDuration, PicksUnits) {
  EXPECT_EQ(FormatDuration(850), "850ms");
  EXPECT_EQ(FormatDuration(12300), "12.3s");
  EXPECT_EQ(FormatDuration(245000), "4m05s");
  EXPECT_EQ(FormatDuration(7380000), "2h03m");
}

TEST(ParseState, AcceptsShortAndFullNamesAnyCase) {
  EXPECT_EQ(*ParseState("running"), freeagent::v1::JOB_STATE_RUNNING);
  EXPECT_EQ(*ParseState("TIMED_OUT"), freeagent::v1::JOB_STATE_TIMED_OUT);
  EXPECT_EQ(*ParseState("JOB_STATE_QUEUED"), freeagent::v1::JOB_STATE_QUEUED);
  EXPECT_EQ(ParseState("sleeping").status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(ParseState("unspecified").status().code(), absl::StatusCode::kInvalidArgument);
}

TEST(FormatBuildDetails, ShowsPhasesWithDurationsAndArtifacts) {
  Build b;
  b.set_id("b-0123456789ab");
  b.set_state(freeagent::v1::JOB_STATE_SUCCEEDED);
  b.set_worker_id("w1");
  b.set_attempt(1);
  auto* p = b.add_phases();
  p->set_phase(freeagent::v1::PHASE_RUNNING);
  p->set_duration_ms(1500);
  auto* a = b.add_artifacts();
  a->set_name("hello-1.0.tar.gz");
  a->set_size(2048);
  a->set_sha256(std::string(64, 'a'));
  std::string text = FormatBuildDetails(b);
  EXPECT_THAT(text, HasSubstr("b-0123456789ab"));
  EXPECT_THAT(text, HasSubstr("SUCCEEDED"));
  EXPECT_THAT(text, HasSubstr("RUNNING"));
  EXPECT_THAT(text, HasSubstr("1.5s"));
  EXPECT_THAT(text, HasSubstr("hello-1.0.tar.gz"));
  EXPECT_THAT(text, HasSubstr(std::string(64, 'a')));
}

TEST(DescribeArtifact, AppProfileZipErrorAndExpiryAsLines) {
  freeagent::v1::ArtifactInfo a;
  a.set_name("Example.ipa");
  auto& m = *a.mutable_metadata();
  m["kind"] = "ipa";
  m["bundle_id"] = "com.example.app";
  m["short_version"] = "2.4.1";
  m["build"] = "417";
  m["minimum_os"] = "15.0";
  m["display_name"] = "Example App";
  m["profile_name"] = "Example App Store";
  m["profile_kind"] = "app-store";
  m["profile_team_id"] = "ABCDE12345";
  m["profile_uuid"] = "6A2F3C1E-9B4D-4E8A-A1F0-3C5D7E9B1A20";
  m["profile_expires"] = "2030-01-01T00:00:00Z";
  m["entries"] = "5";
  m["uncompressed_bytes"] = "2048";
  EXPECT_THAT(DescribeArtifact(a),
              ::testing::ElementsAre(
                  "app: com.example.app 2.4.1 (417), minimum iOS 15.0, \"Example App\"",
                  "profile: \"Example App Store\" app-store, team ABCDE12345, UUID "
                  "6A2F3C1E-9B4D-4E8A-A1F0-3C5D7E9B1A20, expires 2030-01-01T00:00:00Z",
                  ::testing::StartsWith("ipa: 5 entries, 2")));
  freeagent::v1::ArtifactInfo bad;
  bad.set_description_error("not a readable zip: truncated");
  bad.set_expired_unix_ms(1700000000000);
  auto lines = DescribeArtifact(bad);
  ASSERT_EQ(lines.size(), 2u);
  EXPECT_EQ(lines[0], "not described: not a readable zip: truncated");
  EXPECT_THAT(lines[1], HasSubstr("removed by retention at "));
  Build b;
  *b.add_artifacts() = a;
  EXPECT_THAT(FormatBuildDetails(b), HasSubstr("    app: com.example.app 2.4.1 (417)"));
}

TEST(FormatGarbage, ListsItemsAndSaysWhetherItWasApplied) {
  freeagent::v1::CollectGarbageResponse r;
  auto* item = r.add_items();
  item->set_build_id("b-1");
  item->set_name("a.ipa");
  item->set_size(100);
  item->set_reason("older than 30 days");
  r.set_removed_bytes(100);
  r.set_retention_days(30);
  std::string dry = FormatGarbage(r);
  EXPECT_THAT(dry, HasSubstr("b-1"));
  EXPECT_THAT(dry, HasSubstr("older than 30 days"));
  EXPECT_THAT(dry, HasSubstr("would remove 1 artifact(s)"));
  EXPECT_THAT(dry, HasSubstr("--apply"));
  r.set_applied(true);
  EXPECT_THAT(FormatGarbage(r), HasSubstr("removed 1 artifact(s)"));
}

TEST(FormatGarbage, ListsStalePartialUploadsAndUnreferencedBlobs) {
  freeagent::v1::CollectGarbageResponse r;
  r.set_partial_upload_max_age_hours(24);
  auto* partial = r.add_partial_uploads();
  partial->set_key("upload-0123");
  partial->set_size(2048);
  auto* blob = r.add_unreferenced_blobs();
  blob->set_key("d1d1");
  blob->set_size(1024);
  std::string dry = FormatGarbage(r);
  EXPECT_THAT(dry, HasSubstr("partial upload   upload-0123"));
  EXPECT_THAT(dry, HasSubstr("unreferenced     d1d1"));
  EXPECT_THAT(dry, HasSubstr("would remove 0 artifact(s)"));
  EXPECT_THAT(dry, HasSubstr("1 partial upload(s) and 1 unreferenced blob(s), 3.1 kB, unused for over 24 h"));
  EXPECT_THAT(dry, HasSubstr("--apply"));
  r.set_applied(true);
  EXPECT_THAT(FormatGarbage(r), Not(HasSubstr("--apply")));
}

TEST(FormatGarbage, CountsBuildInputsApartFromArtifacts) {
  freeagent::v1::CollectGarbageResponse r;
  auto* item = r.add_items();
  item->set_build_id("b-1");
  item->set_name("source archive");
  item->set_kind("source");
  item->set_size(100);
  item->set_reason("older than 7 days");
  r.set_removed_bytes(100);
  r.set_input_retention_days(7);
  std::string dry = FormatGarbage(r);
  EXPECT_THAT(dry, HasSubstr("source archive"));
  EXPECT_THAT(dry, HasSubstr("would remove 0 artifact(s) and 1 build input(s)"));
  EXPECT_THAT(dry, HasSubstr("build inputs 7 days"));
}

TEST(FormatBuildDetails, NamesTheInputsRetentionRemoved) {
  Build b;
  b.set_id("b-1");
  b.set_state(freeagent::v1::JOB_STATE_SUCCEEDED);
  b.mutable_spec()->set_source_digest("s1");
  b.mutable_spec()->mutable_signing()->set_p12_digest("p1");
  b.mutable_spec()->mutable_signing()->add_profile_digests("m1");
  (*b.mutable_removed_inputs())["s1"] = 1'900'000'000'000;
  (*b.mutable_removed_inputs())["m1"] = 1'900'000'000'000;
  std::string out = FormatBuildDetails(b);
  EXPECT_THAT(out, HasSubstr("inputs:    source archive, provisioning profile 1 removed by retention at "));
  EXPECT_THAT(out, Not(HasSubstr("P12")));
  b.clear_removed_inputs();
  EXPECT_THAT(FormatBuildDetails(b), Not(HasSubstr("inputs:")));
}

TEST(ToJson, UsesProtoFieldNamesOnOneLine) {
  Build b;
  b.set_id("b-1");
  b.set_log_size(5);
  std::string json = ToJson(b);
  EXPECT_THAT(json, HasSubstr("\"id\":\"b-1\""));
  EXPECT_THAT(json, HasSubstr("\"log_size\""));
  EXPECT_EQ(json.find('\n'), std::string::npos);
}

}  // namespace
}  // namespace freeagent::cli
