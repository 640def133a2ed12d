#include "common/config.h"

#include "gtest/gtest.h"

namespace freeagent {
namespace {

TEST(ParseToml, SyntaxErrorNamesFileLineAndColumn) {
  auto t = ParseToml("a = 1\nb = = 2\n", "worker.toml");
  ASSERT_FALSE(t.ok());
  EXPECT_EQ(t.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_NE(t.status().message().find("worker.toml:2:"), std::string::npos) << t.status();
}

TEST(LoadToml, MissingFileIsNotFound) {
  auto t = LoadToml("/nonexistent/freeagent.toml");
  EXPECT_EQ(t.status().code(), absl::StatusCode::kNotFound);
  EXPECT_NE(t.status().message().find("/nonexistent/freeagent.toml"), std::string::npos);
}

TEST(ConfigReader, ReadsTypedValues) {
  auto t = ParseToml("name = \"w1\"\nslots = 3\n[labels]\nos = \"linux\"\n[x]\nlist = [\"a\", \"b\"]\nflag = true\n",
                     "c.toml");
  ASSERT_TRUE(t.ok());
  ConfigReader r(*t, "c.toml");
  std::string name;
  uint32_t slots = 0;
  std::map<std::string, std::string> labels;
  std::vector<std::string> list;
  bool flag = false;
  std::string absent = "kept";
  ASSERT_TRUE(r.Get("name", &name).ok());
  ASSERT_TRUE(r.Get("slots", &slots).ok());
  ASSERT_TRUE(r.Get("labels", &labels).ok());
  ASSERT_TRUE(r.Get("x.list", &list).ok());
  ASSERT_TRUE(r.Get("x.flag", &flag).ok());
  ASSERT_TRUE(r.Get("nothing", &absent).ok());
  EXPECT_EQ(name, "w1");
  EXPECT_EQ(slots, 3u);
  EXPECT_EQ(labels.at("os"), "linux");
  EXPECT_EQ(list, (std::vector<std::string>{"a", "b"}));
  EXPECT_TRUE(flag);
  EXPECT_EQ(absent, "kept");
}

TEST(ConfigReader, WrongTypeNamesKeyTypeAndLine) {
  auto t = ParseToml("name = \"w\"\nslots = \"two\"\n", "w.toml");
  ASSERT_TRUE(t.ok());
  uint32_t slots = 0;
  absl::Status s = ConfigReader(*t, "w.toml").Get("slots", &slots);
  EXPECT_EQ(s.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_NE(s.message().find("w.toml: key slots: expected integer, got string (line 2)"), std::string::npos) << s;
}

TEST(ConfigReader, NegativeCountIsRejected) {
  auto t = ParseToml("slots = -1\n", "w.toml");
  uint32_t slots = 0;
  absl::Status s = ConfigReader(*t, "w.toml").Get("slots", &slots);
  EXPECT_EQ(s.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_NE(s.message().find("slots"), std::string::npos);
}

TEST(ConfigReader, UnknownKeyIsRejectedWithItsLine) {
  auto t = ParseToml("slots = 1\nslotz = 2\n", "w.toml");
  absl::Status s = ConfigReader(*t, "w.toml").RejectUnknown("", {"slots"});
  EXPECT_EQ(s.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_NE(s.message().find("key slotz: unknown key (line 2)"), std::string::npos) << s;
}

}  // namespace
}  // namespace freeagent
