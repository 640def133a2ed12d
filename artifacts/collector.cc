#include "artifacts/collector.h"

#include <set>

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

}  // namespace

absl::StatusOr<WorkspaceListing> ParseListing(std::string_view output) {
  WorkspaceListing listing;
  bool in_files = false;
  size_t pos = 0;
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
    (in_files ? listing.files : listing.symlinks).push_back(std::move(rel));
  }
  if (!in_files) return absl::InternalError("workspace listing is truncated (no separator)");
  return listing;
}

absl::StatusOr<WorkspaceListing> ListWorkspace(vm::Guest& guest, const std::string& workspace,
                                               const CancellationToken& cancel) {
  vm::ExecRequest req;
  // Symlinks first, one empty entry, then regular files. find does not descend into symlinked dirs.
  req.command = "find . -type l -print0 && printf '\\000' && find . -type f -print0";
  req.working_dir = workspace;
  req.cancel = cancel;
  req.deadline = Deadline::After(std::chrono::minutes(5));
  req.kill_grace = std::chrono::milliseconds(2000);
  std::string out;
  std::string err;
  req.on_stdout = [&out](std::string_view b) { out.append(b); };
  req.on_stderr = [&err](std::string_view b) {
    if (err.size() < 4096) err.append(b);
  };
  ASSIGN_OR_RETURN(vm::ExecResult r, guest.Exec(req));
  if (r.cancelled) return absl::CancelledError(cancel.Reason());
  if (!r.Succeeded()) {
    return absl::InternalError(absl::StrCat("listing the workspace failed (exit ", r.exit_code, ", signal ",
                                            r.signal, "): ", err));
  }
  return ParseListing(out);
}

absl::StatusOr<std::vector<std::string>> SelectFiles(const WorkspaceListing& listing,
                                                     const std::vector<v1::ArtifactRule>& rules,
                                                     const std::function<void(std::string_view)>& note) {
  std::vector<std::string> selected;
  std::set<std::string> seen;
  std::set<std::string> warned;
  for (const v1::ArtifactRule& rule : rules) {
    bool matched = false;
    for (const std::string& f : listing.files) {
      if (!GlobMatch(rule.glob(), f)) continue;
      matched = true;
      if (seen.insert(f).second) selected.push_back(f);
    }
    for (const std::string& l : listing.symlinks) {
      if (!GlobMatch(rule.glob(), l)) continue;
      if (warned.insert(l).second && note) note(absl::StrCat("warning: artifact ", l, " is a symlink; skipped"));
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
  ASSIGN_OR_RETURN(WorkspaceListing listing, ListWorkspace(guest, workspace, options.cancel));
  ASSIGN_OR_RETURN(std::vector<std::string> selected, SelectFiles(listing, rules, options.note));
  uint64_t total = 0;
  for (size_t i = 0; i < selected.size(); ++i) {
    const std::string& rel = selected[i];
    // The tightest limit of the rules that select this file applies.
    uint64_t limit = 0;
    for (const v1::ArtifactRule& rule : rules) {
      if (!GlobMatch(rule.glob(), rel)) continue;
      uint64_t l = rule.max_size_bytes() != 0 ? rule.max_size_bytes() : options.default_max_bytes;
      if (limit == 0 || l < limit) limit = l;
    }
    uint64_t left = options.max_total_bytes > total ? options.max_total_bytes - total : 1;
    if (limit == 0 || left < limit) limit = left;
    CollectedFile file;
    file.path = rel;
    file.local_path = absl::StrCat(options.download_dir, "/", i, "-", BaseName(rel));
    absl::StatusOr<vm::TransferResult> t =
        guest.Download(workspace + "/" + rel, file.local_path, limit, options.cancel);
    if (!t.ok()) {
      return absl::Status(t.status().code(), absl::StrCat("artifact ", rel, ": ", t.status().message()));
    }
    file.size = t->size;
    file.sha256 = t->sha256;
    total += file.size;
    if (options.note) {
      options.note(absl::StrCat("artifact ", rel, " (", file.size, " bytes, sha256 ", file.sha256, ")"));
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
    absl::Status s = blobs.UploadFile(f.local_path, f.sha256, f.size, cancel);
    if (!s.ok()) return absl::Status(s.code(), absl::StrCat("upload of artifact ", f.path, ": ", s.message()));
    v1::ArtifactInfo info;
    info.set_name(BaseName(f.path));
    info.set_path(f.path);
    info.set_size(f.size);
    info.set_sha256(f.sha256);
    infos.push_back(std::move(info));
  }
  return infos;
}

}  // namespace freeagent::artifacts
