#include "tests/support/test_client.h"

#include <thread>

#include <grpcpp/client_context.h>
#include <grpcpp/create_channel.h>
#include <grpcpp/security/credentials.h>
#include <grpcpp/support/channel_arguments.h>

#include "absl/strings/str_cat.h"
#include "common/archive.h"
#include "common/fs.h"
#include "common/sha256.h"
#include "common/status_macros.h"
#include "proto/grpc_status.h"

namespace freeagent::testing {
namespace {

using freeagent::proto::FromGrpcStatus;
using freeagent::v1::Build;
using Clock = std::chrono::steady_clock;

constexpr size_t kChunk = 1024 * 1024;

void Deadline(grpc::ClientContext* context, int seconds = 20) {
  context->set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(seconds));
}

}  // namespace

freeagent::v1::JobSpec MakeSpec(const std::string& source_digest,
                                const std::vector<std::pair<std::string, std::string>>& steps) {
  freeagent::v1::JobSpec spec;
  spec.set_name("e2e");
  spec.set_source_digest(source_digest);
  for (const auto& [name, run] : steps) {
    auto* step = spec.add_steps();
    step->set_name(name);
    step->set_run(run);
  }
  return spec;
}

bool IsTerminal(freeagent::v1::JobState state) {
  return state == freeagent::v1::JOB_STATE_SUCCEEDED || state == freeagent::v1::JOB_STATE_FAILED ||
         state == freeagent::v1::JOB_STATE_CANCELLED || state == freeagent::v1::JOB_STATE_TIMED_OUT ||
         state == freeagent::v1::JOB_STATE_ERROR;
}

TestClient::TestClient(const std::string& address) { Connect(address); }

void TestClient::Connect(const std::string& address) {
  grpc::ChannelArguments args;
  args.SetMaxReceiveMessageSize(8 * 1024 * 1024);
  args.SetMaxSendMessageSize(8 * 1024 * 1024);
  channel_ = grpc::CreateCustomChannel(address, grpc::InsecureChannelCredentials(), args);
  builds_ = freeagent::v1::BuildService::NewStub(channel_);
  blobs_ = freeagent::v1::BlobService::NewStub(channel_);
  fleet_ = freeagent::v1::FleetService::NewStub(channel_);
}

absl::StatusOr<std::string> TestClient::UploadBytes(const std::string& bytes) {
  std::string digest = Sha256Hex(bytes);
  grpc::ClientContext context;
  Deadline(&context, 60);
  freeagent::v1::BlobInfo info;
  auto writer = blobs_->Upload(&context, &info);
  freeagent::v1::UploadRequest request;
  request.mutable_header()->set_digest(digest);
  request.mutable_header()->set_size(bytes.size());
  bool ok = writer->Write(request);
  for (size_t offset = 0; ok && offset < bytes.size(); offset += kChunk) {
    request.Clear();
    request.set_data(bytes.substr(offset, kChunk));
    ok = writer->Write(request);
  }
  writer->WritesDone();
  RETURN_IF_ERROR(FromGrpcStatus(writer->Finish()));
  return digest;
}

absl::StatusOr<std::string> TestClient::UploadDirectory(const std::string& dir) {
  std::string archive = dir + ".source.tar.gz";
  RETURN_IF_ERROR(PackDirectory(dir, archive).status());
  ASSIGN_OR_RETURN(std::string bytes, ReadFile(archive));
  return UploadBytes(bytes);
}

absl::StatusOr<std::string> TestClient::UploadTrivialSource(const std::string& scratch_dir) {
  std::string dir = scratch_dir + "/trivial-source";
  RETURN_IF_ERROR(MakeDirs(dir));
  RETURN_IF_ERROR(WriteFileAtomic(dir + "/README", "a source for end-to-end tests\n"));
  return UploadDirectory(dir);
}

absl::StatusOr<Build> TestClient::Submit(const freeagent::v1::JobSpec& spec) {
  grpc::ClientContext context;
  Deadline(&context);
  freeagent::v1::SubmitRequest request;
  *request.mutable_spec() = spec;
  Build build;
  RETURN_IF_ERROR(FromGrpcStatus(builds_->Submit(&context, request, &build)));
  return build;
}

absl::StatusOr<Build> TestClient::Get(const std::string& id) {
  grpc::ClientContext context;
  Deadline(&context);
  freeagent::v1::GetBuildRequest request;
  request.set_id(id);
  Build build;
  RETURN_IF_ERROR(FromGrpcStatus(builds_->Get(&context, request, &build)));
  return build;
}

