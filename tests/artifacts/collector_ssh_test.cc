// Artifact collection from a real guest: an SshGuest on the OpenSSH sshd fixture (loopback), whose
// workspace holds nested matches, symlinks to /etc/passwd and out of the workspace, and a 300 MB file
// taken through a real controller's blob store and back. Also: an upload resumed after the controller
// went away mid-transfer, and the overlapped path (each file uploaded while it is downloaded, resumed
// across a controller restart, abandoned when the download fails).
#include <dirent.h>
#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cstdio>
#include <fstream>
#include <map>
#include <thread>

#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "artifacts/blob_client.h"
#include "artifacts/collector.h"
#include "common/fs.h"
#include "common/sha256.h"
#include "controller/server.h"
#include "gtest/gtest.h"
#include "tests/artifacts/test_rule.h"
#include "proto/channel.h"
#include "tests/support/sshd_fixture.h"
#include "tests/support/sshd_guest_config.h"
#include "tests/support/stream_data.h"
#include "vm/ssh_guest.h"

namespace freeagent::artifacts {
namespace {

namespace v1 = ::freeagent::v1;
using std::chrono::seconds;
using ::freeagent::testing::SshdFixture;

using ::freeagent::artifacts::testing::Rule;

// Writes `size` pseudo-random bytes (incompressible) 1 MiB at a time and returns their sha256.
std::string WriteRandomFile(const std::string& path, uint64_t size, uint64_t seed) {
  int fd = ::open(path.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
  EXPECT_GE(fd, 0) << path;
  std::string chunk;
  Sha256 sha;
  for (uint64_t done = 0; done < size; done += chunk.size()) {
    ::freeagent::testing::DeterministicBytes(seed, done, static_cast<size_t>(std::min<uint64_t>(1 << 20, size - done)),
                                             &chunk);
    sha.Update(chunk);
    EXPECT_TRUE(WriteAll(fd, chunk.data(), chunk.size(), path).ok());
  }
  ::close(fd);
  return sha.FinishHex();
}

// A field of /proc/self/status in kB ("VmRSS", "VmHWM").
int64_t StatusKb(const std::string& field) {
  std::ifstream in("/proc/self/status");
  std::string line;
  while (std::getline(in, line)) {
    if (!absl::StartsWith(line, field + ":")) continue;
    std::string digits;
    for (char c : line) {
      if (c >= '0' && c <= '9') digits += c;
    }
    int64_t kb = 0;
    return absl::SimpleAtoi(digits, &kb) ? kb : -1;
  }
  return -1;
}

class CollectorSshTest : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    auto f = SshdFixture::Start();
    ASSERT_TRUE(f.ok()) << f.status();
    sshd_ = f->release();
  }
  static void TearDownTestSuite() {
    delete sshd_;
    sshd_ = nullptr;
  }

  void SetUp() override {
    ASSERT_NE(sshd_, nullptr);
    auto d = MakePrivateTempDir("/tmp", "fa-collect-ssh-");
    ASSERT_TRUE(d.ok());
    root_ = *d;
    ws_ = root_ + "/ws";
    dl_ = root_ + "/dl";
    ASSERT_TRUE(MakeDirs(ws_ + "/build/Release/deep/er", 0755).ok());
    ASSERT_TRUE(MakeDirs(ws_ + "/dist", 0755).ok());
    ASSERT_TRUE(MakeDirs(root_ + "/outside", 0755).ok());
    ASSERT_TRUE(MakeDirs(dl_, 0700).ok());
    auto g = vm::SshGuest::Connect(freeagent::testing::GuestConfigFor(*sshd_), CancellationToken());
    ASSERT_TRUE(g.ok()) << g.status() << "\n" << sshd_->LogTail();
    guest_ = std::move(*g);
  }
  void TearDown() override {
    guest_.reset();
    RemoveTree(root_).IgnoreError();
  }

  void Put(const std::string& rel, const std::string& data) {
    ASSERT_TRUE(WriteFileAtomic(ws_ + "/" + rel, data, 0644).ok()) << rel;
  }

  CollectOptions Options() {
    CollectOptions o;
    o.download_dir = dl_;
    o.note = [this](std::string_view text) { notes_.emplace_back(text); };
    return o;
  }

