#include "daemon/tokens.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <array>
#include <cerrno>
#include <cstring>
#include <fstream>
#include <iostream>

#include "common/random.h"
#include "common/sha256.h"

namespace kiln::daemon {

namespace fs = std::filesystem;

namespace {

constexpr char kBase64Url[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";

std::string Base64Url(const unsigned char* data, size_t size) {
  std::string out;
  uint32_t bits = 0;
  int count = 0;
  for (size_t i = 0; i < size; ++i) {
    bits = (bits << 8) | data[i];
    count += 8;
    while (count >= 6) {
      count -= 6;
      out += kBase64Url[(bits >> count) & 63];
    }
  }
  if (count > 0) out += kBase64Url[(bits << (6 - count)) & 63];
  return out;
}

// Writes `text` to `file` with mode 0600, replacing it atomically.
Status WritePrivateFile(const fs::path& file, const std::string& text) {
  fs::path tmp = file;
  tmp += ".tmp";
  int fd = ::open(tmp.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC | O_NOFOLLOW, 0600);
  if (fd < 0) return Status::Error(tmp.string() + ": cannot create: " + std::strerror(errno));
  bool ok = ::write(fd, text.data(), text.size()) == static_cast<ssize_t>(text.size());
  ok = ::fsync(fd) == 0 && ok;
  ok = ::close(fd) == 0 && ok;
  if (!ok || ::rename(tmp.c_str(), file.c_str()) != 0) {
    ::unlink(tmp.c_str());
    return Status::Error(file.string() + ": cannot write: " + std::strerror(errno));
  }
  return Status::Ok();
}

}  // namespace

Result<std::string> NewToken() {
  std::array<unsigned char, 32> bytes{};
  if (Status got = RandomBytes(bytes.data(), bytes.size()); !got.ok()) return got;
  return "kiln_" + Base64Url(bytes.data(), bytes.size());
}

Result<DaemonTokens> LoadDaemonTokens(const config::DaemonConfig& config) {
  DaemonTokens out;
  const fs::path hash_file = fs::absolute(config.data_dir) / "admin-token.sha256";
  if (!config.tokens.empty()) {
    out.tokens = config.tokens;
    std::error_code ec;
    if (fs::exists(hash_file, ec)) {
      std::cerr << "kiln: auth.tokens is set in the configuration: the admin token made at the "
                   "first start ("
                << hash_file.string() << ") is not accepted\n";
    }
    return out;
  }
  std::error_code ec;
  fs::create_directories(config.data_dir, ec);
  out.hash_file = hash_file;
  std::ifstream in(out.hash_file);
  std::string hash;
  if (in && std::getline(in, hash)) {
    if (!config::IsSha256Hex(hash)) {
      return Status::Error(out.hash_file.string() +
                           ": not a SHA-256 in hex; delete the file to make a new admin token");
    }
  } else {
    auto token = NewToken();
    if (!token.ok()) return token.status();
    hash = Sha256Hex(*token);
    out.fresh = std::move(token).value();
  }
  out.tokens.push_back(config::AuthToken{"admin", "admin", hash});
  return out;
}

Status SaveFreshToken(const DaemonTokens& tokens) {
  if (!tokens.fresh) return Status::Ok();
  return WritePrivateFile(tokens.hash_file, Sha256Hex(*tokens.fresh) + "\n");
}

bool IsLoopbackHost(const std::string& host) {
  if (host == "localhost" || host == "::1" || host == "[::1]") return true;
  if (!host.starts_with("127.")) return false;
  int dots = 0;
  for (char c : host.substr(4)) {
    if (c == '.') {
      ++dots;
    } else if (c < '0' || c > '9') {
      return false;
    }
  }
  return dots == 2;
}

}  // namespace kiln::daemon
