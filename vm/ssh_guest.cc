#include "vm/ssh_guest.h"

#include <fcntl.h>
#include <libssh2.h>
#include <libssh2_sftp.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <openssl/evp.h>
#include <poll.h>
#include <signal.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <array>
#include <cerrno>
#include <cstring>
#include <mutex>
#include <thread>
#include <vector>

#include "absl/cleanup/cleanup.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "common/archive.h"
#include "common/fs.h"
#include "common/sha256.h"
#include "common/status_macros.h"

namespace freeagent::vm {
namespace {

using Clock = std::chrono::steady_clock;
using std::chrono::milliseconds;

// libssh2 moves SFTP data in packets of at most 30000 bytes and pipelines the requests of one large
// write/read call; a buffer of many packets keeps that many requests in flight.
constexpr size_t kSftpPacket = 30000;
constexpr size_t kSftpBuffer = kSftpPacket * 64;
constexpr int kNoWorkingDirExit = 200;
constexpr char kPgidMarker[] = "FAPG ";
constexpr char kReadyLine[] = "FARDY";
constexpr char kNoDirMarker[] = "FAERR-NODIR\n";

// The command wrapper (POSIX sh; Linux and macOS guests). It says "FARDY" on stderr once the user's
// login shell has handed over, then reads a header line "<preamble bytes> <script bytes>" from stdin,
// then the preamble (exports and cd) and the script; the rest of stdin is the command's own input. So
// the command line is the same for every command, and a channel can be started before its command is
// known (the standby: see Session). An EOF instead of a header ends it quietly.
// The command runs in a new session/process group (setsid, or perl's setpgrp where setsid is missing,
// as on macOS) and prints its group id as the first line on stderr. When it ends, the rest of its
// group is killed and its signal, if any, is re-raised so the SSH exit status carries it (only 1..15:
// signals that end a process by default on Linux and macOS, never a stop signal).
constexpr char kWrapper[] = R"SH(echo FARDY >&2
read -r pre len || exit 0
exec 3<&0
eval "$(dd bs=1 count=$pre 2>/dev/null)"
s="$(dd bs=1 count=$len 2>/dev/null)"
if command -v setsid >/dev/null 2>&1; then
  setsid /bin/sh -c 'echo "FAPG $$" >&2; exec /bin/sh -c "$1"' fa "$s" 0<&3 3<&- &
else
  perl -e 'setpgrp(0, 0); exec @ARGV' /bin/sh -c 'echo "FAPG $$" >&2; exec /bin/sh -c "$1"' fa "$s" 0<&3 3<&- &
fi
p=$!
exec 3<&-
wait $p
st=$?
kill -9 -$p 2>/dev/null
if [ $st -gt 128 ] && [ $st -le 143 ]; then kill -$((st - 128)) $$; fi
exit $st
)SH";

std::once_flag g_libssh2_init;

std::string Base64NoPad(const unsigned char* data, size_t len) {
  std::string out(4 * ((len + 2) / 3) + 1, '\0');
  int n = EVP_EncodeBlock(reinterpret_cast<unsigned char*>(out.data()), data, static_cast<int>(len));
  out.resize(static_cast<size_t>(n));
  while (!out.empty() && out.back() == '=') out.pop_back();
  return out;
}

std::string Base64Decode(const std::string& in) {
  std::string out(3 * (in.size() / 4) + 3, '\0');
  int n = EVP_DecodeBlock(reinterpret_cast<unsigned char*>(out.data()),
                          reinterpret_cast<const unsigned char*>(in.data()), static_cast<int>(in.size()));
  if (n < 0) return "";
  size_t pad = 0;
  for (size_t i = in.size(); i > 0 && in[i - 1] == '='; --i) ++pad;
  out.resize(static_cast<size_t>(n) - std::min(pad, static_cast<size_t>(n)));
  return out;
}

int SignalNumber(const std::string& name) {
  static const std::pair<const char*, int> kSignals[] = {
      {"HUP", SIGHUP},   {"INT", SIGINT},   {"QUIT", SIGQUIT}, {"ILL", SIGILL},   {"ABRT", SIGABRT},
      {"FPE", SIGFPE},   {"KILL", SIGKILL}, {"SEGV", SIGSEGV}, {"PIPE", SIGPIPE}, {"ALRM", SIGALRM},
      {"TERM", SIGTERM}, {"USR1", SIGUSR1}, {"USR2", SIGUSR2}, {"BUS", SIGBUS},   {"TRAP", SIGTRAP},
  };
  for (const auto& [n, v] : kSignals) {
    if (name == n) return v;
  }
  return SIGTERM;
}

bool ValidEnvName(const std::string& k) {
  if (k.empty() || std::isdigit(static_cast<unsigned char>(k[0]))) return false;
  return std::all_of(k.begin(), k.end(), [](char c) { return std::isalnum(static_cast<unsigned char>(c)) || c == '_'; });
}

// True if the private key (PEM or OpenSSH format) is an RSA key.
bool IsRsaKey(const std::string& key) {
  if (key.find("BEGIN RSA PRIVATE KEY") != std::string::npos) return true;
  const std::string begin = "-----BEGIN OPENSSH PRIVATE KEY-----";
  size_t b = key.find(begin);
  size_t e = key.find("-----END OPENSSH PRIVATE KEY-----");
  if (b == std::string::npos || e == std::string::npos) return false;
  std::string body;
  for (size_t i = b + begin.size(); i < e; ++i) {
    if (!std::isspace(static_cast<unsigned char>(key[i]))) body += key[i];
  }
  return Base64Decode(body).find("ssh-rsa") != std::string::npos;
}

}  // namespace

std::string SshFingerprint(const std::string& key_blob) {
  unsigned char md[EVP_MAX_MD_SIZE];
  unsigned int len = 0;
  EVP_Digest(key_blob.data(), key_blob.size(), md, &len, EVP_sha256(), nullptr);
  return "SHA256:" + Base64NoPad(md, len);
}

// One SSH connection. libssh2 is not thread-safe per session, so every libssh2 call is made under
// `mu`; the session is non-blocking and waits happen outside the lock, so several commands (and the
// kill channel) interleave on one connection.
struct SshGuest::Session {
  int sock = -1;
  LIBSSH2_SESSION* s = nullptr;
  LIBSSH2_SFTP* sftp = nullptr;
  std::mutex mu;
  // libssh2 keeps the progress of SFTP init/open/stat in the shared LIBSSH2_SFTP object: one such
  // operation at a time, held across its EAGAIN retries (reads and writes keep state per handle).
  // Lock order: sftp_mu, startup_mu, mu.
  std::mutex sftp_mu;
  // libssh2 also keeps the progress of opening a channel and of starting its command (exec, subsystem)
  // in the session rather than the channel: two threads inside either at once take each other's replies
  // ("Failed waiting for channel success"). One such step at a time, held across its EAGAIN retries.
  std::mutex startup_mu;
  // A shell kept open on its own channel for signalling process groups ("TERM 1234" runs
  // kill -TERM -1234), opened at connect: a cancel then costs one write instead of starting a new
  // command, whose login shell start-up alone can take a second. Set before the session is shared;
  // then used and cleared (when broken; never reopened) under signal_mu.
  // Lock order: signal_mu, startup_mu, mu.
  std::mutex signal_mu;
  LIBSSH2_CHANNEL* signal_ch = nullptr;
  // The standby: a channel whose command wrapper is already started and waits for its header. A
  // command takes it (or starts a channel of its own when there is none) and opens the next one once
  // its own input is on the way, so the user's login shell start-up (which can take a second) runs
  // while the previous command runs, not before the next one. At most one; standby_opening while a
  // thread opens it. Lock order: standby_mu is never held with another lock.
  std::mutex standby_mu;
  LIBSSH2_CHANNEL* standby_ch = nullptr;
  bool standby_opening = false;
  std::string where;  // "user@host:port"