  bool Noted(const std::string& text) const {
    return std::find(notes_.begin(), notes_.end(), text) != notes_.end();
  }

  static SshdFixture* sshd_;
  std::string root_, ws_, dl_;
  std::unique_ptr<vm::SshGuest> guest_;
  std::vector<std::string> notes_;
};
SshdFixture* CollectorSshTest::sshd_ = nullptr;

// Collects GrpcBlobClient's retry notes (quick backoff for tests).
class RetryLog {
 public:
  GrpcBlobClient::Options Options() {
    GrpcBlobClient::Options o;
    o.first_backoff = std::chrono::milliseconds(100);
    o.on_retry = [this](const std::string& text) {
      std::lock_guard<std::mutex> lock(mu_);
      lines_.push_back(text);
    };
    return o;
  }
  std::string Joined() {
    std::lock_guard<std::mutex> lock(mu_);
    return absl::StrJoin(lines_, "\n");
  }
  // Whether an attempt resumed past byte 0 ("... resumes at byte N ...", N > 0).
  bool ResumedPastZero() {
    std::lock_guard<std::mutex> lock(mu_);
    for (const std::string& r : lines_) {
      size_t at = r.find("resumes at byte ");
      if (at == std::string::npos) continue;
      std::string digits;
      for (size_t i = at + 16; i < r.size() && r[i] >= '0' && r[i] <= '9'; ++i) digits += r[i];
      uint64_t offset = 0;
      if (absl::SimpleAtoi(digits, &offset) && offset > 0) return true;
    }
    return false;
  }

