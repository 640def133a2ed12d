// Controller-side security rules: what Submit refuses (short secrets, hostile source archives) and that
// no read API returns a secret.
#include <archive.h>
#include <archive_entry.h>

#include "absl/strings/str_cat.h"
#include "common/fs.h"
#include "common/process.h"
#include "controller/archive_check_cache.h"
#include "controller/auth.h"
#include "node/connection.h"
#include "proto/channel.h"
#include "tests/controller/controller_fixture.h"

namespace freeagent::controller::testing {
namespace {

class SecurityTest : public ControllerTest {
 protected:
  void SetUp() override {
    ControllerTest::SetUp();
    StartServer();
    source_ = UploadSource();
  }

  // A tar.gz holding exactly these entries (type, path, symlink target), hostile ones included.
  std::string source_;

  std::string UploadCrafted(const std::vector<std::tuple<mode_t, std::string, std::string>>& entries) {
    std::string out(1 << 16, '\0');
    size_t used = 0;
    struct archive* a = archive_write_new();
    archive_write_add_filter_gzip(a);
    archive_write_set_format_pax_restricted(a);
    EXPECT_EQ(archive_write_open_memory(a, out.data(), out.size(), &used), ARCHIVE_OK);
    for (const auto& [type, path, link] : entries) {
      archive_entry* e = archive_entry_new();
      archive_entry_set_pathname(e, path.c_str());
      archive_entry_set_filetype(e, type);
      archive_entry_set_perm(e, 0644);
      archive_entry_set_size(e, type == AE_IFREG ? 1 : 0);
      if (!link.empty()) archive_entry_set_symlink(e, link.c_str());
      archive_write_header(a, e);
      if (type == AE_IFREG) archive_write_data(a, "x", 1);
      archive_entry_free(e);
    }
    archive_write_close(a);
    archive_write_free(a);
    out.resize(used);
    return Upload(out);
  }
};

TEST_F(SecurityTest, SubmitRefusesASecretShorterThanSixBytesNamingTheKey) {
  v1::JobSpec spec = Spec(source_);
  (*spec.mutable_secret_env())["LONG_ENOUGH"] = "123456";
  (*spec.mutable_secret_env())["PIN"] = "12345";
  auto r = Submit(spec);
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_NE(r.status().message().find("PIN"), std::string::npos) << r.status();
  EXPECT_EQ(r.status().message().find("LONG_ENOUGH"), std::string::npos) << r.status();

  spec.mutable_secret_env()->erase("PIN");
  EXPECT_TRUE(Submit(spec).ok());

  spec.mutable_signing()->set_p12_password("abc");
  auto p12 = Submit(spec);
  EXPECT_EQ(p12.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_NE(p12.status().message().find("p12_password"), std::string::npos) << p12.status();
}

TEST_F(SecurityTest, SubmitRefusesHostileSourceArchivesNamingTheEntry) {
  const std::vector<std::pair<std::string, std::string>> cases = {
      {UploadCrafted({{AE_IFREG, "ok", ""}, {AE_IFREG, "a/../../escape", ""}}), "a/../../escape"},
      {UploadCrafted({{AE_IFREG, "/etc/cron.d/x", ""}}), "/etc/cron.d/x"},
      {UploadCrafted({{AE_IFCHR, "dev/sda", ""}}), "dev/sda"},
      {UploadCrafted({{AE_IFLNK, "link", "/etc"}, {AE_IFREG, "link/passwd", ""}}), "link/passwd"},
      {Upload("not an archive at all"), "not a valid tar.gz"},
  };
  for (const auto& [digest, named] : cases) {
    auto r = Submit(Spec(digest));
    ASSERT_FALSE(r.ok()) << named;
    EXPECT_EQ(r.status().code(), absl::StatusCode::kInvalidArgument) << r.status();
    EXPECT_NE(r.status().message().find(named), std::string::npos) << r.status();
  }
  auto list = [&] {
    grpc::ClientContext ctx;
    v1::ListBuildsResponse resp;
    EXPECT_TRUE(builds_->List(&ctx, v1::ListBuildsRequest(), &resp).ok());
    return resp.builds_size();
  };
  EXPECT_EQ(list(), 0) << "a refused build is never queued";
}

TEST_F(SecurityTest, ASourceArchiveFoundSafeIsNotScannedAgainButARefusedOneIsEveryTime) {
  const ArchiveCheckCache& checks = server_->controller().archive_checks();
  const uint64_t before = checks.scans();
  ASSERT_TRUE(Submit(Spec(source_)).ok());
  EXPECT_EQ(checks.scans(), before + 1);
  // Replaced behind the store's back by bytes that are no archive: the digest's verdict is remembered,
  // so the file is not opened again.
  const std::string path = server_->controller().blobs().PathFor(source_);
  ASSERT_TRUE(WriteFileAtomic(path, "not an archive at all").ok());
  auto again = Submit(Spec(source_));
  EXPECT_TRUE(again.ok()) << again.status();
  EXPECT_EQ(checks.scans(), before + 1);

  // Another digest is scanned, and a refused archive is refused (and scanned) on every submission.
  const std::string hostile = UploadCrafted({{AE_IFREG, "/etc/passwd", ""}});
  for (int i = 1; i <= 2; ++i) {
    auto r = Submit(Spec(hostile));
    EXPECT_EQ(r.status().code(), absl::StatusCode::kInvalidArgument) << r.status();
    EXPECT_EQ(checks.scans(), before + 1 + i);
  }
}

TEST_F(SecurityTest, BlobsAboveTheLimitAreRefusedUpFront) {
  grpc::Status st = UploadRaw(std::string(64, 'c'), BlobStore::kMaxBlobBytes + 1, 0, "x", nullptr);
  EXPECT_EQ(st.error_code(), grpc::StatusCode::RESOURCE_EXHAUSTED);
  EXPECT_NE(st.error_message().find("blob limit"), std::string::npos) << st.error_message();
  // One message above the 8 MiB limit is refused by gRPC itself, whatever the blob size.
  grpc::ClientContext ctx;
  v1::BlobInfo info;
  auto writer = blobs_->Upload(&ctx, &info);
  v1::UploadRequest header;
  header.mutable_header()->set_digest(std::string(64, 'd'));
  header.mutable_header()->set_size(9 << 20);
  writer->Write(header);
  v1::UploadRequest chunk;
  chunk.set_data(std::string(9 << 20, 'x'));
  writer->Write(chunk);
  writer->WritesDone();
  grpc::Status big = writer->Finish();
  EXPECT_EQ(big.error_code(), grpc::StatusCode::RESOURCE_EXHAUSTED) << big.error_message();
}

TEST_F(SecurityTest, NoReadApiReturnsASecret) {
  v1::JobSpec spec = Spec(source_);
  (*spec.mutable_secret_env())["API_TOKEN"] = "very-secret-value";
  spec.mutable_signing()->set_p12_password("p12-password-value");
  auto submitted = Submit(spec);
  ASSERT_TRUE(submitted.ok()) << submitted.status();
  auto has_secret = [](const google::protobuf::Message& m) {
    std::string bytes;
    m.SerializeToString(&bytes);
    return bytes.find("very-secret-value") != std::string::npos || bytes.find("p12-password-value") != std::string::npos;
  };
  EXPECT_FALSE(has_secret(*submitted));
  EXPECT_FALSE(has_secret(Get(submitted->id())));
  grpc::ClientContext ctx;
  v1::ListBuildsResponse list;
  ASSERT_TRUE(builds_->List(&ctx, v1::ListBuildsRequest(), &list).ok());
  EXPECT_FALSE(has_secret(list));
  grpc::ClientContext cancel_ctx;
  v1::CancelBuildRequest cancel;
  cancel.set_id(submitted->id());
  v1::Build cancelled;
  ASSERT_TRUE(builds_->Cancel(&cancel_ctx, cancel, &cancelled).ok());
  EXPECT_FALSE(has_secret(cancelled));
  WatchResult watched = Watch(submitted->id(), 0);
  ASSERT_FALSE(watched.statuses.empty());
  for (const v1::Build& b : watched.statuses) EXPECT_FALSE(has_secret(b));
}

// A controller with one token per role (and, in TlsTest, TLS with a client CA for workers).
class TokenTest : public ControllerTest {
 protected:
  void SetUp() override {
    ControllerTest::SetUp();
    options_.security.worker_token_sha256 = {HashToken("worker-token-1")};
    options_.security.client_token_sha256 = {HashToken("client-token-1")};
    options_.security.admin_token_sha256 = {HashToken("admin-token-1")};
    StartServer();
  }

  std::string Address() const { return absl::StrCat("127.0.0.1:", server_->port()); }

  std::shared_ptr<grpc::Channel> Channel(const std::string& token) {
    proto::ChannelSecurity sec;
    sec.insecure = true;
    sec.token = token;
    auto ch = proto::MakeControllerChannel(Address(), sec);
    EXPECT_TRUE(ch.ok()) << ch.status();
    return *ch;
  }

  grpc::Status ListWith(const std::shared_ptr<grpc::Channel>& ch) {
    grpc::ClientContext ctx;
    v1::ListBuildsResponse resp;
    return v1::BuildService::NewStub(ch)->List(&ctx, v1::ListBuildsRequest(), &resp);
  }

  grpc::Status DrainWith(const std::shared_ptr<grpc::Channel>& ch) {
    grpc::ClientContext ctx;
    v1::DrainRequest req;
    req.set_worker_id("nobody");
    v1::WorkerInfo resp;
    return v1::FleetService::NewStub(ch)->Drain(&ctx, req, &resp);
  }

  grpc::Status StatWith(const std::shared_ptr<grpc::Channel>& ch) {
    grpc::ClientContext ctx;
    v1::StatRequest req;
    req.set_digest(std::string(64, 'a'));
    v1::BlobInfo resp;
    return v1::BlobService::NewStub(ch)->Stat(&ctx, req, &resp);
  }

  // The status a worker stream ends with when it only says hello (OK means it was welcomed).
  grpc::Status ConnectWith(const std::shared_ptr<grpc::Channel>& ch, const std::string& id) {
    FakeWorker w(ch);
    v1::WorkerMessage msg;
    msg.mutable_hello()->set_worker_id(id);
    msg.mutable_hello()->set_slots(1);
    w.Send(msg);
    // A refused stream ends at once (Next returns then); a welcome over a fresh TLS channel can take a
    // while on a busy machine, and missing it would leave Finish() waiting on a stream that stays open.
    auto welcome = w.Next([](const v1::ControllerMessage& m) { return m.has_welcome(); }, 10s);
    if (welcome) return grpc::Status::OK;
    return w.Finish();
  }
};

TEST_F(TokenTest, CallsWithoutOrWithAnUnknownTokenAreUnauthenticated) {
  EXPECT_EQ(ListWith(proto::MakeControllerChannel(Address())).error_code(), grpc::StatusCode::UNAUTHENTICATED);
  EXPECT_EQ(ListWith(Channel("client-token-2")).error_code(), grpc::StatusCode::UNAUTHENTICATED);
  EXPECT_EQ(StatWith(Channel("nope-nope")).error_code(), grpc::StatusCode::UNAUTHENTICATED);
  EXPECT_EQ(ConnectWith(Channel("worker-token-2"), "w-1").error_code(), grpc::StatusCode::UNAUTHENTICATED);
  EXPECT_GE(server_->auth().refused(), 4u);
}

TEST_F(TokenTest, EachRoleGetsOnlyItsApi) {
  auto client = Channel("client-token-1");
  auto worker = Channel("worker-token-1");
  auto admin = Channel("admin-token-1");
  EXPECT_TRUE(ListWith(client).ok());
  EXPECT_TRUE(ListWith(admin).ok());
  EXPECT_EQ(ListWith(worker).error_code(), grpc::StatusCode::PERMISSION_DENIED);

  EXPECT_EQ(DrainWith(client).error_code(), grpc::StatusCode::PERMISSION_DENIED);
  EXPECT_EQ(DrainWith(worker).error_code(), grpc::StatusCode::PERMISSION_DENIED);
  EXPECT_EQ(DrainWith(admin).error_code(), grpc::StatusCode::NOT_FOUND) << "admin passes auth";

  EXPECT_TRUE(StatWith(client).ok()) << "clients may use blobs";
  EXPECT_TRUE(StatWith(worker).ok()) << "workers may use blobs";

  EXPECT_EQ(ConnectWith(client, "w-1").error_code(), grpc::StatusCode::PERMISSION_DENIED);
  EXPECT_TRUE(ConnectWith(worker, "w-1").ok());
}

TEST_F(TokenTest, AWorkerReportsOnlyOnAttemptsAssignedToIt) {
  auto worker_channel = Channel("worker-token-1");
  channel_ = Channel("client-token-1");
  builds_ = v1::BuildService::NewStub(channel_);
  blobs_ = v1::BlobService::NewStub(channel_);
  const std::string source = UploadSource();
  FakeWorker a(worker_channel);
  a.Hello("w-a");
  auto build = Submit(Spec(source));
  ASSERT_TRUE(build.ok()) << build.status();
  auto job = a.NextAssign();
  ASSERT_TRUE(job.has_value());
  ASSERT_TRUE(a.Send(FakeWorker::Accepted(*job)));
  ASSERT_TRUE(WaitBuild(build->id(), [](const v1::Build& b) { return b.state() == v1::JOB_STATE_RUNNING; }));

  FakeWorker b(worker_channel);
  b.Hello("w-b");
  ASSERT_TRUE(b.Send(FakeWorker::Log(job->job_id(), job->attempt(), 0, "forged log\n")));
  ASSERT_TRUE(b.Send(FakeWorker::Result(*job, v1::JOB_STATE_SUCCEEDED, 0)));
  std::this_thread::sleep_for(300ms);
  v1::Build now = Get(build->id());
  EXPECT_EQ(now.state(), v1::JOB_STATE_RUNNING) << "another worker's result was taken";
  EXPECT_EQ(now.worker_id(), "w-a");
  EXPECT_EQ(now.log_size(), 0u) << "another worker's log bytes were stored";

  ASSERT_TRUE(a.Send(FakeWorker::Result(*job, v1::JOB_STATE_SUCCEEDED, 0)));
  EXPECT_TRUE(WaitBuild(build->id(), [](const v1::Build& x) { return x.state() == v1::JOB_STATE_SUCCEEDED; }));
}

class NullHandler final : public node::ConnectionHandler {
 public:
  v1::Hello MakeHello() override {
    v1::Hello h;
    h.set_worker_id("w-bad-token");
    h.set_slots(1);
    return h;
  }
  void OnMessage(const v1::ControllerMessage& /*message*/) override {}
  v1::Heartbeat MakeHeartbeat() override { return {}; }
};

TEST_F(TokenTest, AWorkerWithABadTokenBacksOffInsteadOfSpinning) {
  proto::ChannelSecurity sec;
  sec.insecure = true;
  sec.token = "stolen-or-stale";
  NullHandler handler;
  node::ConnectionOptions copts;
  copts.initial_backoff = 100ms;
  copts.max_backoff = 800ms;
  const uint64_t before = server_->auth().refused();
  node::ControllerConnection conn(node::MakeWorkerChannel(Address(), sec), &handler, copts);
  conn.Start();
  std::this_thread::sleep_for(3s);
  conn.Stop();
  const uint64_t attempts = server_->auth().refused() - before;
  // 100, 200, 400, 800, 800 ms (each jittered down to half at most): at most ~8 tries in 3 s.
  EXPECT_GE(attempts, 2u);
  EXPECT_LE(attempts, 10u) << "the worker spins on UNAUTHENTICATED";
  EXPECT_EQ(conn.welcomes(), 0u);
}

TEST(ControllerServerSecurity, PlaintextOrNoTokensOnlyWhenExplicitlyEnabled) {
  auto dir = MakePrivateTempDir("/tmp", "fa-sec-");
  ASSERT_TRUE(dir.ok());
  ServerOptions o;
  o.listen = "127.0.0.1:0";
  o.controller.data_dir = *dir + "/data";
  auto plain = ControllerServer::Start(o);
  ASSERT_FALSE(plain.ok());
  EXPECT_EQ(plain.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_NE(plain.status().message().find("insecure"), std::string::npos) << plain.status();
  o.security.worker_token_sha256 = {"not-a-hash"};
  o.security.insecure = true;
  auto bad_hash = ControllerServer::Start(o);
  ASSERT_FALSE(bad_hash.ok());
  EXPECT_NE(bad_hash.status().message().find("not-a-hash"), std::string::npos) << bad_hash.status();
  RemoveTree(*dir).IgnoreError();
}

// Certificates made with the openssl CLI: a CA, a server certificate for 127.0.0.1 and a worker's
// client certificate signed by the CA, and one signed by nobody we trust.
class TlsTest : public TokenTest {
 protected:
  void SetUp() override {
    ControllerTest::SetUp();
    pki_ = root_ + "/pki";
    ASSERT_TRUE(MakeDirs(pki_, 0700).ok());
    MakeCa("ca");
    MakeCa("rogue-ca");
    MakeCert("ca", "server", "subjectAltName=IP:127.0.0.1,DNS:localhost");
    MakeCert("ca", "worker", "extendedKeyUsage=clientAuth");
    MakeCert("rogue-ca", "rogue", "extendedKeyUsage=clientAuth");
    options_.security.insecure = false;
    options_.security.tls_cert_file = pki_ + "/server.crt";
    options_.security.tls_key_file = pki_ + "/server.key";
    options_.security.client_ca_file = pki_ + "/ca.crt";
    options_.security.worker_token_sha256 = {HashToken("worker-token-1")};
    options_.security.client_token_sha256 = {HashToken("client-token-1")};
    auto server = ControllerServer::Start(options_);
    ASSERT_TRUE(server.ok()) << server.status();
    server_ = std::move(*server);
  }

  void Openssl(std::vector<std::string> args) {
    ProcessOptions p;
    p.argv = {"openssl"};
    p.argv.insert(p.argv.end(), args.begin(), args.end());
    p.cwd = pki_;
    auto r = RunProcess(p);
    ASSERT_TRUE(r.ok()) << r.status();
    ASSERT_EQ(r->exit_code, 0) << r->stderr_data;
  }
  void MakeCa(const std::string& name) {
    Openssl({"req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes", "-days", "2",
             "-subj", "/CN=" + name, "-keyout", name + ".key", "-out", name + ".crt"});
  }
  void MakeCert(const std::string& ca, const std::string& name, const std::string& ext) {
    Openssl({"req", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes", "-subj", "/CN=" + name,
             "-keyout", name + ".key", "-out", name + ".csr"});
    ASSERT_TRUE(WriteFileAtomic(pki_ + "/" + name + ".ext", ext + "\n").ok());
    Openssl({"x509", "-req", "-in", name + ".csr", "-CA", ca + ".crt", "-CAkey", ca + ".key", "-CAcreateserial",
             "-days", "2", "-extfile", name + ".ext", "-out", name + ".crt"});
  }

  std::shared_ptr<grpc::Channel> TlsChannel(const std::string& token, const std::string& cert = "") {
    proto::ChannelSecurity sec;
    sec.ca_file = pki_ + "/ca.crt";
    sec.token = token;
    if (!cert.empty()) {
      sec.cert_file = pki_ + "/" + cert + ".crt";
      sec.key_file = pki_ + "/" + cert + ".key";
    }
    auto ch = proto::MakeControllerChannel(Address(), sec);
    EXPECT_TRUE(ch.ok()) << ch.status();
    return *ch;
  }

  std::string pki_;
};

TEST_F(TlsTest, ClientsUseTlsAndPlaintextIsRefused) {
  EXPECT_TRUE(ListWith(TlsChannel("client-token-1")).ok());
  EXPECT_EQ(ListWith(TlsChannel("wrong")).error_code(), grpc::StatusCode::UNAUTHENTICATED);
  grpc::ClientContext ctx;
  ctx.set_deadline(std::chrono::system_clock::now() + 2s);
  v1::ListBuildsResponse resp;
  grpc::Status plain = v1::BuildService::NewStub(Channel("client-token-1"))->List(&ctx, v1::ListBuildsRequest(), &resp);
  EXPECT_FALSE(plain.ok()) << "a plaintext call was served";
  // A client that does not trust the controller's CA refuses to talk to it.
  proto::ChannelSecurity untrusting;
  untrusting.ca_file = pki_ + "/rogue-ca.crt";
  untrusting.token = "client-token-1";
  grpc::ClientContext ctx2;
  ctx2.set_deadline(std::chrono::system_clock::now() + 2s);
  EXPECT_FALSE(v1::BuildService::NewStub(*proto::MakeControllerChannel(Address(), untrusting))
                   ->List(&ctx2, v1::ListBuildsRequest(), &resp)
                   .ok());
}

TEST_F(TlsTest, WorkersNeedAClientCertificateSignedByTheClientCa) {
  EXPECT_EQ(ConnectWith(TlsChannel("worker-token-1"), "w-1").error_code(), grpc::StatusCode::UNAUTHENTICATED);
  EXPECT_TRUE(ConnectWith(TlsChannel("worker-token-1", "worker"), "w-1").ok());
  EXPECT_FALSE(ConnectWith(TlsChannel("worker-token-1", "rogue"), "w-2").ok()) << "a rogue certificate was accepted";
  EXPECT_EQ(ConnectWith(TlsChannel("wrong", "worker"), "w-3").error_code(), grpc::StatusCode::UNAUTHENTICATED);
}

}  // namespace
}  // namespace freeagent::controller::testing
