// bench_vm_boot: what the worker adds to a VM boot, and everything else a job costs besides its build.
//
//   bench_vm_boot [--mb 50] [--manifest PATH]
//
// In one run, on the same Debian 12 image (deploy/images/debian-12/build.sh; --manifest or
// $FREEAGENT_TEST_IMAGE, else the cached build):
//  1. raw: a plain qemu-system-x86_64 command on a fresh overlay (the same machine the driver starts:
//     TCG, 2 cpus, 2048 MB, virtio disk and net, host-forwarded SSH), polled with the OpenSSH client
//     (`ssh ... true` every 250 ms) until a command runs: the raw boot-to-SSH time.
//  2. ours: a real controller and a qemu worker run one job with a --mb MB source (random bytes) whose
//     step writes a --mb MB artifact; the job's phases as the worker measured them, then the client
//     downloads the artifact.
// Prints the timeline and: worker overhead = (machine start to SSH ready, as the worker saw it) - raw
// (goal <= 1 s); non-build overhead = every phase but boot and the build steps, plus the client's
// download (goal <= 3 s). Exits 2 if anything fails.
#include <unistd.h>

#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <string>
#include <thread>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/strip.h"
#include "common/fs.h"
#include "common/process.h"
#include "common/sha256.h"
#include "bench/bench_support.h"
#include "tests/support/process_fixture.h"
#include "tests/support/sshd_fixture.h"
#include "tests/support/test_client.h"
#include "vm/qemu_driver.h"

namespace {

using freeagent::testing::Cluster;
using freeagent::testing::TestClient;
using freeagent::testing::WorkerOptions;
using Clock = std::chrono::steady_clock;
using namespace std::chrono_literals;

using freeagent::bench::Die;
using freeagent::bench::g_cluster;
using freeagent::bench::Must;

double Seconds(Clock::duration d) { return std::chrono::duration<double>(d).count(); }

std::string ImageManifest(const std::string& flag) {
  if (!flag.empty()) return flag;
  if (const char* env = std::getenv("FREEAGENT_TEST_IMAGE"); env != nullptr && *env != '\0') return env;
  freeagent::ProcessOptions o;
  o.argv = {freeagent::testing::SourceDir() + "/deploy/images/debian-12/build.sh"};
  o.deadline = freeagent::Deadline::After(40min);
  o.on_stderr = [](std::string_view d) { std::fwrite(d.data(), 1, d.size(), stderr); };
  freeagent::ProcessResult r = Must(freeagent::RunProcess(o), "build the image");
  if (!r.Succeeded()) Die("build the image", absl::InternalError("deploy/images/debian-12/build.sh failed"));
  return std::string(absl::StripAsciiWhitespace(r.stdout_data));
}

// The raw boot: plain QEMU, OpenSSH polling. Seconds from QEMU's start to the first command that ran.
double RawBoot(const freeagent::vm::ImageManifest& m, const std::string& dir) {
  std::string overlay = dir + "/raw.qcow2";
  freeagent::ProcessOptions img;
  img.argv = {"qemu-img", "create", "-q", "-f", "qcow2", "-b", m.disk, "-F", "qcow2", overlay};
  if (!Must(freeagent::RunProcess(img), "qemu-img").Succeeded()) Die("qemu-img", absl::InternalError("failed"));
  int port = Must(freeagent::testing::FreeLoopbackPort(), "free port");
  freeagent::CancellationToken stop;
  freeagent::ProcessOptions q;
  q.argv = {"qemu-system-x86_64", "-nodefaults", "-no-user-config", "-display", "none", "-machine", "q35",
            "-accel", "tcg,thread=multi", "-cpu", "max", "-smp", "2", "-m", "2048",
            "-kernel", m.kernel, "-initrd", m.initrd, "-append", m.append,
            "-drive", absl::StrCat("file=", overlay, ",if=virtio,format=qcow2,cache=unsafe"),
            "-netdev", absl::StrCat("user,id=net0,hostfwd=tcp:127.0.0.1:", port, "-:", m.ssh_port),
            "-device", "virtio-net-pci,netdev=net0", "-device", "virtio-rng-pci",
            "-serial", absl::StrCat("file:", dir, "/raw-console.log")};
  q.cancel = stop;
  q.kill_grace = 2s;
  auto started = Clock::now();
  std::thread qemu([q]() mutable { freeagent::RunProcess(std::move(q)).IgnoreError(); });
  double ready = -1;
  while (Clock::now() - started < 600s) {
    freeagent::ProcessOptions ssh;
    ssh.argv = {"ssh", "-o", "BatchMode=yes", "-o", "StrictHostKeyChecking=no", "-o", "UserKnownHostsFile=/dev/null",
                "-o", "ConnectTimeout=2", "-o", "LogLevel=ERROR", "-i", m.key, "-p", std::to_string(port),
                absl::StrCat(m.user, "@127.0.0.1"), "true"};
    ssh.deadline = freeagent::Deadline::After(5s);
    auto r = freeagent::RunProcess(ssh);
    if (r.ok() && r->Succeeded()) {
      ready = Seconds(Clock::now() - started);
      break;
    }
    std::this_thread::sleep_for(250ms);
  }
  stop.Cancel("done");
  qemu.join();
  if (ready < 0) Die("raw boot", absl::DeadlineExceededError("no SSH within 600 s"));
  return ready;
}

}  // namespace

