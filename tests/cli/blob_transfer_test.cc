// Upload and download against an in-process BlobService on 127.0.0.1:0 that behaves like the
// controller's: verifies digests, keeps partial uploads, serves from an offset.
#include "cli/blob_transfer.h"

#include <sys/stat.h>

#include <map>
#include <mutex>

#include <gmock/gmock.h>
#include <grpcpp/grpcpp.h>
#include <gtest/gtest.h>

#include "proto/channel.h"

#include "cli/client.h"
#include "common/fs.h"
#include "common/sha256.h"

namespace freeagent::cli {
namespace {

using ::testing::HasSubstr;
using freeagent::v1::BlobInfo;

class FakeBlobService final : public freeagent::v1::BlobService::Service {
 public:
  grpc::Status Stat(grpc::ServerContext*, const freeagent::v1::StatRequest* request,
                    BlobInfo* info) override {
    std::lock_guard<std::mutex> lock(mu_);
    info->set_digest(request->digest());
    auto it = blobs_.find(request->digest());
    if (it != blobs_.end()) {
      info->set_exists(true);
      info->set_size(it->second.size());
    } else if (partial_.count(request->digest())) {
      info->set_partial_size(partial_[request->digest()].size());
    }
    return grpc::Status::OK;
  }

  grpc::Status Upload(grpc::ServerContext*, grpc::ServerReader<freeagent::v1::UploadRequest>* reader,
                      BlobInfo* info) override {
    freeagent::v1::UploadRequest request;
    if (!reader->Read(&request) || !request.has_header()) {
      return {grpc::StatusCode::INVALID_ARGUMENT, "header first"};
    }
    const auto header = request.header();
    std::string data;
    {
      std::lock_guard<std::mutex> lock(mu_);
      data = partial_[header.digest()];
      ++uploads_;
      first_offsets_.push_back(header.offset());
    }
    if (header.offset() != data.size()) return {grpc::StatusCode::FAILED_PRECONDITION, "offset"};
    while (reader->Read(&request)) data += request.data();
    std::lock_guard<std::mutex> lock(mu_);
    if (Sha256Hex(data) != header.digest()) {
      partial_.erase(header.digest());
      return {grpc::StatusCode::DATA_LOSS, "digest mismatch"};
    }
    partial_.erase(header.digest());
    blobs_[header.digest()] = data;
    info->set_digest(header.digest());
    info->set_size(data.size());
    info->set_exists(true);
    return grpc::Status::OK;
  }

  grpc::Status Download(grpc::ServerContext*, const freeagent::v1::DownloadRequest* request,
                        grpc::ServerWriter<freeagent::v1::DownloadChunk>* writer) override {
    if (request->digest().empty()) return Follow(*request, writer);
    std::string data;
    {
      std::lock_guard<std::mutex> lock(mu_);
      auto it = blobs_.find(request->digest());
      if (it == blobs_.end()) return {grpc::StatusCode::NOT_FOUND, "no blob"};
      data = it->second;
      download_offsets_.push_back(request->offset());
    }
    for (uint64_t offset = request->offset(); offset < data.size(); offset += 100000) {
      freeagent::v1::DownloadChunk chunk;
      chunk.set_offset(offset);
      chunk.set_data(data.substr(offset, 100000));
      if (!writer->Write(chunk)) break;
    }
    return grpc::Status::OK;
  }

  // A streaming upload as a follower sees it: its bytes, then the digest it was stored as (empty:
  // it was abandoned).
  struct FollowedUpload {
    std::string data;
    std::string stored_digest;
  };

  grpc::Status Follow(const freeagent::v1::DownloadRequest& request,
                      grpc::ServerWriter<freeagent::v1::DownloadChunk>* writer) {
    FollowedUpload upload;
    {
      std::lock_guard<std::mutex> lock(mu_);
      auto it = following_.find(request.upload_id());
      if (it == following_.end()) return {grpc::StatusCode::NOT_FOUND, "no upload"};
      upload = it->second;
      download_offsets_.push_back(request.offset());
    }
    for (uint64_t offset = request.offset(); offset < upload.data.size(); offset += 100000) {
      freeagent::v1::DownloadChunk chunk;
      chunk.set_offset(offset);
      chunk.set_data(upload.data.substr(offset, 100000));
      if (!writer->Write(chunk)) return grpc::Status::OK;
    }
    if (upload.stored_digest.empty()) return {grpc::StatusCode::ABORTED, "upload abandoned by its sender"};
    freeagent::v1::DownloadChunk end;
    end.set_offset(upload.data.size());
    end.set_digest(upload.stored_digest);
    end.set_size(upload.data.size());
    writer->Write(end);
    return grpc::Status::OK;
  }

