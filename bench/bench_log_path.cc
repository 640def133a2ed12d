// bench_log_path: throughput and latency of the log path worker -> controller -> watching client,
// and the peak memory of both processes, measured with the real binaries on loopback.
//
//   bench_log_path [--log-mb 200] [--latency-seconds 10] [--rate-mbps 1]
//
// 1. A step writes --log-mb MB of log-like text as fast as it can; a Watch client counts bytes.
// 2. A step writes 1000-byte lines stamped with the wall clock at a steady --rate-mbps; the client
//    computes receive time minus stamp per line (same host, same clock): p50 / p99 / max.
// 3. VmHWM of controller and worker from /proc/<pid>/status.
// Prints the figures against the goals: >= 50 MB/s, p99 <= 50 ms, RSS <= 100 MB each.
#include <time.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <string>
#include <thread>
#include <vector>

#include <grpcpp/client_context.h>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "tests/support/process_fixture.h"
#include "tests/support/test_client.h"

namespace {

using freeagent::testing::Cluster;
using freeagent::testing::TestClient;
using Clock = std::chrono::steady_clock;
using namespace std::chrono_literals;

int64_t NowMicros() {
  timespec ts;
  clock_gettime(CLOCK_REALTIME, &ts);
  return static_cast<int64_t>(ts.tv_sec) * 1000000 + ts.tv_nsec / 1000;
}

[[noreturn]] void Die(const std::string& what, const absl::Status& status, Cluster* cluster) {
  std::fprintf(stderr, "bench_log_path: %s: %s\n", what.c_str(), status.ToString().c_str());
  if (cluster != nullptr) std::fprintf(stderr, "%s\n", cluster->DumpLogs().c_str());
  std::exit(2);
}

struct Throughput {
  uint64_t bytes = 0;
  double first_to_last_s = 0;
  double submit_to_last_s = 0;
};

// Watches `id` from 0 until the stream ends; `on_data` sees every log chunk with its arrival time.
template <typename OnData>
absl::Status WatchLog(TestClient& client, const std::string& id, OnData on_data) {
  grpc::ClientContext context;
  freeagent::v1::WatchRequest request;
  request.set_id(id);
  auto reader = client.builds()->Watch(&context, request);
  freeagent::v1::WatchEvent event;
  while (reader->Read(&event)) {
    if (event.has_log()) on_data(event.log().data());
  }
  grpc::Status status = reader->Finish();
  if (!status.ok()) return absl::UnknownError(status.error_message());
  return absl::OkStatus();
}

Throughput MeasureThroughput(TestClient& client, Cluster& cluster, const std::string& source,
                             uint64_t bytes) {
  auto spec = freeagent::testing::MakeSpec(
      source, {{"emit", absl::StrCat("'", freeagent::testing::StreamToolBinary(), "' text ", bytes)}});
  auto start = Clock::now();
  auto build = client.Submit(spec);
  if (!build.ok()) Die("submit", build.status(), &cluster);
  Throughput result;
  Clock::time_point first{}, last{};
  absl::Status status = WatchLog(client, build->id(), [&](const std::string& data) {
    auto now = Clock::now();
    if (result.bytes == 0) first = now;
    last = now;
    result.bytes += data.size();
  });
  if (!status.ok()) Die("watch", status, &cluster);
  auto done = client.WaitForTerminal(build->id(), 60s);
  if (!done.ok()) Die("wait", done.status(), &cluster);
  if (done->state() != freeagent::v1::JOB_STATE_SUCCEEDED) {
    Die("throughput build", absl::InternalError(done->ShortDebugString()), &cluster);
  }
  result.first_to_last_s = std::chrono::duration<double>(last - first).count();
  result.submit_to_last_s = std::chrono::duration<double>(last - start).count();
  return result;
}

std::vector<double> MeasureLatency(TestClient& client, Cluster& cluster, const std::string& source,
                                   double seconds, uint64_t rate) {
  auto spec = freeagent::testing::MakeSpec(
      source, {{"lines", absl::StrCat("'", freeagent::testing::StreamToolBinary(), "' lines ", rate,
                                      " ", seconds, " 1000")}});
  auto build = client.Submit(spec);
  if (!build.ok()) Die("submit", build.status(), &cluster);
  const int64_t watch_start = NowMicros();
  std::vector<double> latencies_ms;
  std::string pending;
  absl::Status status = WatchLog(client, build->id(), [&](const std::string& data) {
    int64_t now = NowMicros();
    pending += data;
    size_t start = 0;
    for (size_t nl; (nl = pending.find('\n', start)) != std::string::npos; start = nl + 1) {
      int64_t stamp = 0;
      size_t space = pending.find(' ', start);
      if (space != std::string::npos && space < nl &&
          absl::SimpleAtoi(absl::string_view(pending).substr(start, space - start), &stamp) &&
          stamp >= watch_start) {
        latencies_ms.push_back((now - stamp) / 1000.0);
      }
    }
    pending.erase(0, start);
  });
  if (!status.ok()) Die("watch", status, &cluster);
  auto done = client.WaitForTerminal(build->id(), 60s);
  if (!done.ok() || done->state() != freeagent::v1::JOB_STATE_SUCCEEDED) {
    Die("latency build", done.ok() ? absl::InternalError(done->ShortDebugString()) : done.status(),
        &cluster);
  }
  std::sort(latencies_ms.begin(), latencies_ms.end());
  return latencies_ms;
}

double Percentile(const std::vector<double>& sorted, double p) {
  if (sorted.empty()) return 0;
  size_t index = static_cast<size_t>(p / 100.0 * (sorted.size() - 1) + 0.5);
  return sorted[std::min(index, sorted.size() - 1)];
}

const char* Verdict(bool ok) { return ok ? "ok" : "MISSED"; }

}  // namespace

