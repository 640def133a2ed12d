#include "common/archive.h"

#include <archive.h>
#include <archive_entry.h>
#include <fcntl.h>
#include <fnmatch.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cstdlib>
#include <memory>
#include <set>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "absl/strings/strip.h"
#include "common/fs.h"

namespace freeagent {
namespace {

struct ArchiveReadDeleter {
  void operator()(struct archive* a) const { archive_read_free(a); }
};
struct ArchiveWriteDeleter {
  void operator()(struct archive* a) const { archive_write_free(a); }
};
struct EntryDeleter {
  void operator()(archive_entry* e) const { archive_entry_free(e); }
};
using ArchiveReader = std::unique_ptr<struct archive, ArchiveReadDeleter>;
using ArchiveWriter = std::unique_ptr<struct archive, ArchiveWriteDeleter>;
using Entry = std::unique_ptr<archive_entry, EntryDeleter>;

absl::Status ArchiveError(struct archive* a, absl::string_view what, absl::string_view path) {
  const char* msg = archive_error_string(a);
  return absl::InternalError(absl::StrCat(what, " ", path, ": ", msg != nullptr ? msg : "unknown error"));
}

bool Excluded(const std::string& rel, const std::string& name, const PackOptions& o) {
  if (std::find(o.exclude_names.begin(), o.exclude_names.end(), name) != o.exclude_names.end()) return true;
  for (const auto& g : o.exclude_globs) {
    std::string pat(absl::StripSuffix(g, "/"));
    if (::fnmatch(pat.c_str(), rel.c_str(), FNM_PATHNAME) == 0) return true;
    if (::fnmatch(pat.c_str(), name.c_str(), 0) == 0) return true;
  }
  return false;
}

// Collects relative paths under `dir` (sorted, directories before their contents).
absl::Status Walk(const std::string& root, const std::string& rel, const PackOptions& o,
                  std::vector<std::string>* out) {
  std::string path = rel.empty() ? root : absl::StrCat(root, "/", rel);
  absl::StatusOr<std::vector<std::string>> names = ListDirectory(path);
  if (!names.ok()) return names.status();
  for (const auto& name : *names) {
    std::string child = rel.empty() ? name : absl::StrCat(rel, "/", name);
    if (Excluded(child, name, o)) continue;
    out->push_back(child);
    struct stat st;
    std::string full = absl::StrCat(root, "/", child);
    if (::lstat(full.c_str(), &st) != 0) return ErrnoStatus(errno, "lstat", full);
    if (S_ISDIR(st.st_mode)) {
      if (auto s = Walk(root, child, o, out); !s.ok()) return s;
    }
  }
  return absl::OkStatus();
}

bool HasDotDot(absl::string_view path) {
  for (absl::string_view part : absl::StrSplit(path, '/')) {
    if (part == "..") return true;
  }
  return false;
}

std::string Normalize(absl::string_view path) {
  std::string out;
  for (absl::string_view part : absl::StrSplit(path, '/', absl::SkipEmpty())) {
    if (part == ".") continue;
    if (!out.empty()) out += '/';
    out.append(part.data(), part.size());
  }
  return out;
}

// What the entries seen so far created, for checks that depend on earlier entries.
struct SeenEntries {
  std::set<std::string> symlinks;
  std::set<std::string> files;
};

// The symlink (an earlier entry) that `norm` or one of its parent directories is, if any.
const std::string* ThroughSymlink(const std::string& norm, const std::set<std::string>& symlinks) {
  for (size_t pos = norm.find('/'); pos != std::string::npos; pos = norm.find('/', pos + 1)) {
    auto it = symlinks.find(norm.substr(0, pos));
    if (it != symlinks.end()) return &*it;
  }
  return nullptr;
}

absl::Status CheckEntry(archive_entry* e, const std::string& archive_path, SeenEntries* seen) {
  const char* raw = archive_entry_pathname(e);
  std::string name = raw != nullptr ? raw : "";
  auto refuse = [&](absl::string_view why) {
    return absl::InvalidArgumentError(absl::StrCat("archive ", archive_path, ": entry \"", name, "\" ", why));
  };
  if (name.empty()) return refuse("has an empty name");
  if (name.front() == '/') return refuse("is an absolute path");
  if (HasDotDot(name)) return refuse("contains '..'");
  mode_t type = archive_entry_filetype(e);
  const bool hard_link = archive_entry_hardlink(e) != nullptr;  // tar reads these back with no file type
  if (type != AE_IFREG && type != AE_IFDIR && type != AE_IFLNK && !(hard_link && type == 0)) {
    return refuse("is a device, fifo or socket; only files, directories and symlinks are allowed");
  }
  std::string norm = Normalize(name);
  // Writing through a symlink that an earlier entry created could reach outside the destination.
  if (const std::string* link = ThroughSymlink(norm, seen->symlinks); link != nullptr) {
    return refuse(absl::StrCat("would be written through the symlink \"", *link, "\""));
  }
  if (const char* hard = archive_entry_hardlink(e); hard != nullptr) {
    std::string target = hard;
    if (target.empty() || target.front() == '/' || HasDotDot(target)) return refuse("is a hard link out of the tree");
    // Only to a regular file this archive already created: anything else (a path through a symlink,
    // a file that is not ours) could link an outside file into the workspace.
    if (seen->files.count(Normalize(target)) == 0) {
      return refuse(absl::StrCat("is a hard link to \"", target, "\", which is not an earlier file of the archive"));
    }
  }
  if (type == AE_IFLNK) {
    seen->symlinks.insert(norm);
    seen->files.erase(norm);
  } else {
    seen->symlinks.erase(norm);
    if (type == AE_IFREG || hard_link) seen->files.insert(norm);
  }
  return absl::OkStatus();
}

absl::StatusOr<ArchiveReader> OpenForRead(const std::string& path) {
  ArchiveReader a(archive_read_new());
  archive_read_support_filter_all(a.get());
  archive_read_support_format_tar(a.get());
  if (archive_read_open_filename(a.get(), path.c_str(), 1 << 16) != ARCHIVE_OK) {
    struct stat st;
    if (::stat(path.c_str(), &st) != 0) return ErrnoStatus(errno, "open archive", path);
    return absl::InvalidArgumentError(
        absl::StrCat("archive ", path, " is not a valid tar.gz: ", archive_error_string(a.get())));
  }
  return a;
}

}  // namespace

absl::StatusOr<std::vector<std::string>> ReadIgnoreFile(const std::string& dir) {
  std::string path = absl::StrCat(dir, "/.freeagentignore");
  auto text = ReadFile(path);
  if (!text.ok()) {
    if (absl::IsNotFound(text.status())) return std::vector<std::string>{};
    return text.status();
  }
  std::vector<std::string> globs;
  for (absl::string_view line : absl::StrSplit(*text, '\n')) {
    line = absl::StripAsciiWhitespace(line);
    if (line.empty() || line.front() == '#') continue;
    globs.emplace_back(line);
  }
  return globs;
}

absl::StatusOr<PackStats> PackDirectory(const std::string& dir, const std::string& out_path,
                                        const PackOptions& options) {
  struct stat root_st;
  if (::stat(dir.c_str(), &root_st) != 0) return ErrnoStatus(errno, "stat", dir);
  if (!S_ISDIR(root_st.st_mode)) return absl::InvalidArgumentError(absl::StrCat(dir, " is not a directory"));
  std::vector<std::string> paths;
  if (auto s = Walk(dir, "", options, &paths); !s.ok()) return s;

  ArchiveWriter a(archive_write_new());
  archive_write_add_filter_gzip(a.get());
  archive_write_set_format_pax_restricted(a.get());
  if (archive_write_open_filename(a.get(), out_path.c_str()) != ARCHIVE_OK) {
    return ArchiveError(a.get(), "create archive", out_path);
  }
  PackStats stats;
  std::vector<char> buf(1 << 16);
  for (const auto& rel : paths) {
    std::string full = absl::StrCat(dir, "/", rel);
    struct stat st;
    if (::lstat(full.c_str(), &st) != 0) return ErrnoStatus(errno, "lstat", full);
    if (!S_ISREG(st.st_mode) && !S_ISDIR(st.st_mode) && !S_ISLNK(st.st_mode)) continue;
    Entry e(archive_entry_new());
    archive_entry_copy_stat(e.get(), &st);
    archive_entry_set_pathname(e.get(), rel.c_str());
    archive_entry_set_uid(e.get(), 0);
    archive_entry_set_gid(e.get(), 0);
    archive_entry_set_uname(e.get(), "");
    archive_entry_set_gname(e.get(), "");
    if (S_ISLNK(st.st_mode)) {
      std::string target(static_cast<size_t>(st.st_size) + 256, '\0');
      ssize_t n = ::readlink(full.c_str(), target.data(), target.size());
      if (n < 0) return ErrnoStatus(errno, "readlink", full);
      target.resize(static_cast<size_t>(n));
      archive_entry_set_symlink(e.get(), target.c_str());
      archive_entry_set_size(e.get(), 0);
    }
    if (archive_write_header(a.get(), e.get()) != ARCHIVE_OK) return ArchiveError(a.get(), "write entry", rel);
    if (!S_ISREG(st.st_mode)) continue;
    int fd = ::open(full.c_str(), O_RDONLY | O_CLOEXEC | O_NOFOLLOW);
    if (fd < 0) return ErrnoStatus(errno, "open", full);
    while (true) {
      ssize_t n = ::read(fd, buf.data(), buf.size());
      if (n < 0 && errno == EINTR) continue;
      if (n < 0) {
        int err = errno;
        ::close(fd);
        return ErrnoStatus(err, "read", full);
      }
      if (n == 0) break;
      if (archive_write_data(a.get(), buf.data(), static_cast<size_t>(n)) < 0) {
        ::close(fd);
        return ArchiveError(a.get(), "write data of", rel);
      }
      stats.bytes_in += static_cast<uint64_t>(n);
    }
    ::close(fd);
    ++stats.files;
  }
  if (archive_write_close(a.get()) != ARCHIVE_OK) return ArchiveError(a.get(), "finish archive", out_path);
  return stats;
}

absl::Status CheckArchive(const std::string& archive_path) {
  auto reader = OpenForRead(archive_path);
  if (!reader.ok()) return reader.status();
  SeenEntries seen;
  archive_entry* e = nullptr;
  while (true) {
    int r = archive_read_next_header(reader->get(), &e);
    if (r == ARCHIVE_EOF) break;
    if (r != ARCHIVE_OK && r != ARCHIVE_WARN) {
      return absl::InvalidArgumentError(absl::StrCat("archive ", archive_path, " is not a valid tar.gz: ",
                                                     archive_error_string(reader->get())));
    }
    if (auto s = CheckEntry(e, archive_path, &seen); !s.ok()) return s;
    archive_read_data_skip(reader->get());
  }
  return absl::OkStatus();
}

absl::Status UnpackArchive(const std::string& archive_path, const std::string& dest) {
  if (auto s = CheckArchive(archive_path); !s.ok()) return s;
  char* real = ::realpath(dest.c_str(), nullptr);
  if (real == nullptr) return ErrnoStatus(errno, "resolve", dest);
  std::string root = real;
  std::free(real);

  auto reader = OpenForRead(archive_path);
  if (!reader.ok()) return reader.status();
  ArchiveWriter disk(archive_write_disk_new());
  archive_write_disk_set_options(disk.get(), ARCHIVE_EXTRACT_PERM | ARCHIVE_EXTRACT_TIME |
                                                 ARCHIVE_EXTRACT_SECURE_SYMLINKS |
                                                 ARCHIVE_EXTRACT_SECURE_NODOTDOT);
  archive_write_disk_set_standard_lookup(disk.get());
  archive_entry* e = nullptr;
  std::vector<char> buf(1 << 16);
  while (true) {
    int r = archive_read_next_header(reader->get(), &e);
    if (r == ARCHIVE_EOF) break;
    if (r != ARCHIVE_OK && r != ARCHIVE_WARN) return ArchiveError(reader->get(), "read archive", archive_path);
    std::string rel = Normalize(archive_entry_pathname(e));
    if (rel.empty()) continue;  // "./"
    // Absolute destination paths keep extraction independent of the process's working directory
    // (CheckArchive already refused absolute entry names, so NOABSOLUTEPATHS cannot be used here).
    archive_entry_copy_pathname(e, absl::StrCat(root, "/", rel).c_str());
    if (const char* hard = archive_entry_hardlink(e); hard != nullptr) {
      archive_entry_copy_hardlink(e, absl::StrCat(root, "/", Normalize(hard)).c_str());
    }
    // ARCHIVE_EXTRACT_PERM would restore setuid, setgid and sticky bits (as root, for root): a
    // source tree never needs them.
    archive_entry_set_perm(e, archive_entry_perm(e) & 0777);
    if (archive_write_header(disk.get(), e) != ARCHIVE_OK) return ArchiveError(disk.get(), "extract", rel);
    while (true) {
      la_ssize_t n = archive_read_data(reader->get(), buf.data(), buf.size());
      if (n < 0) return ArchiveError(reader->get(), "read data of", rel);
      if (n == 0) break;
      if (archive_write_data(disk.get(), buf.data(), static_cast<size_t>(n)) < 0) {
        return ArchiveError(disk.get(), "write", rel);
      }
    }
    if (archive_write_finish_entry(disk.get()) != ARCHIVE_OK) return ArchiveError(disk.get(), "finish", rel);
  }
  if (archive_write_close(disk.get()) != ARCHIVE_OK) return ArchiveError(disk.get(), "close", dest);
  return absl::OkStatus();
}

}  // namespace freeagent
