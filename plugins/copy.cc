#include "plugins/copy.h"

#include <unistd.h>

#include <cerrno>
#include <cstring>

#include "common/sha256.h"

namespace kiln::plugins {

Result<std::string> CopyHashing(int from, int to) {
  Sha256 sha;
  std::string buf(1 << 20, '\0');
  for (;;) {
    const ssize_t n = ::read(from, buf.data(), buf.size());
    if (n < 0 && (errno == EINTR || errno == EAGAIN)) continue;
    if (n < 0) return Status::Error(std::string("cannot be copied: ") + std::strerror(errno));
    if (n == 0) return sha.Hex();
    sha.Update(std::string_view(buf.data(), static_cast<size_t>(n)));
    for (size_t done = 0; done < static_cast<size_t>(n);) {
      const ssize_t w = ::write(to, buf.data() + done, static_cast<size_t>(n) - done);
      if (w < 0 && errno == EINTR) continue;
      if (w <= 0) {
        return Status::Error(std::string("cannot be copied: ") +
                             std::strerror(w < 0 ? errno : ENOSPC));
      }
      done += static_cast<size_t>(w);
    }
  }
}

}  // namespace kiln::plugins