  std::mutex mu_;
  std::map<std::string, FollowedUpload> following_;  // by upload_id
  std::map<std::string, std::string> blobs_;
  std::map<std::string, std::string> partial_;
  int uploads_ = 0;
  std::vector<uint64_t> first_offsets_;
  std::vector<uint64_t> download_offsets_;
};

// Download options without a progress line.
DownloadOptions Quiet(bool force = false) {
  DownloadOptions options;
  options.force = force;
  options.show_progress = false;
  return options;
}

class BlobTransferTest : public ::testing::Test {
 protected:
  void SetUp() override {
    grpc::ServerBuilder builder;
    int port = 0;
    builder.AddListeningPort("127.0.0.1:0", grpc::InsecureServerCredentials(), &port);
    builder.RegisterService(&service_);
    server_ = builder.BuildAndStart();
    ASSERT_NE(server_, nullptr);
    stub_ = freeagent::v1::BlobService::NewStub(proto::MakeControllerChannel("127.0.0.1:" + std::to_string(port)));
    auto dir = MakePrivateTempDir("/tmp", "fa-cli-test-");
    ASSERT_TRUE(dir.ok());
    dir_ = *dir;
  }
  void TearDown() override {
    server_->Shutdown();
    RemoveTree(dir_).IgnoreError();
  }

  static std::string Bytes(size_t n) {
    std::string s(n, '\0');
    for (size_t i = 0; i < n; ++i) s[i] = static_cast<char>((i * 131 + i / 7) & 0xff);
    return s;
  }

