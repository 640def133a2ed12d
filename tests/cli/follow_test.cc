// FollowBuild against an in-process BuildService whose Watch replays scripted events: overlapping
// chunks, a new attempt, a gap, and stopping at a size.
#include "cli/follow.h"

#include <cstdio>
#include <mutex>
#include <vector>

#include <gmock/gmock.h>
#include <grpcpp/grpcpp.h>
#include <gtest/gtest.h>

#include "proto/channel.h"

#include "cli/client.h"

namespace freeagent::cli {
namespace {

using ::testing::ElementsAre;
using ::testing::HasSubstr;
using freeagent::v1::WatchEvent;

WatchEvent Status(freeagent::v1::JobState state, uint32_t attempt = 1) {
  WatchEvent e;
  e.mutable_status()->set_id("b-1");
  e.mutable_status()->set_state(state);
  e.mutable_status()->set_attempt(attempt);
  return e;
}

WatchEvent Note(freeagent::v1::JobState state, const std::string& message, uint32_t attempt = 1) {
  WatchEvent e = Status(state, attempt);
  e.mutable_status()->set_message(message);
  return e;
}

WatchEvent Log(uint32_t attempt, uint64_t offset, const std::string& data) {
  WatchEvent e;
  e.mutable_log()->set_attempt(attempt);
  e.mutable_log()->set_offset(offset);
  e.mutable_log()->set_data(data);
  return e;
}

class ScriptedBuilds final : public freeagent::v1::BuildService::Service {
 public:
  grpc::Status Watch(grpc::ServerContext*, const freeagent::v1::WatchRequest* request,
                     grpc::ServerWriter<WatchEvent>* writer) override {
    std::vector<WatchEvent> events;
    {
      std::lock_guard<std::mutex> lock(mu);
      offsets.push_back(request->log_offset());
      if (calls >= scripts.size()) return {grpc::StatusCode::INTERNAL, "no script"};
      events = scripts[calls++];
    }
    for (const WatchEvent& e : events) {
      if (!writer->Write(e)) break;
    }
    return grpc::Status::OK;
  }

  std::mutex mu;
  std::vector<std::vector<WatchEvent>> scripts;
  size_t calls = 0;
  std::vector<uint64_t> offsets;
};

class FollowTest : public ::testing::Test {
 protected:
  void SetUp() override {
    grpc::ServerBuilder builder;
    int port = 0;
    builder.AddListeningPort("127.0.0.1:0", grpc::InsecureServerCredentials(), &port);
    builder.RegisterService(&service_);
    server_ = builder.BuildAndStart();
    ASSERT_NE(server_, nullptr);
    stub_ = freeagent::v1::BuildService::NewStub(proto::MakeControllerChannel("127.0.0.1:" + std::to_string(port)));
    log_ = open_memstream(&log_buf_, &log_len_);
    status_ = open_memstream(&status_buf_, &status_len_);
    options_.log_out = log_;
    options_.status_out = status_;
  }
  void TearDown() override {
    server_->Shutdown();
    std::fclose(log_);
    std::fclose(status_);
    free(log_buf_);
    free(status_buf_);
  }
  std::string LogText() {
    std::fflush(log_);
    return std::string(log_buf_, log_len_);
  }
  std::string StatusText() {
    std::fflush(status_);
    return std::string(status_buf_, status_len_);
  }

