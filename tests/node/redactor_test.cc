// Streaming secret redaction.
#include "node/redactor.h"

#include "gtest/gtest.h"

namespace freeagent::node {
namespace {

std::string Feed(Redactor& r, const std::vector<std::string>& pieces) {
  std::string out;
  for (const std::string& p : pieces) out += r.Process(p);
  return out + r.Flush();
}

TEST(Redactor, ReplacesPlainSecret) {
  Redactor r({"hunter22"});
  EXPECT_EQ(Feed(r, {"password=hunter22\n"}), "password=***\n");
}

TEST(Redactor, ReplacesSecretSplitAcrossWrites) {
  Redactor r({"hunter22"});
  EXPECT_EQ(Feed(r, {"pass hun", "te", "r22 end"}), "pass *** end");
  Redactor one_byte({"s3cr3t-token"});
  std::vector<std::string> bytes;
  for (char c : std::string("x s3cr3t-token y")) bytes.push_back(std::string(1, c));
  EXPECT_EQ(Feed(one_byte, bytes), "x *** y");
}

TEST(Redactor, ReplacesBase64Form) {
  Redactor r({"hunter22"});
  std::string b64 = Base64Encode("hunter22");
  EXPECT_EQ(b64, "aHVudGVyMjI=");
  EXPECT_EQ(Feed(r, {"auth: " + b64 + "\n"}), "auth: ***=\n");
}

TEST(Redactor, HeldBackPrefixThatNeverCompletesIsEmitted) {
  Redactor r({"hunter22"});
  EXPECT_EQ(r.Process("abc hunt"), "abc ");
  EXPECT_EQ(r.Process("ing\n"), "hunting\n");
  EXPECT_EQ(r.Process("hun"), "");
  EXPECT_EQ(r.Flush(), "hun");
}

TEST(Redactor, ShortValuesAndNoSecretsPassThrough) {
  Redactor r({"1", "ab"});
  EXPECT_FALSE(r.active());
  std::string binary("\0\1\2ab1", 6);
  EXPECT_EQ(r.Process(binary), binary);
}

TEST(Base64Encode, Padding) {
  EXPECT_EQ(Base64Encode(""), "");
  EXPECT_EQ(Base64Encode("f"), "Zg==");
  EXPECT_EQ(Base64Encode("fo"), "Zm8=");
  EXPECT_EQ(Base64Encode("foo"), "Zm9v");
}

}  // namespace
}  // namespace freeagent::node
