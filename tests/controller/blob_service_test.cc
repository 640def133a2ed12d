// BlobService over a real server: upload, download, stat, verification and resume.
#include <sys/stat.h>

#include "tests/controller/controller_fixture.h"

namespace freeagent::controller::testing {
namespace {

class BlobServiceTest : public ControllerTest {
 protected:
  void SetUp() override {
    ControllerTest::SetUp();
    StartServer();
  }

  v1::BlobInfo Stat(const std::string& digest, grpc::Status* status = nullptr) {
    grpc::ClientContext ctx;
    v1::StatRequest req;
    req.set_digest(digest);
    v1::BlobInfo info;
    grpc::Status st = blobs_->Stat(&ctx, req, &info);
    if (status) *status = st;
    return info;
  }
};

TEST_F(BlobServiceTest, UploadThenDownloadReturnsTheSameBytes) {
  const std::string data = RandomBytes(3 * (1 << 20) + 12345);
  const std::string digest = Upload(data);

  v1::BlobInfo info = Stat(digest);
  EXPECT_TRUE(info.exists());
  EXPECT_EQ(info.size(), data.size());

  std::string whole;
  ASSERT_TRUE(Download(digest, 0, &whole).ok());
  EXPECT_EQ(whole, data);

  std::string tail;
  ASSERT_TRUE(Download(digest, 2000000, &tail).ok());
  EXPECT_EQ(tail, data.substr(2000000));

  struct stat st {};
  EXPECT_EQ(::stat((options_.controller.data_dir + "/blobs/" + digest.substr(0, 2) + "/" + digest).c_str(), &st), 0);
}

TEST_F(BlobServiceTest, EmptyBlobIsStored) {
  const std::string digest = Upload("");
  EXPECT_TRUE(Stat(digest).exists());
  std::string out;
  EXPECT_TRUE(Download(digest, 0, &out).ok());
  EXPECT_TRUE(out.empty());
}

TEST_F(BlobServiceTest, DigestMismatchIsDataLossAndStoresNothing) {
  const std::string data = RandomBytes(100000);
  const std::string wrong = Sha256Hex("something else");
  grpc::Status st = UploadRaw(wrong, data.size(), 0, data, nullptr);
  EXPECT_EQ(st.error_code(), grpc::StatusCode::DATA_LOSS) << st.error_message();
  v1::BlobInfo info = Stat(wrong);
  EXPECT_FALSE(info.exists());
  EXPECT_EQ(info.partial_size(), 0u);
  std::string out;
  EXPECT_EQ(Download(wrong, 0, &out).error_code(), grpc::StatusCode::NOT_FOUND);
}

TEST_F(BlobServiceTest, InterruptedUploadResumesFromPartialSize) {
  const std::string data = RandomBytes(2 * (1 << 20) + 777, 7);
  const std::string digest = Sha256Hex(data);
  const size_t half = (1 << 20) + 5;

  grpc::Status st = UploadRaw(digest, data.size(), 0, data.substr(0, half), nullptr);
  EXPECT_EQ(st.error_code(), grpc::StatusCode::FAILED_PRECONDITION) << st.error_message();
  v1::BlobInfo info = Stat(digest);
  EXPECT_FALSE(info.exists());
  EXPECT_EQ(info.partial_size(), half);

  // A resume that does not start at the partial size is refused.
  st = UploadRaw(digest, data.size(), 10, data.substr(10), nullptr);
  EXPECT_EQ(st.error_code(), grpc::StatusCode::FAILED_PRECONDITION);

  v1::BlobInfo done;
  st = UploadRaw(digest, data.size(), half, data.substr(half), &done);
  ASSERT_TRUE(st.ok()) << st.error_message();
  EXPECT_TRUE(done.exists());
  EXPECT_EQ(done.size(), data.size());
  std::string out;
  ASSERT_TRUE(Download(digest, 0, &out).ok());
  EXPECT_EQ(out, data);
  EXPECT_EQ(Stat(digest).partial_size(), 0u);
}

TEST_F(BlobServiceTest, MalformedDigestIsInvalidArgument) {
  grpc::Status st;
  Stat("not-a-digest", &st);
  EXPECT_EQ(st.error_code(), grpc::StatusCode::INVALID_ARGUMENT);
  st = UploadRaw("../../etc/passwd", 3, 0, "abc", nullptr);
  EXPECT_EQ(st.error_code(), grpc::StatusCode::INVALID_ARGUMENT);
  std::string out;
  EXPECT_EQ(Download("ABC", 0, &out).error_code(), grpc::StatusCode::INVALID_ARGUMENT);
}

TEST_F(BlobServiceTest, MoreBytesThanAnnouncedIsRefused) {
  const std::string data = "hello world";
  grpc::Status st = UploadRaw(Sha256Hex(data), 5, 0, data, nullptr);
  EXPECT_EQ(st.error_code(), grpc::StatusCode::INVALID_ARGUMENT);
}

TEST_F(BlobServiceTest, MessageOverTheLimitIsResourceExhausted) {
  grpc::ClientContext ctx;
  v1::BlobInfo info;
  auto writer = blobs_->Upload(&ctx, &info);
  const std::string data = RandomBytes(9 * (1 << 20));
  v1::UploadRequest req;
  req.mutable_header()->set_digest(Sha256Hex(data));
  req.mutable_header()->set_size(data.size());
  writer->Write(req);
  v1::UploadRequest chunk;
  chunk.set_data(data);
  writer->Write(chunk);
  writer->WritesDone();
  grpc::Status st = writer->Finish();
  EXPECT_EQ(st.error_code(), grpc::StatusCode::RESOURCE_EXHAUSTED) << st.error_message();
}

}  // namespace
}  // namespace freeagent::controller::testing
