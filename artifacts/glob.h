// Artifact glob matching on workspace-relative paths: `**` as a whole segment matches any number of
// directories (including none), `*` and `?` (and `[...]`) match within one segment only.
#pragma once

#include <string_view>

namespace freeagent::artifacts {

// True if the relative path `path` ("dir/sub/file.apk", no leading "./") matches `pattern`.
// A leading "./" in the pattern is ignored. Dot files are matched by `*` like any other name.
bool GlobMatch(std::string_view pattern, std::string_view path);

}  // namespace freeagent::artifacts