absl::StatusOr<Build> TestClient::Cancel(const std::string& id) {
  grpc::ClientContext context;
  Deadline(&context);
  freeagent::v1::CancelBuildRequest request;
  request.set_id(id);
  request.set_reason("cancelled by test");
  Build build;
  RETURN_IF_ERROR(FromGrpcStatus(builds_->Cancel(&context, request, &build)));
  return build;
}

absl::StatusOr<std::vector<Build>> TestClient::List() {
  grpc::ClientContext context;
  Deadline(&context);
  freeagent::v1::ListBuildsRequest request;
  request.set_page_size(1000);
  freeagent::v1::ListBuildsResponse response;
  RETURN_IF_ERROR(FromGrpcStatus(builds_->List(&context, request, &response)));
  return std::vector<Build>(response.builds().begin(), response.builds().end());
}

absl::StatusOr<std::vector<freeagent::v1::WorkerInfo>> TestClient::Workers() {
  grpc::ClientContext context;
  Deadline(&context);
  freeagent::v1::ListWorkersResponse response;
  RETURN_IF_ERROR(FromGrpcStatus(fleet_->ListWorkers(&context, {}, &response)));
  return std::vector<freeagent::v1::WorkerInfo>(response.workers().begin(), response.workers().end());
}

absl::StatusOr<Build> TestClient::WaitFor(const std::string& id,
                                          const std::function<bool(const Build&)>& done,
                                          std::chrono::milliseconds timeout) {
  auto until = Clock::now() + timeout;
  Build last;
  for (;;) {
    ASSIGN_OR_RETURN(last, Get(id));
    if (done(last)) return last;
    if (Clock::now() >= until) {
      return absl::DeadlineExceededError(absl::StrCat("build ", id, " still ", last.ShortDebugString()));
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
  }
}

absl::StatusOr<Build> TestClient::WaitForTerminal(const std::string& id,
                                                  std::chrono::milliseconds timeout) {
  return WaitFor(id, [](const Build& b) { return IsTerminal(b.state()); }, timeout);
}

absl::Status TestClient::WaitForWorkers(size_t count, std::chrono::milliseconds timeout) {
  auto until = Clock::now() + timeout;
  for (;;) {
    absl::StatusOr<std::vector<freeagent::v1::WorkerInfo>> workers = Workers();
    size_t online = 0;
    if (workers.ok()) {
      for (const auto& w : *workers) online += w.state() == freeagent::v1::WORKER_STATE_ONLINE;
      if (online >= count) return absl::OkStatus();
    }
    if (Clock::now() >= until) {
      return absl::DeadlineExceededError(absl::StrCat("only ", online, " of ", count,
                                                      " workers online: ", workers.status().ToString()));
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
  }
}

absl::StatusOr<std::string> TestClient::ReadLog(const std::string& id, uint64_t offset) {
  grpc::ClientContext context;
  Deadline(&context, 120);
  freeagent::v1::WatchRequest request;
  request.set_id(id);
  request.set_log_offset(offset);
  auto reader = builds_->Watch(&context, request);
  freeagent::v1::WatchEvent event;
  std::string log;
  uint64_t next = offset;
  uint32_t attempt = 0;
  absl::Status problem;
  while (reader->Read(&event)) {
    if (!event.has_log()) continue;
    const auto& data = event.log();
    if (attempt != 0 && data.attempt() != attempt) {
      problem = absl::InternalError(absl::StrCat("attempt changed from ", attempt, " to ", data.attempt()));
      break;
    }
    attempt = data.attempt();
    if (data.offset() != next) {
      problem = absl::InternalError(absl::StrCat("log chunk at offset ", data.offset(), ", expected ", next));
      break;
    }
    log += data.data();
    next += data.data().size();
  }
  if (!problem.ok()) {
    context.TryCancel();
    reader->Finish().ok();
    return problem;
  }
  RETURN_IF_ERROR(FromGrpcStatus(reader->Finish()));
  return log;
}

absl::StatusOr<std::string> TestClient::DownloadBlob(const std::string& digest, uint64_t offset) {
  grpc::ClientContext context;
  Deadline(&context, 60);
  freeagent::v1::DownloadRequest request;
  request.set_digest(digest);
  request.set_offset(offset);
  auto reader = blobs_->Download(&context, request);
  freeagent::v1::DownloadChunk chunk;
  std::string bytes;
  while (reader->Read(&chunk)) bytes += chunk.data();
  RETURN_IF_ERROR(FromGrpcStatus(reader->Finish()));
  return bytes;
}

}  // namespace freeagent::testing
