// Test support for the controller: a real ControllerServer on 127.0.0.1:0 over a temp data dir
// (RestartServer keeps its port), client stubs, blob uploads (whole, by digest, and streaming), Watch
// collection, file ages, and a scripted fake worker on a real gRPC stream.
#pragma once

#include <fcntl.h>
#include <sys/stat.h>

#include <cerrno>
#include <chrono>
#include <condition_variable>
#include <cstring>
#include <deque>
#include <functional>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <thread>
#include <vector>

#include <grpcpp/grpcpp.h>
#include <gtest/gtest.h>

#include "common/archive.h"
#include "common/fs.h"
#include "common/sha256.h"
#include "controller/server.h"
#include "freeagent/v1/blob.grpc.pb.h"
#include "freeagent/v1/build.grpc.pb.h"
#include "freeagent/v1/fleet.grpc.pb.h"
#include "freeagent/v1/worker.grpc.pb.h"

namespace freeagent::controller::testing {

using namespace std::chrono_literals;

// A worker stream driven by the test: Send() writes, Next() waits for what the controller sent.
class FakeWorker {
 public:
  explicit FakeWorker(std::shared_ptr<grpc::Channel> channel) : stub_(v1::WorkerService::NewStub(channel)) {
    stream_ = stub_->Connect(&context_);
    reader_ = std::thread([this] {
      v1::ControllerMessage msg;
      while (stream_->Read(&msg)) {
        std::lock_guard<std::mutex> lock(mu_);
        inbox_.push_back(msg);
        cv_.notify_all();
      }
      std::lock_guard<std::mutex> lock(mu_);
      ended_ = true;
      cv_.notify_all();
    });
  }

  ~FakeWorker() {
    context_.TryCancel();
    if (reader_.joinable()) reader_.join();
    if (!finished_) stream_->Finish().IgnoreError();
  }

  bool Send(const v1::WorkerMessage& msg) { return stream_->Write(msg); }

  v1::Welcome Hello(const std::string& id, std::map<std::string, std::string> labels = {},
                    uint32_t slots = 2, std::vector<v1::RunningJob> running = {}) {
    v1::WorkerMessage msg;
    v1::Hello* h = msg.mutable_hello();
    h->set_worker_id(id);
    h->set_name(id);
    h->set_version("test");
    h->set_slots(slots);
    for (auto& [k, v] : labels) (*h->mutable_labels())[k] = v;
    for (auto& r : running) *h->add_running() = r;
    EXPECT_TRUE(Send(msg));
    auto welcome = Next([](const v1::ControllerMessage& m) { return m.has_welcome(); });
    EXPECT_TRUE(welcome.has_value()) << "no welcome";
    return welcome ? welcome->welcome() : v1::Welcome();
  }

  // The first message (in order, consuming earlier ones) matching `pred`, or nullopt on timeout.
  std::optional<v1::ControllerMessage> Next(std::function<bool(const v1::ControllerMessage&)> pred,
                                            std::chrono::milliseconds timeout = 5s) {
    std::unique_lock<std::mutex> lock(mu_);
    auto deadline = std::chrono::steady_clock::now() + timeout;
    while (true) {
      while (!inbox_.empty()) {
        v1::ControllerMessage m = std::move(inbox_.front());
        inbox_.pop_front();
        if (pred(m)) return m;
      }
      if (ended_) return std::nullopt;
      if (cv_.wait_until(lock, deadline) == std::cv_status::timeout && inbox_.empty()) return std::nullopt;
    }
  }

  std::optional<v1::BuildJob> NextAssign(std::chrono::milliseconds timeout = 5s) {
    auto m = Next([](const v1::ControllerMessage& m) { return m.has_assign(); }, timeout);
    if (!m) return std::nullopt;
    return m->assign().job();
  }

  // Waits for a LogAck of the attempt reaching at least `offset`.
  bool WaitAck(const std::string& job, uint32_t attempt, uint64_t offset, std::chrono::milliseconds timeout = 5s) {
    return Next([&](const v1::ControllerMessage& m) {
             return m.has_log_ack() && m.log_ack().job_id() == job && m.log_ack().attempt() == attempt &&
                    m.log_ack().committed_offset() >= offset;
           },
           timeout)
        .has_value();
  }