int main(int argc, char** argv) {
  freeagent::bench::g_program = "bench_vm_boot";
  int mb = 50;
  std::string manifest_flag;
  for (int i = 1; i < argc; ++i) {
    std::string a = argv[i];
    if (a == "--mb" && i + 1 < argc && absl::SimpleAtoi(argv[i + 1], &mb) && mb > 0) {
      ++i;
    } else if (a == "--manifest" && i + 1 < argc) {
      manifest_flag = argv[++i];
    } else {
      std::fprintf(stderr, "usage: bench_vm_boot [--mb N] [--manifest PATH]\n");
      return 2;
    }
  }
  std::string manifest_path = ImageManifest(manifest_flag);
  freeagent::vm::ImageManifest m = Must(freeagent::vm::LoadImageManifest(manifest_path), "image manifest");
  std::unique_ptr<Cluster> cluster = Must(Cluster::Create("bench-vm"), "cluster");
  g_cluster = cluster.get();
  std::string dir = Must(cluster->MakeDir("raw"), "dir");

  std::printf("image %s (TCG)\n", manifest_path.c_str());
  double raw = RawBoot(m, dir);
  std::printf("raw boot to SSH (plain qemu, OpenSSH polling every 250 ms): %.2f s\n", raw);

  // The job: a --mb MB source in, a --mb MB artifact out.
  std::string src = Must(cluster->MakeDir("src"), "dir");
  {
    std::string block(1 << 20, '\0');
    std::ifstream rnd("/dev/urandom", std::ios::binary);
    std::ofstream out(src + "/payload.bin", std::ios::binary);
    for (int i = 0; i < mb; ++i) {
      rnd.read(block.data(), static_cast<std::streamsize>(block.size()));
      out.write(block.data(), static_cast<std::streamsize>(block.size()));
    }
  }
  std::string conf = Must(cluster->MakeDir("conf"), "dir") + "/worker.toml";
  Must(freeagent::WriteFileAtomic(conf, absl::StrCat("driver = \"qemu\"\nslots = 1\n\n[qemu]\naccel = \"tcg\"\n\n"
                                                       "[images.debian-12]\nmanifest = \"",
                                                       manifest_path, "\"\ncpus = 2\nmemory_mb = 2048\n")),
         "worker config");
  Must(cluster->StartController(), "controller");
  WorkerOptions w;
  w.name = "bench";
  w.driver = "qemu";
  w.extra_args = {"--config", conf};
  Must(cluster->StartWorker(w), "worker");
  TestClient client(cluster->address());
  Must(client.WaitForWorkers(1, 30s), "worker online");
  std::string digest = Must(client.UploadDirectory(src), "upload source");
  freeagent::v1::JobSpec spec;
  spec.set_name("bench-vm");
  spec.set_source_digest(digest);
  auto* step = spec.add_steps();
  step->set_name("build");
  step->set_run(absl::StrCat("head -c ", static_cast<uint64_t>(mb) << 20, " /dev/urandom > artifact.bin"));
  spec.add_artifacts()->set_glob("artifact.bin");
  auto submitted = Clock::now();
  freeagent::v1::Build build = Must(client.Submit(spec), "submit");
  build = Must(client.WaitForTerminal(build.id(), 900s), "wait for the build");
  double job_total = Seconds(Clock::now() - submitted);
  if (build.state() != freeagent::v1::JOB_STATE_SUCCEEDED || build.artifacts_size() != 1) {
    Die("build", absl::InternalError(build.ShortDebugString()));
  }
  auto dl_started = Clock::now();
  std::string artifact = Must(client.DownloadBlob(build.artifacts(0).sha256()), "download the artifact");
  double download = Seconds(Clock::now() - dl_started);
  if (freeagent::Sha256Hex(artifact) != build.artifacts(0).sha256()) {
    Die("download", absl::DataLossError("artifact sha256 differs"));
  }

  double boot = 0, running = 0, other = 0;
  std::printf("\njob timeline (as the worker measured it; %d MB source, %d MB artifact):\n", mb, mb);
  for (const auto& p : build.phases()) {
    double s = p.duration_ms() / 1000.0;
    std::printf("  %-26s %8.2f s\n", freeagent::v1::Phase_Name(p.phase()).c_str(), s);
    if (p.phase() == freeagent::v1::PHASE_PROVISIONING_VM || p.phase() == freeagent::v1::PHASE_CONNECTING) {
      boot += s;
    } else if (p.phase() == freeagent::v1::PHASE_RUNNING) {
      running += s;
    } else {
      other += s;
    }
  }
  std::printf("  %-26s %8.2f s\n", "client download", download);
  std::printf("  %-26s %8.2f s (submit to terminal state)\n", "total", job_total);
  double overhead = boot - raw;
  std::printf("\nmachine start to SSH ready as the worker saw it: %.2f s; raw boot: %.2f s\n", boot, raw);
  std::printf("worker boot overhead: %+.2f s (goal <= 1 s)%s\n", overhead, overhead <= 1.0 ? "" : "  MISSED");
  std::printf("non-build overhead (phases but boot and build, + client download): %.2f s (goal <= 3 s)%s\n",
              other + download, other + download <= 3.0 ? "" : "  MISSED");
  std::printf("(boot times under TCG vary run to run by several seconds; compare figures from one run)\n");
  return 0;
}
