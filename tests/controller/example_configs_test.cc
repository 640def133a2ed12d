// Every example config under deploy/ goes through the real loaders (the controller's and the worker's,
// validation included), so an example cannot drift from the keys and rules the binaries enforce.
#include <filesystem>

#include <gtest/gtest.h>

#include "absl/strings/match.h"
#include "common/config.h"
#include "common/fs.h"
#include "controller/config.h"
#include "node/config.h"

namespace freeagent::controller {
namespace {

std::vector<std::string> ExampleConfigs() {
  std::vector<std::string> out;
  for (const auto& e : std::filesystem::recursive_directory_iterator(FREEAGENT_SOURCE_DIR "/deploy")) {
    if (e.is_regular_file() && e.path().extension() == ".toml") out.push_back(e.path().string());
  }
  std::sort(out.begin(), out.end());
  return out;
}

TEST(ExampleConfigs, EveryTomlUnderDeployLoadsAndValidates) {
  const std::vector<std::string> files = ExampleConfigs();
  size_t controllers = 0, workers = 0;
  for (const std::string& path : files) {
    const std::string name = std::filesystem::path(path).filename().string();
    if (absl::StartsWith(name, "controller")) {
      auto table = LoadToml(path);
      ASSERT_TRUE(table.ok()) << table.status();
      ControllerConfig config;
      absl::Status st = ApplyControllerToml(*table, path, nullptr, &config);
      ASSERT_TRUE(st.ok()) << st;
      EXPECT_TRUE(ValidateControllerConfig(config).ok()) << path << ": " << ValidateControllerConfig(config);
      // A controller example serves TLS, or plaintext only on loopback.
      if (config.security.insecure) {
        EXPECT_TRUE(absl::StartsWith(config.listen, "127.0.0.1:")) << path << " listens on " << config.listen;
      } else {
        EXPECT_FALSE(config.security.tls_cert_file.empty()) << path;
      }
      ++controllers;
    } else if (absl::StartsWith(name, "worker")) {
      auto text = ReadFile(path);
      ASSERT_TRUE(text.ok()) << text.status();
      node::WorkerConfig config;
      absl::Status st = node::ApplyWorkerToml(*text, path, &config);
      EXPECT_TRUE(st.ok()) << st;
      EXPECT_FALSE(config.security.insecure) << path << ": an example worker talks TLS";
      ++workers;
    } else {
      ADD_FAILURE() << path << ": an example config this test does not know how to load";
    }
  }
  EXPECT_GE(controllers, 1u);
  EXPECT_GE(workers, 1u);
}

TEST(ExampleConfigs, TheControllerRefusesPlaintextUnlessInsecure) {
  auto table = ParseToml("listen = \"0.0.0.0:7070\"\nclient_tokens = [\"" + std::string(64, 'a') + "\"]\n", "c.toml");
  ASSERT_TRUE(table.ok()) << table.status();
  ControllerConfig config;
  ASSERT_TRUE(ApplyControllerToml(*table, "c.toml", nullptr, &config).ok());
  absl::Status st = ValidateControllerConfig(config);
  EXPECT_EQ(st.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_TRUE(absl::StrContains(st.message(), "no TLS certificate configured")) << st;
  config.security.insecure = true;
  EXPECT_TRUE(ValidateControllerConfig(config).ok());

  auto typo = ParseToml("tls_certificate = \"x\"\n", "c.toml");
  ASSERT_TRUE(typo.ok());
  absl::Status unknown = ApplyControllerToml(*typo, "c.toml", nullptr, &config);
  EXPECT_TRUE(absl::StrContains(unknown.message(), "tls_certificate")) << unknown;
}

TEST(ExampleConfigs, KeysGivenAsFlagsKeepTheirValues) {
  auto table = ParseToml("listen = \"0.0.0.0:1\"\ndata_dir = \"/from/file\"\n", "c.toml");
  ASSERT_TRUE(table.ok());
  ControllerConfig config;
  config.listen = "127.0.0.1:9";
  ASSERT_TRUE(ApplyControllerToml(*table, "c.toml", [](const std::string& key) { return key == "listen"; },
                                  &config)
                  .ok());
  EXPECT_EQ(config.listen, "127.0.0.1:9");
  EXPECT_EQ(config.data_dir, "/from/file");
}

}  // namespace
}  // namespace freeagent::controller
