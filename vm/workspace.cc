#include "vm/workspace.h"

#include "absl/strings/str_cat.h"
#include "common/status_macros.h"

namespace freeagent::vm {

absl::StatusOr<std::string> RunGuestCommand(Guest& guest, const std::string& command,
                                            std::chrono::milliseconds timeout, const CancellationToken& cancel) {
  ExecRequest req;
  req.command = command;
  req.deadline = Deadline::After(timeout);
  req.cancel = cancel;
  req.kill_grace = std::chrono::seconds(5);
  std::string out, err;
  req.on_stdout = [&out](std::string_view b) { out.append(b); };
  req.on_stderr = [&err](std::string_view b) {
    if (err.size() < 4096) err.append(b);
  };
  ASSIGN_OR_RETURN(ExecResult r, guest.Exec(req));
  if (r.cancelled) return absl::CancelledError(cancel.Reason());
  if (!r.Succeeded()) {
    return absl::InternalError(absl::StrCat("`", command, "` on ", guest.Describe(), " failed (exit ", r.exit_code,
                                            r.timed_out ? ", timed out" : "", "): ", err));
  }
  return out;
}

absl::Status MakeFreshWorkspace(Guest& guest, const std::string& root, const std::string& workspace,
                                const CancellationToken& cancel) {
  std::string q = ShellQuote(workspace);
  return RunGuestCommand(guest,
                         absl::StrCat("mkdir -p ", ShellQuote(root), " && rm -rf ", q, " && mkdir -m 700 ", q),
                         std::chrono::seconds(60), cancel)
      .status();
}

}  // namespace freeagent::vm
