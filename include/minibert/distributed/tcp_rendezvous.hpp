// SPDX-License-Identifier: MIT
#pragma once
/* The bootstrap of a torchrun-style launch (RANK, WORLD_SIZE, MASTER_ADDR, MASTER_PORT), as torch's TCPStore serves
   it: rank 0 listens on MASTER_PORT and hands every other rank the same few bytes (NCCL's unique id); the others
   connect to MASTER_ADDR:MASTER_PORT, retrying until rank 0 is up. Only the bootstrap crosses this socket; the
   collectives run on NCCL. Every wait is bounded by the timeout and an error names the address. */

#include <arpa/inet.h>  // htonl
#include <netdb.h>      // getaddrinfo
#include <netinet/in.h> // sockaddr_in
#include <poll.h>       // poll
#include <sys/socket.h> // socket, bind, listen, accept, connect
#include <unistd.h>     // close, read, write

#include <algorithm> // max
#include <cerrno>   // errno
#include <chrono>   // steady_clock, milliseconds
#include <cstdint>  // uint32_t
#include <cstring>  // strerror
#include <string>   // string, to_string
#include <thread>   // sleep_for
#include <vector>   // vector

#include <minibert/distributed/communicator.hpp>

namespace minibert::distributed {

namespace detail {

class socket_fd {
public:
  explicit socket_fd(int fd = -1) : fd_(fd) {}
  ~socket_fd() {
    if (fd_ >= 0) ::close(fd_);
  }
  socket_fd(socket_fd&& o) noexcept : fd_(o.fd_) { o.fd_ = -1; }
  socket_fd(const socket_fd&) = delete;
  socket_fd& operator=(const socket_fd&) = delete;
  int get() const { return fd_; }

private:
  int fd_;
};

using clock = std::chrono::steady_clock;

inline int ms_left(clock::time_point deadline) {
  return int(std::max<long long>(0, std::chrono::duration_cast<std::chrono::milliseconds>(deadline - clock::now()).count()));
}

// waits for `events` on fd until the deadline; false on timeout
inline bool wait_fd(int fd, short events, clock::time_point deadline) {
  pollfd p{fd, events, 0};
  for (;;) {
    const int r = ::poll(&p, 1, ms_left(deadline));
    if (r > 0) return true;
    if (r == 0) return false;
    if (errno != EINTR) return false;
  }
}

// moves exactly n bytes (read when `in`), or throws naming `where`
inline void transfer(int fd, void* data, std::size_t n, bool in, clock::time_point deadline, const std::string& where) {
  auto* p = static_cast<char*>(data);
  while (n > 0) {
    MINIBERT_CHECK(wait_fd(fd, in ? POLLIN : POLLOUT, deadline), "rendezvous", where << ": timed out");
    const ssize_t k = in ? ::read(fd, p, n) : ::write(fd, p, n);
    if (k < 0 && errno == EINTR) continue;
    MINIBERT_CHECK(k > 0, "rendezvous", where << ": connection closed (" << (k < 0 ? std::strerror(errno) : "EOF") << ")");
    p += k;
    n -= std::size_t(k);
  }
}

} // namespace detail

/// @brief rank 0's `blob` on every rank of a torchrun-style launch (rank 0 passes it, the others get it back)
/// @throws minibert::error naming MASTER_ADDR:MASTER_PORT when rank 0 cannot listen, a rank cannot reach it, or
///   the exchange does not finish within `timeout`
inline std::vector<unsigned char> rendezvous_broadcast(const launch_env& env, std::vector<unsigned char> blob,
                                                       std::size_t bytes, std::chrono::seconds timeout) {
  using namespace detail;
  const std::string where = env.master_addr + ":" + std::to_string(env.master_port);
  const clock::time_point deadline = clock::now() + timeout;
  if (env.rank == 0) {
    MINIBERT_CHECK(blob.size() == bytes, "rendezvous", "rank 0 serves " << blob.size() << " bytes, expected " << bytes);
    socket_fd server(::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0));
    MINIBERT_CHECK(server.get() >= 0, "rendezvous", "socket: " << std::strerror(errno));
    const int one = 1;
    ::setsockopt(server.get(), SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
    sockaddr_in addr{};
    addr.sin_family = AF_INET;
    addr.sin_addr.s_addr = htonl(INADDR_ANY);
    addr.sin_port = htons(std::uint16_t(env.master_port));
    MINIBERT_CHECK(::bind(server.get(), reinterpret_cast<sockaddr*>(&addr), sizeof addr) == 0 &&
                       ::listen(server.get(), 128) == 0,
                   "rendezvous", "rank 0 cannot listen on port " << env.master_port << ": " << std::strerror(errno));
    for (int served = 1; served < env.world_size; ++served) {
      MINIBERT_CHECK(wait_fd(server.get(), POLLIN, deadline), "rendezvous",
                     where << ": " << served - 1 << " of " << env.world_size - 1 << " ranks joined within "
                           << timeout.count() << " s");
      socket_fd peer(::accept4(server.get(), nullptr, nullptr, SOCK_CLOEXEC));
      if (peer.get() < 0) {
        --served;
        continue;
      }
      std::uint32_t rank = 0;
      transfer(peer.get(), &rank, sizeof rank, true, deadline, where + " (hello)");
      transfer(peer.get(), blob.data(), bytes, false, deadline, where + " (to rank " + std::to_string(rank) + ")");
    }
    return blob;
  }
  for (;;) {
    addrinfo hints{}, *found = nullptr;
    hints.ai_family = AF_INET;
    hints.ai_socktype = SOCK_STREAM;
    const int gai = ::getaddrinfo(env.master_addr.c_str(), std::to_string(env.master_port).c_str(), &hints, &found);
    MINIBERT_CHECK(gai == 0, "rendezvous", "MASTER_ADDR " << where << ": " << ::gai_strerror(gai));
    socket_fd s(::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0));
    const bool connected = s.get() >= 0 && ::connect(s.get(), found->ai_addr, found->ai_addrlen) == 0;
    const int why = errno;
    ::freeaddrinfo(found);
    if (connected) {
      const std::uint32_t rank = std::uint32_t(env.rank);
      transfer(s.get(), const_cast<std::uint32_t*>(&rank), sizeof rank, false, deadline, where + " (hello)");
      blob.assign(bytes, 0);
      transfer(s.get(), blob.data(), bytes, true, deadline, where + " (from rank 0)");
      return blob;
    }
    MINIBERT_CHECK(clock::now() < deadline, "rendezvous",
                   "rank " << env.rank << " could not reach rank 0 at " << where << " within " << timeout.count()
                           << " s: " << std::strerror(why));
    std::this_thread::sleep_for(std::chrono::milliseconds(100));
  }
}

} // namespace minibert::distributed