  ~Session() {
    if (s != nullptr) {
      libssh2_session_set_blocking(s, 1);
      libssh2_session_set_timeout(s, 2000);
      if (signal_ch != nullptr) libssh2_channel_free(signal_ch);
      if (standby_ch != nullptr) libssh2_channel_free(standby_ch);
      if (sftp != nullptr) libssh2_sftp_shutdown(sftp);
      libssh2_session_disconnect(s, "bye");
      libssh2_session_free(s);
    }
    if (sock >= 0) ::close(sock);
  }

  // Waits until the socket can move data in the direction libssh2 is blocked on (or `max` passes).
  void Wait(milliseconds max) {
    int dir;
    {
      std::lock_guard<std::mutex> lock(mu);
      dir = libssh2_session_block_directions(s);
    }
    pollfd p{sock, 0, 0};
    if (dir & LIBSSH2_SESSION_BLOCK_INBOUND) p.events |= POLLIN;
    if (dir & LIBSSH2_SESSION_BLOCK_OUTBOUND) p.events |= POLLOUT;
    if (p.events == 0) p.events = POLLIN;
    ::poll(&p, 1, static_cast<int>(max.count()));
  }

  std::string LastError() {
    char* msg = nullptr;
    int len = 0;
    libssh2_session_last_error(s, &msg, &len, 0);
    return msg != nullptr ? std::string(msg, static_cast<size_t>(len)) : "unknown error";
  }

  // A libssh2 failure as a Status: transport errors are UNAVAILABLE (the guest is gone).
  absl::Status Error(int rc, const std::string& what) {
    std::string msg = absl::StrCat(what, " on ", where, ": ", LastError(), " (libssh2 ", rc, ")");
    switch (rc) {
      case LIBSSH2_ERROR_SOCKET_SEND:
      case LIBSSH2_ERROR_SOCKET_RECV:
      case LIBSSH2_ERROR_SOCKET_DISCONNECT:
      case LIBSSH2_ERROR_SOCKET_TIMEOUT:
      case LIBSSH2_ERROR_TIMEOUT:
      case LIBSSH2_ERROR_BANNER_RECV:
      case LIBSSH2_ERROR_KEX_FAILURE:
        return absl::UnavailableError(absl::StrCat("ssh connection lost: ", msg));
      default:
        return absl::InternalError(msg);
    }
  }

  // Retries `op` (a libssh2 call made under the lock) while it returns EAGAIN.
  template <typename Op>
  auto Retry(Op op, const CancellationToken& cancel, const Deadline& deadline, const std::string& what)
      -> absl::StatusOr<decltype(op())> {
    while (true) {
      decltype(op()) r;
      int err = 0;
      {
        std::lock_guard<std::mutex> lock(mu);
        r = op();
        if constexpr (std::is_pointer_v<decltype(r)>) {
          // Read where the call failed: another thread's call could overwrite it afterwards.
          if (r == nullptr) err = libssh2_session_last_errno(s);
        }
      }
      bool again;
      if constexpr (std::is_pointer_v<decltype(r)>) {
        if (r != nullptr) return r;
        if (err != LIBSSH2_ERROR_EAGAIN) {
          std::lock_guard<std::mutex> lock(mu);
          return Error(err, what);
        }
        again = true;
      } else {
        if (r >= 0) return r;
        if (r != LIBSSH2_ERROR_EAGAIN) {
          std::lock_guard<std::mutex> lock(mu);
          return Error(static_cast<int>(r), what);
        }
        again = true;
      }
      if (again) {
        if (cancel.IsCancelled()) return absl::CancelledError(absl::StrCat(what, ": cancelled"));
        if (deadline.Expired()) return absl::DeadlineExceededError(absl::StrCat(what, " on ", where, ": timed out"));
        Wait(milliseconds(100));
      }
    }
  }

  // Retry for the session-wide steps guarded by startup_mu.
  template <typename Op>
  auto Startup(Op op, const CancellationToken& cancel, const Deadline& deadline, const std::string& what)
      -> absl::StatusOr<decltype(op())> {
    std::lock_guard<std::mutex> serial(startup_mu);
    return Retry(op, cancel, deadline, what);
  }

  absl::StatusOr<LIBSSH2_SFTP*> Sftp(const CancellationToken& cancel) {
    std::lock_guard<std::mutex> op(sftp_mu);
    {
      std::lock_guard<std::mutex> lock(mu);
      if (sftp != nullptr) return sftp;
    }
    ASSIGN_OR_RETURN(LIBSSH2_SFTP * h, Startup([&] { return libssh2_sftp_init(s); }, cancel,
                                             Deadline::After(std::chrono::seconds(30)), "start sftp"));
    std::lock_guard<std::mutex> lock(mu);
    sftp = h;
    return sftp;
  }
};

