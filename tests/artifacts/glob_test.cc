// Artifact glob matching.
#include "artifacts/glob.h"

#include "gtest/gtest.h"

namespace freeagent::artifacts {
namespace {

TEST(GlobMatch, StarStaysInOneSegment) {
  EXPECT_TRUE(GlobMatch("*.apk", "app.apk"));
  EXPECT_FALSE(GlobMatch("*.apk", "out/app.apk"));
  EXPECT_TRUE(GlobMatch("out/*.apk", "out/app.apk"));
  EXPECT_FALSE(GlobMatch("out/*.apk", "out/x/app.apk"));
}

TEST(GlobMatch, DoubleStarMatchesAnyDepthIncludingNone) {
  EXPECT_TRUE(GlobMatch("**/*.ipa", "App.ipa"));
  EXPECT_TRUE(GlobMatch("**/*.ipa", "build/App.ipa"));
  EXPECT_TRUE(GlobMatch("**/*.ipa", "a/b/c/App.ipa"));
  EXPECT_TRUE(GlobMatch("build/**/App.dSYM.zip", "build/App.dSYM.zip"));
  EXPECT_TRUE(GlobMatch("build/**/App.dSYM.zip", "build/x/y/App.dSYM.zip"));
  EXPECT_FALSE(GlobMatch("build/**/App.dSYM.zip", "other/App.dSYM.zip"));
  EXPECT_TRUE(GlobMatch("dist/**", "dist/a/b"));
  EXPECT_TRUE(GlobMatch("**/**/x", "x"));
}

TEST(GlobMatch, QuestionMarkAndClasses) {
  EXPECT_TRUE(GlobMatch("v?.txt", "v1.txt"));
  EXPECT_FALSE(GlobMatch("v?.txt", "v10.txt"));
  EXPECT_TRUE(GlobMatch("v[0-9].txt", "v7.txt"));
  EXPECT_FALSE(GlobMatch("v[0-9].txt", "vx.txt"));
}

TEST(GlobMatch, ExactPathsAndDotSlash) {
  EXPECT_TRUE(GlobMatch("hello.tar.gz", "hello.tar.gz"));
  EXPECT_TRUE(GlobMatch("./dist/hello.tar.gz", "dist/hello.tar.gz"));
  EXPECT_FALSE(GlobMatch("dist/hello.tar.gz", "dist/hello.tar.gz.bak"));
  EXPECT_FALSE(GlobMatch("", "x"));
}

}  // namespace
}  // namespace freeagent::artifacts
