#include "netns.h"

#include <arpa/inet.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <poll.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include <catch2/catch.hpp>
#include <cstring>
#include <random>

#include "harness.h"

namespace kiln::e2e {

namespace {

void Ip(const std::vector<std::string>& args) {
  std::vector<std::string> argv = {"/usr/sbin/ip"};
  argv.insert(argv.end(), args.begin(), args.end());
  auto r = Exec(argv);
  INFO("ip " << args.front() << ": " << r.err);
  REQUIRE(r.code == 0);
}

// Copies what one side sends to the other until either closes.
void Pump(int a, int b) {
  char buf[65536];
  pollfd fds[2] = {{a, POLLIN, 0}, {b, POLLIN, 0}};
  for (;;) {
    if (::poll(fds, 2, -1) < 0) return;
    for (int i = 0; i < 2; ++i) {
      if (!(fds[i].revents & (POLLIN | POLLHUP | POLLERR))) continue;
      const ssize_t n = ::read(fds[i].fd, buf, sizeof buf);
      if (n <= 0) return;
      for (ssize_t off = 0; off < n;) {
        // Both ends are sockets: a peer gone (the worker's connection reset across the cut
        // link) is an error here, not a SIGPIPE that ends the test's process.
        const ssize_t w =
            ::send(fds[1 - i].fd, buf + off, static_cast<size_t>(n - off), MSG_NOSIGNAL);
        if (w <= 0) return;
        off += w;
      }
    }
  }
}

}  // namespace

Netns::Netns() {
  std::random_device rd;
  const unsigned r = rd();
  char tag[9];
  std::snprintf(tag, sizeof tag, "%08x", r);
  name_ = std::string("kiln-") + tag;
  host_if_ = std::string("kv") + tag + "h";
  const std::string ns_if = std::string("kv") + tag + "n";
  const std::string net =
      "10." + std::to_string(100 + (r >> 8) % 100) + "." + std::to_string(r % 250) + ".";
  host_ip_ = net + "1";
  Ip({"netns", "add", name_});
  Ip({"link", "add", host_if_, "type", "veth", "peer", "name", ns_if});
  Ip({"link", "set", ns_if, "netns", name_});
  Ip({"addr", "add", host_ip_ + "/24", "dev", host_if_});
  Ip({"link", "set", host_if_, "up"});
  Ip({"netns", "exec", name_, "/usr/sbin/ip", "addr", "add", net + "2/24", "dev", ns_if});
  Ip({"netns", "exec", name_, "/usr/sbin/ip", "link", "set", ns_if, "up"});
  Ip({"netns", "exec", name_, "/usr/sbin/ip", "link", "set", "lo", "up"});
}

Netns::~Netns() {
  Exec({"/usr/sbin/ip", "link", "del", host_if_});
  Exec({"/usr/sbin/ip", "netns", "del", name_});
}

std::vector<std::string> Netns::Prefix() const { return {"/usr/sbin/ip", "netns", "exec", name_}; }

void Netns::Down() { Ip({"link", "set", host_if_, "down"}); }
void Netns::Up() { Ip({"link", "set", host_if_, "up"}); }

Relay::Relay(const std::string& ip, const std::string& socket_path) : socket_path_(socket_path) {
  listen_fd_ = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  REQUIRE(listen_fd_ >= 0);
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  REQUIRE(::inet_pton(AF_INET, ip.c_str(), &addr.sin_addr) == 1);
  REQUIRE(::bind(listen_fd_, reinterpret_cast<sockaddr*>(&addr), sizeof addr) == 0);
  REQUIRE(::listen(listen_fd_, 64) == 0);
  socklen_t len = sizeof addr;
  REQUIRE(::getsockname(listen_fd_, reinterpret_cast<sockaddr*>(&addr), &len) == 0);
  port_ = ntohs(addr.sin_port);
  REQUIRE(::pipe2(stop_, O_CLOEXEC) == 0);
  acceptor_ = std::thread([this] {
    pollfd fds[2] = {{listen_fd_, POLLIN, 0}, {stop_[0], POLLIN, 0}};
    for (;;) {
      if (::poll(fds, 2, -1) < 0 || (fds[1].revents & POLLIN)) return;
      const int fd = ::accept4(listen_fd_, nullptr, nullptr, SOCK_CLOEXEC);
      if (fd < 0) continue;
      std::lock_guard lock(mu_);
      open_.push_back(fd);
      threads_.emplace_back([this, fd] { Serve(fd); });
    }
  });
}

void Relay::Serve(int fd) {
  const int up = ::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
  sockaddr_un addr{};
  addr.sun_family = AF_UNIX;
  std::strncpy(addr.sun_path, socket_path_.c_str(), sizeof addr.sun_path - 1);
  if (up >= 0 && ::connect(up, reinterpret_cast<sockaddr*>(&addr), sizeof addr) == 0) {
    {
      std::lock_guard lock(mu_);
      open_.push_back(up);
    }
    Pump(fd, up);
  }
  ::shutdown(fd, SHUT_RDWR);
  if (up >= 0) ::shutdown(up, SHUT_RDWR);
}

Relay::~Relay() {
  [[maybe_unused]] ssize_t n = ::write(stop_[1], "x", 1);
  acceptor_.join();
  {
    std::lock_guard lock(mu_);
    for (int fd : open_) ::shutdown(fd, SHUT_RDWR);
  }
  for (auto& t : threads_) t.join();
  for (int fd : open_) ::close(fd);
  ::close(listen_fd_);
  ::close(stop_[0]);
  ::close(stop_[1]);
}

std::string DatabaseSocket() {
  const std::string url = DatabaseUrl();
  const size_t at = url.find("host=");
  REQUIRE(at != std::string::npos);
  const size_t end = url.find('&', at);
  return url.substr(at + 5, end == std::string::npos ? std::string::npos : end - at - 5) +
         "/.s.PGSQL.5432";
}

std::string TcpDatabaseUrl(const std::string& ip, int port) {
  // The test database is named by dbname= (harness.cc WithDbName), else by the URL's path.
  const std::string url = DatabaseUrl();
  std::string db;
  if (const size_t at = url.find("dbname="); at != std::string::npos) {
    const size_t end = url.find('&', at);
    db = url.substr(at + 7, end == std::string::npos ? std::string::npos : end - at - 7);
  } else {
    const size_t slash = url.find(":///");
    REQUIRE(slash != std::string::npos);
    const size_t q = url.find('?', slash);
    db = url.substr(slash + 4, q == std::string::npos ? std::string::npos : q - slash - 4);
  }
  return "postgresql://kiln@" + ip + ":" + std::to_string(port) + "/" + db;
}

}  // namespace kiln::e2e