namespace {

struct ChannelCloser {
  SshGuest::Session* session;
  LIBSSH2_CHANNEL* ch;
  ~ChannelCloser() {
    if (ch == nullptr) return;
    // Best effort and bounded: the channel may belong to a dead connection.
    for (int i = 0; i < 50; ++i) {
      int rc;
      {
        std::lock_guard<std::mutex> lock(session->mu);
        rc = libssh2_channel_free(ch);
      }
      if (rc != LIBSSH2_ERROR_EAGAIN) break;
      session->Wait(milliseconds(20));
    }
  }
};

// The signal shell's loop: one "SIGNAL PGID" line per signal, answered with "FASIG SIGNAL PGID" once
// kill has run; anything else is ignored. It says "FASIG ready" once the login shell has handed over.
constexpr char kSignalLoop[] =
    "exec /bin/sh -c 'echo FASIG ready; while read -r s p; do case \"$s $p\" in "
    "TERM\\ [0-9]*|KILL\\ [0-9]*) kill -$s -$p 2>/dev/null; echo \"FASIG $s $p\";; esac; done'";

// Reads `ch`'s output (stdout, or stderr when `from_stderr`) until a line `line` (with its newline) has
// arrived; other output is dropped. False when the channel ends, `deadline` passes or `cancel` fires
// first.
bool AwaitLine(SshGuest::Session& ss, LIBSSH2_CHANNEL* ch, const std::string& line, const Deadline& deadline,
               const CancellationToken& cancel, bool from_stderr = false) {
  std::string out;
  while (true) {
    bool eof;
    {
      std::lock_guard<std::mutex> lock(ss.mu);
      char buf[1024];
      ssize_t n;
      while ((n = libssh2_channel_read(ch, buf, sizeof buf)) > 0) {
        if (!from_stderr) out.append(buf, static_cast<size_t>(n));
      }
      ssize_t n_err;
      while ((n_err = libssh2_channel_read_stderr(ch, buf, sizeof buf)) > 0) {
        if (from_stderr) out.append(buf, static_cast<size_t>(n_err));
      }
      // A failed read (the connection is gone) ends the wait like an EOF.
      eof = libssh2_channel_eof(ch) != 0 || (n < 0 && n != LIBSSH2_ERROR_EAGAIN) ||
            (n_err < 0 && n_err != LIBSSH2_ERROR_EAGAIN);
    }
    if (out.find(line) != std::string::npos) return true;
    if (eof || deadline.Expired() || cancel.IsCancelled()) return false;
    if (size_t nl = out.rfind('\n'); nl != std::string::npos) out.erase(0, nl + 1);
    ss.Wait(milliseconds(20));
  }
}

// The command line of every wrapped command: the wrapper reads everything else from stdin.
std::string WrapperCommand() { return absl::StrCat("exec /bin/sh -c ", ShellQuote(kWrapper), " fa"); }

// Opens a channel and starts the command wrapper on it.
absl::StatusOr<LIBSSH2_CHANNEL*> StartWrapper(SshGuest::Session& ss, const CancellationToken& cancel,
                                              const Deadline& deadline) {
  ASSIGN_OR_RETURN(LIBSSH2_CHANNEL * ch, ss.Startup([&] { return libssh2_channel_open_session(ss.s); }, cancel,
                                                   deadline, "open channel"));
  ChannelCloser closer{&ss, ch};
  const std::string command = WrapperCommand();
  RETURN_IF_ERROR(
      ss.Startup([&] { return libssh2_channel_exec(ch, command.c_str()); }, cancel, deadline, "exec").status());
  closer.ch = nullptr;
  return ch;
}

// Opens the session's standby unless it has one or another thread is opening it. Best effort: without
// a standby the next command starts a channel of its own.
void ReplenishStandby(SshGuest::Session& ss) {
  {
    std::lock_guard<std::mutex> lock(ss.standby_mu);
    if (ss.standby_ch != nullptr || ss.standby_opening) return;
    ss.standby_opening = true;
  }
  auto ch = StartWrapper(ss, CancellationToken(), Deadline::After(std::chrono::seconds(10)));
  std::lock_guard<std::mutex> lock(ss.standby_mu);
  ss.standby_opening = false;
  if (ch.ok()) ss.standby_ch = *ch;
}

// The standby if it is still alive (a channel whose shell ended is freed), else null.
LIBSSH2_CHANNEL* TakeStandby(SshGuest::Session& ss) {
  LIBSSH2_CHANNEL* ch;
  {
    std::lock_guard<std::mutex> lock(ss.standby_mu);
    ch = ss.standby_ch;
    ss.standby_ch = nullptr;
  }
  if (ch == nullptr) return nullptr;
  bool ended;
  {
    std::lock_guard<std::mutex> lock(ss.mu);
    ended = libssh2_channel_eof(ch) != 0;
  }
  if (ended) {
    ChannelCloser closer{&ss, ch};
    return nullptr;
  }
  return ch;
}

// Opens the session's signal shell (best effort: without it signals go through RunQuick) and its SFTP
// subsystem (best effort: a transfer that finds none starts it then). Called once, by Connect, before
// the session is shared.
void OpenSignalChannelAndSftp(SshGuest::Session& ss, const CancellationToken& cancel) {
  Deadline deadline = Deadline::After(std::chrono::seconds(10));
  auto ch = ss.Startup([&] { return libssh2_channel_open_session(ss.s); }, cancel, deadline, "open signal channel");
  if (!ch.ok()) return;
  ChannelCloser closer{&ss, *ch};
  const bool exec_ok =
      ss.Startup([&] { return libssh2_channel_exec(*ch, kSignalLoop); }, cancel, deadline, "start signal shell").ok();
  // SFTP starts while the signal shell's login shell runs its start-up files (a server that runs its SFTP
  // server through the login shell pays that once more): both are paid here, overlapped, and not by
  // the first artifact download at the end of the build.
  ss.Sftp(cancel).IgnoreError();
  // And the first command's shell.
  ReplenishStandby(ss);
  if (!exec_ok) return;
  // Wait until the user's login shell has finished its start-up files and handed over: a session
  // closed (or a server stopped) while they run would cut them off half way, and some leave state behind
  // then (e.g. a lock file). It also means a first cancel finds the shell listening. A shell that is
  // only slow is kept (SendOverSignalChannel copes); one that ended is not.
  if (!AwaitLine(ss, *ch, "FASIG ready\n", deadline, cancel)) {
    std::lock_guard<std::mutex> lock(ss.mu);
    if (libssh2_channel_eof(*ch) != 0) return;
  }
  closer.ch = nullptr;
  ss.signal_ch = *ch;
}

// Sends "SIGNAL PGID" to the signal shell and waits for its answer (the kill has run: a grace period
// counts from there even when the shell was slow to start). False if there is no signal shell or it is
// broken or silent; it is then dropped and never used again.
bool SendOverSignalChannel(SshGuest::Session& ss, const char* signal, long pgid) {
  std::lock_guard<std::mutex> serial(ss.signal_mu);
  LIBSSH2_CHANNEL* ch = ss.signal_ch;
  if (ch == nullptr) return false;
  const std::string line = absl::StrCat(signal, " ", pgid, "\n");
  Deadline deadline = Deadline::After(std::chrono::seconds(10));
  bool ok = true;
  for (size_t sent = 0; ok && sent < line.size();) {
    auto n = ss.Retry([&] { return libssh2_channel_write(ch, line.data() + sent, line.size() - sent); },
                      CancellationToken(), deadline, "signal");
    if (n.ok()) sent += static_cast<size_t>(*n);
    else ok = false;
  }
  // Answers to earlier signals (a previous wait that gave up) are dropped with the rest.
  if (ok && AwaitLine(ss, ch, absl::StrCat("FASIG ", line), deadline, CancellationToken())) return true;
  ss.signal_ch = nullptr;
  ChannelCloser closer{&ss, ch};
  return false;
}

absl::Status ConfigError(const std::string& what) {
  return absl::InvalidArgumentError(absl::StrCat("ssh config: ", what));
}

// Connects a TCP socket to host:port within `timeout`.
absl::StatusOr<int> TcpConnect(const std::string& host, int port, milliseconds timeout) {
  addrinfo hints{};
  hints.ai_family = AF_UNSPEC;
  hints.ai_socktype = SOCK_STREAM;
  addrinfo* res = nullptr;
  int gai = ::getaddrinfo(host.c_str(), std::to_string(port).c_str(), &hints, &res);
  if (gai != 0) return absl::UnavailableError(absl::StrCat("resolve ", host, ": ", gai_strerror(gai)));
  std::unique_ptr<addrinfo, decltype(&freeaddrinfo)> guard(res, &freeaddrinfo);
  std::string last = "no address";
  for (addrinfo* ai = res; ai != nullptr; ai = ai->ai_next) {
    int fd = ::socket(ai->ai_family, ai->ai_socktype | SOCK_CLOEXEC | SOCK_NONBLOCK, ai->ai_protocol);
    if (fd < 0) continue;
    int rc = ::connect(fd, ai->ai_addr, ai->ai_addrlen);
    if (rc != 0 && errno == EINPROGRESS) {
      pollfd p{fd, POLLOUT, 0};
      rc = ::poll(&p, 1, static_cast<int>(timeout.count()));
      if (rc == 1) {
        int err = 0;
        socklen_t len = sizeof err;
        ::getsockopt(fd, SOL_SOCKET, SO_ERROR, &err, &len);
        rc = err == 0 ? 0 : -1;
        errno = err;
      } else {
        rc = -1;
        errno = ETIMEDOUT;
      }
    }
    if (rc == 0) {
      int flags = ::fcntl(fd, F_GETFL);
      ::fcntl(fd, F_SETFL, flags & ~O_NONBLOCK);
      int one = 1;
      ::setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
      return fd;
    }
    last = std::strerror(errno);
    ::close(fd);
  }
  return absl::UnavailableError(last);
}

// Turns on TCP keepalive and a user timeout so a peer that vanished without closing the connection
// is noticed within about three keepalive intervals.
void ConfigureKeepalive(int fd, std::chrono::seconds interval) {
  int one = 1;
  int idle = static_cast<int>(interval.count());
  int cnt = 3;
  unsigned int user_timeout = static_cast<unsigned int>(interval.count() * 3 * 1000);
  ::setsockopt(fd, SOL_SOCKET, SO_KEEPALIVE, &one, sizeof one);
  ::setsockopt(fd, IPPROTO_TCP, TCP_KEEPIDLE, &idle, sizeof idle);
  ::setsockopt(fd, IPPROTO_TCP, TCP_KEEPINTVL, &idle, sizeof idle);
  ::setsockopt(fd, IPPROTO_TCP, TCP_KEEPCNT, &cnt, sizeof cnt);
  ::setsockopt(fd, IPPROTO_TCP, TCP_USER_TIMEOUT, &user_timeout, sizeof user_timeout);
}

int KnownHostKeyType(int hostkey_type) {
  switch (hostkey_type) {
    case LIBSSH2_HOSTKEY_TYPE_RSA: return LIBSSH2_KNOWNHOST_KEY_SSHRSA;
    case LIBSSH2_HOSTKEY_TYPE_DSS: return LIBSSH2_KNOWNHOST_KEY_SSHDSS;
    case LIBSSH2_HOSTKEY_TYPE_ECDSA_256: return LIBSSH2_KNOWNHOST_KEY_ECDSA_256;
    case LIBSSH2_HOSTKEY_TYPE_ECDSA_384: return LIBSSH2_KNOWNHOST_KEY_ECDSA_384;
    case LIBSSH2_HOSTKEY_TYPE_ECDSA_521: return LIBSSH2_KNOWNHOST_KEY_ECDSA_521;
    case LIBSSH2_HOSTKEY_TYPE_ED25519: return LIBSSH2_KNOWNHOST_KEY_ED25519;
    default: return LIBSSH2_KNOWNHOST_KEY_UNKNOWN;
  }
}

// Checks the server's host key against the pin. PERMISSION_DENIED shows what was expected and seen.
absl::Status VerifyHostKey(SshGuest::Session& ss, const SshConfig& c, std::string* seen_out) {
  size_t len = 0;
  int type = 0;
  const char* key = libssh2_session_hostkey(ss.s, &len, &type);
  if (key == nullptr) return absl::UnavailableError(absl::StrCat("no host key from ", ss.where));
  std::string blob(key, len);
  std::string seen = SshFingerprint(blob);
  *seen_out = seen;
  if (!c.host_key_fingerprint.empty()) {
    if (seen == c.host_key_fingerprint) return absl::OkStatus();
    return absl::PermissionDeniedError(absl::StrCat("host key mismatch for ", ss.where, ": expected ",
                                                    c.host_key_fingerprint, ", server presented ", seen,
                                                    "; refusing to connect"));
  }
  std::unique_ptr<LIBSSH2_KNOWNHOSTS, decltype(&libssh2_knownhost_free)> kh(libssh2_knownhost_init(ss.s),
                                                                            &libssh2_knownhost_free);
  if (libssh2_knownhost_readfile(kh.get(), c.known_hosts_path.c_str(), LIBSSH2_KNOWNHOST_FILE_OPENSSH) < 0) {
    return absl::InvalidArgumentError(
        absl::StrCat("cannot read known_hosts file ", c.known_hosts_path, ": ", ss.LastError()));
  }
  libssh2_knownhost* found = nullptr;
  int check = libssh2_knownhost_checkp(kh.get(), c.host.c_str(), c.port, key, len,
                                       LIBSSH2_KNOWNHOST_TYPE_PLAIN | LIBSSH2_KNOWNHOST_KEYENC_RAW |
                                           KnownHostKeyType(type),
                                       &found);
  if (check == LIBSSH2_KNOWNHOST_CHECK_MATCH) return absl::OkStatus();
  if (check == LIBSSH2_KNOWNHOST_CHECK_MISMATCH && found != nullptr && found->key != nullptr) {
    return absl::PermissionDeniedError(absl::StrCat(
        "host key mismatch for ", ss.where, ": expected ", SshFingerprint(Base64Decode(found->key)), " (",
        c.known_hosts_path, "), server presented ", seen, "; refusing to connect"));
  }
  return absl::PermissionDeniedError(absl::StrCat("host key of ", ss.where, " is not in ", c.known_hosts_path,
                                                  ": server presented ", seen,
                                                  " (expected: a matching entry); refusing to connect"));
}

absl::Status Authenticate(SshGuest::Session& ss, const SshConfig& c, const std::string& key_text) {
  int rc;
  const std::string key_name = c.private_key_path.empty() ? "(key from memory)" : c.private_key_path;
  if (!c.private_key_path.empty()) {
    rc = libssh2_userauth_publickey_fromfile_ex(ss.s, c.user.c_str(), static_cast<unsigned int>(c.user.size()),
                                                nullptr, c.private_key_path.c_str(), nullptr);
  } else {
    rc = libssh2_userauth_publickey_frommemory(ss.s, c.user.c_str(), c.user.size(), nullptr, 0,
                                               key_text.data(), key_text.size(), nullptr);
  }
  if (rc == 0) return absl::OkStatus();
  if (rc == LIBSSH2_ERROR_FILE || rc == LIBSSH2_ERROR_PUBLICKEY_UNVERIFIED) {
    if (rc == LIBSSH2_ERROR_FILE) {
      return absl::InvalidArgumentError(
          absl::StrCat("cannot load private key ", key_name, ": ", ss.LastError()));
    }
  }
  std::string why = absl::StrCat("public key authentication refused for user ", c.user, " with key ", key_name,
                                 " on ", ss.where, " (", ss.LastError(), ")");
  if (IsRsaKey(key_text)) {
    absl::StrAppend(&why,
                    ": this is an RSA key; libssh2 1.10 can only sign with ssh-rsa (SHA-1), which OpenSSH "
                    ">= 8.8 refuses by default. Use an Ed25519 or ECDSA key");
  }
  if (rc == LIBSSH2_ERROR_SOCKET_RECV || rc == LIBSSH2_ERROR_SOCKET_SEND ||
      rc == LIBSSH2_ERROR_SOCKET_DISCONNECT) {
    return absl::UnavailableError(why);
  }
  return absl::PermissionDeniedError(why);
}

// One attempt: TCP, handshake, host key, auth. Retryable failures are UNAVAILABLE.
absl::StatusOr<std::unique_ptr<SshGuest::Session>> ConnectOnce(const SshConfig& c, const std::string& key_text,
                                                               milliseconds timeout, const CancellationToken& cancel,
                                                               std::string* seen) {
  auto ss = std::make_unique<SshGuest::Session>();
  ss->where = absl::StrCat(c.user, "@", c.host, ":", c.port);
  Deadline deadline = Deadline::After(timeout);
  ASSIGN_OR_RETURN(ss->sock, TcpConnect(c.host, c.port, timeout));
  // The server speaks first. A port forwarder (QEMU user networking, a proxy) accepts the connection
  // long before the guest's sshd answers, so the wait for its banner is where a boot is spent: it
  // watches `cancel` (a cancelled job, a VM that died) instead of blocking in the handshake. A forwarded
  // connection made before the guest listened can hang for good, so it is given up after a few seconds
  // and the next attempt connects afresh.
  Deadline banner = deadline.Min(Deadline::After(std::chrono::seconds(8)));
  while (true) {
    pollfd p{ss->sock, POLLIN, 0};
    int r = ::poll(&p, 1, 100);
    if (r > 0) break;  // data, EOF or an error: the handshake below finds out which
    if (r < 0 && errno != EINTR) return ErrnoStatus(errno, "poll", ss->where);
    if (cancel.IsCancelled()) return absl::CancelledError(absl::StrCat("ssh connect to ", ss->where, " cancelled"));
    if (banner.Expired()) {
      return absl::UnavailableError(absl::StrCat("ssh: ", ss->where, " accepted the connection but sent no banner"));
    }
  }
  ConfigureKeepalive(ss->sock, c.keepalive_interval);
  ss->s = libssh2_session_init();
  if (ss->s == nullptr) return absl::InternalError("libssh2_session_init failed");
  libssh2_session_set_timeout(ss->s, static_cast<long>(timeout.count()));
  // libssh2 1.10 has no chacha20 or GCM; AES-CTR with AES-NI is its fastest cipher.
  libssh2_session_method_pref(ss->s, LIBSSH2_METHOD_CRYPT_CS, "aes128-ctr,aes256-ctr,aes192-ctr");
  libssh2_session_method_pref(ss->s, LIBSSH2_METHOD_CRYPT_SC, "aes128-ctr,aes256-ctr,aes192-ctr");
  libssh2_session_method_pref(ss->s, LIBSSH2_METHOD_MAC_CS, "hmac-sha2-256,hmac-sha1");
  libssh2_session_method_pref(ss->s, LIBSSH2_METHOD_MAC_SC, "hmac-sha2-256,hmac-sha1");
  int rc = libssh2_session_handshake(ss->s, ss->sock);
  if (rc != 0) {
    return absl::UnavailableError(absl::StrCat("ssh handshake with ", ss->where, ": ", ss->LastError()));
  }
  RETURN_IF_ERROR(VerifyHostKey(*ss, c, seen));
  RETURN_IF_ERROR(Authenticate(*ss, c, key_text));
  // No SSH-level keepalive packets: libssh2 1.10 refuses to queue one while another packet is half sent
  // (LIBSSH2_ERROR_BAD_USE) and would fail a busy transfer. TCP keepalive and TCP_USER_TIMEOUT (set on
  // the socket above) notice a dead peer instead.
  libssh2_session_set_blocking(ss->s, 0);
  return ss;
}

}  // namespace

