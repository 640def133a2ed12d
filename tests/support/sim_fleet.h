// Simulated workers for controller load tests and benchmarks: N worker streams in one process, each a
// gRPC callback-API client (no thread per worker) speaking the real worker protocol over loopback to
// a real controller. A simulated job is one short step: on Assign the worker sends JobAccepted, one
// RUNNING progress, one log chunk and the SUCCEEDED result at once, and counts it done on ResultAck.
//
// What it measures: every (job, attempt) assigned (a second Assign of the same pair is a duplicate),
// every result acknowledged, and the assignment latency of each slot: from the moment it became free
// (Welcome received, or the previous result written) to the next Assign arriving.
#pragma once

#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <map>
#include <memory>
#include <mutex>
#include <queue>
#include <string>
#include <thread>
#include <vector>

#include <grpcpp/channel.h>

#include "absl/status/statusor.h"

namespace freeagent::testing {

struct SimFleetOptions {
  std::string address;                      // the controller, "127.0.0.1:port", plaintext
  int workers = 200;
  uint32_t slots = 1;                       // per worker
  std::string name_prefix = "sim";          // worker ids are <prefix>-<i>
  std::string log_data = "step output\n";   // each job's whole log
  int channels = 0;                         // TCP connections shared by the workers; 0 = one each
  std::chrono::milliseconds heartbeat_interval{5000};
};

class SimWorker;

class SimFleet {
 public:
  // Opens every worker's stream and waits (up to `timeout`) until each has its Welcome.
  static absl::StatusOr<std::unique_ptr<SimFleet>> Start(SimFleetOptions options,
                                                         std::chrono::milliseconds timeout);
  ~SimFleet();  // Stop()

  // Ends every stream and waits for them to finish. Idempotent.
  void Stop();

  // Waits until `count` results were acknowledged; false on timeout.
  bool WaitCompleted(size_t count, std::chrono::milliseconds timeout);

  size_t completed();
  // (job, attempt) pairs assigned more than once, and results acknowledged more than once.
  size_t duplicate_assigns();
  size_t duplicate_results();
  // job id -> number of acknowledged results over all attempts.
  std::map<std::string, int> CompletedJobs();
  // Assignment latencies in milliseconds, in no particular order.
  std::vector<double> AssignLatenciesMs();
  // job id -> when its first Assign arrived (for latencies measured from the submission).
  std::map<std::string, std::chrono::steady_clock::time_point> FirstAssignTimes();
  // Streams that ended before Stop() (with their status), e.g. "sim-3: UNAVAILABLE ...".
  std::vector<std::string> Failures();
  // When the first Welcome and the last acknowledged result arrived.
  std::chrono::steady_clock::time_point first_welcome();
  std::chrono::steady_clock::time_point last_completion();

 private:
  friend class SimWorker;
  explicit SimFleet(SimFleetOptions options);

  void OnWelcome(SimWorker* worker);
  // False if (job, attempt) was assigned before.
  void OnAssign(const std::string& job_id, const std::string& key, double latency_ms, bool has_latency);
  void OnResultAck(const std::string& key, const std::string& job_id);
  void OnStreamDone(const std::string& worker, const std::string& status, bool expected);
  void HeartbeatLoop();

  SimFleetOptions options_;
  std::vector<std::shared_ptr<grpc::Channel>> channels_;
  std::vector<std::unique_ptr<SimWorker>> workers_;

  std::mutex mu_;
  std::condition_variable cv_;
  size_t welcomed_ = 0;
  size_t done_streams_ = 0;
  std::map<std::string, int> assigned_;        // job#attempt -> assigns
  std::map<std::string, int> acked_;           // job#attempt -> result acks
  std::map<std::string, int> jobs_completed_;  // job -> result acks
  std::map<std::string, std::chrono::steady_clock::time_point> first_assign_;  // job -> first Assign
  size_t completed_ = 0;
  size_t duplicate_assigns_ = 0;
  size_t duplicate_results_ = 0;
  std::vector<double> latencies_ms_;
  std::vector<std::string> failures_;
  std::chrono::steady_clock::time_point first_welcome_{};
  std::chrono::steady_clock::time_point last_completion_{};
  bool stopping_ = false;
  std::thread heartbeat_;
  // When each welcomed worker beats next, earliest first. Like a real worker (node/connection.cc),
  // each beats one interval after its Welcome and then every interval, not all at one instant.
  using Beat = std::pair<std::chrono::steady_clock::time_point, SimWorker*>;
  std::priority_queue<Beat, std::vector<Beat>, std::greater<Beat>> beats_;
};

// p-th percentile (0..100) of `values` (sorted in place); 0 for none.
double Percentile(std::vector<double>& values, double p);

}  // namespace freeagent::testing
