// Streaming secret redaction: plain and encoded forms, chunk boundaries, binary data, overlaps and a
// property test over random data.
#include "node/redactor.h"

#include <random>

#include "gtest/gtest.h"
#include "tests/node/redactor_reference.h"

namespace freeagent::node {
namespace {

constexpr std::string_view kR = Redactor::kReplacement;

std::string Feed(Redactor& r, const std::vector<std::string>& pieces) {
  std::string out;
  for (const std::string& p : pieces) out += r.Process(p);
  return out + r.Flush();
}

std::string OneShot(const std::vector<std::string>& secrets, std::string_view data) {
  Redactor r(secrets);
  std::string out = r.Process(data);
  return out + r.Flush();
}

TEST(Redactor, ReplacesPlainSecret) {
  Redactor r({"hunter22"});
  EXPECT_EQ(Feed(r, {"password=hunter22\n"}), "password=[REDACTED]\n");
}

TEST(Redactor, SecretSplitAtEveryOffsetOfEveryFormIsMasked) {
  const std::string secret = "p@ss w/rd\"42";
  Redactor probe({secret});
  ASSERT_GT(probe.patterns().size(), 8u);
  for (const std::string& form : probe.patterns()) {
    const std::string text = "before|" + form + "|after\n";
    for (size_t cut = 0; cut <= text.size(); ++cut) {
      Redactor r({secret});
      std::string out = r.Process(text.substr(0, cut));
      out += r.Process(text.substr(cut));
      out += r.Flush();
      EXPECT_EQ(out, "before|[REDACTED]|after\n") << "form " << form << " cut at " << cut;
    }
  }
}

TEST(Redactor, OneByteWrites) {
  Redactor r({"s3cr3t-token"});
  std::vector<std::string> bytes;
  for (char c : std::string("x s3cr3t-token y")) bytes.push_back(std::string(1, c));
  EXPECT_EQ(Feed(r, bytes), "x [REDACTED] y");
}

TEST(Redactor, Base64FormInAllThreeAlignmentsInsideLongerData) {
  const std::string secret = "hunter2-is-my-password";
  for (size_t align = 0; align < 3; ++align) {
    for (size_t tail = 0; tail < 3; ++tail) {
      const std::string plain = std::string(align, 'A') + secret + std::string(tail, 'Z');
      const std::string encoded = Base64Encode(plain);
      const std::string out = OneShot({secret}, "Authorization: Basic " + encoded + "\n");
      EXPECT_NE(out.find(kR), std::string::npos) << align << "/" << tail << ": " << out;
      // At most two characters on each side belong partly to the neighbours; the middle is gone.
      EXPECT_LT(out.size(), std::string("Authorization: Basic \n").size() + kR.size() + 4 + 4 + 1);
      EXPECT_EQ(out.rfind("Authorization: Basic ", 0), 0u);
    }
  }
}

TEST(Redactor, UrlSafeBase64) {
  // 0xfb 0xff encode to "+/" in the standard alphabet and to "-_" in the URL-safe one.
  const std::string secret = "\xfb\xff\xfe secret \xfb\xff";
  std::string url = Base64Encode(secret);
  for (char& c : url) c = c == '+' ? '-' : c == '/' ? '_' : c;
  ASSERT_NE(url, Base64Encode(secret));
  std::string out = OneShot({secret}, "token=" + url + ";");
  EXPECT_EQ(out.rfind("token=[REDACTED]", 0), 0u) << out;
}

TEST(Redactor, UrlEncodedForms) {
  const std::string secret = "p@ss w/rd&more";
  EXPECT_EQ(OneShot({secret}, "?pw=p%40ss%20w%2Frd%26more&x=1"), "?pw=[REDACTED]&x=1");
  EXPECT_EQ(OneShot({secret}, "?pw=p%40ss%20w%2frd%26more&x=1"), "?pw=[REDACTED]&x=1");
  EXPECT_EQ(OneShot({secret}, "pw=p%40ss+w%2Frd%26more\n"), "pw=[REDACTED]\n");
}

TEST(Redactor, JsonEscapedForms) {
  const std::string secret = "quote\"back\\slash/tab\tend";
  EXPECT_EQ(OneShot({secret}, R"({"pw":"quote\"back\\slash/tab\tend"})"), R"({"pw":"[REDACTED]"})");
  EXPECT_EQ(OneShot({secret}, R"({"pw":"quote\"back\\slash\/tab\tend"})"), R"({"pw":"[REDACTED]"})");
  const std::string ctl = std::string("bell\x07-and-more");
  EXPECT_EQ(OneShot({ctl}, R"("bell\u0007-and-more")"), R"("[REDACTED]")");
}

TEST(Redactor, SecretsInsideBinaryOutput) {
  const std::string secret("\0\xff\x01secret\x80\0", 10);
  std::string data;
  for (int i = 0; i < 256; ++i) data += static_cast<char>(i);
  const std::string input = data + secret + data + secret;
  const std::string expected = data + std::string(kR) + data + std::string(kR);
  EXPECT_EQ(OneShot({secret}, input), expected);
  Redactor r({secret});
  std::vector<std::string> pieces;
  for (size_t i = 0; i < input.size(); i += 7) pieces.push_back(input.substr(i, 7));
  EXPECT_EQ(Feed(r, pieces), expected);
}

TEST(Redactor, OverlappingAndNestedSecretsBecomeOneMarker) {
  EXPECT_EQ(OneShot({"abcdefgh", "efghijkl"}, "xxabcdefghijklyy"), "xx[REDACTED]yy");
  EXPECT_EQ(OneShot({"abcdefgh", "cdefgh"}, "1abcdefgh2cdefgh3"), "1[REDACTED]2[REDACTED]3");
  EXPECT_EQ(OneShot({"aaaaaa"}, std::string(40, 'a') + "b"), "[REDACTED]b");
  // Adjacent occurrences are one run.
  EXPECT_EQ(OneShot({"secret1"}, "secret1secret1."), "[REDACTED].");
  // Across writes too.
  Redactor r({"abcdefgh", "efghijkl"});
  EXPECT_EQ(Feed(r, {"xxabcdef", "ghij", "klyy"}), "xx[REDACTED]yy");
}

TEST(Redactor, HoldsBackOnlyWhatCouldStillBeginASecret) {
  Redactor r({"hunter22"});
  EXPECT_EQ(r.Process("abc hunt"), "abc ");
  EXPECT_EQ(r.held(), 4u);
  EXPECT_EQ(r.Process("ing\n"), "hunting\n");
  EXPECT_EQ(r.held(), 0u);
  EXPECT_EQ(r.Process("xyz h"), "xyz ");
  EXPECT_EQ(r.Process("u"), "");
  EXPECT_EQ(r.Flush(), "hu");
}

TEST(Redactor, ASecretInsideTheHeldTailIsMaskedAtTheEnd) {
  // "log: hunter" could still become the longer secret when the stream ends; the shorter one inside
  // it must be masked by Flush.
  Redactor r({"hunter", "log: hunter22 and more"});
  std::string out = r.Process("x log: hunter22");
  EXPECT_EQ(out, "x ");
  EXPECT_EQ(out + r.Flush(), "x log: [REDACTED]22");
}

TEST(Redactor, ShortValuesAndNoSecretsPassThrough) {
  Redactor r({"1", "ab", "12345"});
  EXPECT_FALSE(r.active());
  std::string binary("\0\1\2ab1", 6);
  EXPECT_EQ(r.Process(binary), binary);
}

TEST(Redactor, FormsOfASixByteSecretAreAtLeastSixBytes) {
  for (const std::string& form : Redactor({"abcdef"}).patterns()) EXPECT_GE(form.size(), 6u) << form;
}

TEST(Base64Encode, Padding) {
  EXPECT_EQ(Base64Encode(""), "");
  EXPECT_EQ(Base64Encode("f"), "Zg==");
  EXPECT_EQ(Base64Encode("fo"), "Zm8=");
  EXPECT_EQ(Base64Encode("foo"), "Zm9v");
}

// Random binary filler with random secrets (and their encoded forms) planted at random places, fed in
// random chunks: every plant is masked and every other byte comes through unchanged and in order.
TEST(RedactorProperty, EveryPlantMaskedNothingElseChanged) {
  std::mt19937_64 rng(20261127);
  auto rand_bytes = [&](size_t n) {
    std::string s(n, '\0');
    for (char& c : s) c = static_cast<char>(rng() & 0xff);
    return s;
  };
  for (int round = 0; round < 300; ++round) {
    std::vector<std::string> secrets;
    const size_t nsecrets = 1 + rng() % 4;
    for (size_t i = 0; i < nsecrets; ++i) secrets.push_back(rand_bytes(6 + rng() % 20));
    Redactor probe(secrets);
    const std::vector<std::string>& forms = probe.patterns();

    std::string input;
    std::string expected;
    const size_t plants = rng() % 6;
    for (size_t i = 0; i <= plants; ++i) {
      std::string filler = rand_bytes(1 + rng() % 200);
      input += filler;
      expected += filler;
      if (i == plants) break;
      input += forms[rng() % forms.size()];
      expected += kR;
    }
    // Accidental matches in random filler would make `expected` wrong; they are astronomically rare
    // (six or more specific bytes), so a mismatch means a bug.
    Redactor r(secrets);
    std::string out;
    size_t pos = 0;
    while (pos < input.size()) {
      const size_t n = std::min<size_t>(input.size() - pos, rng() % 64);
      out += r.Process(std::string_view(input).substr(pos, n));
      size_t longest = 0;
      for (const std::string& f : forms) longest = std::max(longest, f.size());
      ASSERT_LT(r.held(), longest);
      pos += n;
    }
    out += r.Flush();
    ASSERT_EQ(out, expected) << "round " << round;
  }
}

// However the stream is cut, the output equals the definition (overlaps included).
TEST(RedactorProperty, ChunkingDoesNotChangeTheOutput) {
  std::mt19937_64 rng(7);
  const std::string alphabet = "ab";
  for (int round = 0; round < 200; ++round) {
    std::vector<std::string> secrets;
    for (int i = 0; i < 3; ++i) {
      std::string s;
      for (size_t k = 0, n = 6 + rng() % 4; k < n; ++k) s += alphabet[rng() % alphabet.size()];
      secrets.push_back(s);
    }
    std::string input;
    for (size_t k = 0, n = rng() % 300; k < n; ++k) input += alphabet[rng() % alphabet.size()];
    const std::string whole = testing::ReferenceRedaction(Redactor(secrets).patterns(), input);
    ASSERT_EQ(OneShot(secrets, input), whole) << "round " << round;
    Redactor r(secrets);
    std::string out;
    for (size_t pos = 0; pos < input.size();) {
      const size_t n = std::min<size_t>(input.size() - pos, 1 + rng() % 16);
      out += r.Process(std::string_view(input).substr(pos, n));
      pos += n;
    }
    out += r.Flush();
    ASSERT_EQ(out, whole) << "round " << round;
  }
}

}  // namespace
}  // namespace freeagent::node