absl::StatusOr<std::unique_ptr<SshGuest>> SshGuest::Connect(const SshConfig& config,
                                                            const CancellationToken& cancel) {
  if (config.user.empty()) return ConfigError("user is empty");
  if (config.port <= 0 || config.port > 65535) return ConfigError(absl::StrCat("port ", config.port, " is invalid"));
  if (config.private_key_path.empty() == config.private_key_data.empty()) {
    return ConfigError("give exactly one of private_key_path and private_key_data");
  }
  if (config.host_key_fingerprint.empty() == config.known_hosts_path.empty()) {
    return ConfigError("give exactly one of host_key_fingerprint and known_hosts_path: host keys are always pinned");
  }
  if (!config.host_key_fingerprint.empty() && config.host_key_fingerprint.rfind("SHA256:", 0) != 0) {
    return ConfigError(absl::StrCat("host_key_fingerprint must look like SHA256:<base64> (ssh-keygen -lf), got \"",
                                    config.host_key_fingerprint, "\""));
  }
  std::string key_text = config.private_key_data;
  if (!config.private_key_path.empty()) {
    auto k = ReadFile(config.private_key_path);
    if (!k.ok()) return absl::InvalidArgumentError(absl::StrCat("private key: ", k.status().message()));
    key_text = *k;
  }
  std::call_once(g_libssh2_init, [] { libssh2_init(0); });

  const std::string where = absl::StrCat(config.user, "@", config.host, ":", config.port);
  auto start = Clock::now();
  Deadline deadline = Deadline::After(config.connect_timeout);
  milliseconds backoff(200);
  for (int attempt = 1;; ++attempt) {
    milliseconds per_try = std::min<milliseconds>(
        milliseconds(15000), std::max<milliseconds>(milliseconds(500),
                                                    std::chrono::duration_cast<milliseconds>(deadline.Remaining())));
    std::string seen;
    auto session = ConnectOnce(config, key_text, per_try, cancel, &seen);
    double elapsed = std::chrono::duration<double>(Clock::now() - start).count();
    if (session.ok()) {
      if (config.on_progress) {
        config.on_progress(absl::StrFormat("ssh: connected to %s after %d attempt%s in %.1f s (host key %s)",
                                           where, attempt, attempt == 1 ? "" : "s", elapsed, seen));
      }
      // The signal shell starts now so it is ready long before a first cancel.
      OpenSignalChannelAndSftp(**session, cancel);
      return std::unique_ptr<SshGuest>(new SshGuest(config, std::move(*session), seen));
    }
    if (!absl::IsUnavailable(session.status())) return session.status();
    if (config.on_progress) {
      config.on_progress(absl::StrFormat("ssh: waiting for %s (attempt %d, %.1f s): %s", where, attempt, elapsed,
                                         std::string(session.status().message())));
    }
    if (deadline.Expired() || deadline.Remaining() < backoff) {
      return absl::UnavailableError(absl::StrFormat("ssh: %s did not answer within %.1f s (%d attempts); last error: %s",
                                                    where, elapsed, attempt,
                                                    std::string(session.status().message())));
    }
    if (cancel.WaitFor(backoff)) return absl::CancelledError(absl::StrCat("ssh connect to ", where, " cancelled"));
    backoff = std::min<milliseconds>(backoff * 2, milliseconds(2000));
  }
}

