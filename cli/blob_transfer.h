// Moving blobs between the CLI and the controller's BlobService: resumable chunked upload of a
// local file and resumable, verified download of artifacts.
#pragma once

#include <cstdint>
#include <string>

#include "absl/status/statusor.h"
#include "freeagent/v1/blob.grpc.pb.h"
#include "freeagent/v1/common.pb.h"

namespace freeagent::cli {

inline constexpr size_t kChunkBytes = 1024 * 1024;

// Uploads `path` as blob `digest` (its sha256). Stat first: an existing blob is not sent again, a
// partial upload resumes from the size the controller kept (and restarts from 0 if the resume is
// refused). Shows a progress line when it takes over a second.
// Returns the stored BlobInfo.
absl::StatusOr<freeagent::v1::BlobInfo> UploadFile(freeagent::v1::BlobService::StubInterface* blobs,
                                                   const std::string& path,
                                                   const std::string& digest, uint64_t size,
                                                   bool show_progress = true);

struct DownloadOptions {
  bool force = false;          // replace an existing file whose content differs
  bool show_progress = true;
  // Downloads by digest: the upload this artifact was followed by before it was stored. The bytes
  // already followed (that upload's part file) are resumed instead of fetched again.
  std::string followed_upload_id;
};

// Downloads `artifact` into `dir`/<base name of artifact.name>. Bytes go to `dir`/.<name>.part
// first (an existing one is resumed), are verified against artifact.sha256 and size, then the
// part file is renamed into place. A file already there with the same sha256 is kept as is; one
// with different content is FAILED_PRECONDITION unless `force`. A digest mismatch is DATA_LOSS
// and removes the part file. Returns the final path.
// An artifact still being uploaded (sha256 empty, upload_id set) is downloaded while it is uploaded:
// the bytes follow the upload into `dir`/.<name>.<upload id prefix>.part (resumed the same way) and
// are verified against the digest the controller stored the upload as; ABORTED when the upload was
// abandoned; NOT_FOUND at once when the controller does not know the upload (not begun yet, or
// stored before a controller restart): ask again, or take the digest the build lists once stored.
// `stored`, when set, receives the artifact with its verified sha256 and size.
absl::StatusOr<std::string> DownloadArtifact(freeagent::v1::BlobService::StubInterface* blobs,
                                             const freeagent::v1::ArtifactInfo& artifact,
                                             const std::string& dir,
                                             const DownloadOptions& options = {},
                                             freeagent::v1::ArtifactInfo* stored = nullptr);

// The part file a download following upload `upload_id` of `artifact` writes in `dir`, or an error
// when the artifact's name or the upload id is not valid.
absl::StatusOr<std::string> FollowedPartPath(const freeagent::v1::ArtifactInfo& artifact,
                                             const std::string& dir, const std::string& upload_id);

// The file name an artifact is saved under: its base name, never a path that could leave the
// download directory. INVALID_ARGUMENT for names like "", ".", "..".
absl::StatusOr<std::string> SafeArtifactFileName(const std::string& name);

}  // namespace freeagent::cli