  FakeBlobService service_;
  std::unique_ptr<grpc::Server> server_;
  std::unique_ptr<freeagent::v1::BlobService::Stub> stub_;
  std::string dir_;
};

TEST_F(BlobTransferTest, UploadResumesFromPartialAndSkipsExistingBlob) {
  const std::string data = Bytes(3 * 1024 * 1024 + 17);
  const std::string digest = Sha256Hex(data);
  const std::string path = dir_ + "/src.bin";
  ASSERT_TRUE(WriteFileAtomic(path, data).ok());
  service_.partial_[digest] = data.substr(0, 1500000);

  auto info = UploadFile(stub_.get(), path, digest, data.size(), false);
  ASSERT_TRUE(info.ok()) << info.status();
  EXPECT_TRUE(info->exists());
  EXPECT_EQ(service_.blobs_[digest], data);
  EXPECT_EQ(service_.first_offsets_, std::vector<uint64_t>{1500000});

  ASSERT_TRUE(UploadFile(stub_.get(), path, digest, data.size(), false).ok());
  EXPECT_EQ(service_.uploads_, 1) << "an existing blob was sent again";
}

TEST_F(BlobTransferTest, UploadWithWrongDigestIsDataLoss) {
  const std::string path = dir_ + "/src.bin";
  ASSERT_TRUE(WriteFileAtomic(path, "abc").ok());
  auto info = UploadFile(stub_.get(), path, Sha256Hex("abd"), 3, false);
  EXPECT_EQ(info.status().code(), absl::StatusCode::kDataLoss);
}

TEST_F(BlobTransferTest, DownloadResumesFromPartFileAndVerifies) {
  const std::string data = Bytes(1234567);
  freeagent::v1::ArtifactInfo artifact;
  artifact.set_name("app.tar.gz");
  artifact.set_size(data.size());
  artifact.set_sha256(Sha256Hex(data));
  service_.blobs_[artifact.sha256()] = data;
  ASSERT_TRUE(WriteFileAtomic(dir_ + "/.app.tar.gz.part", data.substr(0, 400000)).ok());

  auto path = DownloadArtifact(stub_.get(), artifact, dir_, Quiet());
  ASSERT_TRUE(path.ok()) << path.status();
  EXPECT_EQ(*path, dir_ + "/app.tar.gz");
  EXPECT_EQ(*ReadFile(*path), data);
  EXPECT_EQ(service_.download_offsets_, std::vector<uint64_t>{400000});
  struct stat st;
  EXPECT_NE(stat((dir_ + "/.app.tar.gz.part").c_str(), &st), 0) << "part file left behind";
}

TEST_F(BlobTransferTest, CorruptPartFileIsDataLossAndRemoved) {
  const std::string data = Bytes(500000);
  freeagent::v1::ArtifactInfo artifact;
  artifact.set_name("a.bin");
  artifact.set_size(data.size());
  artifact.set_sha256(Sha256Hex(data));
  service_.blobs_[artifact.sha256()] = data;
  ASSERT_TRUE(WriteFileAtomic(dir_ + "/.a.bin.part", std::string(1000, 'x')).ok());

  auto path = DownloadArtifact(stub_.get(), artifact, dir_, Quiet());
  EXPECT_EQ(path.status().code(), absl::StatusCode::kDataLoss);
  struct stat st;
  EXPECT_NE(stat((dir_ + "/.a.bin.part").c_str(), &st), 0);
  EXPECT_NE(stat((dir_ + "/a.bin").c_str(), &st), 0);
  // The next attempt starts over and succeeds.
  EXPECT_TRUE(DownloadArtifact(stub_.get(), artifact, dir_, Quiet()).ok());
}

TEST_F(BlobTransferTest, ExistingDifferentFileNeedsForce) {
  const std::string data = Bytes(1000);
  freeagent::v1::ArtifactInfo artifact;
  artifact.set_name("a.bin");
  artifact.set_size(data.size());
  artifact.set_sha256(Sha256Hex(data));
  service_.blobs_[artifact.sha256()] = data;
  ASSERT_TRUE(WriteFileAtomic(dir_ + "/a.bin", "mine").ok());

  auto refused = DownloadArtifact(stub_.get(), artifact, dir_, Quiet());
  EXPECT_EQ(refused.status().code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_THAT(refused.status().message(), HasSubstr("--force"));
  EXPECT_EQ(*ReadFile(dir_ + "/a.bin"), "mine");

  ASSERT_TRUE(DownloadArtifact(stub_.get(), artifact, dir_, Quiet(/*force=*/true)).ok());
  EXPECT_EQ(*ReadFile(dir_ + "/a.bin"), data);
}

TEST_F(BlobTransferTest, ArtifactStillUploadingIsFollowedAndVerifiedAgainstItsStoredDigest) {
  const std::string data = Bytes(777777);
  const std::string id(32, 'a');
  service_.following_[id] = {data, Sha256Hex(data)};
  freeagent::v1::ArtifactInfo artifact;
  artifact.set_name("dist/app.apk");
  artifact.set_path("dist/app.apk");
  artifact.set_upload_id(id);
  // A part file of this upload from an interrupted run is resumed.
  const std::string part = dir_ + "/.app.apk." + id.substr(0, 16) + ".part";
  ASSERT_TRUE(WriteFileAtomic(part, data.substr(0, 300000)).ok());

  freeagent::v1::ArtifactInfo stored;
  auto path = DownloadArtifact(stub_.get(), artifact, dir_, Quiet(), &stored);
  ASSERT_TRUE(path.ok()) << path.status();
  EXPECT_EQ(*path, dir_ + "/app.apk");
  EXPECT_EQ(*ReadFile(*path), data);
  EXPECT_EQ(service_.download_offsets_, std::vector<uint64_t>{300000});
  EXPECT_EQ(stored.sha256(), Sha256Hex(data));
  EXPECT_EQ(stored.size(), data.size());
  EXPECT_TRUE(stored.upload_id().empty());
  struct stat st;
  EXPECT_NE(stat(part.c_str(), &st), 0) << "part file left behind";

  // The same content again: the file stays. Different content: refused without --force.
  EXPECT_TRUE(DownloadArtifact(stub_.get(), artifact, dir_, Quiet()).ok());
  const std::string other(32, 'b');
  service_.following_[other] = {"other bytes", Sha256Hex("other bytes")};
  artifact.set_upload_id(other);
  auto refused = DownloadArtifact(stub_.get(), artifact, dir_, Quiet());
  EXPECT_EQ(refused.status().code(), absl::StatusCode::kFailedPrecondition) << refused.status();
  EXPECT_EQ(*ReadFile(dir_ + "/app.apk"), data);
}

TEST_F(BlobTransferTest, FollowedArtifactThatIsAbandonedOrMismatchedLeavesNoFile) {
  const std::string data = Bytes(250000);
  freeagent::v1::ArtifactInfo artifact;
  artifact.set_name("a.bin");
  const std::string abandoned(32, 'c');
  service_.following_[abandoned] = {data, ""};
  artifact.set_upload_id(abandoned);
  auto got = DownloadArtifact(stub_.get(), artifact, dir_, Quiet());
  EXPECT_EQ(got.status().code(), absl::StatusCode::kAborted) << got.status();
  struct stat st;
  EXPECT_NE(stat((dir_ + "/a.bin").c_str(), &st), 0);

  const std::string wrong(32, 'd');
  service_.following_[wrong] = {data, Sha256Hex("something else")};
  artifact.set_upload_id(wrong);
  got = DownloadArtifact(stub_.get(), artifact, dir_, Quiet());
  EXPECT_EQ(got.status().code(), absl::StatusCode::kDataLoss) << got.status();
  EXPECT_NE(stat((dir_ + "/a.bin").c_str(), &st), 0);
  EXPECT_NE(stat((dir_ + "/.a.bin." + wrong.substr(0, 16) + ".part").c_str(), &st), 0);

  artifact.set_upload_id("../../x");
  got = DownloadArtifact(stub_.get(), artifact, dir_, Quiet());
  EXPECT_EQ(got.status().code(), absl::StatusCode::kInvalidArgument) << got.status();
}

TEST(SafeArtifactFileName, NeverLeavesTheDirectory) {
  EXPECT_EQ(*SafeArtifactFileName("../../etc/passwd"), "passwd");
  EXPECT_EQ(*SafeArtifactFileName("dist/app.ipa"), "app.ipa");
  EXPECT_FALSE(SafeArtifactFileName("..").ok());
  EXPECT_FALSE(SafeArtifactFileName("dir/").ok());
  EXPECT_FALSE(SafeArtifactFileName("").ok());
}

}  // namespace
}  // namespace freeagent::cli