SshGuest::SshGuest(SshConfig config, std::unique_ptr<Session> session, std::string fingerprint)
    : config_(std::move(config)), session_(std::move(session)), seen_fingerprint_(std::move(fingerprint)) {}

SshGuest::~SshGuest() {
  // A standby whose login shell is still running its start-up files is left to finish them: cut off
  // half way, some leave state behind (e.g. a lock file).
  LIBSSH2_CHANNEL* ch = session_->standby_ch;
  if (ch != nullptr) {
    AwaitLine(*session_, ch, absl::StrCat(kReadyLine, "\n"), Deadline::After(std::chrono::seconds(10)),
              CancellationToken(), /*from_stderr=*/true);
  }
}

std::string SshGuest::Describe() const { return session_->where; }

namespace {

// Runs a short command on its own channel and returns its exit status (used to signal process groups).
absl::StatusOr<int> RunQuick(SshGuest::Session& ss, const std::string& command) {
  Deadline deadline = Deadline::After(std::chrono::seconds(10));
  CancellationToken none;
  ASSIGN_OR_RETURN(LIBSSH2_CHANNEL * ch, ss.Startup([&] { return libssh2_channel_open_session(ss.s); }, none,
                                                   deadline, "open channel"));
  ChannelCloser closer{&ss, ch};
  RETURN_IF_ERROR(ss.Startup([&] { return libssh2_channel_exec(ch, command.c_str()); }, none, deadline, "exec")
                      .status());
  RETURN_IF_ERROR(ss.Retry([&] { return libssh2_channel_send_eof(ch); }, none, deadline, "send eof").status());
  char buf[4096];
  while (true) {
    bool eof;
    {
      std::lock_guard<std::mutex> lock(ss.mu);
      while (libssh2_channel_read(ch, buf, sizeof buf) > 0) {
      }
      while (libssh2_channel_read_stderr(ch, buf, sizeof buf) > 0) {
      }
      eof = libssh2_channel_eof(ch) != 0;
    }
    if (eof) break;
    if (deadline.Expired()) return absl::DeadlineExceededError(absl::StrCat("`", command, "` did not finish"));
    ss.Wait(milliseconds(50));
  }
  RETURN_IF_ERROR(ss.Retry([&] { return libssh2_channel_close(ch); }, none, deadline, "close").status());
  std::lock_guard<std::mutex> lock(ss.mu);
  return libssh2_channel_get_exit_status(ch);
}

// Sends `signal` (TERM or KILL) to the guest's process group `pgid`: through the signal shell, or a
// command of its own when that shell is not there.
bool SignalGroup(SshGuest::Session& ss, const char* signal, long pgid) {
  if (SendOverSignalChannel(ss, signal, pgid)) return true;
  return RunQuick(ss, absl::StrCat("kill -", signal, " -", pgid, " 2>/dev/null; true")).ok();
}

// Reads the next piece of the command's stdin (preamble, script, then the caller's input).
using StdinReader = std::function<absl::StatusOr<size_t>(char* buf, size_t cap)>;

struct ExecOutcome {
  ExecResult result;
  std::string stderr_head;  // stderr before the process-group marker (wrapper errors)
};

// The exec engine shared by Exec and the tar uploads.
absl::StatusOr<ExecOutcome> RunWrapped(SshGuest::Session& ss, const std::string& preamble, const std::string& script,
                                       const StdinReader& user_stdin, const ExecRequest& req) {
  LIBSSH2_CHANNEL* ch = TakeStandby(ss);
  if (ch == nullptr) {
    Deadline setup_deadline = Deadline::After(std::chrono::seconds(30)).Min(req.deadline);
    ASSIGN_OR_RETURN(ch, StartWrapper(ss, req.cancel, setup_deadline));
  }
  ChannelCloser closer{&ss, ch};
  bool replenished = false;

  std::string head = absl::StrCat(preamble.size(), " ", script.size(), "\n", preamble, script);
  size_t head_sent = 0;
  std::vector<char> in_buf(kSftpPacket);
  size_t in_len = 0, in_off = 0;
  bool user_eof = !user_stdin;
  bool eof_sent = false;

  ExecOutcome out;
  std::string marker_buf;
  bool marker_seen = false;
  long pgid = 0;
  auto last_output = Clock::now();
  bool kill_started = false;
  bool kill_sent = false;
  Clock::time_point kill_at{};
  Clock::time_point give_up_at{};
  bool gave_up = false;
  std::vector<char> buf(1 << 16);

  auto deliver_stderr = [&](const char* data, size_t n) {
    if (marker_seen) {
      if (req.on_stderr) req.on_stderr(std::string_view(data, n));
      return;
    }
    marker_buf.append(data, n);
    size_t nl;
    while (!marker_seen && (nl = marker_buf.find('\n')) != std::string::npos) {
      std::string line = marker_buf.substr(0, nl);
      marker_buf.erase(0, nl + 1);
      if (line == kReadyLine) continue;
      if (line.rfind(kPgidMarker, 0) == 0) {
        pgid = std::atol(line.c_str() + sizeof(kPgidMarker) - 1);
        marker_seen = true;
        last_output = Clock::now();  // the idle clock starts when the command does
        if (!marker_buf.empty() && req.on_stderr) req.on_stderr(marker_buf);
        marker_buf.clear();
      } else {
        out.stderr_head += line + "\n";
      }
    }
  };

  // TERM goes out once the group id is known (the wrapper reports it first thing); KILL follows after
  // the grace period.
  bool term_sent = false;
  // A failed kill channel (e.g. the server's session limit) is retried on the next round.
  auto send_term = [&]() {
    if (SignalGroup(ss, "TERM", pgid)) {
      term_sent = true;
      kill_at = Clock::now() + req.kill_grace;
    }
  };

  while (true) {
    bool progressed = false;
    bool eof = false;
    {
      std::lock_guard<std::mutex> lock(ss.mu);
      // stdin: the wrapper's head, then the caller's input, then EOF.
      while (head_sent < head.size()) {
        ssize_t w = libssh2_channel_write(ch, head.data() + head_sent, head.size() - head_sent);
        if (w == LIBSSH2_ERROR_EAGAIN) break;
        if (w < 0) return ss.Error(static_cast<int>(w), "write stdin");
        head_sent += static_cast<size_t>(w);
        progressed = true;
      }
      if (head_sent == head.size() && !eof_sent) {
        while (true) {
          if (in_off == in_len && !user_eof) {
            auto n = user_stdin(in_buf.data(), in_buf.size());
            if (!n.ok()) return n.status();
            in_len = *n;
            in_off = 0;
            if (in_len == 0) user_eof = true;
          }
          if (in_off == in_len) break;
          ssize_t w = libssh2_channel_write(ch, in_buf.data() + in_off, in_len - in_off);
          if (w == LIBSSH2_ERROR_EAGAIN) break;
          if (w < 0) {
            // The command may exit without reading all its input; that is its business.
            user_eof = true;
            in_off = in_len;
            break;
          }
          in_off += static_cast<size_t>(w);
          progressed = true;
        }
        if (user_eof && in_off == in_len) {
          int rc = libssh2_channel_send_eof(ch);
          if (rc == 0) eof_sent = true;
        }
      }
      // stdout and stderr, as they arrive.
      while (true) {
        ssize_t n = libssh2_channel_read(ch, buf.data(), buf.size());
        if (n == LIBSSH2_ERROR_EAGAIN || n == 0) break;
        if (n < 0) return ss.Error(static_cast<int>(n), "read stdout");
        last_output = Clock::now();
        progressed = true;
        if (req.on_stdout) req.on_stdout(std::string_view(buf.data(), static_cast<size_t>(n)));
      }
      while (true) {
        ssize_t n = libssh2_channel_read_stderr(ch, buf.data(), buf.size());
        if (n == LIBSSH2_ERROR_EAGAIN || n == 0) break;
        if (n < 0) return ss.Error(static_cast<int>(n), "read stderr");
        last_output = Clock::now();
        progressed = true;
        deliver_stderr(buf.data(), static_cast<size_t>(n));
      }
      eof = libssh2_channel_eof(ch) != 0;
    }
    // The next command's shell starts once this one has its script.
    if (!replenished && head_sent == head.size()) {
      replenished = true;
      ReplenishStandby(ss);
    }
    if (eof) break;

    auto now = Clock::now();
    if (!kill_started) {
      if (req.cancel.IsCancelled()) {
        out.result.cancelled = kill_started = true;
      } else if (req.deadline.Expired()) {
        out.result.timed_out = kill_started = true;
      } else if (marker_seen && req.idle_timeout.count() > 0 && now - last_output >= req.idle_timeout) {
        out.result.idle_timed_out = kill_started = true;
      }
    }
    if (kill_started && !term_sent && pgid > 1) {
      send_term();
    } else if (term_sent && !kill_sent && Clock::now() >= kill_at) {
      kill_sent = SignalGroup(ss, "KILL", pgid);
    }
    // Something outside the group (e.g. started with its own setsid) may keep the output open after
    // the KILL, or the kill channel may keep failing: the command is over for us all the same.
    if (kill_started && give_up_at == Clock::time_point{}) {
      give_up_at = Clock::now() + req.kill_grace + std::chrono::seconds(10);
    }
    if (give_up_at != Clock::time_point{} && Clock::now() >= give_up_at) {
      gave_up = true;
      break;
    }
    if (!progressed) ss.Wait(milliseconds(50));
  }

  if (gave_up) {
    out.result.signal = SIGKILL;
    return out;
  }
  Deadline close_deadline = Deadline::After(std::chrono::seconds(10));
  RETURN_IF_ERROR(ss.Retry([&] { return libssh2_channel_close(ch); }, CancellationToken(), close_deadline, "close")
                      .status());
  RETURN_IF_ERROR(
      ss.Retry([&] { return libssh2_channel_wait_closed(ch); }, CancellationToken(), close_deadline, "wait closed")
          .status());
  std::lock_guard<std::mutex> lock(ss.mu);
  char* sig = nullptr;
  size_t sig_len = 0;
  libssh2_channel_get_exit_signal(ch, &sig, &sig_len, nullptr, nullptr, nullptr, nullptr);
  if (sig != nullptr) {
    out.result.signal = SignalNumber(std::string(sig, sig_len));
    libssh2_free(ss.s, sig);
  } else {
    out.result.exit_code = libssh2_channel_get_exit_status(ch);
  }
  if (!marker_seen && !marker_buf.empty()) out.stderr_head += marker_buf;
  return out;
}

absl::StatusOr<std::string> BuildPreamble(const ExecRequest& req) {
  std::string pre;
  for (const auto& [k, v] : req.env) {
    if (!ValidEnvName(k)) {
      return absl::InvalidArgumentError(absl::StrCat("environment variable name \"", k, "\" is not valid"));
    }
    absl::StrAppend(&pre, "export ", k, "=", ShellQuote(v), "\n");
  }
  if (!req.working_dir.empty()) {
    absl::StrAppend(&pre, "cd ", ShellQuote(req.working_dir), " 2>/dev/null || { printf '", kNoDirMarker,
                    "' >&2; exit ", kNoWorkingDirExit, "; }\n");
  }
  return pre;
}

// Turns a wrapper-level failure (no working dir, no shell) into an error.
absl::StatusOr<ExecResult> Finish(absl::StatusOr<ExecOutcome> outcome, const ExecRequest& req) {
  if (!outcome.ok()) return outcome.status();
  if (outcome->result.exit_code == kNoWorkingDirExit && outcome->stderr_head.find("FAERR-NODIR") != std::string::npos) {
    return absl::NotFoundError(absl::StrCat("working directory ", req.working_dir, " does not exist in the guest"));
  }
  if (!outcome->stderr_head.empty() && req.on_stderr) req.on_stderr(outcome->stderr_head);
  return outcome->result;
}

}  // namespace

