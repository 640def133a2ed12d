// Robustness of the host-side parsers: random bytes, every truncation and single-byte corruptions of
// valid files go into ParseProfile, ParseProfilePlist and ParseP12. Built with AddressSanitizer and
// UBSan (see CMakeLists.txt), so a read out of bounds fails the test, not only a crash. Seeded, so a
// failure reproduces.
#include <random>

#include "gtest/gtest.h"
#include "signing/p12.h"
#include "signing/profile.h"
#include "tests/signing/fixtures.h"

namespace freeagent::signing {
namespace {

std::string RandomBytes(std::mt19937& rng, size_t max_len) {
  std::uniform_int_distribution<size_t> len(0, max_len);
  std::uniform_int_distribution<int> byte(0, 255);
  std::string s(len(rng), '\0');
  for (char& c : s) c = static_cast<char>(byte(rng));
  return s;
}

TEST(ParserFuzz, RandomBytesAreRejected) {
  std::mt19937 rng(12345);
  for (int i = 0; i < 3000; ++i) {
    std::string bytes = RandomBytes(rng, 4096);
    // A DER SEQUENCE header makes the parsers go further than the first byte.
    if (i % 2 == 0 && bytes.size() > 4) bytes[0] = 0x30;
    EXPECT_FALSE(ParseProfile(bytes, "random").ok());
    EXPECT_FALSE(ParseProfilePlist(bytes, "random").ok());
    EXPECT_FALSE(ParseP12(bytes, "pw", "random").ok());
  }
}

TEST(ParserFuzz, TruncationsAndCorruptionsOfValidFilesNeverCrash) {
  const auto& ca = testing::SharedCa();
  testing::TestIdentity leaf = testing::MakeLeaf(ca);
  testing::ProfileOptions o;
  o.developer_certificates_der = {leaf.cert_der};
  o.devices = {"00008030-001A2B3C4D5E6F70"};
  const std::string profile = testing::MakeProfile(o, ca);
  const std::string plist = testing::MakeProfilePlist(o);
  const std::string p12 = testing::MakeP12(leaf, "pw", /*legacy=*/true);
  ASSERT_TRUE(ParseProfile(profile, "valid").ok());
  ASSERT_TRUE(ParseP12(p12, "pw", "valid").ok());

  for (size_t n = 0; n < profile.size(); n += 3) EXPECT_FALSE(ParseProfile(profile.substr(0, n), "cut").ok()) << n;
  for (size_t n = 0; n < plist.size(); n += 5) (void)ParseProfilePlist(plist.substr(0, n), "cut");
  for (size_t n = 0; n < p12.size(); n += 3) EXPECT_FALSE(ParseP12(p12.substr(0, n), "pw", "cut").ok()) << n;

  std::mt19937 rng(678);
  for (int i = 0; i < 400; ++i) {
    std::string p = profile, x = plist, k = p12;
    p[rng() % p.size()] ^= static_cast<char>(1 + rng() % 255);
    x[rng() % x.size()] ^= static_cast<char>(1 + rng() % 255);
    k[rng() % k.size()] ^= static_cast<char>(1 + rng() % 255);
    (void)ParseProfile(p, "flipped");
    (void)ParseProfilePlist(x, "flipped");
    (void)ParseP12(k, "pw", "flipped");
  }
}

}  // namespace
}  // namespace freeagent::signing