  ScriptedBuilds service_;
  std::unique_ptr<grpc::Server> server_;
  std::unique_ptr<freeagent::v1::BuildService::Stub> stub_;
  FollowOptions options_;
  std::FILE* log_ = nullptr;
  std::FILE* status_ = nullptr;
  char* log_buf_ = nullptr;
  size_t log_len_ = 0;
  char* status_buf_ = nullptr;
  size_t status_len_ = 0;
};

TEST_F(FollowTest, OverlappingChunksArePrintedOnce) {
  service_.scripts = {{Status(freeagent::v1::JOB_STATE_RUNNING), Log(1, 0, "hello "),
                       Log(1, 3, "lo world"), Status(freeagent::v1::JOB_STATE_SUCCEEDED)}};
  auto build = FollowBuild(stub_.get(), "b-1", options_);
  ASSERT_TRUE(build.ok()) << build.status();
  EXPECT_EQ(build->state(), freeagent::v1::JOB_STATE_SUCCEEDED);
  EXPECT_EQ(LogText(), "hello world");
  EXPECT_THAT(StatusText(), HasSubstr("==> RUNNING"));
  EXPECT_THAT(StatusText(), HasSubstr("==> SUCCEEDED"));
}

TEST_F(FollowTest, NewAttemptRestartsTheLogAndIsAnnounced) {
  service_.scripts = {{Log(1, 0, "abc"), Log(2, 0, "xyz"),
                       Status(freeagent::v1::JOB_STATE_SUCCEEDED, 2)}};
  auto build = FollowBuild(stub_.get(), "b-1", options_);
  ASSERT_TRUE(build.ok()) << build.status();
  EXPECT_EQ(LogText(), "abcxyz");
  EXPECT_THAT(StatusText(), HasSubstr("attempt 2"));
}

TEST_F(FollowTest, NotesGoToStderrOnceEachAndNeverIntoTheLog) {
  using freeagent::v1::JOB_STATE_RUNNING;
  using freeagent::v1::JOB_STATE_SUCCEEDED;
  service_.scripts = {{Note(JOB_STATE_RUNNING, "source abc (10 bytes)"), Log(1, 0, "out\n"),
                       Note(JOB_STATE_RUNNING, "source abc (10 bytes)"),  // the same note again
                       Note(JOB_STATE_RUNNING, "step main done in 0.1 s"),
                       Note(JOB_STATE_SUCCEEDED, "build succeeded")}};
  auto build = FollowBuild(stub_.get(), "b-1", options_);
  ASSERT_TRUE(build.ok()) << build.status();
  EXPECT_EQ(LogText(), "out\n");
  // The last note of the attempt comes before its outcome.
  EXPECT_EQ(StatusText(),
            "==> RUNNING\n"
            "==> source abc (10 bytes)\n"
            "==> step main done in 0.1 s\n"
            "==> build succeeded\n"
            "==> SUCCEEDED\n");
}

TEST_F(FollowTest, ANewAttemptShowsItsNotesEvenIfTheTextRepeats) {
  using freeagent::v1::JOB_STATE_RUNNING;
  service_.scripts = {{Note(JOB_STATE_RUNNING, "source abc (10 bytes)", 1),
                       Note(JOB_STATE_RUNNING, "source abc (10 bytes)", 2),
                       Status(freeagent::v1::JOB_STATE_FAILED, 2)}};
  auto build = FollowBuild(stub_.get(), "b-1", options_);
  ASSERT_TRUE(build.ok()) << build.status();
  EXPECT_EQ(StatusText(),
            "==> RUNNING\n"
            "==> source abc (10 bytes)\n"
            "==> RUNNING (attempt 2)\n"
            "==> source abc (10 bytes)\n"
            "==> FAILED (attempt 2)\n");
}

TEST_F(FollowTest, GapMakesItWatchAgainFromWhereItIs) {
  service_.scripts = {{Log(1, 0, "abc"), Log(1, 10, "zzz")},
                      {Log(1, 3, "defghij"), Status(freeagent::v1::JOB_STATE_FAILED)}};
  auto build = FollowBuild(stub_.get(), "b-1", options_);
  ASSERT_TRUE(build.ok()) << build.status();
  EXPECT_EQ(build->state(), freeagent::v1::JOB_STATE_FAILED);
  EXPECT_EQ(LogText(), "abcdefghij");
  EXPECT_THAT(service_.offsets, ElementsAre(0u, 3u));
}

TEST_F(FollowTest, StopsAtTheRequestedSize) {
  service_.scripts = {{Status(freeagent::v1::JOB_STATE_RUNNING), Log(1, 0, "abc"), Log(1, 3, "def")}};
  options_.stop_at_log_size = 3;
  options_.stop_attempt = 1;
  options_.status = false;
  auto build = FollowBuild(stub_.get(), "b-1", options_);
  ASSERT_TRUE(build.ok()) << build.status();
  EXPECT_EQ(LogText(), "abc");
  EXPECT_EQ(StatusText(), "");
}

TEST_F(FollowTest, RpcErrorIsReturned) {
  service_.scripts = {};
  auto build = FollowBuild(stub_.get(), "b-1", options_);
  EXPECT_EQ(build.status().code(), absl::StatusCode::kInternal);
}

}  // namespace
}  // namespace freeagent::cli
