// A minimal in-process controller for worker tests: WorkerService (answers Hello with Welcome, stores
// log bytes at the committed offset and acks them, acks results) and an in-memory BlobService.
// Tests script it: send Assign/Cancel, break the stream, choose directives.
#pragma once

#include <condition_variable>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <set>
#include <string>
#include <vector>

#include <grpcpp/server.h>
#include <grpcpp/server_builder.h>

#include "common/sha256.h"
#include "freeagent/v1/blob.grpc.pb.h"
#include "freeagent/v1/worker.grpc.pb.h"

namespace freeagent::node::testing {

class FakeController final : public freeagent::v1::WorkerService::Service,
                             public freeagent::v1::BlobService::Service {
 public:
  using WM = freeagent::v1::WorkerMessage;
  using CM = freeagent::v1::ControllerMessage;

  // Starts on 127.0.0.1:0.
  FakeController() {
    grpc::ServerBuilder builder;
    builder.AddListeningPort("127.0.0.1:0", grpc::InsecureServerCredentials(), &port_);
    builder.SetMaxReceiveMessageSize(8 << 20);
    builder.SetMaxSendMessageSize(8 << 20);
    builder.RegisterService(static_cast<freeagent::v1::WorkerService::Service*>(this));
    builder.RegisterService(static_cast<freeagent::v1::BlobService::Service*>(this));
    server_ = builder.BuildAndStart();
  }
  ~FakeController() override { Shutdown(); }

  void Shutdown() {
    if (!server_) return;
    BreakStream();
    server_->Shutdown(std::chrono::system_clock::now() + std::chrono::seconds(2));
    server_.reset();
  }

  std::string address() const { return "127.0.0.1:" + std::to_string(port_); }

  grpc::Status Connect(grpc::ServerContext* ctx, grpc::ServerReaderWriter<CM, WM>* stream) override {
    {
      std::lock_guard<std::mutex> lock(mu_);
      ctx_ = ctx;
      stream_ = stream;
      ++streams_;
    }
    WM msg;
    while (stream->Read(&msg)) Handle(msg);
    std::lock_guard<std::mutex> lock(mu_);
    if (stream_ == stream) {
      stream_ = nullptr;
      ctx_ = nullptr;
    }
    cv_.notify_all();
    return grpc::Status::OK;
  }

  // BlobService, in memory.
  grpc::Status Upload(grpc::ServerContext*, grpc::ServerReader<freeagent::v1::UploadRequest>* reader,
                      freeagent::v1::BlobInfo* reply) override {
    freeagent::v1::UploadRequest req;
    if (!reader->Read(&req) || !req.has_header()) return {grpc::StatusCode::INVALID_ARGUMENT, "header first"};
    freeagent::v1::UploadHeader header = req.header();
    std::string data;
    while (reader->Read(&req)) data += req.data();
    if (Sha256Hex(data) != header.digest() || data.size() != header.size()) {
      return {grpc::StatusCode::DATA_LOSS, "digest mismatch"};
    }
    std::lock_guard<std::mutex> lock(mu_);
    blobs_[header.digest()] = data;
    reply->set_digest(header.digest());
    reply->set_size(data.size());
    reply->set_exists(true);
    return grpc::Status::OK;
  }
  grpc::Status Download(grpc::ServerContext*, const freeagent::v1::DownloadRequest* req,
                        grpc::ServerWriter<freeagent::v1::DownloadChunk>* writer) override {
    std::string data;
    {
      std::lock_guard<std::mutex> lock(mu_);
      auto it = blobs_.find(req->digest());
      if (it == blobs_.end()) return {grpc::StatusCode::NOT_FOUND, "blob " + req->digest() + " not found"};
      data = it->second;
    }
    for (size_t off = req->offset(); off < data.size(); off += 1 << 20) {
      freeagent::v1::DownloadChunk chunk;
      chunk.set_offset(off);
      chunk.set_data(data.substr(off, 1 << 20));
      if (!writer->Write(chunk)) break;
    }
    return grpc::Status::OK;
  }
  grpc::Status Stat(grpc::ServerContext*, const freeagent::v1::StatRequest* req,
                    freeagent::v1::BlobInfo* reply) override {
    std::lock_guard<std::mutex> lock(mu_);
    reply->set_digest(req->digest());
    auto it = blobs_.find(req->digest());
    if (it != blobs_.end()) {
      reply->set_exists(true);
      reply->set_size(it->second.size());
    }
    return grpc::Status::OK;
  }

  std::string PutBlob(const std::string& data) {
    std::lock_guard<std::mutex> lock(mu_);
    std::string digest = Sha256Hex(data);
    blobs_[digest] = data;
    return digest;
  }
  std::string Blob(const std::string& digest) {
    std::lock_guard<std::mutex> lock(mu_);
    return blobs_.count(digest) ? blobs_[digest] : "";
  }

  // Sends to the worker on the current stream. False without one.
  bool Send(const CM& msg) {
    std::lock_guard<std::mutex> lock(mu_);
    return stream_ != nullptr && stream_->Write(msg);
  }
  bool Assign(const freeagent::v1::BuildJob& job) {
    CM msg;
    *msg.mutable_assign()->mutable_job() = job;
    return Send(msg);
  }

  // Ends the current stream from the server side, as a dropped connection would.
  void BreakStream() {
    std::lock_guard<std::mutex> lock(mu_);
    if (ctx_ != nullptr) ctx_->TryCancel();
  }

  // Waits until the current stream has ended (its last message handled) and no other is open.
  bool WaitStreamGone(std::chrono::milliseconds timeout) {
    std::unique_lock<std::mutex> lock(mu_);
    return cv_.wait_for(lock, timeout, [this] { return stream_ == nullptr; });
  }

  // Waits until `pred` (called under the lock) holds.
  bool WaitFor(const std::function<bool()>& pred, std::chrono::milliseconds timeout) {
    std::unique_lock<std::mutex> lock(mu_);
    return cv_.wait_for(lock, timeout, pred);
  }

  // Attempts the next Welcome abandons.
  void AbandonOnNextHello(const std::string& job_id, uint32_t attempt) {
    std::lock_guard<std::mutex> lock(mu_);
    abandon_.insert(job_id + "#" + std::to_string(attempt));
  }
  void set_ack_results(bool ack) {
    std::lock_guard<std::mutex> lock(mu_);
    ack_results_ = ack;
  }
  // Off: log chunks are stored but not acknowledged (until the next Hello says what is committed).
  void set_ack_logs(bool ack) {
    std::lock_guard<std::mutex> lock(mu_);
    ack_logs_ = ack;
  }

  // Guarded by the lock WaitFor holds; read them inside predicates or after a WaitFor.
  std::vector<freeagent::v1::Hello> hellos;
  std::vector<WM> messages;
  std::vector<freeagent::v1::JobResult> results;
  std::map<std::string, std::string> logs;  // "job#attempt" -> committed bytes
  int heartbeats = 0;
  int streams() {
    std::lock_guard<std::mutex> lock(mu_);
    return streams_;
  }
  std::mutex& mu() { return mu_; }

 private:
  void Handle(const WM& msg) {
    std::lock_guard<std::mutex> lock(mu_);
    messages.push_back(msg);
    CM reply;
    bool send = false;
    switch (msg.kind_case()) {
      case WM::kHello: {
        hellos.push_back(msg.hello());
        freeagent::v1::Welcome* w = reply.mutable_welcome();
        w->set_heartbeat_interval_ms(200);
        w->set_liveness_timeout_ms(5000);
        for (const auto& r : msg.hello().running()) {
          std::string key = r.job_id() + "#" + std::to_string(r.attempt());
          freeagent::v1::JobDirective* d = w->add_jobs();
          d->set_job_id(r.job_id());
          d->set_attempt(r.attempt());
          if (abandon_.count(key)) {
            d->set_action(freeagent::v1::JobDirective::ACTION_ABANDON);
          } else {
            d->set_action(freeagent::v1::JobDirective::ACTION_CONTINUE);
            d->set_committed_offset(logs[key].size());
          }
        }
        send = true;
        break;
      }
      case WM::kLog: {
        const auto& c = msg.log();
        std::string& log = logs[c.job_id() + "#" + std::to_string(c.attempt())];
        uint64_t end = c.offset() + c.data().size();
        if (c.offset() <= log.size() && end > log.size()) log += c.data().substr(log.size() - c.offset());
        freeagent::v1::LogAck* ack = reply.mutable_log_ack();
        ack->set_job_id(c.job_id());
        ack->set_attempt(c.attempt());
        ack->set_committed_offset(log.size());
        send = ack_logs_;
        break;
      }
      case WM::kResult:
        results.push_back(msg.result());
        if (ack_results_) {
          reply.mutable_result_ack()->set_job_id(msg.result().job_id());
          reply.mutable_result_ack()->set_attempt(msg.result().attempt());
          send = true;
        }
        break;
      case WM::kHeartbeat:
        ++heartbeats;
        break;
      default:
        break;
    }
    if (send && stream_ != nullptr) stream_->Write(reply);
    cv_.notify_all();
  }

  int port_ = 0;
  std::unique_ptr<grpc::Server> server_;
  std::mutex mu_;
  std::condition_variable cv_;
  grpc::ServerContext* ctx_ = nullptr;
  grpc::ServerReaderWriter<CM, WM>* stream_ = nullptr;
  int streams_ = 0;
  bool ack_results_ = true;
  bool ack_logs_ = true;
  std::set<std::string> abandon_;
  std::map<std::string, std::string> blobs_;
};

}  // namespace freeagent::node::testing
