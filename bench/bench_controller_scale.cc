// bench_controller_scale: how the controller copes with a large fleet and a deep queue.
//
//   bench_controller_scale [--workers 100,1000,2000] [--jobs 10000] [--channels 0] [--rate 0]
//
// For each fleet size N: a fresh real freeagent-controller (loopback, its own data dir), --jobs
// one-step builds queued first, then N simulated workers with one slot each (tests/support/sim_fleet.h:
// gRPC callback clients in this process speaking the worker protocol; each job is accepted, reports one
// progress, one log chunk and its result at once). Printed per N:
//   - assignment latency p50/p99: from a slot becoming free (Welcome, or the previous result written)
//     to the next Assign arriving at that worker, over every assignment;
//   - jobs/s: builds finished (result acknowledged) per second from the first Welcome to the last ack;
//   - controller RSS: its peak resident set (VmHWM) at the end.
// This run is closed-loop: every slot is busy until the queue is empty, so a freed slot waits its turn
// behind all the others (mean wait = slots / throughput) whatever the controller does.
// --rate R adds, per N, an open-loop run on a fresh controller: the N workers connect first, then the
// builds arrive at R per second (build i is due at i / R s; 16 client threads submit them). Its
// assignment latency runs from a build's due time (so a late submission counts against it) to its
// Assign arriving at a worker: what a user waits for a free worker to start the build.
// Goals at 2,000 workers on a 2-core machine: p99 <= 50 ms, >= 1,000 jobs/s, RSS <= 500 MB.
// --channels K shares K TCP connections among the workers (0 = one connection per worker).
// Exits 2 if builds are lost or run twice, or the controller fails.
#include <atomic>
#include <chrono>
#include <map>
#include <mutex>
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

// A fresh controller with the trivial source uploaded.
std::unique_ptr<Cluster> StartCluster(std::string* source) {
  auto cluster_or = Cluster::Create("bench-scale");
  if (!cluster_or.ok()) Die(cluster_or.status().ToString());
  std::unique_ptr<Cluster> cluster = std::move(*cluster_or);
  // Default settings, info logging included: what a deployment runs.
  if (absl::Status s = cluster->StartController(); !s.ok()) Die(s.ToString(), cluster.get());
  TestClient client(cluster->address());
  auto uploaded = client.UploadTrivialSource(cluster->root());
  if (!uploaded.ok()) Die(uploaded.status().ToString(), cluster.get());
  *source = *uploaded;
  return cluster;
}

std::unique_ptr<SimFleet> StartFleet(Cluster* cluster, int workers, int channels) {
  SimFleetOptions options;
  options.address = cluster->address();
  options.workers = workers;
  options.channels = channels;
  auto fleet_or = SimFleet::Start(options, 300s);
  if (!fleet_or.ok()) Die(fleet_or.status().ToString(), cluster);
  return std::move(*fleet_or);
}

// Waits for every build, checks that none was lost or run twice and stops the fleet; fills in RSS.
void Finish(Cluster* cluster, SimFleet* fleet, Row* row) {
  if (!fleet->WaitCompleted(row->jobs, 900s)) {
    Die(std::to_string(fleet->completed()) + " of " + std::to_string(row->jobs) + " builds finished", cluster);
  }
  row->rss_mb = static_cast<double>(freeagent::testing::PeakRssBytes(cluster->controller()->pid())) / (1 << 20);
  fleet->Stop();
  if (fleet->duplicate_assigns() > 0 || fleet->CompletedJobs().size() != row->jobs) {
    Die("builds lost or run twice: " + std::to_string(fleet->duplicate_assigns()) + " duplicate assignments, " +
            std::to_string(fleet->CompletedJobs().size()) + " distinct builds finished",
        cluster);
  }
  if (!fleet->Failures().empty()) Die("a worker stream failed: " + fleet->Failures().front(), cluster);
}

// Closed loop: every build queued first, then the fleet connects and drains the queue.
Row RunOne(int workers, size_t jobs, int channels) {
  std::string source;
  std::unique_ptr<Cluster> cluster = StartCluster(&source);
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
        if (!c.Submit(freeagent::testing::MakeSpec(source, {{"short", "true"}})).ok()) ++errors;
      }
    });
  }
  for (auto& t : submitters) t.join();
  if (errors.load() > 0) Die(std::to_string(errors.load()) + " submissions failed", cluster.get());
  row.submit_s = std::chrono::duration<double>(std::chrono::steady_clock::now() - submit_start).count();

  std::unique_ptr<SimFleet> fleet = StartFleet(cluster.get(), workers, channels);
  Finish(cluster.get(), fleet.get(), &row);
  const double seconds = std::chrono::duration<double>(fleet->last_completion() - fleet->first_welcome()).count();
  std::vector<double> latencies = fleet->AssignLatenciesMs();
  row.p50_ms = freeagent::testing::Percentile(latencies, 50);
  row.p99_ms = freeagent::testing::Percentile(latencies, 99);
  row.jobs_per_s = static_cast<double>(jobs) / seconds;
  return row;
}

