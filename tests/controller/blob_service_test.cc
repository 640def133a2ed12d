// BlobService over a real server: upload, download, stat, verification and resume, by digest and as a
// streaming upload (upload_id, digest in the trailer).
#include <sys/stat.h>

#include <atomic>
#include <thread>

#include "absl/strings/match.h"
#include "controller/blob_store.h"
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

  // Downloads streaming upload `upload_id` as it is written; `received` counts the data bytes so far.
  // The last chunk (digest and size, no data) goes to `end`.
  grpc::Status Follow(const std::string& upload_id, uint64_t offset, std::string* out, v1::DownloadChunk* end,
                      std::atomic<size_t>* received) {
    grpc::ClientContext ctx;
    v1::DownloadRequest req;
    req.set_upload_id(upload_id);
    req.set_offset(offset);
    auto reader = blobs_->Download(&ctx, req);
    v1::DownloadChunk chunk;
    while (reader->Read(&chunk)) {
      EXPECT_EQ(chunk.offset(), offset + out->size());
      if (!chunk.digest().empty()) {
        EXPECT_TRUE(chunk.data().empty());
        *end = chunk;
        continue;
      }
      EXPECT_TRUE(end->digest().empty()) << "data after the last chunk";
      out->append(chunk.data());
      received->store(out->size());
    }
    return reader->Finish();
  }

  static bool WaitFor(const std::function<bool()>& cond) {
    for (int i = 0; i < 1000 && !cond(); ++i) std::this_thread::sleep_for(std::chrono::milliseconds(10));
    return cond();
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

TEST_F(BlobServiceTest, DownloadByUploadIdFollowsTheUploadAndEndsWithItsDigest) {
  const std::string id(32, '1');
  const std::string data = RandomBytes(5 * (1 << 20) + 4321, 21);
  const std::string digest = Sha256Hex(data);
  const size_t first = 2 * (1 << 20) + 17;

  // The reader starts before the upload does (it was announced, its header is still on the way).
  std::string got;
  v1::DownloadChunk end;
  std::atomic<size_t> received{0};
  grpc::Status read_status;
  std::thread reader([&] { read_status = Follow(id, 0, &got, &end, &received); });
  std::this_thread::sleep_for(std::chrono::milliseconds(50));

  auto upload = StartUpload(id);
  ASSERT_TRUE(upload->Send(data.substr(0, first)));
  // The reader has the first bytes while the upload is still open: the transfers overlap.
  EXPECT_TRUE(WaitFor([&] { return received.load() == first; })) << received.load();
  EXPECT_TRUE(end.digest().empty());
  ASSERT_TRUE(upload->Send(data.substr(first)));
  grpc::Status st = upload->End(digest, data.size());
  ASSERT_TRUE(st.ok()) << st.error_message();
  reader.join();
  ASSERT_TRUE(read_status.ok()) << read_status.error_message();
  EXPECT_TRUE(got == data) << "followed " << got.size() << " bytes of " << data.size();
  EXPECT_EQ(end.digest(), digest);
  EXPECT_EQ(end.size(), data.size());

  // After the upload is stored, a download by its id still works (from the stored blob), and resumes.
  std::string tail;
  v1::DownloadChunk end2;
  st = Follow(id, first, &tail, &end2, &received);
  ASSERT_TRUE(st.ok()) << st.error_message();
  EXPECT_TRUE(tail == data.substr(first));
  EXPECT_EQ(end2.digest(), digest);
}

TEST_F(BlobServiceTest, DownloadByUploadIdFailsWhenTheUploadIsAbandonedOrWrong) {
  const std::string data = RandomBytes(3 * (1 << 20), 22);
  for (const bool abandon : {true, false}) {
    const std::string id(32, abandon ? '2' : '3');
    auto upload = StartUpload(id);
    ASSERT_TRUE(upload->Send(data.substr(0, 1 << 20)));
    std::string got;
    v1::DownloadChunk end;
    std::atomic<size_t> received{0};
    grpc::Status read_status;
    std::thread reader([&] { read_status = Follow(id, 0, &got, &end, &received); });
    EXPECT_TRUE(WaitFor([&] { return received.load() == (1u << 20); }));
    ASSERT_TRUE(upload->Send(data.substr(1 << 20)));
    // Abandoned by the sender (empty trailer digest), or bytes that do not hash to the trailer's digest.
    grpc::Status st = upload->End(abandon ? "" : Sha256Hex("other bytes"), data.size());
    EXPECT_FALSE(st.ok());
    reader.join();
    EXPECT_EQ(read_status.error_code(), grpc::StatusCode::ABORTED) << read_status.error_message();
    EXPECT_TRUE(absl::StrContains(read_status.error_message(), id)) << read_status.error_message();
    EXPECT_TRUE(absl::StrContains(read_status.error_message(), abandon ? "abandoned" : "sha256"))
        << read_status.error_message();
    EXPECT_TRUE(end.digest().empty()) << "an unstored upload was reported stored";
  }

  grpc::ClientContext ctx;
  v1::DownloadRequest req;
  req.set_upload_id("../x");
  auto reader = blobs_->Download(&ctx, req);
  v1::DownloadChunk chunk;
  while (reader->Read(&chunk)) {
  }
  grpc::Status st = reader->Finish();
  EXPECT_EQ(st.error_code(), grpc::StatusCode::INVALID_ARGUMENT) << st.error_message();
}

TEST(BlobStoreFollow, ReportsProgressStoredAndFailedUploads) {
  const std::string dir = ::testing::TempDir() + "/follow-" + std::to_string(::getpid());
  BlobStore store(dir);
  ASSERT_TRUE(store.Init().ok());
  const std::string id(32, '4');
  EXPECT_TRUE(absl::IsNotFound(store.FollowUpload(id).status()));
  EXPECT_TRUE(absl::IsInvalidArgument(store.FollowUpload("nope").status()));
  const std::string data = "some artifact bytes";
  {
    v1::UploadHeader h;
    h.set_upload_id(id);
    auto w = store.BeginUpload(h);
    ASSERT_TRUE(w.ok()) << w.status();
    ASSERT_TRUE((*w)->Write(data).ok());
    auto p = store.FollowUpload(id);
    ASSERT_TRUE(p.ok());
    EXPECT_EQ(p->state, UploadProgress::State::kRunning);
    EXPECT_EQ(p->written, data.size());
    EXPECT_TRUE(p->sender_connected);
  }
  // The sender went away without a trailer: still running (resumable), nobody sending.
  auto p = store.FollowUpload(id);
  ASSERT_TRUE(p.ok());
  EXPECT_EQ(p->state, UploadProgress::State::kRunning);
  EXPECT_FALSE(p->sender_connected);
  {
    v1::UploadHeader h;
    h.set_upload_id(id);
    h.set_offset(data.size());
    auto w = store.BeginUpload(h);
    ASSERT_TRUE(w.ok()) << w.status();
    v1::UploadTrailer t;
    t.set_digest(Sha256Hex(data));
    t.set_size(data.size());
    ASSERT_TRUE((*w)->FinishStreaming(t).ok());
  }
  p = store.FollowUpload(id);
  ASSERT_TRUE(p.ok());
  EXPECT_EQ(p->state, UploadProgress::State::kStored);
  EXPECT_EQ(p->digest, Sha256Hex(data));
  EXPECT_EQ(p->size, data.size());

  // After a restart only the partial tells: an unfinished upload reads as running with no sender.
  const std::string id2(32, '5');
  {
    v1::UploadHeader h;
    h.set_upload_id(id2);
    auto w = store.BeginUpload(h);
    ASSERT_TRUE(w.ok());
    ASSERT_TRUE((*w)->Write(data).ok());
  }
  BlobStore restarted(dir);
  p = restarted.FollowUpload(id2);
  ASSERT_TRUE(p.ok()) << p.status();
  EXPECT_EQ(p->state, UploadProgress::State::kRunning);
  EXPECT_EQ(p->written, data.size());
  EXPECT_FALSE(p->sender_connected);
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
