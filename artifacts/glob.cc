#include "artifacts/glob.h"

#include <fnmatch.h>

#include <string>
#include <vector>


namespace freeagent::artifacts {
namespace {

std::vector<std::string> Segments(std::string_view s) {
  std::vector<std::string> out;
  size_t pos = 0;
  while (pos <= s.size()) {
    size_t slash = s.find('/', pos);
    if (slash == std::string_view::npos) slash = s.size();
    std::string_view part = s.substr(pos, slash - pos);
    if (!part.empty() && part != ".") out.emplace_back(part);
    pos = slash + 1;
  }
  return out;
}

bool MatchFrom(const std::vector<std::string>& pat, size_t pi, const std::vector<std::string>& path, size_t si) {
  while (pi < pat.size()) {
    if (pat[pi] == "**") {
      // Collapse runs of `**`, then try every split point.
      while (pi + 1 < pat.size() && pat[pi + 1] == "**") ++pi;
      if (pi + 1 == pat.size()) return true;
      for (size_t k = si; k <= path.size(); ++k) {
        if (MatchFrom(pat, pi + 1, path, k)) return true;
      }
      return false;
    }
    if (si >= path.size()) return false;
    if (::fnmatch(pat[pi].c_str(), path[si].c_str(), 0) != 0) return false;
    ++pi;
    ++si;
  }
  return si == path.size();
}

}  // namespace

bool GlobMatch(std::string_view pattern, std::string_view path) {
  std::vector<std::string> pat = Segments(pattern);
  std::vector<std::string> segs = Segments(path);
  if (pat.empty() || segs.empty()) return false;
  return MatchFrom(pat, 0, segs, 0);
}

}  // namespace freeagent::artifacts
