// freeagent-worker: runs build jobs for a Free Agent controller. SIGTERM/SIGINT drain (no new jobs,
// running ones finish, exit 0); a second signal cancels running jobs (they still clean up) and exits.
#include <signal.h>

#include <cstdio>
#include <thread>

#include <CLI/CLI.hpp>
#include <spdlog/spdlog.h>

#include "absl/synchronization/mutex.h"
#include "common/logging.h"
#include "node/config.h"
#include "node/worker.h"

int main(int argc, char** argv) {
  // Signals are taken by one thread with sigwait, so every other thread must have them blocked.
  sigset_t signals;
  sigemptyset(&signals);
  sigaddset(&signals, SIGTERM);
  sigaddset(&signals, SIGINT);
  pthread_sigmask(SIG_BLOCK, &signals, nullptr);
  // A step that exits without reading its stdin, or a peer gone mid-write, is an error, not a kill.
  signal(SIGPIPE, SIG_IGN);
  // This system's Abseil keeps a lock graph for every absl::Mutex gRPC takes (lock-cycle detection):
  // CPU a bulk transfer spends on every chunk.
  absl::SetMutexDeadlockDetectionMode(absl::OnDeadlockCycle::kIgnore);

  CLI::App app{"freeagent-worker: runs Free Agent build jobs"};
  freeagent::node::WorkerFlags flags;
  freeagent::node::AddWorkerFlags(app, &flags);
  std::string log_level;
  app.add_option("--log-level", log_level, "trace|debug|info|warn|error (default: FREEAGENT_LOG_LEVEL or info)");
  try {
    app.parse(argc, argv);
  } catch (const CLI::ParseError& e) {
    return app.exit(e);
  }
  freeagent::InitLogging("worker", log_level);

  absl::StatusOr<freeagent::node::WorkerConfig> config = freeagent::node::BuildWorkerConfig(flags);
  if (!config.ok()) {
    std::fprintf(stderr, "freeagent-worker: %s\n", std::string(config.status().message()).c_str());
    return 2;
  }
  freeagent::node::Worker worker(*config);

  std::thread signal_thread([&worker, signals] {
    int count = 0;
    for (;;) {
      int sig = 0;
      if (sigwait(&signals, &sig) != 0) continue;
      if (++count == 1) {
        spdlog::info("signal {}: draining (running jobs finish; send again to cancel them)", sig);
        worker.Drain();
      } else {
        spdlog::info("signal {}: cancelling running jobs", sig);
        worker.Shutdown();
      }
    }
  });
  signal_thread.detach();

  absl::Status started = worker.Start();
  if (!started.ok()) {
    spdlog::error("{}", std::string(started.message()));
    return 1;
  }
  worker.Wait();
  worker.Stop();
  spdlog::info("worker stopped");
  return 0;
}