absl::StatusOr<ExecResult> SshGuest::Exec(const ExecRequest& request) {
  ASSIGN_OR_RETURN(std::string preamble, BuildPreamble(request));
  std::string_view pending = request.stdin_data ? std::string_view(*request.stdin_data) : std::string_view();
  StdinReader reader = [&pending](char* buf, size_t cap) -> absl::StatusOr<size_t> {
    size_t n = std::min(cap, pending.size());
    std::memcpy(buf, pending.data(), n);
    pending.remove_prefix(n);
    return n;
  };
  return Finish(RunWrapped(*session_, preamble, request.command, reader, request), request);
}

absl::Status SshGuest::UploadArchive(const std::string& archive_path, const std::string& remote_dir,
                                     const CancellationToken& cancel) {
  RETURN_IF_ERROR(CheckArchive(archive_path));
  int fd = ::open(archive_path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) return ErrnoStatus(errno, "open", archive_path);
  absl::Cleanup close_fd = [fd] { ::close(fd); };
  StdinReader reader = [fd, &archive_path](char* buf, size_t cap) -> absl::StatusOr<size_t> {
    while (true) {
      ssize_t n = ::read(fd, buf, cap);
      if (n >= 0) return static_cast<size_t>(n);
      if (errno != EINTR) return ErrnoStatus(errno, "read", archive_path);
    }
  };
  ExecRequest req;
  req.cancel = cancel;
  req.kill_grace = milliseconds(2000);
  std::string errors;
  req.on_stderr = [&errors](std::string_view b) {
    if (errors.size() < 4096) errors.append(b);
  };
  std::string script = absl::StrCat("mkdir -p ", ShellQuote(remote_dir), " && tar -xpzf - -C ", ShellQuote(remote_dir));
  ASSIGN_OR_RETURN(ExecOutcome out, RunWrapped(*session_, "", script, reader, req));
  if (!out.result.Succeeded()) {
    if (out.result.cancelled) return absl::CancelledError(absl::StrCat("upload to ", remote_dir, " cancelled"));
    return absl::InternalError(absl::StrCat("unpacking ", archive_path, " into ", remote_dir, " on ", Describe(),
                                            " failed (exit ", out.result.exit_code, "): ", errors, out.stderr_head));
  }
  return absl::OkStatus();
}

