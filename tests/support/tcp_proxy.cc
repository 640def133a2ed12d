#include "tests/support/tcp_proxy.h"

#include <arpa/inet.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <list>
#include <vector>

#include "absl/strings/str_cat.h"

namespace freeagent::testing {
namespace {

constexpr size_t kMaxBuffered = 1 << 20;  // per direction and connection
constexpr size_t kReadSize = 64 * 1024;

absl::Status Errno(const std::string& what) {
  return absl::InternalError(absl::StrCat("tcp proxy: ", what, ": ", std::strerror(errno)));
}

sockaddr_in Loopback(int port) {
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  addr.sin_port = htons(static_cast<uint16_t>(port));
  return addr;
}

// Closes with a reset, as a broken network path looks to the peer once packets flow again.
void Reset(int fd) {
  if (fd < 0) return;
  linger l{1, 0};
  ::setsockopt(fd, SOL_SOCKET, SO_LINGER, &l, sizeof(l));
  ::close(fd);
}

int ConnectUpstream(int port) {
  int fd = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (fd < 0) return -1;
  sockaddr_in addr = Loopback(port);
  if (::connect(fd, reinterpret_cast<sockaddr*>(&addr), sizeof(addr)) != 0) {
    ::close(fd);
    return -1;
  }
  ::fcntl(fd, F_SETFL, ::fcntl(fd, F_GETFL) | O_NONBLOCK);
  return fd;
}

struct Pair {
  int client = -1;
  int upstream = -1;        // -1: accepted during a cut, goes nowhere
  std::string to_upstream;  // read from client, not yet written
  std::string to_client;
  bool dead = false;
};

// Moves bytes from `from` into `buffer`; false on EOF or error.
bool ReadInto(int from, std::string& buffer) {
  char data[kReadSize];
  size_t room = std::min(kReadSize, kMaxBuffered - std::min(kMaxBuffered, buffer.size()));
  if (room == 0) return true;
  ssize_t n = ::read(from, data, room);
  if (n > 0) {
    buffer.append(data, static_cast<size_t>(n));
    return true;
  }
  return n < 0 && (errno == EAGAIN || errno == EINTR);
}

// Writes what it can of `buffer` to `to`; false on error. Counts forwarded bytes.
bool WriteFrom(int to, std::string& buffer, std::atomic<uint64_t>& forwarded) {
  if (buffer.empty()) return true;
  ssize_t n = ::send(to, buffer.data(), buffer.size(), MSG_NOSIGNAL);
  if (n > 0) {
    buffer.erase(0, static_cast<size_t>(n));
    forwarded += static_cast<uint64_t>(n);
    return true;
  }
  return n < 0 && (errno == EAGAIN || errno == EINTR);
}

}  // namespace

absl::StatusOr<std::unique_ptr<TcpProxy>> TcpProxy::Start(int target_port) {
  int fd = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
  if (fd < 0) return Errno("socket");
  int one = 1;
  ::setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
  sockaddr_in addr = Loopback(0);
  if (::bind(fd, reinterpret_cast<sockaddr*>(&addr), sizeof(addr)) != 0 || ::listen(fd, 64) != 0) {
    absl::Status st = Errno("bind/listen on 127.0.0.1:0");
    ::close(fd);
    return st;
  }
  socklen_t len = sizeof(addr);
  ::getsockname(fd, reinterpret_cast<sockaddr*>(&addr), &len);
  int wake[2];
  if (::pipe2(wake, O_CLOEXEC | O_NONBLOCK) != 0) {
    absl::Status st = Errno("pipe");
    ::close(fd);
    return st;
  }
  return std::unique_ptr<TcpProxy>(new TcpProxy(fd, ntohs(addr.sin_port), target_port, wake[0], wake[1]));
}

TcpProxy::TcpProxy(int listen_fd, int port, int target_port, int wake_read, int wake_write)
    : listen_fd_(listen_fd), port_(port), target_port_(target_port), wake_read_(wake_read), wake_write_(wake_write) {
  thread_ = std::thread([this] { Loop(); });
}

TcpProxy::~TcpProxy() {
  {
    std::lock_guard<std::mutex> lock(mu_);
    stop_ = true;
  }
  Wake();
  if (thread_.joinable()) thread_.join();
  ::close(listen_fd_);
  ::close(wake_read_);
  ::close(wake_write_);
}

void TcpProxy::Wake() {
  char b = 1;
  (void)!::write(wake_write_, &b, 1);
}

void TcpProxy::Cut(CutMode mode) {
  std::unique_lock<std::mutex> lock(mu_);
  cut_ = true;
  mode_ = mode;
  const uint64_t cut = ++cuts_;
  Wake();
  // The thread may be between polls, forwarding what its last poll found; it forwards nothing once it
  // starts its next round with the cut.
  applied_cv_.wait(lock, [&] { return cuts_applied_ >= cut || loop_ended_; });
}

void TcpProxy::Restore() {
  {
    std::lock_guard<std::mutex> lock(mu_);
    cut_ = false;
    ++restores_;
  }
  Wake();
}

void TcpProxy::Loop() {
  std::list<Pair> pairs;
  uint64_t restores_seen = 0;
  for (;;) {
    bool cut;
    bool mode_reset;
    {
      std::lock_guard<std::mutex> lock(mu_);
      if (stop_) break;
      cut = cut_;
      mode_reset = mode_ == CutMode::kReset;
      cuts_applied_ = cuts_;
      applied_cv_.notify_all();
      if (restores_ != restores_seen || (cut && mode_reset)) {
        restores_seen = restores_;
        for (Pair& p : pairs) {
          Reset(p.client);
          Reset(p.upstream);
        }
        pairs.clear();
      }
    }
    std::vector<pollfd> fds = {{wake_read_, POLLIN, 0}, {listen_fd_, POLLIN, 0}};
    std::vector<Pair*> owners = {nullptr, nullptr};
    if (!cut) {
      for (Pair& p : pairs) {
        if (p.upstream < 0) continue;
        short ce = (p.to_upstream.size() < kMaxBuffered ? POLLIN : 0) | (p.to_client.empty() ? 0 : POLLOUT);
        short ue = (p.to_client.size() < kMaxBuffered ? POLLIN : 0) | (p.to_upstream.empty() ? 0 : POLLOUT);
        fds.push_back({p.client, ce, 0});
        owners.push_back(&p);
        fds.push_back({p.upstream, ue, 0});
        owners.push_back(&p);
      }
    }
    if (::poll(fds.data(), fds.size(), 200) < 0) {
      if (errno == EINTR) continue;
      break;
    }
    if (fds[0].revents & POLLIN) {
      char buf[64];
      while (::read(wake_read_, buf, sizeof(buf)) > 0) {
      }
    }
    if (fds[1].revents & POLLIN) {
      for (;;) {
        int client = ::accept4(listen_fd_, nullptr, nullptr, SOCK_NONBLOCK | SOCK_CLOEXEC);
        if (client < 0) break;
        ++accepted_;
        Pair p;
        p.client = client;
        if (cut && mode_reset) {
          Reset(client);
          continue;
        }
        if (!cut) {
          p.upstream = ConnectUpstream(target_port_);
          if (p.upstream < 0) {
            Reset(client);
            continue;
          }
        }
        pairs.push_back(std::move(p));
      }
    }
    for (size_t i = 2; i < fds.size(); ++i) {
      Pair& p = *owners[i];
      if (p.dead || fds[i].revents == 0) continue;
      const bool is_client = fds[i].fd == p.client;
      std::string& inbound = is_client ? p.to_upstream : p.to_client;
      std::string& outbound = is_client ? p.to_client : p.to_upstream;
      bool ok = true;
      if (fds[i].revents & (POLLIN | POLLHUP | POLLERR)) ok = ReadInto(fds[i].fd, inbound);
      if (ok && (fds[i].revents & POLLOUT)) ok = WriteFrom(fds[i].fd, outbound, forwarded_);
      if (!ok) p.dead = true;
    }
    for (auto it = pairs.begin(); it != pairs.end();) {
      if (!it->dead) {
        ++it;
        continue;
      }
      // One side went away: so does the other (gRPC never half-closes a connection it keeps).
      ::close(it->client);
      if (it->upstream >= 0) ::close(it->upstream);
      it = pairs.erase(it);
    }
  }
  for (Pair& p : pairs) {
    Reset(p.client);
    Reset(p.upstream);
  }
  std::lock_guard<std::mutex> lock(mu_);
  loop_ended_ = true;
  applied_cv_.notify_all();
}

}  // namespace freeagent::testing
