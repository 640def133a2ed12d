// Artifact collection: finds the files a job's rules name in the guest workspace (one listing command
// through the Guest, globs matched here), downloads each with a streaming sha256 and size limits,
// describes it (describe.h), then stores it in the blob store and records it as ArtifactInfo for the
// JobResult.
//
// Safety: only regular files are collected. The listing never descends into a symlinked directory and
// reports symlinks separately; a symlink a rule matches is skipped with a warning note, never copied.
// Every path must stay inside the workspace (relative, no ".."), and downloads go through the
// workspace's physical path (`pwd -P`), with the Guest refusing a symlink at the final component.
#pragma once

#include <cstdint>
#include <functional>
#include <string>
#include <string_view>
#include <vector>

#include "absl/status/statusor.h"
#include "artifacts/blob_client.h"
#include "artifacts/describe.h"
#include "common/cancellation.h"
#include "freeagent/v1/common.pb.h"
#include "vm/guest.h"

namespace freeagent::artifacts {

// What the guest workspace holds, as one listing saw it. Paths are relative, without "./".
struct WorkspaceListing {
  std::string root;                   // the workspace's physical absolute path in the guest
  std::vector<std::string> files;     // regular files
  std::vector<std::string> symlinks;  // never collected
  std::vector<std::string> outside;   // entries that would leave the workspace; never collected
};

// The listing command's output is kept in memory; a workspace whose listing is larger fails the
// collection (RESOURCE_EXHAUSTED) instead of growing the worker without bound.
inline constexpr size_t kMaxListingBytes = 64u << 20;

// Lists the workspace with one command through the guest (`pwd -P` and `find`, portable to GNU and
// BSD find).
absl::StatusOr<WorkspaceListing> ListWorkspace(vm::Guest& guest, const std::string& workspace,
                                               const CancellationToken& cancel);

// Parses the listing command's output: the physical root, then NUL-separated symlink paths, an empty
// entry, then regular files. INTERNAL when the output is truncated or malformed.
absl::StatusOr<WorkspaceListing> ParseListing(std::string_view output);

// FAILED_PRECONDITION naming the glob when a rule is empty, absolute or has a ".." segment.
absl::Status ValidateRule(const freeagent::v1::ArtifactRule& rule);

struct CollectOptions {
  uint64_t default_max_bytes = 4ull << 30;  // per artifact, when a rule says 0
  uint64_t max_total_bytes = 16ull << 30;   // all artifacts of a job
  std::string download_dir;                 // host dir the files are downloaded into (must exist)
  // The collector's notes for the job's progress, one line each without '\n' (a skipped symlink or
  // outside path as "warning: ...", each collected file); they reach the job's event timeline and
  // the followed output, never the guest's log bytes. May be null.
  std::function<void(std::string_view text)> note;
  CancellationToken cancel;
  // When set, each file is uploaded here while it is still being downloaded (BlobClient::UploadGrowing),
  // so the two transfers overlap. A file whose overlapped upload fails is uploaded again, whole, by
  // UploadArtifacts.
  BlobClient* upload_to = nullptr;
  // Told about each file whose overlapped upload has started (name, path, upload_id), so clients can
  // download it while it is uploaded. May be null.
  std::function<void(const freeagent::v1::ArtifactInfo& uploading)> announce;
};

struct CollectedFile {
  std::string path;        // relative to the workspace
  std::string local_path;  // the downloaded copy on the host
  uint64_t size = 0;
  std::string sha256;
  Description description;
  bool uploaded = false;  // stored in the blob store already (CollectOptions::upload_to)
};

// Which listed files the rules select, in listing order, each at most once. A symlink or an outside
// path matched by a rule is skipped with a warning note. A required rule with no match ->
// FAILED_PRECONDITION naming the glob; a bad rule -> FAILED_PRECONDITION (ValidateRule).
absl::StatusOr<std::vector<std::string>> SelectFiles(const WorkspaceListing& listing,
                                                     const std::vector<freeagent::v1::ArtifactRule>& rules,
                                                     const std::function<void(std::string_view)>& note);

// ListWorkspace + SelectFiles + download and description of each. A file over its limit (the tightest
// max_size of the rules that select it, else default_max_bytes) or past the job's total ->
// RESOURCE_EXHAUSTED naming the file and the limit.
absl::StatusOr<std::vector<CollectedFile>> Collect(vm::Guest& guest, const std::string& workspace,
                                                   const std::vector<freeagent::v1::ArtifactRule>& rules,
                                                   const CollectOptions& options);

// Stores every collected file not uploaded yet in the blob store and records each (name, path, size,
// sha256, description).
absl::StatusOr<std::vector<freeagent::v1::ArtifactInfo>> UploadArtifacts(BlobClient& blobs,
                                                                         const std::vector<CollectedFile>& files,
                                                                         const CancellationToken& cancel);

}  // namespace freeagent::artifacts
