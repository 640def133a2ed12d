// bench_artifact_transfer: one artifact from the build machine to the client's disk through worker and
// controller, against OpenSSH `ssh host cat FILE > local` from the same sshd in the same run.
//
//   bench_artifact_transfer [--mb 200] [--runs 3]
//
// With BENCH_TIMELINE=1 in the environment each run also prints the build's events and phases relative
// to the start of collection, the client's exit and its stderr: where the time went.
//
// The machine is the sshd fixture (tests/support/sshd_fixture.h) used by a real `static` worker; a
// real controller and the `freeagent` CLI do the rest. Each run submits a build whose step hard-links
// a fresh --mb MB random file into the workspace (plus a run-specific tail, so the blob is new every
// run); `freeagent artifacts ID -o DIR` starts right after the submit and downloads the artifact while
// it is uploaded. Ours = from the start of the build's COLLECTING_ARTIFACTS phase (listing, SFTP
// download with sha256, the upload to the blob store overlapping it, description) to the exit of that
// CLI with the verified file renamed into place. OpenSSH = `ssh host cat FILE > local`. Runs
// alternate; the table shows the
// best of --runs and the ratio against the goal <= 1.3. Then the peak RSS (VmHWM) of worker and
// controller against <= 100 MB each. Every received file is checked against the source's sha256; a
// mismatch or a failed build exits 2.
//
// A third column, in the same runs, is the first hop alone: SshGuest::Download of the same file to the
// local disk over an SSH session connected beforehand (as the worker's is), no controller, no client.
// It is the floor of ours: the goal needs the whole path within 1.3x of `ssh cat`, and this hop alone
// shows how much of that the SSH library's transfer already takes.
#include <fcntl.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <string>
#include <thread>
#include <vector>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "common/clock.h"
#include "common/fs.h"
#include "common/process.h"
#include "common/sha256.h"
#include "bench/bench_support.h"
#include "tests/support/process_fixture.h"
#include "tests/support/sshd_fixture.h"
#include "tests/support/sshd_guest_config.h"
#include "tests/support/stream_data.h"
#include "tests/support/test_client.h"
#include "vm/guest.h"
#include "vm/ssh_guest.h"