int main(int argc, char** argv) {
  uint64_t log_mb = 200;
  double latency_seconds = 10;
  double rate_mbps = 1;
  for (int i = 1; i + 1 < argc; i += 2) {
    std::string flag = argv[i];
    if (flag == "--log-mb") log_mb = std::strtoull(argv[i + 1], nullptr, 10);
    else if (flag == "--latency-seconds") latency_seconds = std::strtod(argv[i + 1], nullptr);
    else if (flag == "--rate-mbps") rate_mbps = std::strtod(argv[i + 1], nullptr);
    else {
      std::fprintf(stderr, "usage: bench_log_path [--log-mb N] [--latency-seconds S] [--rate-mbps R]\n");
      return 2;
    }
  }

  auto cluster_or = Cluster::Create("bench");
  if (!cluster_or.ok()) Die("temp dir", cluster_or.status(), nullptr);
  Cluster& cluster = **cluster_or;
  if (absl::Status s = cluster.StartController(); !s.ok()) Die("controller", s, &cluster);
  freeagent::testing::WorkerOptions worker_options;
  worker_options.name = "bench-worker";
  auto worker = cluster.StartWorker(worker_options);
  if (!worker.ok()) Die("worker", worker.status(), &cluster);
  TestClient client(cluster.address());
  if (absl::Status s = client.WaitForWorkers(1, 20s); !s.ok()) Die("worker online", s, &cluster);
  auto source = client.UploadTrivialSource(cluster.root());
  if (!source.ok()) Die("upload", source.status(), &cluster);

  std::printf("log path benchmark: controller pid %d, worker pid %d, %s\n", cluster.controller()->pid(),
              (*worker)->pid(), cluster.address().c_str());
  std::fflush(stdout);

  Throughput t = MeasureThroughput(client, cluster, *source, log_mb * 1000 * 1000);
  double mbps = t.first_to_last_s > 0 ? t.bytes / 1e6 / t.first_to_last_s : 0;
  double mbps_e2e = t.submit_to_last_s > 0 ? t.bytes / 1e6 / t.submit_to_last_s : 0;

  std::vector<double> lat = MeasureLatency(client, cluster, *source, latency_seconds,
                                           static_cast<uint64_t>(rate_mbps * 1e6));
  double p50 = Percentile(lat, 50), p99 = Percentile(lat, 99), max = lat.empty() ? 0 : lat.back();

  double controller_mb = freeagent::testing::PeakRssBytes(cluster.controller()->pid()) / 1e6;
  double worker_mb = freeagent::testing::PeakRssBytes((*worker)->pid()) / 1e6;

  std::printf("\n%-44s %12s %12s %s\n", "measure", "value", "goal", "");
  std::printf("%-44s %9.1f MB/s %9s    %s\n",
              absl::StrCat("throughput, ", t.bytes / 1000000, " MB, first to last byte").c_str(), mbps,
              ">= 50", Verdict(mbps >= 50));
  std::printf("%-44s %9.1f MB/s %12s\n", "throughput, submit to last byte", mbps_e2e, "");
  std::printf("%-44s %10.1f ms %12s\n",
              absl::StrCat("latency p50 (", lat.size(), " lines at ", rate_mbps, " MB/s)").c_str(), p50, "");
  std::printf("%-44s %10.1f ms %9s    %s\n", "latency p99", p99, "<= 50", Verdict(p99 <= 50));
  std::printf("%-44s %10.1f ms %12s\n", "latency max", max, "");
  std::printf("%-44s %10.1f MB %9s    %s\n", "peak RSS controller (VmHWM)", controller_mb, "<= 100",
              Verdict(controller_mb <= 100));
  std::printf("%-44s %10.1f MB %9s    %s\n", "peak RSS worker (VmHWM)", worker_mb, "<= 100",
              Verdict(worker_mb <= 100));
  return 0;
}