 private:
  std::mutex mu_;
  std::vector<std::string> lines_;
};

TEST_F(CollectorSshTest, NestedAndSeveralMatchesWithSymlinksSkipped) {
  Put("build/Release/deep/er/App.ipa", "ipa one");
  Put("build/Release/Other.ipa", "ipa two");
  Put("App.ipa", "top level ipa");
  Put("build/Release/App.dSYM.zip", "dsym");
  Put("dist/notes.txt", "not matched");
  ASSERT_TRUE(WriteFileAtomic(root_ + "/outside/secret.ipa", "outside the workspace", 0644).ok());
  // A symlink to /etc/passwd, one to a file outside the workspace, and a symlinked directory whose
  // target holds a matching file: none of them may be collected.
  ASSERT_EQ(::symlink("/etc/passwd", (ws_ + "/dist/passwd.ipa").c_str()), 0);
  ASSERT_EQ(::symlink((root_ + "/outside/secret.ipa").c_str(), (ws_ + "/dist/secret.ipa").c_str()), 0);
  ASSERT_EQ(::symlink((root_ + "/outside").c_str(), (ws_ + "/linked").c_str()), 0);

  auto files = Collect(*guest_, ws_, {Rule("**/*.ipa"), Rule("**/*.dSYM.zip"), Rule("**/*.apk", true)}, Options());
  ASSERT_TRUE(files.ok()) << files.status();
  std::map<std::string, CollectedFile> by_path;
  for (const CollectedFile& f : *files) by_path[f.path] = f;
  std::vector<std::string> paths;
  for (const auto& [p, f] : by_path) paths.push_back(p);
  EXPECT_EQ(absl::StrJoin(paths, ","),
            "App.ipa,build/Release/App.dSYM.zip,build/Release/Other.ipa,build/Release/deep/er/App.ipa");
  EXPECT_EQ(by_path["build/Release/deep/er/App.ipa"].sha256, Sha256Hex("ipa one"));
  EXPECT_EQ(by_path["build/Release/deep/er/App.ipa"].size, 7u);
  auto copy = ReadFile(by_path["App.ipa"].local_path);
  ASSERT_TRUE(copy.ok());
  EXPECT_EQ(*copy, "top level ipa");
  EXPECT_TRUE(Noted("warning: artifact dist/passwd.ipa is a symlink; skipped")) << absl::StrJoin(notes_, "\n");
  EXPECT_TRUE(Noted("warning: artifact dist/secret.ipa is a symlink; skipped")) << absl::StrJoin(notes_, "\n");
  for (const std::string& n : notes_) EXPECT_FALSE(absl::StrContains(n, "linked/")) << n;
  // Nothing that was downloaded holds the passwd file or the outside file.
  for (const CollectedFile& f : *files) {
    auto data = ReadFile(f.local_path);
    ASSERT_TRUE(data.ok());
    EXPECT_FALSE(absl::StrContains(*data, "root:")) << f.path;
    EXPECT_NE(*data, "outside the workspace") << f.path;
  }
  // The .ipa files are not zips: still delivered, with the reason in the description.
  EXPECT_TRUE(absl::StrContains(by_path["App.ipa"].description.error, "not a readable zip"))
      << by_path["App.ipa"].description.error;
}

TEST_F(CollectorSshTest, NoMatchForARequiredRuleFailsNamingIt) {
  Put("dist/app.apk", "apk");
  auto files = Collect(*guest_, ws_, {Rule("dist/*.apk"), Rule("**/*.aab")}, Options());
  ASSERT_FALSE(files.ok());
  EXPECT_EQ(files.status().code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_TRUE(absl::StrContains(files.status().message(), "\"**/*.aab\"")) << files.status();

  notes_.clear();
  auto optional = Collect(*guest_, ws_, {Rule("dist/*.apk"), Rule("**/*.aab", true)}, Options());
  ASSERT_TRUE(optional.ok()) << optional.status();
  EXPECT_EQ(optional->size(), 1u);
}

TEST_F(CollectorSshTest, SymlinkAloneDoesNotSatisfyARequiredRule) {
  ASSERT_EQ(::symlink("/etc/passwd", (ws_ + "/dist/app.apk").c_str()), 0);
  auto files = Collect(*guest_, ws_, {Rule("dist/*.apk")}, Options());
  EXPECT_EQ(files.status().code(), absl::StatusCode::kFailedPrecondition) << files.status();
  EXPECT_TRUE(Noted("warning: artifact dist/app.apk is a symlink; skipped"));
}

TEST_F(CollectorSshTest, RulesThatLeaveTheWorkspaceAreRefused) {
  Put("dist/app.apk", "apk");
  for (const std::string glob : {"../outside/*.ipa", "/etc/passwd", "dist/../../x"}) {
    auto files = Collect(*guest_, ws_, {Rule(glob)}, Options());
    EXPECT_EQ(files.status().code(), absl::StatusCode::kFailedPrecondition) << glob;
    EXPECT_TRUE(absl::StrContains(files.status().message(), glob)) << files.status();
  }
}

TEST_F(CollectorSshTest, PerArtifactAndPerJobLimits) {
  Put("dist/a.bin", std::string(100, 'a'));
  Put("dist/b.bin", std::string(100, 'b'));
  auto over = Collect(*guest_, ws_, {Rule("dist/a.bin", false, 99)}, Options());
  ASSERT_EQ(over.status().code(), absl::StatusCode::kResourceExhausted) << over.status();
  EXPECT_TRUE(absl::StrContains(over.status().message(), "dist/a.bin")) << over.status();
  EXPECT_TRUE(absl::StrContains(over.status().message(), "99 bytes")) << over.status();
  EXPECT_TRUE(Collect(*guest_, ws_, {Rule("dist/a.bin", false, 100)}, Options()).ok());

  CollectOptions o = Options();
  o.default_max_bytes = 1000;
  o.max_total_bytes = 150;
  auto job = Collect(*guest_, ws_, {Rule("dist/*.bin")}, o);
  ASSERT_EQ(job.status().code(), absl::StatusCode::kResourceExhausted) << job.status();
  EXPECT_TRUE(absl::StrContains(job.status().message(), "per-job limit of 150 bytes")) << job.status();
  EXPECT_TRUE(absl::StrContains(job.status().message(), "dist/b.bin")) << job.status();
  // No partial download is left behind for the refused file.
  auto left = ListDirectory(dl_);
  ASSERT_TRUE(left.ok());
  for (const std::string& name : *left) EXPECT_FALSE(absl::StrContains(name, "b.bin")) << name;
}

// 300 MB from the guest to the host, into a real controller's blob store and back, with the same
// sha256 at every hop and the process's peak RSS growing by far less than the file.
TEST_F(CollectorSshTest, ThreeHundredMegabyteRoundTripKeepsMemoryBounded) {
  constexpr uint64_t kSize = 300ull << 20;
  const std::string want = WriteRandomFile(ws_ + "/build/big.bin", kSize, 42);

  controller::ServerOptions so;
  so.listen = "127.0.0.1:0";
  so.controller.data_dir = root_ + "/controller";
  so.security.insecure = true;
  auto server = controller::ControllerServer::Start(so);
  ASSERT_TRUE(server.ok()) << server.status();
  GrpcBlobClient blobs(proto::MakeControllerChannel(absl::StrCat("127.0.0.1:", (*server)->port())));

  // Peak RSS from here on: /proc/self/clear_refs "5" resets VmHWM to the current RSS.
  {
    std::ofstream reset("/proc/self/clear_refs");
    reset << "5";
  }
  const int64_t rss_before_kb = StatusKb("VmRSS");
  CollectOptions o = Options();
  o.default_max_bytes = kSize;
  auto files = Collect(*guest_, ws_, {Rule("build/*.bin")}, o);
  ASSERT_TRUE(files.ok()) << files.status();
  ASSERT_EQ(files->size(), 1u);
  EXPECT_EQ((*files)[0].sha256, want);
  EXPECT_EQ((*files)[0].size, kSize);
  const int64_t after_download_kb = StatusKb("VmHWM");
  auto infos = UploadArtifacts(blobs, *files, CancellationToken());
  ASSERT_TRUE(infos.ok()) << infos.status();
  ASSERT_EQ(infos->size(), 1u);
  EXPECT_EQ((*infos)[0].sha256(), want);
  const int64_t after_upload_kb = StatusKb("VmHWM");
  auto back = blobs.DownloadFile(want, root_ + "/back.bin", CancellationToken());
  ASSERT_TRUE(back.ok()) << back.status();
  EXPECT_EQ(back->sha256, want);
  EXPECT_EQ(back->size, kSize);
  const int64_t peak_kb = StatusKb("VmHWM");
  ASSERT_GT(rss_before_kb, 0);
  ASSERT_GT(peak_kb, 0);
  const int64_t growth_mb = (peak_kb - rss_before_kb) / 1024;
  std::printf("300 MB round trip: RSS before %lld MB; peak after the SSH download %lld MB, after the upload "
              "%lld MB, after the download from the blob store %lld MB (growth %lld MB)\n",
              static_cast<long long>(rss_before_kb / 1024), static_cast<long long>(after_download_kb / 1024),
              static_cast<long long>(after_upload_kb / 1024), static_cast<long long>(peak_kb / 1024),
              static_cast<long long>(growth_mb));
  // The SSH download alone stays within a few MB. Client and server of the gRPC transfers share this
  // process, each with its own flow-control buffers (measured: about 70 MB more at the peak), so the
  // bound says "streamed, never the whole file" rather than a tight figure; the benchmark measures
  // worker and controller as separate processes.
  EXPECT_LT((after_download_kb - rss_before_kb) / 1024, 32) << "the SSH download grew RSS by that many MB";
  EXPECT_LT(growth_mb, 150) << "peak RSS grew by " << growth_mb << " MB for a 300 MB artifact";
  (*server)->Shutdown(std::chrono::milliseconds(100));
}

// The controller goes away in the middle of an artifact upload and comes back on the same port and
// data dir: the upload resumes from the partial the controller kept, and the stored blob is right.
TEST_F(CollectorSshTest, UploadResumesAfterTheControllerRestarts) {
  constexpr uint64_t kSize = 160ull << 20;
  const std::string file = root_ + "/upload.bin";
  const std::string digest = WriteRandomFile(file, kSize, 7);

  controller::ServerOptions so;
  so.listen = "127.0.0.1:0";
  so.controller.data_dir = root_ + "/controller";
  so.security.insecure = true;
  auto first = controller::ControllerServer::Start(so);
  ASSERT_TRUE(first.ok()) << first.status();
  const int port = (*first)->port();
  so.listen = absl::StrCat("127.0.0.1:", port);

  RetryLog retries;
  GrpcBlobClient::Options bo = retries.Options();
  GrpcBlobClient blobs(proto::MakeControllerChannel(so.listen), bo);
  absl::Status upload_status = absl::UnknownError("not finished");
  std::thread upload([&] { upload_status = blobs.UploadFile(file, digest, kSize, CancellationToken()); });

  const std::string partial = so.controller.data_dir + "/blobs/partial/" + digest;
  const auto give_up = std::chrono::steady_clock::now() + seconds(60);
  uint64_t cut_at = 0;
  while (std::chrono::steady_clock::now() < give_up) {
    struct stat st {};
    if (::stat(partial.c_str(), &st) == 0 && st.st_size >= (8 << 20)) {
      cut_at = static_cast<uint64_t>(st.st_size);
      break;
    }
    std::this_thread::sleep_for(std::chrono::microseconds(500));
  }
  ASSERT_GT(cut_at, 0u) << "the upload never started";
  (*first)->Shutdown(std::chrono::milliseconds(0));
  first->reset();
  struct stat after_cut {};
  ASSERT_EQ(::stat(partial.c_str(), &after_cut), 0) << "the partial upload was not kept";
  ASSERT_LT(static_cast<uint64_t>(after_cut.st_size), kSize) << "the upload finished before the cut";

  auto second = controller::ControllerServer::Start(so);
  ASSERT_TRUE(second.ok()) << second.status();
  upload.join();
  ASSERT_TRUE(upload_status.ok()) << upload_status << "\n" << retries.Joined();

  // It resumed from what was stored, not from 0.
  EXPECT_TRUE(retries.ResumedPastZero()) << retries.Joined();

  auto stored = (*second)->controller().blobs().Stat(digest);
  ASSERT_TRUE(stored.ok()) << stored.status();
  EXPECT_TRUE(stored->exists());
  EXPECT_EQ(stored->size(), kSize);
  Sha256 sha;
  {
    int fd = ::open((*second)->controller().blobs().PathFor(digest).c_str(), O_RDONLY | O_CLOEXEC);
    ASSERT_GE(fd, 0);
    std::vector<char> buf(1 << 20);
    ssize_t n;
    while ((n = ::read(fd, buf.data(), buf.size())) > 0) sha.Update(buf.data(), static_cast<size_t>(n));
    ::close(fd);
  }
  EXPECT_EQ(sha.FinishHex(), digest);
  (*second)->Shutdown(std::chrono::milliseconds(100));
}

// The partial files of streaming uploads in a controller's blob dir, with their sizes.
std::map<std::string, uint64_t> StreamingPartials(const std::string& data_dir) {
  std::map<std::string, uint64_t> out;
  const std::string dir = data_dir + "/blobs/partial";
  DIR* d = ::opendir(dir.c_str());
  if (d == nullptr) return out;
  while (struct dirent* e = ::readdir(d)) {
    std::string name = e->d_name;
    if (!absl::StartsWith(name, "upload-")) continue;
    struct stat st {};
    if (::stat((dir + "/" + name).c_str(), &st) == 0) out[name] = static_cast<uint64_t>(st.st_size);
  }
  ::closedir(d);
  return out;
}

TEST_F(CollectorSshTest, FilesAreUploadedWhileTheyAreDownloaded) {
  constexpr uint64_t kSize = 48ull << 20;
  const std::string want = WriteRandomFile(ws_ + "/build/app.bin", kSize, 5);
  Put("build/big.bin", std::string(2000, 'x'));
  controller::ServerOptions so;
  so.listen = "127.0.0.1:0";
  so.controller.data_dir = root_ + "/controller";
  so.security.insecure = true;
  auto server = controller::ControllerServer::Start(so);
  ASSERT_TRUE(server.ok()) << server.status();
  GrpcBlobClient blobs(proto::MakeControllerChannel(absl::StrCat("127.0.0.1:", (*server)->port())));

  CollectOptions o = Options();
  o.upload_to = &blobs;
  auto files = Collect(*guest_, ws_, {Rule("build/app.bin")}, o);
  ASSERT_TRUE(files.ok()) << files.status();
  ASSERT_EQ(files->size(), 1u);
  EXPECT_TRUE((*files)[0].uploaded) << absl::StrJoin(notes_, "\n");
  EXPECT_EQ((*files)[0].sha256, want);
  auto stored = (*server)->controller().blobs().Stat(want);
  ASSERT_TRUE(stored.ok()) << stored.status();
  EXPECT_TRUE(stored->exists());
  EXPECT_EQ(stored->size(), kSize);
  auto back = blobs.DownloadFile(want, root_ + "/back.bin", CancellationToken());
  ASSERT_TRUE(back.ok()) << back.status();
  EXPECT_EQ(back->sha256, want);
  auto infos = UploadArtifacts(blobs, *files, CancellationToken());
  ASSERT_TRUE(infos.ok()) << infos.status();
  EXPECT_EQ((*infos)[0].sha256(), want);
  EXPECT_TRUE(StreamingPartials(so.controller.data_dir).empty());

  // A download that fails (over the per-file limit) abandons its upload: nothing stored, no partial.
  auto over = Collect(*guest_, ws_, {Rule("build/big.bin", false, 1000)}, o);
  EXPECT_TRUE(absl::IsResourceExhausted(over.status())) << over.status();
  EXPECT_TRUE(StreamingPartials(so.controller.data_dir).empty());
  (*server)->Shutdown(std::chrono::milliseconds(100));
}

// The controller goes away in the middle of a streaming upload (the file is still being written) and
// comes back on the same port and data dir: the upload resumes from the partial it kept.
TEST_F(CollectorSshTest, StreamingUploadResumesAfterTheControllerRestarts) {
  constexpr uint64_t kHalf = 24ull << 20;
  const std::string file = root_ + "/growing.bin";
  controller::ServerOptions so;
  so.listen = "127.0.0.1:0";
  so.controller.data_dir = root_ + "/controller";
  so.security.insecure = true;
  auto first = controller::ControllerServer::Start(so);
  ASSERT_TRUE(first.ok()) << first.status();
  so.listen = absl::StrCat("127.0.0.1:", (*first)->port());

  RetryLog retries;
  GrpcBlobClient::Options bo = retries.Options();
  GrpcBlobClient blobs(proto::MakeControllerChannel(so.listen), bo);

  // The writer: the first half now, the second half once the controller is back.
  GrowingFile growing;
  std::atomic<bool> restarted{false};
  std::string digest;
  std::thread writer([&] {
    int fd = ::open(file.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
    Sha256 sha;
    std::string chunk;
    for (uint64_t done = 0; done < 2 * kHalf; done += chunk.size()) {
      if (done == kHalf) {
        while (!restarted) std::this_thread::sleep_for(std::chrono::milliseconds(5));
      }
      ::freeagent::testing::DeterministicBytes(9, done, 1 << 20, &chunk);
      sha.Update(chunk);
      WriteAll(fd, chunk.data(), chunk.size(), file).IgnoreError();
    }
    ::close(fd);
    digest = sha.FinishHex();
    growing.Finish(2 * kHalf, digest);
  });
  absl::Status upload_status = absl::UnknownError("not finished");
  std::thread upload([&] { upload_status = blobs.UploadGrowing(file, growing, CancellationToken()); });

  uint64_t cut_at = 0;
  const auto give_up = std::chrono::steady_clock::now() + seconds(60);
  while (std::chrono::steady_clock::now() < give_up && cut_at == 0) {
    for (const auto& [name, size] : StreamingPartials(so.controller.data_dir)) {
      if (size >= (8 << 20)) cut_at = size;
    }
    std::this_thread::sleep_for(std::chrono::microseconds(500));
  }
  ASSERT_GT(cut_at, 0u) << "the upload never started";
  (*first)->Shutdown(std::chrono::milliseconds(0));
  first->reset();
  ASSERT_EQ(StreamingPartials(so.controller.data_dir).size(), 1u) << "the partial upload was not kept";
  auto second = controller::ControllerServer::Start(so);
  ASSERT_TRUE(second.ok()) << second.status();
  restarted = true;
  writer.join();
  upload.join();
  ASSERT_TRUE(upload_status.ok()) << upload_status << "\n" << retries.Joined();

  EXPECT_TRUE(retries.ResumedPastZero()) << retries.Joined();
  auto stored = (*second)->controller().blobs().Stat(digest);
  ASSERT_TRUE(stored.ok()) << stored.status();
  EXPECT_TRUE(stored->exists());
  EXPECT_EQ(stored->size(), 2 * kHalf);
  auto sha = Sha256File((*second)->controller().blobs().PathFor(digest));
  ASSERT_TRUE(sha.ok()) << sha.status();
  EXPECT_EQ(*sha, digest);
  EXPECT_TRUE(StreamingPartials(so.controller.data_dir).empty());
  (*second)->Shutdown(std::chrono::milliseconds(100));
}

}  // namespace
}  // namespace freeagent::artifacts