  bool Ended(std::chrono::milliseconds timeout) {
    std::unique_lock<std::mutex> lock(mu_);
    return cv_.wait_for(lock, timeout, [this] { return ended_; });
  }

  // Waits for the controller to end the stream and returns its status.
  grpc::Status Finish() {
    if (reader_.joinable()) reader_.join();
    finished_ = true;
    return stream_->Finish();
  }

  // Message builders.
  static v1::WorkerMessage Accepted(const v1::BuildJob& j) {
    v1::WorkerMessage m;
    m.mutable_accepted()->set_job_id(j.job_id());
    m.mutable_accepted()->set_attempt(j.attempt());
    return m;
  }
  static v1::WorkerMessage Progress(const v1::BuildJob& j, v1::Phase phase, uint32_t step = 0) {
    v1::WorkerMessage m;
    v1::JobProgress* p = m.mutable_progress();
    p->set_job_id(j.job_id());
    p->set_attempt(j.attempt());
    p->set_phase(phase);
    p->set_step_index(step);
    p->set_step_count(static_cast<uint32_t>(j.spec().steps_size()));
    return m;
  }
  static v1::WorkerMessage Log(const std::string& job, uint32_t attempt, uint64_t offset, std::string data) {
    v1::WorkerMessage m;
    v1::LogChunk* c = m.mutable_log();
    c->set_job_id(job);
    c->set_attempt(attempt);
    c->set_offset(offset);
    c->set_data(std::move(data));
    return m;
  }
  static v1::WorkerMessage Result(const v1::BuildJob& j, v1::JobState outcome, uint64_t log_size) {
    v1::WorkerMessage m;
    v1::JobResult* r = m.mutable_result();
    r->set_job_id(j.job_id());
    r->set_attempt(j.attempt());
    r->set_outcome(outcome);
    r->set_log_size(log_size);
    return m;
  }

 private:
  std::unique_ptr<v1::WorkerService::Stub> stub_;
  grpc::ClientContext context_;
  std::unique_ptr<grpc::ClientReaderWriter<v1::WorkerMessage, v1::ControllerMessage>> stream_;
  std::thread reader_;
  std::mutex mu_;
  std::condition_variable cv_;
  std::deque<v1::ControllerMessage> inbox_;
  bool ended_ = false;
  bool finished_ = false;
};

struct WatchResult {
  grpc::Status status;
  std::vector<v1::Build> statuses;
  std::string log;              // bytes of the last attempt seen, from the requested offset
  std::vector<v1::LogData> chunks;
};

class ControllerTest : public ::testing::Test {
 protected:
  void SetUp() override {
    auto dir = MakePrivateTempDir("/tmp", "fa-ctl-test-");
    ASSERT_TRUE(dir.ok()) << dir.status();
    root_ = *dir;
    options_.listen = "127.0.0.1:0";
    options_.controller.data_dir = root_ + "/data";
    options_.controller.heartbeat_interval = 200ms;
    options_.controller.liveness_timeout = 30s;
    options_.controller.max_attempts = 2;
    options_.security.insecure = true;  // plaintext on loopback; security_test configures TLS and tokens
  }

  void TearDown() override {
    StopServer();
    RemoveTree(root_).IgnoreError();
  }

  void StartServer() {
    auto server = ControllerServer::Start(options_);
    ASSERT_TRUE(server.ok()) << server.status();
    server_ = std::move(*server);
    grpc::ChannelArguments args;
    args.SetMaxReceiveMessageSize(kMaxMessageBytes);
    channel_ = grpc::CreateCustomChannel("127.0.0.1:" + std::to_string(server_->port()),
                                         grpc::InsecureChannelCredentials(), args);
    builds_ = v1::BuildService::NewStub(channel_);
    fleet_ = v1::FleetService::NewStub(channel_);
    blobs_ = v1::BlobService::NewStub(channel_);
  }

  void StopServer() {
    if (server_) server_->Shutdown(1s);
    server_.reset();
  }

