// bench_controller_scale: how the controller copes with a large fleet and a deep queue.
//
//   bench_controller_scale [--workers 100,1000,2000] [--jobs 10000] [--channels 0]
//
// For each fleet size N: a fresh real freeagent-controller (loopback, its own data dir), --jobs
// one-step builds queued first, then N simulated workers with one slot each (tests/support/sim_fleet.h:
// gRPC callback clients in this process speaking the worker protocol; each job is accepted, reports one
// progress, one log chunk and its result at once). Printed per N:
//   - assignment latency p50/p99: from a slot becoming free (Welcome, or the previous result written)
//     to the next Assign arriving at that worker, over every assignment;
//   - jobs/s: builds finished (result acknowledged) per second from the first Welcome to the last ack;
//   - controller RSS: its peak resident set (VmHWM) at the end.
// Goals at 2,000 workers on a 2-core machine: p99 <= 50 ms, >= 1,000 jobs/s, RSS <= 500 MB.
// --channels K shares K TCP connections among the workers (0 = one connection per worker).
// Exits 2 if builds are lost or run twice, or the controller fails.
#include <atomic>
#include <cstdio>
#include <cstdlib>
#include <string>
#include <thread>
#include <vector>

#include "absl/strings/numbers.h"
#include "absl/strings/str_split.h"
#include "tests/support/process_fixture.h"
#include "tests/support/sim_fleet.h"
#include "tests/support/test_client.h"

namespace {

using freeagent::testing::Cluster;
using freeagent::testing::SimFleet;
using freeagent::testing::SimFleetOptions;
using freeagent::testing::TestClient;
using namespace std::chrono_literals;

struct Row {
  int workers = 0;
  size_t jobs = 0;
  double submit_s = 0;
  double p50_ms = 0;
  double p99_ms = 0;
  double jobs_per_s = 0;
  double rss_mb = 0;
};

[[noreturn]] void Die(const std::string& what, Cluster* cluster = nullptr) {
  std::fprintf(stderr, "bench_controller_scale: %s\n", what.c_str());
  if (cluster != nullptr) std::fprintf(stderr, "%s\n", cluster->DumpLogs(4096).c_str());
  std::exit(2);
}

Row RunOne(int workers, size_t jobs, int channels) {
  auto cluster_or = Cluster::Create("bench-scale");
  if (!cluster_or.ok()) Die(cluster_or.status().ToString());
  std::unique_ptr<Cluster> cluster = std::move(*cluster_or);
  // Default settings, info logging included: what a deployment runs.
  if (absl::Status s = cluster->StartController(); !s.ok()) Die(s.ToString(), cluster.get());
  TestClient client(cluster->address());
  auto source = client.UploadTrivialSource(cluster->root());
  if (!source.ok()) Die(source.status().ToString(), cluster.get());

  Row row;
  row.workers = workers;
  row.jobs = jobs;
  auto submit_start = std::chrono::steady_clock::now();
  std::atomic<size_t> errors{0};
  std::vector<std::thread> submitters;
  constexpr size_t kSubmitters = 4;
  for (size_t t = 0; t < kSubmitters; ++t) {
    submitters.emplace_back([&, t] {
      TestClient c(cluster->address());
      for (size_t i = t; i < jobs; i += kSubmitters) {
        if (!c.Submit(freeagent::testing::MakeSpec(*source, {{"short", "true"}})).ok()) ++errors;
      }
    });
  }
  for (auto& t : submitters) t.join();
  if (errors.load() > 0) Die(std::to_string(errors.load()) + " submissions failed", cluster.get());
  row.submit_s = std::chrono::duration<double>(std::chrono::steady_clock::now() - submit_start).count();

  SimFleetOptions options;
  options.address = cluster->address();
  options.workers = workers;
  options.channels = channels;
  auto fleet_or = SimFleet::Start(options, 300s);
  if (!fleet_or.ok()) Die(fleet_or.status().ToString(), cluster.get());
  std::unique_ptr<SimFleet> fleet = std::move(*fleet_or);
  if (!fleet->WaitCompleted(jobs, 900s)) {
    Die(std::to_string(fleet->completed()) + " of " + std::to_string(jobs) + " builds finished", cluster.get());
  }
  const double seconds = std::chrono::duration<double>(fleet->last_completion() - fleet->first_welcome()).count();
  std::vector<double> latencies = fleet->AssignLatenciesMs();
  row.p50_ms = freeagent::testing::Percentile(latencies, 50);
  row.p99_ms = freeagent::testing::Percentile(latencies, 99);
  row.jobs_per_s = static_cast<double>(jobs) / seconds;
  row.rss_mb = static_cast<double>(freeagent::testing::PeakRssBytes(cluster->controller()->pid())) / (1 << 20);
  fleet->Stop();
  if (fleet->duplicate_assigns() > 0 || fleet->CompletedJobs().size() != jobs) {
    Die("builds lost or run twice: " + std::to_string(fleet->duplicate_assigns()) + " duplicate assignments, " +
            std::to_string(fleet->CompletedJobs().size()) + " distinct builds finished",
        cluster.get());
  }
  if (!fleet->Failures().empty()) Die("a worker stream failed: " + fleet->Failures().front(), cluster.get());
  return row;
}

}  // namespace

int main(int argc, char** argv) {
  std::vector<int> sizes = {100, 1000, 2000};
  size_t jobs = 10000;
  int channels = 0;
  for (int i = 1; i + 1 < argc; i += 2) {
    std::string flag = argv[i], value = argv[i + 1];
    if (flag == "--workers") {
      sizes.clear();
      for (absl::string_view part : absl::StrSplit(value, ',')) {
        int n = 0;
        if (!absl::SimpleAtoi(part, &n) || n <= 0) Die("--workers: bad number " + std::string(part));
        sizes.push_back(n);
      }
    } else if (flag == "--jobs") {
      if (!absl::SimpleAtoi(value, &jobs) || jobs == 0) Die("--jobs: bad number " + value);
    } else if (flag == "--channels") {
      if (!absl::SimpleAtoi(value, &channels) || channels < 0) Die("--channels: bad number " + value);
    } else {
      Die("unknown flag " + flag + " (known: --workers N,N,... --jobs N --channels K)");
    }
  }
  if (argc % 2 == 0) Die(std::string("flag ") + argv[argc - 1] + " needs a value");

  std::printf("controller scale: %zu one-step builds queued, then N simulated workers with 1 slot each\n", jobs);
  std::printf("%8s %10s %12s %12s %10s %10s\n", "workers", "submit s", "assign p50", "assign p99", "jobs/s",
              "RSS MB");
  std::vector<Row> rows;
  for (int n : sizes) {
    Row r = RunOne(n, jobs, channels);
    rows.push_back(r);
    std::printf("%8d %10.2f %9.2f ms %9.2f ms %10.0f %10.1f\n", r.workers, r.submit_s, r.p50_ms, r.p99_ms,
                r.jobs_per_s, r.rss_mb);
    std::fflush(stdout);
  }
  for (const Row& r : rows) {
    if (r.workers != 2000) continue;
    std::printf("goals at 2,000 workers: p99 %.2f ms (<= 50) %s, %.0f jobs/s (>= 1,000) %s, RSS %.1f MB (<= 500) %s\n",
                r.p99_ms, r.p99_ms <= 50 ? "met" : "MISSED", r.jobs_per_s, r.jobs_per_s >= 1000 ? "met" : "MISSED",
                r.rss_mb, r.rss_mb <= 500 ? "met" : "MISSED");
  }
  return 0;
}
