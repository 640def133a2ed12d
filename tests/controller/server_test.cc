// The controller server also answers gRPC health checks and server reflection (so grpcurl works).
#include <grpcpp/generic/generic_stub.h>

#include <future>

#include "tests/controller/controller_fixture.h"

namespace freeagent::controller::testing {
namespace {

std::string Flatten(const grpc::ByteBuffer& buffer) {
  std::vector<grpc::Slice> slices;
  EXPECT_TRUE(buffer.Dump(&slices).ok());
  std::string out;
  for (const auto& s : slices) out.append(reinterpret_cast<const char*>(s.begin()), s.size());
  return out;
}

grpc::ByteBuffer Wrap(const std::string& bytes) {
  grpc::Slice slice(bytes);
  return grpc::ByteBuffer(&slice, 1);
}

class ServerTest : public ControllerTest {
 protected:
  void SetUp() override {
    ControllerTest::SetUp();
    StartServer();
  }
};

TEST_F(ServerTest, HealthCheckReportsServing) {
  grpc::GenericStub stub(channel_);
  grpc::ClientContext ctx;
  grpc::ByteBuffer request = Wrap("");  // HealthCheckRequest{service: ""}
  grpc::ByteBuffer response;
  std::promise<grpc::Status> done;
  stub.UnaryCall(&ctx, "/grpc.health.v1.Health/Check", grpc::StubOptions(), &request, &response,
                 [&](grpc::Status st) { done.set_value(st); });
  grpc::Status st = done.get_future().get();
  ASSERT_TRUE(st.ok()) << st.error_message();
  EXPECT_EQ(Flatten(response), std::string("\x08\x01", 2));  // status: SERVING
}

// One request, one response over the reflection stream.
class ReflectionCall : public grpc::ClientBidiReactor<grpc::ByteBuffer, grpc::ByteBuffer> {
 public:
  explicit ReflectionCall(std::string request) : request_(Wrap(request)) {}
  void Start() {
    StartWrite(&request_);
    StartRead(&response_);
    StartCall();
  }
  void OnWriteDone(bool) override { StartWritesDone(); }
  void OnReadDone(bool ok) override {
    if (ok) body_ = Flatten(response_);
  }
  void OnDone(const grpc::Status& s) override { done_.set_value(s); }
  grpc::Status Wait() { return done_.get_future().get(); }
  const std::string& body() const { return body_; }

 private:
  grpc::ByteBuffer request_;
  grpc::ByteBuffer response_;
  std::string body_;
  std::promise<grpc::Status> done_;
};

TEST_F(ServerTest, ReflectionListsTheServices) {
  grpc::GenericStub stub(channel_);
  grpc::ClientContext ctx;
  ReflectionCall call(std::string("\x3a\x01*", 3));  // ServerReflectionRequest{list_services: "*"}
  stub.PrepareBidiStreamingCall(&ctx, "/grpc.reflection.v1alpha.ServerReflection/ServerReflectionInfo",
                                grpc::StubOptions(), &call);
  call.Start();
  grpc::Status st = call.Wait();
  ASSERT_TRUE(st.ok()) << st.error_message();
  for (const char* service : {"freeagent.v1.BuildService", "freeagent.v1.WorkerService",
                              "freeagent.v1.FleetService", "freeagent.v1.BlobService"}) {
    EXPECT_NE(call.body().find(service), std::string::npos) << service;
  }
}

}  // namespace
}  // namespace freeagent::controller::testing
