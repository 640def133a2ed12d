// Guest housekeeping shared by the drivers that reach a machine over SSH: a short command whose failure is
// an error, and the per-job workspace directory made fresh (0700) before a job.
#pragma once

#include <chrono>
#include <string>

#include "absl/status/statusor.h"
#include "common/cancellation.h"
#include "vm/guest.h"

namespace freeagent::vm {

// Runs a short housekeeping command and returns its stdout. A non-zero exit, a timeout or a cancel is an
// error naming the command, the guest and what the command wrote on stderr (CANCELLED for a cancel).
absl::StatusOr<std::string> RunGuestCommand(Guest& guest, const std::string& command,
                                            std::chrono::milliseconds timeout,
                                            const CancellationToken& cancel = CancellationToken());

// Creates `root` if missing and `workspace` (a directory below it) empty with mode 0700; whatever an
// earlier attempt left at `workspace` is removed first.
absl::Status MakeFreshWorkspace(Guest& guest, const std::string& root, const std::string& workspace,
                                const CancellationToken& cancel = CancellationToken());

}  // namespace freeagent::vm
