// Artifact collection: finds the files a job's rules name in the guest workspace (one listing command
// through the Guest, globs matched here), downloads each with a streaming sha256, then stores them in
// the blob store and describes them as ArtifactInfo for the JobResult.
#pragma once

#include <cstdint>
#include <functional>
#include <string>
#include <string_view>
#include <vector>

#include "absl/status/statusor.h"
#include "artifacts/blob_client.h"
#include "common/cancellation.h"
#include "freeagent/v1/common.pb.h"
#include "vm/guest.h"

namespace freeagent::artifacts {

// What the guest workspace holds, as one listing saw it. Paths are relative, without "./".
struct WorkspaceListing {
  std::vector<std::string> files;     // regular files
  std::vector<std::string> symlinks;  // never collected
};

// Lists the workspace with one `find` through the guest (portable to GNU and BSD find).
absl::StatusOr<WorkspaceListing> ListWorkspace(vm::Guest& guest, const std::string& workspace,
                                               const CancellationToken& cancel);

// Parses the listing command's output: NUL-separated symlink paths, an empty entry, then regular files.
absl::StatusOr<WorkspaceListing> ParseListing(std::string_view output);

struct CollectOptions {
  uint64_t default_max_bytes = 4ull << 30;  // per artifact, when a rule says 0
  uint64_t max_total_bytes = 16ull << 30;   // all artifacts of a job
  std::string download_dir;                 // host dir the files are downloaded into (must exist)
  // The collector's notes for the job's progress, one line each without '\n' (a skipped symlink, each
  // collected file); never part of the job log. May be null.
  std::function<void(std::string_view text)> note;
  CancellationToken cancel;
};

struct CollectedFile {
  std::string path;        // relative to the workspace
  std::string local_path;  // the downloaded copy on the host
  uint64_t size = 0;
  std::string sha256;
};

// Which listed files the rules select, in listing order, each at most once. A symlink matched by a rule
// is skipped with a warning note. A required rule with no match -> FAILED_PRECONDITION naming the glob.
absl::StatusOr<std::vector<std::string>> SelectFiles(const WorkspaceListing& listing,
                                                     const std::vector<freeagent::v1::ArtifactRule>& rules,
                                                     const std::function<void(std::string_view)>& note);

// ListWorkspace + SelectFiles + download of each (size limits enforced: RESOURCE_EXHAUSTED naming it).
absl::StatusOr<std::vector<CollectedFile>> Collect(vm::Guest& guest, const std::string& workspace,
                                                   const std::vector<freeagent::v1::ArtifactRule>& rules,
                                                   const CollectOptions& options);

// Stores every collected file in the blob store and describes it.
absl::StatusOr<std::vector<freeagent::v1::ArtifactInfo>> UploadArtifacts(BlobClient& blobs,
                                                                         const std::vector<CollectedFile>& files,
                                                                         const CancellationToken& cancel);

}  // namespace freeagent::artifacts
