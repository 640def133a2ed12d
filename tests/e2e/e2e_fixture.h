// Shared gtest fixture for end-to-end tests: a Cluster of real processes in a temp dir whose
// logs are printed when a test fails.
#pragma once

#include <gtest/gtest.h>

#include <memory>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"

#include "tests/support/process_fixture.h"
#include "tests/support/test_client.h"

#define FA_ASSERT_OK(expr)                                 \
  do {                                                     \
    const ::absl::Status fa_e2e_status_ = (expr);          \
    ASSERT_TRUE(fa_e2e_status_.ok()) << fa_e2e_status_;    \
  } while (0)

#define FA_ASSERT_OK_AND_ASSIGN(lhs, expr)                                 \
  FA_ASSERT_OK_AND_ASSIGN_IMPL_(FA_E2E_CONCAT_(fa_e2e_or_, __LINE__), lhs, expr)
#define FA_E2E_CONCAT_INNER_(a, b) a##b
#define FA_E2E_CONCAT_(a, b) FA_E2E_CONCAT_INNER_(a, b)
#define FA_ASSERT_OK_AND_ASSIGN_IMPL_(var, lhs, expr)      \
  auto var = (expr);                                       \
  ASSERT_TRUE(var.ok()) << var.status();                   \
  lhs = std::move(var).value()

namespace freeagent::testing {

class E2ETest : public ::testing::Test {
 protected:
  void SetUp() override {
    auto cluster = Cluster::Create("e2e");
    ASSERT_TRUE(cluster.ok()) << cluster.status();
    cluster_ = std::move(cluster).value();
  }

  void TearDown() override {
    if (HasFailure() && cluster_) {
      std::fprintf(stderr, "=== process logs (%s) ===\n%s\n", cluster_->root().c_str(),
                   cluster_->DumpLogs().c_str());
    }
    client_.reset();
    cluster_.reset();
  }

  // Starts a controller (with `options`) and makes client() talk to it.
  void StartController(ControllerOptions options = {}) {
    absl::Status status = cluster_->StartController(std::move(options));
    ASSERT_TRUE(status.ok()) << status;
    client_ = std::make_unique<TestClient>(cluster_->address());
  }

  ChildProcess* StartWorker(WorkerOptions options = {}) {
    auto worker = cluster_->StartWorker(std::move(options));
    EXPECT_TRUE(worker.ok()) << worker.status();
    return worker.ok() ? *worker : nullptr;
  }

  static WorkerOptions NamedWorker(const std::string& name, std::vector<std::string> labels = {}) {
    WorkerOptions options;
    options.name = name;
    options.labels = std::move(labels);
    return options;
  }

  TestClient& client() { return *client_; }
  Cluster& cluster() { return *cluster_; }

  std::unique_ptr<Cluster> cluster_;
  std::unique_ptr<TestClient> client_;
};

}  // namespace freeagent::testing
