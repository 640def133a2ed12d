#include "artifacts/collector.h"

#include <set>
#include <thread>

#include "absl/strings/str_cat.h"
#include "artifacts/glob.h"
#include "common/status_macros.h"

namespace freeagent::artifacts {
namespace {

namespace v1 = ::freeagent::v1;

std::string StripDotSlash(std::string_view p) {
  while (p.size() >= 2 && p.substr(0, 2) == "./") p.remove_prefix(2);
  return std::string(p);
}

std::string BaseName(const std::string& p) {
  size_t slash = p.rfind('/');
  return slash == std::string::npos ? p : p.substr(slash + 1);
}

// A relative path that cannot leave the directory it is relative to.
bool StaysInside(std::string_view rel) {
  if (rel.empty() || rel.front() == '/') return false;
  size_t pos = 0;
  while (pos <= rel.size()) {
    size_t slash = rel.find('/', pos);
    if (slash == std::string_view::npos) slash = rel.size();
    if (rel.substr(pos, slash - pos) == "..") return false;
    pos = slash + 1;
  }
  return true;
}

// The tightest limit of the rules that select `rel` (0 in a rule = `fallback`).
uint64_t FileLimit(const std::vector<v1::ArtifactRule>& rules, const std::string& rel, uint64_t fallback) {
  uint64_t limit = 0;
  for (const v1::ArtifactRule& rule : rules) {
    if (!GlobMatch(rule.glob(), rel)) continue;
    uint64_t l = rule.max_size_bytes() != 0 ? rule.max_size_bytes() : fallback;
    if (limit == 0 || l < limit) limit = l;
  }
  return limit;
}

}  // namespace

absl::StatusOr<WorkspaceListing> ParseListing(std::string_view output) {
  WorkspaceListing listing;
  size_t root_end = output.find('\0');
  if (root_end == std::string_view::npos) return absl::InternalError("workspace listing has no root entry");
  listing.root = std::string(output.substr(0, root_end));
  if (listing.root.empty() || listing.root.front() != '/') {
    return absl::InternalError(absl::StrCat("workspace listing has no absolute root (got \"",
                                            listing.root.substr(0, 200), "\")"));
  }
  while (listing.root.size() > 1 && listing.root.back() == '/') listing.root.pop_back();
  bool in_files = false;
  size_t pos = root_end + 1;
  while (pos < output.size()) {
    size_t nul = output.find('\0', pos);
    if (nul == std::string_view::npos) {
      return absl::InternalError("workspace listing ends without a NUL terminator");
    }
    std::string_view entry = output.substr(pos, nul - pos);
    pos = nul + 1;
    if (entry.empty()) {
      if (in_files) return absl::InternalError("workspace listing has more than one separator");
      in_files = true;
      continue;
    }
    std::string rel = StripDotSlash(entry);
    if (rel.empty() || rel == ".") continue;
    if (!StaysInside(rel)) {
      listing.outside.push_back(std::move(rel));
      continue;
    }
    (in_files ? listing.files : listing.symlinks).push_back(std::move(rel));
  }
  if (!in_files) return absl::InternalError("workspace listing is truncated (no separator)");
  return listing;
}

absl::StatusOr<WorkspaceListing> ListWorkspace(vm::Guest& guest, const std::string& workspace,
                                               const CancellationToken& cancel) {
  vm::ExecRequest req;
  // The physical root, symlinks, one empty entry, then regular files. find without -L never descends
  // into a symlinked directory, so every listed path is inside the physical root.
  req.command =
      "printf '%s\\000' \"$(pwd -P)\" && find . -type l -print0 && printf '\\000' && find . -type f -print0";
  req.working_dir = workspace;
  req.cancel = cancel;
  req.deadline = Deadline::After(std::chrono::minutes(5));
  req.kill_grace = std::chrono::milliseconds(2000);
  std::string out;
  std::string err;
  bool overflow = false;
  req.on_stdout = [&out, &overflow](std::string_view b) {
    if (out.size() + b.size() > kMaxListingBytes) {
      overflow = true;
      return;
    }
    out.append(b);
  };
  req.on_stderr = [&err](std::string_view b) {
    if (err.size() < 4096) err.append(b);
  };
  ASSIGN_OR_RETURN(vm::ExecResult r, guest.Exec(req));
  if (r.cancelled) return absl::CancelledError(cancel.Reason());
  if (!r.Succeeded()) {
    return absl::InternalError(absl::StrCat("listing the workspace failed (exit ", r.exit_code, ", signal ",
                                            r.signal, "): ", err));
  }
  if (overflow) {
    return absl::ResourceExhaustedError(absl::StrCat("the workspace listing is over ", kMaxListingBytes,
                                                     " bytes; remove intermediate files before collection"));
  }
  return ParseListing(out);
}

absl::Status ValidateRule(const v1::ArtifactRule& rule) {
  if (rule.glob().empty()) return absl::FailedPreconditionError("an artifact rule has an empty glob");
  if (!StaysInside(rule.glob())) {
    return absl::FailedPreconditionError(
        absl::StrCat("artifact rule \"", rule.glob(), "\" must be relative to the workspace without \"..\""));
  }
  return absl::OkStatus();
}

absl::StatusOr<std::vector<std::string>> SelectFiles(const WorkspaceListing& listing,
                                                     const std::vector<v1::ArtifactRule>& rules,
                                                     const std::function<void(std::string_view)>& note) {
  std::vector<std::string> selected;
  std::set<std::string> seen;
  std::set<std::string> warned;
  auto warn = [&](const std::string& path, std::string_view why) {
    if (warned.insert(path).second && note) note(absl::StrCat("warning: artifact ", path, " ", std::string(why), "; skipped"));
  };
  for (const v1::ArtifactRule& rule : rules) {
    RETURN_IF_ERROR(ValidateRule(rule));
    bool matched = false;
    for (const std::string& f : listing.files) {
      if (!GlobMatch(rule.glob(), f)) continue;
      matched = true;
      if (seen.insert(f).second) selected.push_back(f);
    }
    for (const std::string& l : listing.symlinks) {
      if (GlobMatch(rule.glob(), l)) warn(l, "is a symlink");
    }
    for (const std::string& o : listing.outside) {
      if (GlobMatch(rule.glob(), o)) warn(o, "is outside the workspace");
    }
    if (!matched && !rule.optional()) {
      return absl::FailedPreconditionError(
          absl::StrCat("required artifact rule \"", rule.glob(), "\" matched no file"));
    }
  }
  return selected;
}

absl::StatusOr<std::vector<CollectedFile>> Collect(vm::Guest& guest, const std::string& workspace,
                                                   const std::vector<v1::ArtifactRule>& rules,
                                                   const CollectOptions& options) {
  std::vector<CollectedFile> collected;
  if (rules.empty()) return collected;
  for (const v1::ArtifactRule& rule : rules) RETURN_IF_ERROR(ValidateRule(rule));
  ASSIGN_OR_RETURN(WorkspaceListing listing, ListWorkspace(guest, workspace, options.cancel));
  ASSIGN_OR_RETURN(std::vector<std::string> selected, SelectFiles(listing, rules, options.note));
  uint64_t total = 0;
  for (size_t i = 0; i < selected.size(); ++i) {
    const std::string& rel = selected[i];
    const uint64_t file_limit = FileLimit(rules, rel, options.default_max_bytes);
    const uint64_t job_left = options.max_total_bytes - total;  // total never passes max_total_bytes
    const bool job_limit_binds = options.max_total_bytes > 0 && (file_limit == 0 || job_left < file_limit);
    auto over_job_limit = [&] {
      return absl::ResourceExhaustedError(absl::StrCat("artifact ", rel, " would take the job's artifacts past the per-job limit of ",
                                                       options.max_total_bytes, " bytes (", total,
                                                       " bytes already collected)"));
    };
    if (job_limit_binds && job_left == 0) return over_job_limit();
    CollectedFile file;
    file.path = rel;
    file.local_path = absl::StrCat(options.download_dir, "/", i, "-", BaseName(rel));
    // The upload reads the local copy while the download writes it.
    GrowingFile growing;
    absl::Status uploaded = absl::UnknownError("not uploaded");
    std::thread uploader;
    if (options.upload_to != nullptr) {
      auto on_started = [&](const std::string& upload_id) {
        if (!options.announce) return;
        v1::ArtifactInfo info;
        info.set_name(BaseName(rel));
        info.set_path(rel);
        info.set_upload_id(upload_id);
        options.announce(info);
      };
      uploader = std::thread(
          [&] { uploaded = options.upload_to->UploadGrowing(file.local_path, growing, options.cancel, on_started); });
    }
    absl::StatusOr<vm::TransferResult> t = guest.Download(listing.root + "/" + rel, file.local_path,
                                                          job_limit_binds ? job_left : file_limit, options.cancel);
    if (t.ok()) {
      growing.Finish(t->size, t->sha256);
    } else {
      growing.Fail();
    }
    if (uploader.joinable()) uploader.join();
    file.uploaded = t.ok() && uploaded.ok();
    if (t.ok() && options.upload_to != nullptr && !uploaded.ok() && options.note && !options.cancel.IsCancelled()) {
      options.note(absl::StrCat("warning: artifact ", rel, ": upload during the download failed (", uploaded.message(),
                                "); it is uploaded again after collection"));
    }
    if (!t.ok()) {
      if (absl::IsResourceExhausted(t.status()) && job_limit_binds) return over_job_limit();
      return absl::Status(t.status().code(), absl::StrCat("artifact ", rel, ": ", t.status().message()));
    }
    file.size = t->size;
    file.sha256 = t->sha256;
    total += file.size;
    file.description = DescribeFile(file.local_path, BaseName(rel));
    if (options.note) {
      options.note(absl::StrCat("artifact ", rel, " (", file.size, " bytes, sha256 ", file.sha256, ")"));
      if (!file.description.error.empty()) {
        options.note(absl::StrCat("warning: artifact ", rel, " could not be described: ", file.description.error));
      }
    }
    collected.push_back(std::move(file));
  }
  return collected;
}

absl::StatusOr<std::vector<v1::ArtifactInfo>> UploadArtifacts(BlobClient& blobs,
                                                             const std::vector<CollectedFile>& files,
                                                             const CancellationToken& cancel) {
  std::vector<v1::ArtifactInfo> infos;
  for (const CollectedFile& f : files) {
    absl::Status s = f.uploaded ? absl::OkStatus() : blobs.UploadFile(f.local_path, f.sha256, f.size, cancel);
    if (!s.ok()) return absl::Status(s.code(), absl::StrCat("upload of artifact ", f.path, ": ", s.message()));
    v1::ArtifactInfo info;
    info.set_name(BaseName(f.path));
    info.set_path(f.path);
    info.set_size(f.size);
    info.set_sha256(f.sha256);
    ApplyDescription(f.description, &info);
    infos.push_back(std::move(info));
  }
  return infos;
}

}  // namespace freeagent::artifacts
