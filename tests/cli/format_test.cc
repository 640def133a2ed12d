#include "cli/format.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

namespace freeagent::cli {
namespace {

using ::testing::HasSubstr;
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
