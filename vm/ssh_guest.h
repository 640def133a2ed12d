// SshGuest: the Guest reached over SSH (libssh2), used for every VM and for existing machines.
//
// Security: the server's host key is pinned (a SHA-256 fingerprint as `ssh-keygen -lf` prints it, or a
// known_hosts file); an unknown or different key refuses the connection. There is no "accept anything"
// mode. Environment values (which may be secrets) and the script travel on the command's stdin, never
// on a command line in the guest.
//
// Process control: each command runs under a small POSIX sh wrapper that puts it in its own process
// group and reports the group id; cancel and timeouts kill that whole group over a second channel
// (TERM, grace, KILL). Leftover background processes are killed when the command ends.
//
// Start-up: every command runs on a channel of its own, through the user's login shell. The next
// command's channel (the standby) is opened while the current one runs, so slow shell start-up files
// are paid in the background: a command starts in a shell whose start-up files ran when the command
// before it began (the first one: at connect).
#pragma once

#include <chrono>
#include <functional>
#include <memory>
#include <mutex>
#include <string>

#include "absl/status/statusor.h"
#include "common/cancellation.h"
#include "common/deadline.h"
#include "vm/guest.h"

namespace freeagent::vm {

struct SshConfig {
  std::string host = "127.0.0.1";
  int port = 22;
  std::string user;
  // Exactly one of these: a private key file, or the key itself (PEM / OpenSSH format).
  std::string private_key_path;
  std::string private_key_data;
  // Exactly one of these: "SHA256:<base64>" (ssh-keygen -lf), or a known_hosts file.
  std::string host_key_fingerprint;
  std::string known_hosts_path;
  // Connection attempts are retried with backoff until this much time has passed (the guest may still
  // be booting).
  std::chrono::milliseconds connect_timeout{60000};
  // TCP keepalive interval on the connection; a peer silent for about 3 intervals is considered gone.
  std::chrono::seconds keepalive_interval{5};
  // Where WaitReady-style progress lines go ("ssh: attempt 3 ... after 2.1 s"); may be null.
  std::function<void(const std::string&)> on_progress;
};

class SshGuest : public Guest {
 public:
  // Connects (TCP + handshake + host-key check + public-key auth), retrying while the server is not up
  // yet, until config.connect_timeout or `cancel`.
  // UNAVAILABLE (with the address) when it never answered; PERMISSION_DENIED naming user and key when
  // authentication is refused or the host key does not match (message shows expected and seen keys);
  // INVALID_ARGUMENT for a bad config.
  static absl::StatusOr<std::unique_ptr<SshGuest>> Connect(const SshConfig& config,
                                                           const CancellationToken& cancel);

  ~SshGuest() override;

  absl::StatusOr<ExecResult> Exec(const ExecRequest& request) override;
  absl::StatusOr<TransferResult> Upload(const std::string& local_path, const std::string& remote_path, int mode,
                                        const CancellationToken& cancel) override;
  absl::StatusOr<TransferResult> Download(const std::string& remote_path, const std::string& local_path,
                                          uint64_t max_bytes, const CancellationToken& cancel) override;
  absl::Status UploadArchive(const std::string& archive_path, const std::string& remote_dir,
                             const CancellationToken& cancel) override;
  absl::Status UploadDirectory(const std::string& local_dir, const std::string& remote_dir,
                               const CancellationToken& cancel) override;
  std::string Describe() const override;

  // The server's host key fingerprint as "SHA256:<base64>".
  const std::string& host_key_fingerprint() const { return seen_fingerprint_; }

  struct Session;  // libssh2 state; defined in the .cc

 private:
  SshGuest(SshConfig config, std::unique_ptr<Session> session, std::string fingerprint);

  SshConfig config_;
  std::unique_ptr<Session> session_;
  std::string seen_fingerprint_;
};

// "SHA256:<base64 without padding>" of a raw SSH public key blob, as ssh-keygen -lf prints it.
std::string SshFingerprint(const std::string& key_blob);

}  // namespace freeagent::vm
