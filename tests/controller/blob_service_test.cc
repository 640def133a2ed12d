// BlobService over a real server: upload, download, stat, verification and resume, by digest and as a
// streaming upload (upload_id, digest in the trailer).
#include <sys/stat.h>

#include "absl/strings/match.h"
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
    v1::StatRequest req;
    req.set_digest(digest);
    return StatRaw(req, status);
  }

  v1::BlobInfo StatUpload(const std::string& upload_id, grpc::Status* status = nullptr) {
    v1::StatRequest req;
    req.set_upload_id(upload_id);
    return StatRaw(req, status);
  }

  v1::BlobInfo StatRaw(const v1::StatRequest& req, grpc::Status* status) {
    grpc::ClientContext ctx;
    v1::BlobInfo info;
    grpc::Status st = blobs_->Stat(&ctx, req, &info);
    if (status) *status = st;
    return info;
  }

  // A streaming upload of `data` from `offset`; a trailer naming `digest`/`size` unless `trailer` is false.
  grpc::Status UploadStreaming(const std::string& upload_id, uint64_t offset, const std::string& data,
                               bool trailer, const std::string& digest, uint64_t size, v1::BlobInfo* info) {
    grpc::ClientContext ctx;
    v1::BlobInfo local;
    auto writer = blobs_->Upload(&ctx, info ? info : &local);
    v1::UploadRequest req;
    req.mutable_header()->set_upload_id(upload_id);
    req.mutable_header()->set_offset(offset);
    writer->Write(req);
    for (size_t pos = 0; pos < data.size(); pos += 1 << 20) {
      v1::UploadRequest chunk;
      chunk.set_data(data.substr(pos, 1 << 20));
      if (!writer->Write(chunk)) break;
    }
    if (trailer) {
      v1::UploadRequest t;
      t.mutable_trailer()->set_digest(digest);
      t.mutable_trailer()->set_size(size);
      writer->Write(t);
    }
    writer->WritesDone();
    return writer->Finish();
  }

  std::string PartialOf(const std::string& upload_id) {
    return options_.controller.data_dir + "/blobs/partial/upload-" + upload_id;
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

TEST_F(BlobServiceTest, StreamingUploadIsVerifiedAgainstItsTrailerAndResumes) {
  const std::string id(32, 'a');
  const std::string data = RandomBytes(2 * (1 << 20) + 999, 11);
  const std::string digest = Sha256Hex(data);
  const size_t half = (1 << 20) + 3;

  // Cut before the trailer: the partial is kept under the upload id, and nothing is stored yet.
  grpc::Status st = UploadStreaming(id, 0, data.substr(0, half), false, "", 0, nullptr);
  EXPECT_EQ(st.error_code(), grpc::StatusCode::FAILED_PRECONDITION) << st.error_message();
  EXPECT_EQ(StatUpload(id).partial_size(), half);
  EXPECT_FALSE(Stat(digest).exists());

  v1::BlobInfo done;
  st = UploadStreaming(id, half, data.substr(half), true, digest, data.size(), &done);
  ASSERT_TRUE(st.ok()) << st.error_message();
  EXPECT_EQ(done.digest(), digest);
  EXPECT_EQ(done.size(), data.size());
  std::string out;
  ASSERT_TRUE(Download(digest, 0, &out).ok());
  EXPECT_EQ(out, data);
  EXPECT_EQ(StatUpload(id).partial_size(), 0u);
  struct stat sb {};
  EXPECT_NE(::stat(PartialOf(id).c_str(), &sb), 0) << "the partial outlived the stored blob";

  // The same bytes again under another id: stored once, the second partial dropped.
  const std::string again(32, 'b');
  st = UploadStreaming(again, 0, data, true, digest, data.size(), &done);
  ASSERT_TRUE(st.ok()) << st.error_message();
  EXPECT_NE(::stat(PartialOf(again).c_str(), &sb), 0);
}

TEST_F(BlobServiceTest, StreamingUploadWithAWrongTrailerOrAbandonedStoresNothing) {
  const std::string data = RandomBytes(300000, 12);
  const std::string wrong = Sha256Hex("not these bytes");
  const std::string id1(32, 'c');
  grpc::Status st = UploadStreaming(id1, 0, data, true, wrong, data.size(), nullptr);
  EXPECT_EQ(st.error_code(), grpc::StatusCode::DATA_LOSS) << st.error_message();
  EXPECT_FALSE(Stat(wrong).exists());
  EXPECT_EQ(StatUpload(id1).partial_size(), 0u);

  const std::string id2(32, 'd');
  st = UploadStreaming(id2, 0, data, true, Sha256Hex(data), data.size() + 1, nullptr);
  EXPECT_EQ(st.error_code(), grpc::StatusCode::DATA_LOSS) << st.error_message();
  EXPECT_FALSE(Stat(Sha256Hex(data)).exists());

  // An empty trailer digest: the sender gave up; the partial goes.
  const std::string id3(32, 'e');
  st = UploadStreaming(id3, 0, data, true, "", 0, nullptr);
  EXPECT_EQ(st.error_code(), grpc::StatusCode::CANCELLED) << st.error_message();
  struct stat sb {};
  EXPECT_NE(::stat(PartialOf(id3).c_str(), &sb), 0);
  EXPECT_FALSE(Stat(Sha256Hex(data)).exists());
}

TEST_F(BlobServiceTest, MalformedUploadIdAndTrailerMisuseAreInvalidArgument) {
  grpc::Status st;
  StatUpload("../../etc", &st);
  EXPECT_EQ(st.error_code(), grpc::StatusCode::INVALID_ARGUMENT);
  st = UploadStreaming("ABCDEF", 0, "abc", true, Sha256Hex("abc"), 3, nullptr);
  EXPECT_EQ(st.error_code(), grpc::StatusCode::INVALID_ARGUMENT) << st.error_message();
  EXPECT_TRUE(absl::StrContains(st.error_message(), "upload_id")) << st.error_message();

  // A trailer in an upload by digest.
  grpc::ClientContext ctx;
  v1::BlobInfo info;
  auto writer = blobs_->Upload(&ctx, &info);
  v1::UploadRequest req;
  req.mutable_header()->set_digest(Sha256Hex("abc"));
  req.mutable_header()->set_size(3);
  writer->Write(req);
  v1::UploadRequest t;
  t.mutable_trailer()->set_digest(Sha256Hex("abc"));
  writer->Write(t);
  writer->WritesDone();
  st = writer->Finish();
  EXPECT_EQ(st.error_code(), grpc::StatusCode::INVALID_ARGUMENT) << st.error_message();
}

}  // namespace
}  // namespace freeagent::controller::testing