  // Stops the controller and starts it again on the same data dir and port, so a client holding its
  // own channel to the old one (a CLI command mid-follow) reaches the new one when it reconnects.
  void RestartServer() {
    ASSERT_TRUE(server_) << "no controller to restart";
    const std::string listen = options_.listen;
    options_.listen = "127.0.0.1:" + std::to_string(server_->port());
    StopServer();
    StartServer();
    options_.listen = listen;
  }

  // Uploads `data` whole; returns its digest.
  std::string Upload(const std::string& data) {
    const std::string digest = Sha256Hex(data);
    grpc::Status st = UploadRaw(digest, data.size(), 0, data, nullptr);
    EXPECT_TRUE(st.ok()) << st.error_message();
    return digest;
  }

  // Uploads a small valid source archive (one file `name` holding `content`); returns its digest.
  std::string UploadSource(const std::string& name = "Makefile", const std::string& content = "all:\n") {
    auto dir = MakePrivateTempDir("/tmp", "fa-src-");
    EXPECT_TRUE(dir.ok()) << dir.status();
    EXPECT_TRUE(MakeDirs(*dir + "/src").ok());
    EXPECT_TRUE(WriteFileAtomic(*dir + "/src/" + name, content).ok());
    EXPECT_TRUE(PackDirectory(*dir + "/src", *dir + "/src.tar.gz").ok());
    auto bytes = ReadFile(*dir + "/src.tar.gz");
    RemoveTree(*dir).IgnoreError();
    EXPECT_TRUE(bytes.ok()) << bytes.status();
    return Upload(bytes.ok() ? *bytes : "");
  }

  grpc::Status UploadRaw(const std::string& digest, uint64_t size, uint64_t offset, const std::string& data,
                         v1::BlobInfo* info) {
    grpc::ClientContext ctx;
    v1::BlobInfo local;
    auto writer = blobs_->Upload(&ctx, info ? info : &local);
    v1::UploadRequest req;
    req.mutable_header()->set_digest(digest);
    req.mutable_header()->set_size(size);
    req.mutable_header()->set_offset(offset);
    writer->Write(req);
    for (size_t pos = 0; pos < data.size(); pos += 1 << 20) {
      v1::UploadRequest chunk;
      chunk.set_data(data.substr(pos, 1 << 20));
      if (!writer->Write(chunk)) break;
    }
    writer->WritesDone();
    return writer->Finish();
  }

  // An upload stream kept open so a test can interleave its writes with a reader.
  struct OpenUpload {
    grpc::ClientContext ctx;
    v1::BlobInfo info;
    std::unique_ptr<grpc::ClientWriter<v1::UploadRequest>> writer;
    bool Send(const std::string& data) {
      for (size_t pos = 0; pos < data.size(); pos += 1 << 20) {
        v1::UploadRequest chunk;
        chunk.set_data(data.substr(pos, 1 << 20));
        if (!writer->Write(chunk)) return false;
      }
      return true;
    }
    // Ends with a trailer naming `digest`/`size`.
    grpc::Status End(const std::string& digest, uint64_t size) {
      v1::UploadRequest t;
      t.mutable_trailer()->set_digest(digest);
      t.mutable_trailer()->set_size(size);
      writer->Write(t);
      return End();
    }
    // Ends without a trailer (a cut stream).
    grpc::Status End() {
      writer->WritesDone();
      return writer->Finish();
    }
  };

  std::unique_ptr<OpenUpload> StartUpload(const std::string& upload_id, uint64_t offset = 0) {
    auto u = std::make_unique<OpenUpload>();
    u->writer = blobs_->Upload(&u->ctx, &u->info);
    v1::UploadRequest req;
    req.mutable_header()->set_upload_id(upload_id);
    req.mutable_header()->set_offset(offset);
    u->writer->Write(req);
    return u;
  }

  // A streaming upload of `data` from `offset`; a trailer naming `digest`/`size` unless `trailer` is false.
  grpc::Status UploadStreaming(const std::string& upload_id, uint64_t offset, const std::string& data,
                               bool trailer, const std::string& digest, uint64_t size, v1::BlobInfo* info) {
    auto upload = StartUpload(upload_id, offset);
    upload->Send(data);
    grpc::Status st = trailer ? upload->End(digest, size) : upload->End();
    if (info) *info = upload->info;
    return st;
  }

