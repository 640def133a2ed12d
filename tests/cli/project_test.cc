#include "cli/project.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

namespace freeagent::cli {
namespace {

using ::testing::HasSubstr;

TEST(ParseProjectToml, ReadsStepsLabelsArtifactsAndTimeouts) {
  auto spec = ParseProjectToml(R"(
name = "hello"
timeout_seconds = 300
[labels]
os = "linux"
[[step]]
name = "build"
run = "make"
timeout_seconds = 120
env = { CFLAGS = "-O2" }
[[step]]
name = "package"
run = "make dist"
working_dir = "sub"
[[artifact]]
glob = "hello-*.tar.gz"
max_size = 1024
[[artifact]]
glob = "*.log"
optional = true
)", "freeagent.toml");
  ASSERT_TRUE(spec.ok()) << spec.status();
  EXPECT_EQ(spec->name(), "hello");
  EXPECT_EQ(spec->timeout_seconds(), 300u);
  EXPECT_EQ(spec->required_labels().at("os"), "linux");
  ASSERT_EQ(spec->steps_size(), 2);
  EXPECT_EQ(spec->steps(0).name(), "build");
  EXPECT_EQ(spec->steps(0).run(), "make");
  EXPECT_EQ(spec->steps(0).timeout_seconds(), 120u);
  EXPECT_EQ(spec->steps(0).env().at("CFLAGS"), "-O2");
  EXPECT_EQ(spec->steps(1).working_dir(), "sub");
  ASSERT_EQ(spec->artifacts_size(), 2);
  EXPECT_EQ(spec->artifacts(0).glob(), "hello-*.tar.gz");
  EXPECT_EQ(spec->artifacts(0).max_size_bytes(), 1024u);
  EXPECT_FALSE(spec->artifacts(0).optional());
  EXPECT_TRUE(spec->artifacts(1).optional());
}

TEST(ParseProjectToml, StepWithoutRunNamesTheEntryAndKey) {
  auto spec = ParseProjectToml("[[step]]\nname = \"a\"\n\n[[step]]\nname = \"b\"\n", "p/freeagent.toml");
  ASSERT_FALSE(spec.ok());
  EXPECT_EQ(spec.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(spec.status().message(), HasSubstr("p/freeagent.toml"));
  EXPECT_THAT(spec.status().message(), HasSubstr("#1"));
  EXPECT_THAT(spec.status().message(), HasSubstr("run"));
}

TEST(ParseProjectToml, UnknownKeyIsRejected) {
  auto spec = ParseProjectToml("[[step]]\nname = \"a\"\nrun = \"x\"\ntimeout = 3\n", "freeagent.toml");
  ASSERT_FALSE(spec.ok());
  EXPECT_THAT(spec.status().message(), HasSubstr("timeout"));
}

TEST(ParseProjectToml, SyntaxErrorHasLine) {
  auto spec = ParseProjectToml("name = \"x\"\n[[step]\n", "freeagent.toml");
  ASSERT_FALSE(spec.ok());
  EXPECT_THAT(spec.status().message(), HasSubstr("freeagent.toml:2"));
}

TEST(ParseProjectToml, WrongTypeIsRejected) {
  auto spec = ParseProjectToml("timeout_seconds = \"soon\"\n", "freeagent.toml");
  ASSERT_FALSE(spec.ok());
  EXPECT_THAT(spec.status().message(), HasSubstr("timeout_seconds"));
}

TEST(ApplyOverrides, StepFlagsReplaceFileStepsAndLabelsMerge) {
  freeagent::v1::JobSpec spec;
  spec.add_steps()->set_name("from-file");
  (*spec.mutable_required_labels())["os"] = "linux";
  SubmitOverrides o;
  o.steps = {"build=make -j2 CFLAGS=-O2", "test=make check"};
  o.labels = {"arch=arm64", "os=macos"};
  o.artifacts = {"*.ipa"};
  o.timeout_seconds = 42;
  ASSERT_TRUE(ApplyOverrides(o, &spec).ok());
  ASSERT_EQ(spec.steps_size(), 2);
  EXPECT_EQ(spec.steps(0).name(), "build");
  EXPECT_EQ(spec.steps(0).run(), "make -j2 CFLAGS=-O2");  // split at the first '='
  EXPECT_EQ(spec.required_labels().at("os"), "macos");
  EXPECT_EQ(spec.required_labels().at("arch"), "arm64");
  ASSERT_EQ(spec.artifacts_size(), 1);
  EXPECT_EQ(spec.artifacts(0).glob(), "*.ipa");
  EXPECT_EQ(spec.timeout_seconds(), 42u);
}

TEST(ApplyOverrides, MalformedStepFlagIsInvalidArgument) {
  freeagent::v1::JobSpec spec;
  SubmitOverrides o;
  o.steps = {"no-equals-sign"};
  absl::Status status = ApplyOverrides(o, &spec);
  EXPECT_EQ(status.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(status.message(), HasSubstr("--step"));
}

TEST(ApplyOverrides, NoStepsAtAllIsInvalidArgument) {
  freeagent::v1::JobSpec spec;
  absl::Status status = ApplyOverrides({}, &spec);
  EXPECT_EQ(status.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(status.message(), HasSubstr("no steps"));
}

TEST(LoadProjectSpec, MissingFileGivesDirectoryNameAndNoSteps) {
  auto spec = LoadProjectSpec(FA_TEST_TMPDIR);
  ASSERT_TRUE(spec.ok()) << spec.status();
  EXPECT_FALSE(spec->name().empty());
  EXPECT_EQ(spec->steps_size(), 0);
}

TEST(LoadProjectSpec, ExampleHelloParses) {
  auto spec = LoadProjectSpec(std::string(FA_SOURCE_DIR) + "/examples/hello");
  ASSERT_TRUE(spec.ok()) << spec.status();
  EXPECT_EQ(spec->name(), "hello");
  EXPECT_GE(spec->steps_size(), 1);
  EXPECT_EQ(spec->artifacts_size(), 1);
}

}  // namespace
}  // namespace freeagent::cli
