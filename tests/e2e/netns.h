// Another host on the wire for end-to-end tests: a network namespace joined to this one by a
// veth pair (`ip netns`, `ip link`; needs root), and a TCP relay in this namespace to the test
// database's Unix socket, so that processes in the namespace reach PostgreSQL over TCP only.
// Cutting the link (Down) drops their packets as a pulled cable would.
#pragma once

#include <atomic>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

namespace kiln::e2e {

class Netns {
 public:
  Netns();   // a namespace "kiln-<random>", this side 10.<a>.<b>.1/24, its side .2
  ~Netns();  // deletes the namespace (its end of the pair goes with it)
  Netns(const Netns&) = delete;
  Netns& operator=(const Netns&) = delete;

  const std::string& name() const { return name_; }
  const std::string& host_ip() const { return host_ip_; }  // this side's address
  // The prefix that runs a program inside: {"/usr/sbin/ip", "netns", "exec", name}.
  std::vector<std::string> Prefix() const;
  void Down();  // this side of the link down: nothing gets through either way
  void Up();

 private:
  std::string name_, host_if_, host_ip_;
};

// Listens on `ip`:<free port> and relays each connection to the Unix socket `socket_path`.
class Relay {
 public:
  Relay(const std::string& ip, const std::string& socket_path);
  ~Relay();
  Relay(const Relay&) = delete;
  Relay& operator=(const Relay&) = delete;
  int port() const { return port_; }

 private:
  void Serve(int fd);
  int listen_fd_ = -1;
  int stop_[2] = {-1, -1};
  int port_ = 0;
  std::string socket_path_;
  std::mutex mu_;
  std::vector<std::thread> threads_;
  std::vector<int> open_;
  std::thread acceptor_;
};

// The test database over TCP through `relay`: postgresql://kiln@IP:PORT/<its name>.
std::string TcpDatabaseUrl(const std::string& ip, int port);
// The Unix socket of the test database (from its URL's host=).
std::string DatabaseSocket();

}  // namespace kiln::e2e
