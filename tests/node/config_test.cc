// Worker configuration: TOML + flags, and the errors a bad config gives.
#include "node/config.h"

#include <CLI/CLI.hpp>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "common/fs.h"
#include "gtest/gtest.h"

namespace freeagent::node {
namespace {

TEST(WorkerConfig, ReadsEveryKey) {
  WorkerConfig c;
  absl::Status s = ApplyWorkerToml(R"(
controller = "10.0.0.5:7070"
name = "mac-mini-1"
id = "w-fixed"
slots = 1
work_dir = "/var/lib/fa"
driver = "local"
heartbeat_interval_ms = 2000
[labels]
os = "macos"
xcode = "16.1"
)",
                                   "worker.toml", &c);
  ASSERT_TRUE(s.ok()) << s;
  EXPECT_EQ(c.controller, "10.0.0.5:7070");
  EXPECT_EQ(c.name, "mac-mini-1");
  EXPECT_EQ(c.id, "w-fixed");
  EXPECT_EQ(c.slots, 1u);
  EXPECT_EQ(c.work_dir, "/var/lib/fa");
  EXPECT_EQ(c.heartbeat_interval_ms, 2000u);
  EXPECT_EQ(c.labels.at("os"), "macos");
  EXPECT_EQ(c.labels.at("xcode"), "16.1");
}

TEST(WorkerConfig, LogLimitDefaultsTo256MiBAndIsBounded) {
  WorkerConfig c;
  EXPECT_EQ(c.max_log_mib, 256u);
  ASSERT_TRUE(ApplyWorkerToml("max_log_mib = 64\n", "w.toml", &c).ok());
  EXPECT_EQ(c.max_log_mib, 64u);
  WorkerConfig d;
  absl::Status s = ApplyWorkerToml("max_log_mib = 0\n", "w.toml", &d);
  EXPECT_TRUE(absl::StrContains(s.message(), "w.toml: key max_log_mib: must be 1..1048576")) << s;
}

TEST(WorkerConfig, DisconnectedJobLimitDefaultsTo10MinutesFromFileOrFlag) {
  WorkerConfig c;
  EXPECT_EQ(c.disconnected_job_limit_seconds, 600u);
  ASSERT_TRUE(ApplyWorkerToml("disconnected_job_limit_seconds = 120\n", "w.toml", &c).ok());
  EXPECT_EQ(c.disconnected_job_limit_seconds, 120u);
  WorkerConfig d;
  absl::Status s = ApplyWorkerToml("disconnected_job_limit_seconds = 0\n", "w.toml", &d);
  EXPECT_TRUE(absl::StrContains(s.message(), "w.toml: key disconnected_job_limit_seconds: must be at least 1"))
      << s;
  CLI::App app;
  WorkerFlags flags;
  AddWorkerFlags(app, &flags);
  const char* argv[] = {"freeagent-worker", "--disconnected-job-limit-seconds", "30"};
  app.parse(3, argv);
  ASSERT_TRUE(flags.disconnected_job_limit_seconds.has_value());
  EXPECT_EQ(*flags.disconnected_job_limit_seconds, 30u);
}

TEST(WorkerConfig, MalformedTomlNamesFileAndLine) {
  WorkerConfig c;
  absl::Status s = ApplyWorkerToml("controller = \"a:1\"\nslots = = 3\n", "bad.toml", &c);
  EXPECT_EQ(s.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_TRUE(absl::StrContains(s.message(), "bad.toml:2")) << s;
}

TEST(WorkerConfig, UnknownKeyIsRejected) {
  WorkerConfig c;
  absl::Status s = ApplyWorkerToml("slot = 3\n", "typo.toml", &c);
  EXPECT_EQ(s.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_TRUE(absl::StrContains(s.message(), "typo.toml")) << s;
  EXPECT_TRUE(absl::StrContains(s.message(), "slot")) << s;
  EXPECT_TRUE(absl::StrContains(s.message(), "unknown key")) << s;
}

TEST(WorkerConfig, WrongTypeNamesKey) {
  WorkerConfig c;
  absl::Status s = ApplyWorkerToml("slots = \"two\"\n", "types.toml", &c);
  EXPECT_EQ(s.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_TRUE(absl::StrContains(s.message(), "types.toml")) << s;
  EXPECT_TRUE(absl::StrContains(s.message(), "slots")) << s;
  EXPECT_TRUE(absl::StrContains(s.message(), "integer")) << s;
}

TEST(WorkerConfig, BadValuesAreRejected) {
  WorkerConfig c;
  EXPECT_TRUE(absl::StrContains(ApplyWorkerToml("slots = 0\n", "w.toml", &c).message(), "slots"));
  WorkerConfig d;
  absl::Status s = ApplyWorkerToml("driver = \"vmware\"\n", "w.toml", &d);
  EXPECT_TRUE(absl::StrContains(s.message(), "driver")) << s;
  EXPECT_TRUE(absl::StrContains(s.message(), "vmware")) << s;
}

TEST(WorkerConfig, FlagsWinOverFileAndDefaultsAreFilled) {
  auto dir = MakePrivateTempDir("/tmp", "fa-config-");
  ASSERT_TRUE(dir.ok());
  std::string file = *dir + "/worker.toml";
  ASSERT_TRUE(WriteFileAtomic(file, "controller = \"file:1\"\nslots = 4\n[labels]\nos = \"macos\"\n").ok());
  CLI::App app;
  WorkerFlags flags;
  AddWorkerFlags(app, &flags);
  std::vector<std::string> args = {"--label", "pool=fast", "--slots", "1", "--config", file,
                                   "--work-dir", *dir + "/work"};
  std::reverse(args.begin(), args.end());  // CLI11 takes a reversed vector
  app.parse(args);
  auto c = BuildWorkerConfig(flags);
  ASSERT_TRUE(c.ok()) << c.status();
  EXPECT_EQ(c->controller, "file:1");
  EXPECT_EQ(c->slots, 1u);
  EXPECT_EQ(c->labels.at("os"), "macos");  // configured: not overridden by the default
  EXPECT_EQ(c->labels.at("arch"), "x86_64");
  EXPECT_EQ(c->labels.at("pool"), "fast");
  EXPECT_FALSE(c->name.empty());
  EXPECT_FALSE(c->id.empty());
  // The generated id is stable across starts.
  auto again = BuildWorkerConfig(flags);
  ASSERT_TRUE(again.ok());
  EXPECT_EQ(again->id, c->id);
  RemoveTree(*dir).IgnoreError();
}

TEST(WorkerConfig, SecurityKeysAndTheTokenFromAFileOrTheEnvironment) {
  auto dir = MakePrivateTempDir("/tmp", "fa-config-");
  ASSERT_TRUE(dir.ok());
  ASSERT_TRUE(WriteFileAtomic(*dir + "/worker.token", "  tok-from-file\n", 0600).ok());
  const std::string file = *dir + "/worker.toml";
  ASSERT_TRUE(WriteFileAtomic(file, absl::StrCat("insecure = true\ntls_server_name = \"ctl\"\ntoken_file = \"", *dir,
                                                 "/worker.token\"\n"))
                  .ok());
  WorkerFlags flags;
  flags.config = file;
  flags.work_dir = *dir + "/work";
  ::setenv("FREEAGENT_TOKEN", "tok-from-env", 1);
  auto c = BuildWorkerConfig(flags);
  ASSERT_TRUE(c.ok()) << c.status();
  EXPECT_TRUE(c->security.insecure);
  EXPECT_EQ(c->security.server_name, "ctl");
  EXPECT_EQ(c->security.token, "tok-from-file") << "the file wins over the environment";

  ASSERT_TRUE(WriteFileAtomic(file, "insecure = true\n").ok());
  auto env = BuildWorkerConfig(flags);
  ASSERT_TRUE(env.ok()) << env.status();
  EXPECT_EQ(env->security.token, "tok-from-env");
  ::unsetenv("FREEAGENT_TOKEN");

  // A certificate that cannot be read fails at start-up, naming it.
  ASSERT_TRUE(WriteFileAtomic(file, "").ok());
  flags.cert_file = *dir + "/missing.crt";
  flags.key_file = *dir + "/missing.key";
  auto bad = BuildWorkerConfig(flags);
  EXPECT_EQ(bad.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_TRUE(absl::StrContains(bad.status().message(), "missing.crt")) << bad.status();
  RemoveTree(*dir).IgnoreError();
}

TEST(WorkerConfig, MissingFileIsAnError) {
  WorkerFlags flags;
  flags.config = "/nonexistent/worker.toml";
  auto c = BuildWorkerConfig(flags);
  EXPECT_FALSE(c.ok());
  EXPECT_TRUE(absl::StrContains(c.status().message(), "/nonexistent/worker.toml")) << c.status();
}

TEST(WorkerConfig, BadLabelFlag) {
  WorkerFlags flags;
  flags.labels = {"novalue"};
  flags.work_dir = "/tmp/fa-config-unused";
  auto c = BuildWorkerConfig(flags);
  EXPECT_EQ(c.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_TRUE(absl::StrContains(c.status().message(), "novalue")) << c.status();
}

}  // namespace
}  // namespace freeagent::node

namespace freeagent::node {
namespace {

TEST(WorkerConfig, StaticDriverTableIsRead) {
  WorkerConfig c;
  absl::Status s = ApplyWorkerToml(
      "driver = \"static\"\n[static]\nhost = \"mac1.local\"\nport = 2222\nuser = \"builder\"\n"
      "key = \"/etc/freeagent/id_ed25519\"\nhost_key_fingerprint = \"SHA256:abc\"\n"
      "workspace_root = \"/Users/builder/jobs\"\nreset_command = \"rm -rf ~/Library/Caches/x\"\n",
      "mac.toml", &c);
  ASSERT_TRUE(s.ok()) << s;
  EXPECT_EQ(c.driver, "static");
  EXPECT_EQ(c.static_driver.ssh.host, "mac1.local");
  EXPECT_EQ(c.static_driver.ssh.port, 2222);
  EXPECT_EQ(c.static_driver.ssh.user, "builder");
  EXPECT_EQ(c.static_driver.ssh.private_key_path, "/etc/freeagent/id_ed25519");
  EXPECT_EQ(c.static_driver.ssh.host_key_fingerprint, "SHA256:abc");
  EXPECT_EQ(c.static_driver.workspace_root, "/Users/builder/jobs");
  EXPECT_EQ(c.static_driver.reset_command, "rm -rf ~/Library/Caches/x");
}

TEST(WorkerConfig, StaticDriverNeedsAPinnedHostKeyAndKnownKeys) {
  WorkerConfig c;
  absl::Status s = ApplyWorkerToml(
      "driver = \"static\"\n[static]\nhost = \"h\"\nuser = \"u\"\nkey = \"/k\"\n", "mac.toml", &c);
  EXPECT_EQ(s.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_TRUE(absl::StrContains(s.message(), "mac.toml: [static]")) << s;
  EXPECT_TRUE(absl::StrContains(s.message(), "pinned")) << s;

  WorkerConfig d;
  s = ApplyWorkerToml("[static]\nhots = \"h\"\n", "typo.toml", &d);
  EXPECT_EQ(s.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_TRUE(absl::StrContains(s.message(), "static.hots")) << s;
}

TEST(WorkerConfig, TartDriverTableAndItsImagesAreRead) {
  const std::string image =
      "[images.macos-sonoma-xcode-16]\nbase = \"sonoma-xcode-16\"\nuser = \"admin\"\n"
      "key = \"/Users/ci/.ssh/builder\"\nhost_key_fingerprint = \"SHA256:abc\"\n"
      "workspace_root = \"/Users/admin/jobs\"\ncpus = 4\nmemory_mb = 8192\n";
  WorkerConfig c;
  absl::Status s = ApplyWorkerToml(
      "driver = \"tart\"\n[tart]\nbinary = \"/opt/homebrew/bin/tart\"\nip_resolver = \"arp\"\n"
      "ip_wait_seconds = 90\nboot_timeout_seconds = 300\nstop_timeout_seconds = 20\n"
      "command_timeout_seconds = 1200\nssh_port = 2222\nwork_dir = \"/Users/ci/vms\"\nmax_cpus = 6\n"
      "max_memory_mb = 12288\nmax_disk_gb = 120\n" + image,
      "mac.toml", &c);
  ASSERT_TRUE(s.ok()) << s;
  EXPECT_EQ(c.driver, "tart");
  EXPECT_EQ(c.tart.binary, "/opt/homebrew/bin/tart");
  EXPECT_EQ(c.tart.ip_resolver, "arp");
  EXPECT_EQ(c.tart.ip_wait, std::chrono::seconds(90));
  EXPECT_EQ(c.tart.boot_timeout, std::chrono::seconds(300));
  EXPECT_EQ(c.tart.stop_timeout, std::chrono::seconds(20));
  EXPECT_EQ(c.tart.command_timeout, std::chrono::seconds(1200));
  EXPECT_EQ(c.tart.ssh_port, 2222);
  EXPECT_EQ(c.tart.work_dir, "/Users/ci/vms");
  EXPECT_EQ(c.tart.max_cpus, 6u);
  EXPECT_EQ(c.tart.max_memory_mb, 12288u);
  EXPECT_EQ(c.tart.max_disk_gb, 120u);
  auto entry = c.images.Find("macos-sonoma-xcode-16");
  ASSERT_TRUE(entry.ok()) << entry.status();
  EXPECT_EQ(entry->base, "sonoma-xcode-16");
  EXPECT_EQ(entry->user, "admin");
  EXPECT_EQ(entry->cpus, 4u);

  // Tart images must name their SSH user, key and pinned host key; a zero wait and unknown keys are refused.
  struct Case {
    std::string toml;
    std::string words;
  };
  const Case cases[] = {
      {"driver = \"tart\"\n[images.mac]\nbase = \"sonoma\"\n", "mac.toml: [tart]"},
      {"driver = \"tart\"\n[tart]\nip_wait_seconds = 0\n" + image, "tart.ip_wait_seconds"},
      {"driver = \"tart\"\n[tart]\nip_resolvr = \"dhcp\"\n" + image, "tart.ip_resolvr"},
      {"driver = \"tart\"\n[tart]\nip_resolver = \"mdns\"\n" + image, "ip_resolver must be dhcp, arp or agent"},
      {"driver = \"tart\"\n", "no images configured"},
      {"driver = \"hyperv\"\n", "available: local, static, qemu, tart"},
  };
  for (const Case& k : cases) {
    WorkerConfig d;
    absl::Status bad = ApplyWorkerToml(k.toml, "mac.toml", &d);
    EXPECT_EQ(bad.code(), absl::StatusCode::kInvalidArgument) << k.toml;
    EXPECT_TRUE(absl::StrContains(bad.message(), k.words)) << k.words << " in: " << bad;
  }
}

// A size key in MiB: its default, a value from the file, and 0 or past 1 TiB refused naming the key.
void ExpectMibKey(const std::string& key, uint32_t WorkerConfig::*member, uint32_t default_mib) {
  WorkerConfig c;
  EXPECT_EQ(c.*member, default_mib) << key;
  ASSERT_TRUE(ApplyWorkerToml(key + " = 40960\n", "w.toml", &c).ok()) << key;
  EXPECT_EQ(c.*member, 40960u) << key;
  for (const char* bad : {" = 0\n", " = 1048577\n"}) {
    WorkerConfig d;
    absl::Status s = ApplyWorkerToml(key + bad, "w.toml", &d);
    EXPECT_TRUE(absl::StrContains(s.message(), "w.toml: key " + key + ": must be 1..1048576")) << s;
  }
}

TEST(WorkerConfig, SizeKeysHaveTheirDefaultsAndAreBounded) {
  ExpectMibKey("artifact_max_total_mib", &WorkerConfig::artifact_max_total_mib, 16384);
  ExpectMibKey("log_spool_max_mib", &WorkerConfig::log_spool_max_mib, 4096);
}

}  // namespace
}  // namespace freeagent::node