absl::Status SshGuest::UploadDirectory(const std::string& local_dir, const std::string& remote_dir,
                                       const CancellationToken& cancel) {
  ASSIGN_OR_RETURN(std::string tmp, MakePrivateTempDir("/tmp", "freeagent-upload-"));
  absl::Cleanup remove_tmp = [&tmp] { RemoveTree(tmp).IgnoreError(); };
  PackOptions everything;
  everything.exclude_names.clear();
  std::string archive = tmp + "/dir.tar.gz";
  RETURN_IF_ERROR(PackDirectory(local_dir, archive, everything).status());
  return UploadArchive(archive, remote_dir, cancel);
}

namespace {

absl::Status SftpError(SshGuest::Session& ss, LIBSSH2_SFTP* sftp, int rc, const std::string& what,
                       const std::string& path) {
  if (rc == LIBSSH2_ERROR_SFTP_PROTOCOL) {
    unsigned long code;
    {
      std::lock_guard<std::mutex> lock(ss.mu);
      code = libssh2_sftp_last_error(sftp);
    }
    std::string msg = absl::StrCat(what, " ", path, " on ", ss.where);
    if (code == LIBSSH2_FX_NO_SUCH_FILE || code == LIBSSH2_FX_NO_SUCH_PATH) {
      return absl::NotFoundError(absl::StrCat(msg, ": no such file"));
    }
    if (code == LIBSSH2_FX_PERMISSION_DENIED) return absl::PermissionDeniedError(absl::StrCat(msg, ": permission denied"));
    if (code == LIBSSH2_FX_NO_SPACE_ON_FILESYSTEM || code == LIBSSH2_FX_QUOTA_EXCEEDED) {
      return absl::ResourceExhaustedError(absl::StrCat(msg, ": no space left"));
    }
    return absl::InternalError(absl::StrCat(msg, ": sftp error ", code));
  }
  std::lock_guard<std::mutex> lock(ss.mu);
  return ss.Error(rc, absl::StrCat(what, " ", path));
}

struct SftpHandleCloser {
  SshGuest::Session* ss;
  LIBSSH2_SFTP_HANDLE* h;
  ~SftpHandleCloser() {
    for (int i = 0; i < 100; ++i) {
      int rc;
      {
        std::lock_guard<std::mutex> lock(ss->mu);
        rc = libssh2_sftp_close_handle(h);
      }
      if (rc != LIBSSH2_ERROR_EAGAIN) break;
      ss->Wait(milliseconds(20));
    }
  }
};

// Opens `path` over SFTP; NOT_FOUND etc. mapped from the SFTP status.
absl::StatusOr<LIBSSH2_SFTP_HANDLE*> SftpOpen(SshGuest::Session& ss, LIBSSH2_SFTP* sftp, const std::string& path,
                                              unsigned long flags, long mode, const CancellationToken& cancel) {
  std::lock_guard<std::mutex> op(ss.sftp_mu);
  Deadline deadline = Deadline::After(std::chrono::seconds(60));
  while (true) {
    LIBSSH2_SFTP_HANDLE* h;
    int err;
    {
      std::lock_guard<std::mutex> lock(ss.mu);
      h = libssh2_sftp_open(sftp, path.c_str(), flags, mode);
      err = h == nullptr ? libssh2_session_last_errno(ss.s) : 0;
    }
    if (h != nullptr) return h;
    if (err != LIBSSH2_ERROR_EAGAIN) return SftpError(ss, sftp, err, "open", path);
    if (cancel.IsCancelled()) return absl::CancelledError(absl::StrCat("open ", path, ": cancelled"));
    if (deadline.Expired()) return absl::DeadlineExceededError(absl::StrCat("open ", path, " on ", ss.where, ": no answer"));
    ss.Wait(milliseconds(100));
  }
}

}  // namespace