// Open loop: the fleet connects first, then builds arrive at `rate` per second.
Row RunAtRate(int workers, size_t jobs, int channels, double rate) {
  std::string source;
  std::unique_ptr<Cluster> cluster = StartCluster(&source);
  std::unique_ptr<SimFleet> fleet = StartFleet(cluster.get(), workers, channels);
  Row row;
  row.workers = workers;
  row.jobs = jobs;
  std::atomic<size_t> errors{0};
  std::atomic<size_t> next{0};
  std::mutex mu;
  std::map<std::string, std::chrono::steady_clock::time_point> due_of;  // build id -> its due time
  const auto start = std::chrono::steady_clock::now();
  std::vector<std::thread> submitters;
  constexpr size_t kSubmitters = 16;  // a Submit waits for its commit: one thread could not keep up
  for (size_t t = 0; t < kSubmitters; ++t) {
    submitters.emplace_back([&] {
      TestClient c(cluster->address());
      for (size_t i = next++; i < jobs; i = next++) {
        const auto due = start + std::chrono::duration_cast<std::chrono::steady_clock::duration>(
                                     std::chrono::duration<double>(static_cast<double>(i) / rate));
        std::this_thread::sleep_until(due);
        auto b = c.Submit(freeagent::testing::MakeSpec(source, {{"short", "true"}}));
        if (!b.ok()) {
          ++errors;
          continue;
        }
        std::lock_guard<std::mutex> lock(mu);
        due_of[b->id()] = due;
      }
    });
  }
  for (auto& t : submitters) t.join();
  if (errors.load() > 0) Die(std::to_string(errors.load()) + " submissions failed", cluster.get());
  row.submit_s = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  Finish(cluster.get(), fleet.get(), &row);
  const auto assigned = fleet->FirstAssignTimes();
  std::vector<double> latencies;
  for (const auto& [id, due] : due_of) {
    auto it = assigned.find(id);
    if (it == assigned.end()) Die("build " + id + " finished without an Assign", cluster.get());
    latencies.push_back(std::chrono::duration<double, std::milli>(it->second - due).count());
  }
  row.p50_ms = freeagent::testing::Percentile(latencies, 50);
  row.p99_ms = freeagent::testing::Percentile(latencies, 99);
  row.jobs_per_s =
      static_cast<double>(jobs) / std::chrono::duration<double>(fleet->last_completion() - start).count();
  return row;
}

void PrintRow(const Row& r) {
  std::printf("%8d %10.2f %9.2f ms %9.2f ms %10.0f %10.1f\n", r.workers, r.submit_s, r.p50_ms, r.p99_ms,
              r.jobs_per_s, r.rss_mb);
  std::fflush(stdout);
}

void PrintGoals(const std::vector<Row>& rows, const char* run) {
  for (const Row& r : rows) {
    if (r.workers != 2000) continue;
    std::printf("goals at 2,000 workers, %s: p99 %.2f ms (<= 50) %s, %.0f jobs/s (>= 1,000) %s, RSS %.1f MB (<= 500) %s\n", run,
                r.p99_ms, r.p99_ms <= 50 ? "met" : "MISSED", r.jobs_per_s, r.jobs_per_s >= 1000 ? "met" : "MISSED",
                r.rss_mb, r.rss_mb <= 500 ? "met" : "MISSED");
  }
}

}  // namespace

int main(int argc, char** argv) {
  std::vector<int> sizes = {100, 1000, 2000};
  size_t jobs = 10000;
  int channels = 0;
  double rate = 0;
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
    } else if (flag == "--rate") {
      if (!absl::SimpleAtod(value, &rate) || rate < 0) Die("--rate: bad number " + value);
    } else {
      Die("unknown flag " + flag + " (known: --workers N,N,... --jobs N --channels K --rate JOBS_PER_S)");
    }
  }
  if (argc % 2 == 0) Die(std::string("flag ") + argv[argc - 1] + " needs a value");

  const char* header = "%8s %10s %12s %12s %10s %10s\n";
  std::printf("controller scale, closed loop: %zu one-step builds queued, then N simulated workers with 1 slot each\n",
              jobs);
  std::printf(header, "workers", "submit s", "assign p50", "assign p99", "jobs/s", "RSS MB");
  std::vector<Row> rows;
  for (int n : sizes) {
    rows.push_back(RunOne(n, jobs, channels));
    PrintRow(rows.back());
  }
  PrintGoals(rows, "closed loop");
  if (rate <= 0) return 0;

  std::printf("controller scale, open loop: N simulated workers with 1 slot each, then %zu one-step builds "
              "arriving at %.0f/s; assignment latency from each build's due time to its Assign\n",
              jobs, rate);
  std::printf(header, "workers", "submit s", "assign p50", "assign p99", "jobs/s", "RSS MB");
  std::vector<Row> open_rows;
  for (int n : sizes) {
    open_rows.push_back(RunAtRate(n, jobs, channels, rate));
    PrintRow(open_rows.back());
  }
  PrintGoals(open_rows, "open loop");
  return 0;
}
