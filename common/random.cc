#include "common/random.h"

#include <sys/random.h>

#include <cerrno>
#include <cstring>
#include <vector>

namespace kiln {

Status RandomBytes(void* out, size_t size) {
  auto* bytes = static_cast<unsigned char*>(out);
  size_t got = 0;
  while (got < size) {
    ssize_t n = ::getrandom(bytes + got, size - got, 0);
    if (n < 0) {
      if (errno == EINTR) continue;
      return Status::Error(std::string("cannot read random bytes: ") + std::strerror(errno));
    }
    got += static_cast<size_t>(n);
  }
  return Status::Ok();
}

std::string RandomHex(size_t bytes) {
  std::vector<unsigned char> raw(bytes);
  KILN_CHECK(RandomBytes(raw.data(), raw.size()).ok());
  static constexpr char kDigits[] = "0123456789abcdef";
  std::string out;
  out.reserve(bytes * 2);
  for (unsigned char b : raw) {
    out += kDigits[b >> 4];
    out += kDigits[b & 15];
  }
  return out;
}

}  // namespace kiln