absl::StatusOr<TransferResult> SshGuest::Upload(const std::string& local_path, const std::string& remote_path,
                                                int mode, const CancellationToken& cancel) {
  Session& ss = *session_;
  int fd = ::open(local_path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) return ErrnoStatus(errno, "open", local_path);
  absl::Cleanup close_fd = [fd] { ::close(fd); };
  ASSIGN_OR_RETURN(LIBSSH2_SFTP * sftp, ss.Sftp(cancel));
  ASSIGN_OR_RETURN(LIBSSH2_SFTP_HANDLE * h,
                   SftpOpen(ss, sftp, remote_path, LIBSSH2_FXF_WRITE | LIBSSH2_FXF_CREAT | LIBSSH2_FXF_TRUNC,
                            mode, cancel));
  TransferResult result;
  {
    SftpHandleCloser closer{&ss, h};
    Sha256 sha;
    std::vector<char> buf(kSftpBuffer);
    while (true) {
      ssize_t n = ::read(fd, buf.data(), buf.size());
      if (n < 0 && errno == EINTR) continue;
      if (n < 0) return ErrnoStatus(errno, "read", local_path);
      if (n == 0) break;
      sha.Update(buf.data(), static_cast<size_t>(n));
      size_t off = 0;
      while (off < static_cast<size_t>(n)) {
        ssize_t w;
        {
          std::lock_guard<std::mutex> lock(ss.mu);
          w = libssh2_sftp_write(h, buf.data() + off, static_cast<size_t>(n) - off);
        }
        if (w == LIBSSH2_ERROR_EAGAIN) {
          if (cancel.IsCancelled()) return absl::CancelledError(absl::StrCat("upload of ", local_path, " cancelled"));
          ss.Wait(milliseconds(100));
          continue;
        }
        if (w < 0) return SftpError(ss, sftp, static_cast<int>(w), "write", remote_path);
        off += static_cast<size_t>(w);
      }
      result.size += static_cast<uint64_t>(n);
    }
    result.sha256 = sha.FinishHex();
  }
  // The server applies the umask at open; set the exact mode afterwards.
  LIBSSH2_SFTP_ATTRIBUTES attrs{};
  attrs.flags = LIBSSH2_SFTP_ATTR_PERMISSIONS;
  attrs.permissions = static_cast<unsigned long>(mode);
  std::lock_guard<std::mutex> op(ss.sftp_mu);
  RETURN_IF_ERROR(ss.Retry(
                        [&] {
                          return libssh2_sftp_stat_ex(sftp, remote_path.c_str(),
                                                      static_cast<unsigned int>(remote_path.size()),
                                                      LIBSSH2_SFTP_SETSTAT, &attrs);
                        },
                        cancel, Deadline::After(std::chrono::seconds(30)), "chmod " + remote_path)
                      .status());
  return result;
}

absl::StatusOr<TransferResult> SshGuest::Download(const std::string& remote_path, const std::string& local_path,
                                                  uint64_t max_bytes, const CancellationToken& cancel) {
  Session& ss = *session_;
  ASSIGN_OR_RETURN(LIBSSH2_SFTP * sftp, ss.Sftp(cancel));
  LIBSSH2_SFTP_ATTRIBUTES attrs{};
  {
    std::lock_guard<std::mutex> op(ss.sftp_mu);
    Deadline deadline = Deadline::After(std::chrono::seconds(60));
    while (true) {
      int rc;
      {
        std::lock_guard<std::mutex> lock(ss.mu);
        rc = libssh2_sftp_stat_ex(sftp, remote_path.c_str(), static_cast<unsigned int>(remote_path.size()),
                                  LIBSSH2_SFTP_LSTAT, &attrs);
      }
      if (rc == 0) break;
      if (rc != LIBSSH2_ERROR_EAGAIN) return SftpError(ss, sftp, rc, "stat", remote_path);
      if (cancel.IsCancelled()) return absl::CancelledError(absl::StrCat("download of ", remote_path, " cancelled"));
      if (deadline.Expired()) {
        return absl::DeadlineExceededError(absl::StrCat("stat ", remote_path, " on ", ss.where, ": no answer"));
      }
      ss.Wait(milliseconds(100));
    }
  }
  if (LIBSSH2_SFTP_S_ISLNK(attrs.permissions)) {
    return absl::FailedPreconditionError(absl::StrCat(remote_path, " is a symlink; it is not followed"));
  }
  if (!LIBSSH2_SFTP_S_ISREG(attrs.permissions)) {
    return absl::FailedPreconditionError(absl::StrCat(remote_path, " is not a regular file"));
  }
  if (max_bytes > 0 && attrs.filesize > max_bytes) {
    return absl::ResourceExhaustedError(absl::StrCat(remote_path, " is ", attrs.filesize, " bytes, over the limit of ",
                                                     max_bytes, " bytes"));
  }
  ASSIGN_OR_RETURN(LIBSSH2_SFTP_HANDLE * h, SftpOpen(ss, sftp, remote_path, LIBSSH2_FXF_READ, 0, cancel));
  SftpHandleCloser closer{&ss, h};
  {
    // open follows symlinks: check what was actually opened, in case the path changed since the lstat.
    std::lock_guard<std::mutex> op(ss.sftp_mu);
    LIBSSH2_SFTP_ATTRIBUTES opened{};
    RETURN_IF_ERROR(ss.Retry([&] { return libssh2_sftp_fstat_ex(h, &opened, 0); }, cancel,
                             Deadline::After(std::chrono::seconds(60)), "fstat " + remote_path)
                        .status());
    if (!LIBSSH2_SFTP_S_ISREG(opened.permissions)) {
      return absl::FailedPreconditionError(absl::StrCat(remote_path, " is not a regular file"));
    }
  }
  int out = ::open(local_path.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
  if (out < 0) return ErrnoStatus(errno, "create", local_path);
  bool keep = false;
  absl::Cleanup cleanup = [&] {
    ::close(out);
    if (!keep) ::unlink(local_path.c_str());
  };
  TransferResult result;
  Sha256 sha;
  std::vector<char> buf(kSftpBuffer);
  while (true) {
    ssize_t n;
    {
      std::lock_guard<std::mutex> lock(ss.mu);
      n = libssh2_sftp_read(h, buf.data(), buf.size());
    }
    if (n == LIBSSH2_ERROR_EAGAIN) {
      if (cancel.IsCancelled()) return absl::CancelledError(absl::StrCat("download of ", remote_path, " cancelled"));
      ss.Wait(milliseconds(100));
      continue;
    }
    if (n < 0) return SftpError(ss, sftp, static_cast<int>(n), "read", remote_path);
    if (n == 0) break;
    result.size += static_cast<uint64_t>(n);
    if (max_bytes > 0 && result.size > max_bytes) {
      return absl::ResourceExhaustedError(absl::StrCat(remote_path, " grew over the limit of ", max_bytes, " bytes"));
    }
    sha.Update(buf.data(), static_cast<size_t>(n));
    RETURN_IF_ERROR(WriteAll(out, buf.data(), static_cast<size_t>(n), local_path));
  }
  // No fsync: the copy is a host-side working file (the blob store makes the durable one), and
  // flushing it would put a whole disk write on the collection's critical path.
  result.sha256 = sha.FinishHex();
  keep = true;
  return result;
}

}  // namespace freeagent::vm
