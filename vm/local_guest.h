// LocalGuest: the Guest for the `local` driver. Commands run on the worker host itself through the
// process runner (`/bin/sh -c`, own process group, TERM -> grace -> KILL of the group). No isolation:
// for development and trusted hosts only.
#pragma once

#include <string>

#include "vm/guest.h"

namespace freeagent::vm {

class LocalGuest : public Guest {
 public:
  // `default_dir` is where commands run when ExecRequest::working_dir is empty (empty = inherit).
  explicit LocalGuest(std::string default_dir = "") : default_dir_(std::move(default_dir)) {}

  absl::StatusOr<ExecResult> Exec(const ExecRequest& request) override;
  absl::StatusOr<TransferResult> Upload(const std::string& local_path, const std::string& remote_path, int mode,
                                        const CancellationToken& cancel) override;
  absl::StatusOr<TransferResult> Download(const std::string& remote_path, const std::string& local_path,
                                          uint64_t max_bytes, const CancellationToken& cancel) override;
  absl::Status UploadArchive(const std::string& archive_path, const std::string& remote_dir,
                             const CancellationToken& cancel) override;
  absl::Status UploadDirectory(const std::string& local_dir, const std::string& remote_dir,
                               const CancellationToken& cancel) override;
  std::string Describe() const override { return "local"; }

 private:
  std::string default_dir_;
};

// Copies the open file `in_fd` to a new file at `out_path` (mode 0600 until `mode` is applied),
// hashing on the way. More than `max_bytes` (0 = unlimited) -> RESOURCE_EXHAUSTED. On any error the
// output file is removed.
absl::StatusOr<TransferResult> CopyFdToFile(int in_fd, const std::string& what, const std::string& out_path,
                                            int mode, uint64_t max_bytes, const CancellationToken& cancel);

}  // namespace freeagent::vm
