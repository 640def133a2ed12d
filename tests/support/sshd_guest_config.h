// The SshConfig that reaches an SshdFixture: its port, user, key and pinned host key, as
// SshGuest::Connect takes them. Header-only, so test_support itself needs no libssh2.
#pragma once

#include <chrono>

#include "tests/support/sshd_fixture.h"
#include "vm/ssh_guest.h"

namespace freeagent::testing {

inline vm::SshConfig GuestConfigFor(const SshdFixture& sshd) {
  vm::SshConfig c;
  c.host = "127.0.0.1";
  c.port = sshd.port();
  c.user = sshd.user();
  c.private_key_path = sshd.ed25519_key();
  c.host_key_fingerprint = sshd.host_key_fingerprint();
  c.connect_timeout = std::chrono::seconds(20);
  return c;
}

}  // namespace freeagent::testing