  grpc::Status Download(const std::string& digest, uint64_t offset, std::string* out) {
    grpc::ClientContext ctx;
    v1::DownloadRequest req;
    req.set_digest(digest);
    req.set_offset(offset);
    auto reader = blobs_->Download(&ctx, req);
    v1::DownloadChunk chunk;
    while (reader->Read(&chunk)) {
      EXPECT_EQ(chunk.offset(), offset + out->size());
      out->append(chunk.data());
    }
    return reader->Finish();
  }

  v1::JobSpec Spec(const std::string& source_digest) {
    v1::JobSpec spec;
    spec.set_name("test");
    spec.set_source_digest(source_digest);
    v1::Step* step = spec.add_steps();
    step->set_name("build");
    step->set_run("make");
    return spec;
  }

  absl::StatusOr<v1::Build> Submit(const v1::JobSpec& spec) {
    grpc::ClientContext ctx;
    v1::SubmitRequest req;
    *req.mutable_spec() = spec;
    v1::Build build;
    grpc::Status st = builds_->Submit(&ctx, req, &build);
    if (!st.ok()) return absl::Status(static_cast<absl::StatusCode>(st.error_code()), st.error_message());
    return build;
  }

  v1::Build Get(const std::string& id, grpc::Status* status = nullptr) {
    grpc::ClientContext ctx;
    v1::GetBuildRequest req;
    req.set_id(id);
    v1::Build build;
    grpc::Status st = builds_->Get(&ctx, req, &build);
    if (status) *status = st;
    return build;
  }

  // Polls Get until `pred` holds (the controller is event driven; polling is only the test's way to wait).
  bool WaitBuild(const std::string& id, std::function<bool(const v1::Build&)> pred,
                 std::chrono::milliseconds timeout = 5s) {
    auto deadline = std::chrono::steady_clock::now() + timeout;
    while (std::chrono::steady_clock::now() < deadline) {
      if (pred(Get(id))) return true;
      std::this_thread::sleep_for(10ms);
    }
    return false;
  }

  WatchResult Watch(const std::string& id, uint64_t offset, std::chrono::milliseconds timeout = 10s) {
    grpc::ClientContext ctx;
    ctx.set_deadline(std::chrono::system_clock::now() + timeout);
    v1::WatchRequest req;
    req.set_id(id);
    req.set_log_offset(offset);
    auto reader = builds_->Watch(&ctx, req);
    WatchResult result;
    v1::WatchEvent event;
    while (reader->Read(&event)) {
      if (event.has_status()) result.statuses.push_back(event.status());
      if (event.has_log()) {
        if (!result.chunks.empty() && result.chunks.back().attempt() != event.log().attempt()) result.log.clear();
        result.chunks.push_back(event.log());
        result.log.append(event.log().data());
      }
    }
    result.status = reader->Finish();
    return result;
  }

  std::string root_;
  ServerOptions options_;
  std::unique_ptr<ControllerServer> server_;
  std::shared_ptr<grpc::Channel> channel_;
  std::unique_ptr<v1::BuildService::Stub> builds_;
  std::unique_ptr<v1::FleetService::Stub> fleet_;
  std::unique_ptr<v1::BlobService::Stub> blobs_;
};

// Sets the modification time of `path` (how the blob store ages its files) to `unix_ms`.
inline void SetMtime(const std::string& path, int64_t unix_ms) {
  struct timespec times[2];
  times[0].tv_nsec = UTIME_OMIT;
  times[1].tv_sec = static_cast<time_t>(unix_ms / 1000);
  times[1].tv_nsec = static_cast<long>(unix_ms % 1000) * 1000000;
  ASSERT_EQ(::utimensat(AT_FDCWD, path.c_str(), times, 0), 0) << path << ": " << std::strerror(errno);
}

// Deterministic pseudo-random bytes (all 256 values occur).
inline std::string RandomBytes(size_t n, uint32_t seed = 1) {
  std::string out(n, '\0');
  uint32_t x = seed * 2654435761u + 1;
  for (size_t i = 0; i < n; ++i) {
    x ^= x << 13;
    x ^= x >> 17;
    x ^= x << 5;
    out[i] = static_cast<char>(x & 0xff);
  }
  return out;
}

}  // namespace freeagent::controller::testing
