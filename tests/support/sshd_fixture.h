// A real OpenSSH server for tests: /usr/sbin/sshd from Debian's openssh-server on 127.0.0.1 and a free
// port, with generated host and user keys and its own config (no PAM, no passwords). Works as root
// (CI) and as an ordinary user (then only that user can log in). Stopped by its pid.
//
// Sessions get HOME=<dir>/home, so the login shell runs the fixture's start-up files, not the
// account's own: a test's timing does not depend on what the machine's dotfiles do (and a session cut
// off during them leaves nothing behind in the real home).
#pragma once

#include <sys/types.h>

#include <chrono>
#include <memory>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "tests/support/process_fixture.h"

namespace freeagent::testing {

struct SshdOptions {
  // Each login shell (bash: its ~/.bashrc) sleeps this long before it runs the command, as slow
  // start-up files on a real machine do. 0 = an empty ~/.bashrc.
  std::chrono::milliseconds login_delay{0};
};

class SshdFixture {
 public:
  // Generates keys, writes the config, starts sshd and waits until it accepts connections.
  static absl::StatusOr<std::unique_ptr<SshdFixture>> Start(const SshdOptions& options = {});
  ~SshdFixture();

  int port() const { return port_; }
  const std::string& user() const { return user_; }
  const std::string& dir() const { return dir_; }
  // Authorized user keys (OpenSSH format, no passphrase).
  std::string ed25519_key() const { return dir_ + "/user_ed25519"; }
  std::string ecdsa_key() const { return dir_ + "/user_ecdsa"; }
  std::string rsa_key() const { return dir_ + "/user_rsa"; }
  // A valid key that is not authorized.
  std::string stranger_key() const { return dir_ + "/stranger_ed25519"; }
  // "SHA256:..." of the server's host key, as ssh-keygen -lf prints it.
  const std::string& host_key_fingerprint() const { return host_fingerprint_; }
  // A known_hosts file with the server's key for [127.0.0.1]:port.
  std::string known_hosts() const { return dir_ + "/known_hosts"; }
  // ssh options that make the OpenSSH client use this server the same way (for side-by-side runs).
  std::vector<std::string> SshClientArgs() const;

  pid_t pid() const { return sshd_ ? sshd_->pid() : -1; }
  // The per-connection sshd processes (children of the listener), found through /proc.
  std::vector<pid_t> SessionPids() const;
  // Stops the listener (SIGTERM by pid) and kills its session processes.
  void Stop();
  // Starts sshd again on the same port with the same keys.
  absl::Status Restart();
  // The last lines of sshd's log, for failure messages.
  std::string LogTail() const;

 private:
  SshdFixture() = default;
  absl::Status Launch();

  std::string dir_;
  std::string user_;
  std::string host_fingerprint_;
  int port_ = 0;
  std::unique_ptr<ChildProcess> sshd_;
};

// A TCP port on 127.0.0.1 that was free a moment ago.
absl::StatusOr<int> FreeLoopbackPort();

}  // namespace freeagent::testing