namespace {

using freeagent::testing::Cluster;
using freeagent::testing::SshdFixture;
using freeagent::testing::TestClient;
using freeagent::vm::ShellQuote;
using Clock = std::chrono::steady_clock;
using namespace std::chrono_literals;

using freeagent::bench::Die;
using freeagent::bench::g_cluster;
using freeagent::bench::Must;

// `size` pseudo-random (incompressible) bytes written 1 MiB at a time.
void WriteRandom(const std::string& path, uint64_t size) {
  int fd = ::open(path.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
  if (fd < 0) Die("create " + path, absl::InternalError(std::strerror(errno)));
  std::string chunk;
  for (uint64_t done = 0; done < size; done += chunk.size()) {
    freeagent::testing::DeterministicBytes(1, done, static_cast<size_t>(std::min<uint64_t>(1 << 20, size - done)), &chunk);
    Must(freeagent::WriteAll(fd, chunk.data(), chunk.size(), path), "write");
  }
  ::close(fd);
}

double Seconds(Clock::duration d) { return std::chrono::duration<double>(d).count(); }

int64_t PhaseStartMs(const freeagent::v1::Build& b, freeagent::v1::Phase phase) {
  for (const auto& p : b.phases()) {
    if (p.phase() == phase) return p.started_unix_ms();
  }
  return 0;
}

double PhaseSeconds(const freeagent::v1::Build& b, freeagent::v1::Phase phase) {
  for (const auto& p : b.phases()) {
    if (p.phase() == phase) return p.duration_ms() / 1000.0;
  }
  return 0;
}

struct Options {
  uint64_t mb = 200;
  int runs = 3;
};

Options ParseArgs(int argc, char** argv) {
  Options o;
  for (int i = 1; i < argc; ++i) {
    std::string a = argv[i];
    std::string v = i + 1 < argc ? argv[i + 1] : "";
    if (a == "--mb" && absl::SimpleAtoi(v, &o.mb) && o.mb > 0) {
      ++i;
    } else if (a == "--runs" && absl::SimpleAtoi(v, &o.runs) && o.runs > 0) {
      ++i;
    } else {
      std::fprintf(stderr, "usage: bench_artifact_transfer [--mb N] [--runs N]\n");
      std::exit(2);
    }
  }
  return o;
}

}  // namespace

int main(int argc, char** argv) {
  freeagent::bench::g_program = "bench_artifact_transfer";
  const Options options = ParseArgs(argc, argv);
  const uint64_t size = options.mb * 1000 * 1000;

  auto sshd = Must(SshdFixture::Start(), "start sshd");
  auto cluster = Must(Cluster::Create("bench-artifact"), "cluster");
  g_cluster = cluster.get();
  const std::string machine = Must(cluster->MakeDir("machine"), "mkdir");
  const std::string jobs = Must(cluster->MakeDir("machine-jobs"), "mkdir");
  const std::string conf = Must(cluster->MakeDir("conf"), "mkdir");
  const std::string out = Must(cluster->MakeDir("out"), "mkdir");
  const std::string src = machine + "/artifact.bin";
  WriteRandom(src, size);
  const std::string src_sha = Must(freeagent::Sha256File(src), "sha256");

  Must(freeagent::WriteFileAtomic(
           conf + "/worker.toml",
           absl::StrCat("driver = \"static\"\n\n[static]\nhost = \"127.0.0.1\"\nport = ", sshd->port(), "\nuser = \"",
                        sshd->user(), "\"\nkey = \"", sshd->ed25519_key(), "\"\nhost_key_fingerprint = \"",
                        sshd->host_key_fingerprint(), "\"\nworkspace_root = \"", jobs, "\"\n")),
       "write worker config");
  Must(cluster->StartController(), "start controller");
  freeagent::testing::WorkerOptions w;
  w.name = "bench";
  w.driver = "static";
  w.extra_args = {"--config", conf + "/worker.toml"};
  freeagent::testing::ChildProcess* worker = Must(cluster->StartWorker(w), "start worker");
  TestClient client(cluster->address());
  Must(client.WaitForWorkers(1, 20s), "worker did not join");
  const std::string source = Must(client.UploadTrivialSource(Must(cluster->MakeDir("src"), "mkdir")), "source");

  std::vector<std::string> ssh = {"ssh"};
  for (const std::string& arg : sshd->SshClientArgs()) ssh.push_back(ShellQuote(arg));
  ssh.push_back(ShellQuote(sshd->user() + "@127.0.0.1"));
  ssh.push_back(ShellQuote("cat " + ShellQuote(src)));
  const std::string local = out + "/ssh-copy.bin";
  const std::string ssh_cat = absl::StrCat("exec ", absl::StrJoin(ssh, " "), " > ", ShellQuote(local));

  std::printf("artifact of %llu MB: build machine (sshd on loopback) -> worker -> controller -> client disk\n",
              static_cast<unsigned long long>(options.mb));
  auto hop = Must(freeagent::vm::SshGuest::Connect(freeagent::testing::GuestConfigFor(*sshd),
                                                    freeagent::CancellationToken::None()),
                  "connect");
  const std::string hop_local = out + "/hop-copy.bin";

  std::vector<double> ours_s, collect_s, upload_s, client_s, theirs_s, hop_s;
  for (int run = 1; run <= options.runs; ++run) {
    // Ours: a build that puts the file in the workspace and names it as its artifact.
    const std::string tail = absl::StrCat("run ", run, " ", Clock::now().time_since_epoch().count(), "\n");
    auto spec = freeagent::testing::MakeSpec(
        source, {{"place", absl::StrCat("cp ", ShellQuote(src), " artifact.bin && printf %s ", ShellQuote(tail),
                                        " >> artifact.bin")}});
    spec.add_artifacts()->set_glob("artifact.bin");
    auto build = Must(client.Submit(spec), "submit");
    // The client starts at once, as `submit --download` does: it downloads the artifact as soon as its
    // upload is announced, following the upload, and ends when the build has ended.
    const std::string dir = absl::StrCat(out, "/run", run);
    Must(freeagent::MakeDirs(dir), "mkdir");
    freeagent::ProcessOptions cli;
    cli.argv = {freeagent::testing::CliBinary(), "--controller", cluster->address(), "--insecure", "artifacts", build.id(), "-o", dir};
    cli.env = {{"FREEAGENT_INSECURE", "1"}};  // the cluster listens in plaintext on loopback
    cli.deadline = freeagent::Deadline::After(300s);
    absl::StatusOr<freeagent::ProcessResult> fetched = absl::UnknownError("not run");
    int64_t cli_end_ms = 0;
    std::thread client_thread([&] {
      fetched = freeagent::RunProcess(cli);
      cli_end_ms = freeagent::UnixMillis();
    });
    auto done = client.WaitForTerminal(build.id(), 300s);
    client_thread.join();
    if (!done.ok()) Die("wait for build", done.status());
    if (done->state() != freeagent::v1::JOB_STATE_SUCCEEDED || done->artifacts_size() != 1) {
      Die("build", absl::InternalError(done->ShortDebugString()));
    }
    if (!fetched.ok()) Die("freeagent artifacts", fetched.status());
    if (!fetched->Succeeded()) Die("freeagent artifacts", absl::InternalError(fetched->stderr_data));
    const std::string got = Must(freeagent::Sha256File(dir + "/artifact.bin"), "sha256");
    if (got != done->artifacts(0).sha256() || done->artifacts(0).size() != size + tail.size()) {
      Die("verify", absl::DataLossError(absl::StrCat("received ", got, ", build says ", done->artifacts(0).sha256())));
    }
    freeagent::RemoveTree(dir).IgnoreError();
    const double collect = PhaseSeconds(*done, freeagent::v1::PHASE_COLLECTING_ARTIFACTS);
    const double upload = PhaseSeconds(*done, freeagent::v1::PHASE_UPLOADING_ARTIFACTS);
    const int64_t collect_start_ms = PhaseStartMs(*done, freeagent::v1::PHASE_COLLECTING_ARTIFACTS);
    // Ours: from the start of collection to the verified file on the client's disk (the CLI's exit).
    const double ours = (cli_end_ms - collect_start_ms) / 1000.0;
    const double client_after = ours - collect - upload;
    std::printf("  ours    run %d: %7.3f s  (collect %.3f + upload %.3f, client done %.3f s after)  verified\n", run,
                ours, collect, upload, client_after);
    if (getenv("BENCH_TIMELINE") != nullptr) {
      for (const auto& e : done->events()) {
        std::printf("    %+8.3f s  %s\n", (e.unix_ms() - collect_start_ms) / 1000.0, e.message().c_str());
      }
      for (const auto& p : done->phases()) {
        std::printf("    phase %d at %+8.3f s for %.3f s\n", p.phase(), (p.started_unix_ms() - collect_start_ms) / 1000.0, p.duration_ms() / 1000.0);
      }
      std::printf("    client exit %+8.3f s\n%s\n", (cli_end_ms - collect_start_ms) / 1000.0, fetched->stderr_data.c_str());
    }
    ours_s.push_back(ours);
    collect_s.push_back(collect);
    upload_s.push_back(upload);
    client_s.push_back(client_after);

    // OpenSSH on the same server and file.
    freeagent::ProcessOptions o;
    o.argv = {"/bin/sh", "-c", ssh_cat};
    o.deadline = freeagent::Deadline::After(300s);
    auto start = Clock::now();
    auto r = Must(freeagent::RunProcess(o), "ssh cat");
    const double theirs = Seconds(Clock::now() - start);
    if (!r.Succeeded()) Die("ssh cat", absl::InternalError(r.stderr_data));
    if (Must(freeagent::Sha256File(local), "sha256") != src_sha) Die("verify ssh cat", absl::DataLossError("mismatch"));
    ::unlink(local.c_str());
    std::printf("  OpenSSH run %d: %7.3f s  verified\n", run, theirs);
    std::fflush(stdout);
    theirs_s.push_back(theirs);

    // The first hop alone, on the session connected before the runs.
    start = Clock::now();
    auto got_hop = Must(hop->Download(src, hop_local, 0, freeagent::CancellationToken::None()), "ssh download");
    const double hop_time = Seconds(Clock::now() - start);
    if (got_hop.sha256 != src_sha) Die("verify ssh download", absl::DataLossError("mismatch"));
    ::unlink(hop_local.c_str());
    std::printf("  1st hop run %d: %7.3f s  (SshGuest::Download alone)  verified\n", run, hop_time);
    std::fflush(stdout);
    hop_s.push_back(hop_time);
  }

  auto best = [](const std::vector<double>& v) { return *std::min_element(v.begin(), v.end()); };
  const double ratio = best(ours_s) / best(theirs_s);
  const double worker_mb = freeagent::testing::PeakRssBytes(worker->pid()) / 1e6;
  const double controller_mb = freeagent::testing::PeakRssBytes(cluster->controller()->pid()) / 1e6;
  std::printf("\nbest of %d runs\n", options.runs);
  std::printf("%-44s %9.3f s\n", "ours: guest -> worker -> controller (collect)", best(collect_s));
  std::printf("%-44s %9.3f s\n", "ours: upload phase (what is left to send)", best(upload_s));
  std::printf("%-44s %9.3f s\n", "ours: client done after the upload phase", best(client_s));
  std::printf("%-44s %9.3f s\n", "ours: total", best(ours_s));
  std::printf("%-44s %9.3f s\n", "OpenSSH: ssh host cat FILE > local", best(theirs_s));
  std::printf("%-44s %9.3f s\n", "first hop alone: SshGuest::Download", best(hop_s));
  std::printf("%-44s %9.2f   goal <= 1.3  %s\n", "ratio ours / OpenSSH", ratio, ratio <= 1.3 ? "met" : "MISSED");
  std::printf("%-44s %9.2f   (the floor of the ratio above)\n", "ratio first hop alone / OpenSSH",
              best(hop_s) / best(theirs_s));
  std::printf("%-44s %9.1f MB goal <= 100 %s\n", "peak RSS worker (VmHWM)", worker_mb,
              worker_mb <= 100 ? "met" : "MISSED");
  std::printf("%-44s %9.1f MB goal <= 100 %s\n", "peak RSS controller (VmHWM)", controller_mb,
              controller_mb <= 100 ? "met" : "MISSED");
  g_cluster = nullptr;
  return 0;
}
