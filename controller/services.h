// The gRPC edge of the controller: callback-API services over Controller. absl::Status is converted to
// grpc::Status only here.
#pragma once

#include "controller/auth.h"
#include "controller/controller.h"
#include "freeagent/v1/blob.grpc.pb.h"
#include "freeagent/v1/build.grpc.pb.h"
#include "freeagent/v1/fleet.grpc.pb.h"
#include "freeagent/v1/worker.grpc.pb.h"

namespace freeagent::controller {

// Worker streams: Hello first, then heartbeats, progress, logs and results; see worker.proto.
// A streaming reactor that ends the call at once with `status` (a refused call); deletes itself.
template <typename Reactor>
class RefusedCall final : public Reactor {
 public:
  explicit RefusedCall(const grpc::Status& status) { this->Finish(status); }
  void OnDone() override { delete this; }
};

class WorkerServiceImpl final : public v1::WorkerService::CallbackService {
 public:
  WorkerServiceImpl(Controller* controller, const Authorizer* auth) : controller_(controller), auth_(auth) {}
  grpc::ServerBidiReactor<v1::WorkerMessage, v1::ControllerMessage>* Connect(
      grpc::CallbackServerContext* context) override;

 private:
  Controller* controller_;
  const Authorizer* auth_;
};

class BuildServiceImpl final : public v1::BuildService::CallbackService {
 public:
  BuildServiceImpl(Controller* controller, const Authorizer* auth) : controller_(controller), auth_(auth) {}
  grpc::ServerUnaryReactor* Submit(grpc::CallbackServerContext* context, const v1::SubmitRequest* request,
                                   v1::Build* response) override;
  grpc::ServerUnaryReactor* Get(grpc::CallbackServerContext* context, const v1::GetBuildRequest* request,
                                v1::Build* response) override;
  grpc::ServerUnaryReactor* List(grpc::CallbackServerContext* context, const v1::ListBuildsRequest* request,
                                 v1::ListBuildsResponse* response) override;
  grpc::ServerWriteReactor<v1::WatchEvent>* Watch(grpc::CallbackServerContext* context,
                                                  const v1::WatchRequest* request) override;
  grpc::ServerUnaryReactor* Cancel(grpc::CallbackServerContext* context,
                                   const v1::CancelBuildRequest* request, v1::Build* response) override;
  grpc::ServerUnaryReactor* CollectGarbage(grpc::CallbackServerContext* context,
                                           const v1::CollectGarbageRequest* request,
                                           v1::CollectGarbageResponse* response) override;

 private:
  Controller* controller_;
  const Authorizer* auth_;
};

class FleetServiceImpl final : public v1::FleetService::CallbackService {
 public:
  FleetServiceImpl(Controller* controller, const Authorizer* auth) : controller_(controller), auth_(auth) {}
  grpc::ServerUnaryReactor* ListWorkers(grpc::CallbackServerContext* context,
                                        const v1::ListWorkersRequest* request,
                                        v1::ListWorkersResponse* response) override;
  grpc::ServerUnaryReactor* Drain(grpc::CallbackServerContext* context, const v1::DrainRequest* request,
                                  v1::WorkerInfo* response) override;

 private:
  Controller* controller_;
  const Authorizer* auth_;
};

class BlobServiceImpl final : public v1::BlobService::CallbackService {
 public:
  BlobServiceImpl(BlobStore* blobs, const Authorizer* auth) : blobs_(blobs), auth_(auth) {}
  grpc::ServerReadReactor<v1::UploadRequest>* Upload(grpc::CallbackServerContext* context,
                                                     v1::BlobInfo* response) override;
  grpc::ServerWriteReactor<v1::DownloadChunk>* Download(grpc::CallbackServerContext* context,
                                                        const v1::DownloadRequest* request) override;
  grpc::ServerUnaryReactor* Stat(grpc::CallbackServerContext* context, const v1::StatRequest* request,
                                 v1::BlobInfo* response) override;

 private:
  BlobStore* blobs_;
  const Authorizer* auth_;
};

}  // namespace freeagent::controller
