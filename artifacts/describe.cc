#include "artifacts/describe.h"

#include <archive.h>
#include <archive_entry.h>
#include <plist/plist.h>

#include <memory>
#include <string_view>
#include <vector>

#include "absl/strings/ascii.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "artifacts/profile_summary.h"

namespace freeagent::artifacts {
namespace {

struct ArchiveDeleter {
  void operator()(archive* a) const { archive_read_free(a); }
};
struct PlistDeleter {
  void operator()(void* p) const { plist_free(static_cast<plist_t>(p)); }
};
using PlistPtr = std::unique_ptr<void, PlistDeleter>;

std::string Lower(const std::string& s) { return absl::AsciiStrToLower(s); }

// "Payload/<one segment>.app/<file>" exactly: the app bundle's own file, not one of a nested bundle.
bool IsAppFile(const std::string& path, const std::string& file) {
  const std::string prefix = "Payload/";
  if (path.compare(0, prefix.size(), prefix) != 0) return false;
  const std::string rest = path.substr(prefix.size());
  const size_t slash = rest.find('/');
  if (slash == std::string::npos) return false;
  const std::string app = rest.substr(0, slash);
  return app.size() > 4 && app.compare(app.size() - 4, 4, ".app") == 0 && rest.substr(slash + 1) == file;
}

// Reads the current entry's data, at most `limit` bytes (more is an error naming the entry).
absl::StatusOr<std::string> ReadEntry(archive* a, archive_entry* e, uint64_t limit) {
  const char* name = archive_entry_pathname(e);
  std::string data;
  char buf[64 * 1024];
  while (true) {
    la_ssize_t n = archive_read_data(a, buf, sizeof buf);
    if (n == 0) break;
    if (n < 0) {
      return absl::DataLossError(absl::StrCat("reading ", name, ": ", archive_error_string(a)));
    }
    if (data.size() + static_cast<size_t>(n) > limit) {
      return absl::ResourceExhaustedError(absl::StrCat(name, " is larger than ", limit, " bytes"));
    }
    data.append(buf, static_cast<size_t>(n));
  }
  return data;
}

void CopyString(plist_t dict, const char* key, const char* as, std::map<std::string, std::string>& out) {
  plist_t node = plist_dict_get_item(dict, key);
  if (node == nullptr || plist_get_node_type(node) != PLIST_STRING) return;
  uint64_t len = 0;
  const char* s = plist_get_string_ptr(node, &len);
  if (s != nullptr && len > 0) out[as] = std::string(s, len);
}

}  // namespace

absl::StatusOr<std::map<std::string, std::string>> ReadInfoPlist(const std::string& data) {
  if (data.size() > kMaxPlistBytes) return absl::InvalidArgumentError("Info.plist is too large");
  plist_t raw = nullptr;
  plist_from_memory(data.data(), static_cast<uint32_t>(data.size()), &raw);
  PlistPtr root(raw);
  if (raw == nullptr) return absl::InvalidArgumentError("Info.plist is neither a binary nor an XML plist");
  if (plist_get_node_type(raw) != PLIST_DICT) return absl::InvalidArgumentError("Info.plist is not a dictionary");
  std::map<std::string, std::string> out;
  CopyString(raw, "CFBundleIdentifier", "bundle_id", out);
  CopyString(raw, "CFBundleShortVersionString", "short_version", out);
  CopyString(raw, "CFBundleVersion", "build", out);
  CopyString(raw, "MinimumOSVersion", "minimum_os", out);
  CopyString(raw, "CFBundleDisplayName", "display_name", out);
  if (out.count("display_name") == 0) CopyString(raw, "CFBundleName", "display_name", out);
  return out;
}

namespace {

// One pass over the zip's entries: counts them and, for an .ipa, reads the app's Info.plist and
// embedded profile. The seekable zip reader works from the central directory, so a truncated file is
// noticed at once instead of after most of it was read.
Description DescribeZip(const std::string& local_path, const std::string& kind) {
  Description d;
  d.metadata["kind"] = kind;
  std::unique_ptr<archive, ArchiveDeleter> a(archive_read_new());
  archive_read_support_format_zip_seekable(a.get());
  if (archive_read_open_filename(a.get(), local_path.c_str(), 64 * 1024) != ARCHIVE_OK) {
    d.error = absl::StrCat("not a readable zip: ", archive_error_string(a.get()));
    return d;
  }
  const bool ipa = kind == "ipa";
  uint64_t entries = 0;
  uint64_t bytes = 0;
  bool have_plist = false;
  std::vector<std::string> problems;
  while (true) {
    archive_entry* e = nullptr;
    int r = archive_read_next_header(a.get(), &e);
    if (r == ARCHIVE_EOF) break;
    if (r < ARCHIVE_WARN) {
      problems.push_back(absl::StrCat("zip directory unreadable after ", entries, " entries: ",
                                      archive_error_string(a.get())));
      break;
    }
    if (archive_entry_filetype(e) != AE_IFREG) continue;
    ++entries;
    if (archive_entry_size_is_set(e)) bytes += static_cast<uint64_t>(archive_entry_size(e));
    if (!ipa) continue;
    const char* p = archive_entry_pathname(e);
    const std::string path = p == nullptr ? std::string() : std::string(p);
    if (IsAppFile(path, "Info.plist") && !have_plist) {
      have_plist = true;
      absl::StatusOr<std::string> data = ReadEntry(a.get(), e, kMaxPlistBytes);
      absl::StatusOr<std::map<std::string, std::string>> fields =
          data.ok() ? ReadInfoPlist(*data) : absl::StatusOr<std::map<std::string, std::string>>(data.status());
      if (!fields.ok()) {
        problems.push_back(absl::StrCat(path, ": ", fields.status().message()));
      } else {
        d.metadata.insert(fields->begin(), fields->end());
      }
    } else if (IsAppFile(path, "embedded.mobileprovision")) {
      absl::StatusOr<std::string> data = ReadEntry(a.get(), e, kMaxProfileBytes);
      absl::Status s = data.ok() ? SummarizeProfile(*data, d.metadata) : data.status();
      if (!s.ok()) problems.push_back(absl::StrCat(path, ": ", s.message()));
    }
  }
  d.metadata["entries"] = absl::StrCat(entries);
  d.metadata["uncompressed_bytes"] = absl::StrCat(bytes);
  if (ipa && !have_plist && problems.empty()) problems.push_back("no Payload/<name>.app/Info.plist in the archive");
  for (const std::string& p : problems) {
    if (!d.error.empty()) d.error += "; ";
    d.error += p;
  }
  return d;
}

}  // namespace

Description DescribeFile(const std::string& local_path, const std::string& name) {
  const std::string lower = Lower(name);
  if (absl::EndsWith(lower, ".ipa")) return DescribeZip(local_path, "ipa");
  if (absl::EndsWith(lower, ".apk")) return DescribeZip(local_path, "apk");
  if (absl::EndsWith(lower, ".aab")) return DescribeZip(local_path, "aab");
  return Description{};
}

void ApplyDescription(const Description& d, freeagent::v1::ArtifactInfo* info) {
  for (const auto& [k, v] : d.metadata) (*info->mutable_metadata())[k] = v;
  info->set_description_error(d.error);
}

}  // namespace freeagent::artifacts
